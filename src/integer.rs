//! Structured-field integers (RFC 9651) written without a formatter (by
//! `itoa`, two digits per step): the per-response numbers of `RateLimit`,
//! `Cache-Status`, `Age`, `Retry-After`.

use bytes::Bytes;
use http::HeaderValue;

/// The largest RFC 9651 integer (15 digits); larger numbers are written as it.
pub(crate) const MAX: u64 = 999_999_999_999_999;

/// Appends `n`, at most [`MAX`], in decimal.
pub(crate) fn push(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n.min(MAX)).as_bytes());
}

/// `n`, at most [`MAX`], as a field value in one allocation of its size
/// (`HeaderValue::from(u64)` makes two).
pub(crate) fn header_value(n: u64) -> HeaderValue {
    let mut out = Vec::with_capacity(len(n));
    push(&mut out, n);
    HeaderValue::from_maybe_shared(Bytes::from(out)).expect("digits are a valid field value")
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
            assert_eq!(header_value(n).as_bytes(), written);
        }
    }
}
