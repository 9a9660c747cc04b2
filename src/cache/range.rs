//! A single byte range answered from a complete stored response (RFC 9110
//! §14): `206` with the slice, `416` when it cannot be satisfied, the whole
//! response for anything else (several ranges, another unit, a failed
//! `If-Range`, a malformed field — all allowed to be ignored).

use std::ops::Range;

use http::header::{HeaderMap, HeaderValue, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};

/// How a stored response of `len` bytes answers a request's `Range`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// No (usable) range: the whole response.
    Full,
    /// `206` with these bytes.
    Partial(Range<usize>),
    /// `416`: the range starts past the end.
    Unsatisfiable,
}

pub(crate) fn answer(request: &HeaderMap, stored: &HeaderMap, len: usize) -> RangeAnswer {
    let Some(range) = request.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if let Some(condition) = request.get(IF_RANGE) {
        if !if_range_holds(condition, stored) {
            return RangeAnswer::Full;
        }
    }
    let Some((unit, spec)) = range.split_once('=') else {
        return RangeAnswer::Full;
    };
    let spec = spec.trim();
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Full;
    }
    single_range(spec, len)
}

/// `first-last`, `first-` or `-suffix` over `len` bytes.
fn single_range(spec: &str, len: usize) -> RangeAnswer {
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |text: &str| -> Option<usize> {
        let text = text.trim();
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| text.parse().unwrap_or(usize::MAX))
    };
    let (start, end) = match (first.trim().is_empty(), number(first), number(last)) {
        // A suffix: the last N bytes.
        (true, _, Some(0)) => return RangeAnswer::Unsatisfiable,
        (true, _, Some(suffix)) => (len.saturating_sub(suffix), len.saturating_sub(1)),
        (false, Some(start), None) if last.trim().is_empty() => (start, len.saturating_sub(1)),
        (false, Some(start), Some(end)) if end >= start => (start, end.min(len.saturating_sub(1))),
        _ => return RangeAnswer::Full,
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(start..end + 1)
}

/// `If-Range` (RFC 9110 §13.1.5): a strong entity tag equal to the stored
/// one, or a date equal to its `Last-Modified`.
fn if_range_holds(condition: &HeaderValue, stored: &HeaderMap) -> bool {
    let Ok(condition) = condition.to_str() else {
        return false;
    };
    let condition = condition.trim();
    if condition.starts_with('"') {
        let etag = stored.get(ETAG).and_then(|v| v.to_str().ok());
        return etag.is_some_and(|etag| etag.trim() == condition);
    }
    let modified = stored.get(LAST_MODIFIED).and_then(|v| v.to_str().ok());
    match (
        httpdate::parse_http_date(condition),
        modified.map(httpdate::parse_http_date),
    ) {
        (Ok(date), Some(Ok(modified))) => date == modified,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: usize) -> RangeAnswer {
        let mut request = HeaderMap::new();
        request.insert(RANGE, value.parse().unwrap());
        answer(&request, &HeaderMap::new(), len)
    }

    #[test]
    fn single_byte_ranges() {
        use RangeAnswer::*;
        assert_eq!(range("bytes=0-4", 10), Partial(0..5));
        assert_eq!(range("bytes=5-", 10), Partial(5..10));
        assert_eq!(range("bytes=-3", 10), Partial(7..10));
        assert_eq!(range("bytes=-30", 10), Partial(0..10));
        assert_eq!(range("bytes=8-100", 10), Partial(8..10));
        assert_eq!(range("BYTES = 1-1", 10), Partial(1..2));
        assert_eq!(range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(range("bytes=0-", 0), Unsatisfiable);
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=x-",
            "bytes",
            "bytes=-",
        ] {
            assert_eq!(range(ignored, 10), Full, "{ignored}");
        }
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let mut stored = HeaderMap::new();
        stored.insert(ETAG, "\"v1\"".parse().unwrap());
        stored.insert(
            LAST_MODIFIED,
            "Mon, 01 Jan 2024 00:00:00 GMT".parse().unwrap(),
        );
        let with = |condition: &str| {
            let mut request = HeaderMap::new();
            request.insert(RANGE, "bytes=0-0".parse().unwrap());
            request.insert(IF_RANGE, condition.parse().unwrap());
            answer(&request, &stored, 10)
        };
        assert_eq!(with("\"v1\""), RangeAnswer::Partial(0..1));
        assert_eq!(with("\"v2\""), RangeAnswer::Full);
        assert_eq!(with("W/\"v1\""), RangeAnswer::Full);
        assert_eq!(
            with("Mon, 01 Jan 2024 00:00:00 GMT"),
            RangeAnswer::Partial(0..1)
        );
        assert_eq!(with("Tue, 02 Jan 2024 00:00:00 GMT"), RangeAnswer::Full);
    }
}
