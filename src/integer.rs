//! Structured-field integers (RFC 9651) written without a formatter (by
//! `itoa`, two digits per step): the per-response numbers of `RateLimit`
//! and `Cache-Status`.

/// The largest RFC 9651 integer (15 digits); larger numbers are written as it.
pub(crate) const MAX: u64 = 999_999_999_999_999;

/// Appends `n`, at most [`MAX`], in decimal.
pub(crate) fn push(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n.min(MAX)).as_bytes());
}

/// How many digits [`push`] writes for `n`.
pub(crate) fn len(n: u64) -> usize {
    n.min(MAX).checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_know_their_length() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, MAX, MAX + 1, u64::MAX] {
            let mut written = Vec::new();
            push(&mut written, n);
            assert_eq!(written.len(), len(n), "{n}");
            assert_eq!(written, n.min(MAX).to_string().as_bytes());
        }
    }
}
