//! Finding one cookie among a request's `Cookie` fields, without building
//! a `Cookie` per pair: the session and visitor-id layers read one name on
//! every request.

use cookie::Cookie;
use http::header::{HeaderMap, HeaderValue, COOKIE};

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
            // Fields are visible ASCII and tabs: ASCII trimming is all of it.
            if key.trim_ascii() != name {
                continue;
            }
            if found.is_some() {
                return Err(Unreadable::Duplicated);
            }
            found = Some(value.trim_ascii());
        }
    }
    Ok(found)
}

/// A `Set-Cookie` field whose name and attributes never change, serialized
/// once: a response adds only its value (the `cookie` crate's `Display`
/// takes a few hundred nanoseconds a field).
#[derive(Clone, Debug)]
pub(crate) struct SetCookie {
    /// `name=`
    head: String,
    /// `; HttpOnly; …`
    attributes: String,
}

impl SetCookie {
    /// The fields `cookie` (its value aside) serializes to.
    pub(crate) fn new(cookie: &Cookie<'_>) -> Self {
        let mut blank = cookie.clone();
        blank.set_value("");
        let head = format!("{}=", cookie.name());
        let attributes = blank.to_string().split_off(head.len());
        Self { head, attributes }
    }

    /// The field for `value` (an id: hex or base64url, which need no
    /// quoting); `None` if it cannot be a header value.
    pub(crate) fn with_value(&self, value: &str) -> Option<HeaderValue> {
        let mut field =
            String::with_capacity(self.head.len() + value.len() + self.attributes.len());
        field.push_str(&self.head);
        field.push_str(value);
        field.push_str(&self.attributes);
        HeaderValue::try_from(field).ok()
    }
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
    fn a_set_cookie_template_writes_what_the_cookie_crate_writes() {
        use cookie::SameSite;
        let plain = Cookie::new("id", "x");
        let full = Cookie::build(("ab_visitor", "x"))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Lax)
            .path("/")
            .domain("example.com")
            .max_age(cookie::time::Duration::days(365))
            .build();
        for cookie in [plain, full] {
            for value in ["", "0123abcdef", "AbC-_xyz"] {
                let mut expected = cookie.clone();
                expected.set_value(value);
                let field = SetCookie::new(&cookie).with_value(value).unwrap();
                assert_eq!(field, expected.to_string().as_str());
            }
        }
        assert!(SetCookie::new(&Cookie::new("id", ""))
            .with_value("a\nb")
            .is_none());
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

    #[test]
    fn fields_that_are_not_visible_ascii_are_skipped() {
        let h = headers(&["id=caf\u{e9}", "x=1\tid=2"]);
        assert_eq!(find(&h, "id", 100), Ok(None), "the é field is skipped");
        assert_eq!(find(&h, "x", 100), Ok(Some("1\tid=2")));
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(b"id=a\xff").unwrap());
        h.append(COOKIE, HeaderValue::from_static("id=b"));
        assert_eq!(find(&h, "id", 100), Ok(Some("b")), "obs-text is skipped");
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
