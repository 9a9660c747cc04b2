//! Structured-field integers (RFC 9651) written without a formatter: the
//! per-response numbers of `RateLimit` and `Cache-Status`.

/// An RFC 9651 integer (at most 15 digits), in decimal.
pub(crate) struct Integer {
    digits: [u8; 15],
    start: usize,
}

impl Integer {
    pub(crate) const MAX: u64 = 999_999_999_999_999;

    pub(crate) fn new(n: u64) -> Self {
        let mut n = n.min(Self::MAX);
        let mut digits = [0u8; 15];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    pub(crate) fn digits(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    /// How many digits [`new`](Self::new)`(n)` writes.
    pub(crate) fn len(n: u64) -> usize {
        n.min(Self::MAX)
            .checked_ilog10()
            .map_or(1, |d| d as usize + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_know_their_length() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            Integer::MAX,
            Integer::MAX + 1,
            u64::MAX,
        ] {
            let written = Integer::new(n);
            assert_eq!(written.digits().len(), Integer::len(n), "{n}");
            let expected = n.min(Integer::MAX).to_string();
            assert_eq!(written.digits(), expected.as_bytes());
        }
    }
}
