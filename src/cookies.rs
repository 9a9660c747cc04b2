//! Finding one cookie among a request's `Cookie` fields, without building
//! a `Cookie` per pair: the session and visitor-id layers read one name on
//! every request.

use http::header::{HeaderMap, COOKIE};

/// Why a cookie could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// The cookie came twice: which one the client meant is unknowable.
    Duplicated,
    /// A `Cookie` field is longer than the limit given.
    Oversized,
}

/// The value of the cookie `name` in `headers`, if sent once.
///
/// Pairs are `name=value` separated by `;` (RFC 6265 §4.2.1). Each side is
/// trimmed of whitespace and the value kept as sent (quotes included),
/// exactly as the `cookie` crate's `Cookie::split_parse` reads them; pieces
/// without `=` and fields that are not visible ASCII are skipped.
pub(crate) fn find<'h>(
    headers: &'h HeaderMap,
    name: &str,
    max_field_len: usize,
) -> Result<Option<&'h str>, Unreadable> {
    let mut found = None;
    for field in headers.get_all(COOKIE) {
        if field.len() > max_field_len {
            return Err(Unreadable::Oversized);
        }
        let Ok(text) = field.to_str() else { continue };
        for pair in text.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key.trim() != name {
                continue;
            }
            if found.is_some() {
                return Err(Unreadable::Duplicated);
            }
            found = Some(value.trim());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(fields: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for field in fields {
            headers.append(COOKIE, HeaderValue::from_str(field).unwrap());
        }
        headers
    }

    /// What the `cookie` crate reads for `name`.
    fn reference(fields: &[&str], name: &str) -> Result<Option<String>, Unreadable> {
        let mut found = None;
        for field in fields {
            for cookie in cookie::Cookie::split_parse(*field).flatten() {
                if cookie.name() == name {
                    if found.is_some() {
                        return Err(Unreadable::Duplicated);
                    }
                    found = Some(cookie.value().to_owned());
                }
            }
        }
        Ok(found)
    }

    #[test]
    fn reads_one_cookie_among_others() {
        let h = headers(&["a=1; id=abc ;b=2", "c=3"]);
        assert_eq!(find(&h, "id", 100), Ok(Some("abc")));
        assert_eq!(find(&h, "c", 100), Ok(Some("3")));
        assert_eq!(find(&h, "x", 100), Ok(None));
        assert_eq!(find(&h, "id", 5), Err(Unreadable::Oversized));
        let twice = headers(&["id=a", "id=b"]);
        assert_eq!(find(&twice, "id", 100), Err(Unreadable::Duplicated));
    }

    proptest! {
        #[test]
        fn agrees_with_the_cookie_crate(
            fields in prop::collection::vec("[ab= ;\"\t]{0,12}", 1..3),
            name in "[ab]{1,2}",
        ) {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let ours = find(&headers(&refs), &name, usize::MAX).map(|v| v.map(str::to_owned));
            prop_assert_eq!(ours, reference(&refs, &name));
        }
    }
}
