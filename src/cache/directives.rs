//! `Cache-Control` directives (RFC 9111 §5.2), parsed leniently: unknown
//! directives are ignored, a malformed argument makes its directive absent
//! (or, for freshness, zero), and a repeated directive keeps its most
//! conservative value.

use http::header::{HeaderMap, HeaderName, CACHE_CONTROL};

/// The `Cache-Control` directives of a request or a response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (unqualified, or with field names: a shared cache treats both alike).
    pub no_cache: bool,
    /// `private` (unqualified or qualified: a shared cache never stores either).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `only-if-cached` (requests).
    pub only_if_cached: bool,
    /// `max-age=N` seconds.
    pub max_age: Option<u64>,
    /// `s-maxage=N` seconds (responses; shared caches only).
    pub s_maxage: Option<u64>,
    /// `max-stale` (requests): `Some(None)` accepts any staleness, `Some(Some(n))` up to `n` seconds.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh=N` seconds (requests).
    pub min_fresh: Option<u64>,
    /// `stale-while-revalidate=N` seconds (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` seconds (RFC 5861).
    pub stale_if_error: Option<u64>,
}

/// Delta-seconds (RFC 9111 §1.2.2): digits only; too large saturates.
fn delta_seconds(arg: Option<&str>) -> Option<u64> {
    let arg = arg?.trim_matches('"');
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(arg.parse().unwrap_or(u64::MAX))
}

/// Keeps the smaller of two values: repeated freshness directives are
/// resolved conservatively.
fn min_of(current: Option<u64>, new: Option<u64>) -> Option<u64> {
    match (current, new) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl CacheControl {
    /// Parses every `Cache-Control` field in `headers`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            // A field that is not visible ASCII is ignored as a whole.
            let Ok(text) = value.to_str() else { continue };
            for directive in split_directives(text) {
                cc.apply(directive);
            }
        }
        cc
    }

    /// A targeted cache-control field such as `CDN-Cache-Control` (RFC 9213
    /// §2): a structured-field dictionary with `Cache-Control`'s directives.
    /// `None` when absent or invalid, so it is ignored as a whole.
    pub(crate) fn from_targeted(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Option<_>>()?;
        if lines.is_empty() {
            return None;
        }
        let joined = lines.join(", ");
        let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
        let mut cc = Self::default();
        for (key, member) in &dictionary {
            // Field-name lists (`no-cache=("set-cookie")`) count as the
            // unqualified directive, as in `Cache-Control`.
            let (flag, seconds) = match member {
                sfv::ListEntry::Item(item) => (
                    item.bare_item.as_boolean() == Some(true),
                    item.bare_item
                        .as_integer()
                        .and_then(|i| u64::try_from(i64::from(i)).ok()),
                ),
                sfv::ListEntry::InnerList(_) => (true, None),
            };
            let seconds = seconds.map(|s| s.to_string());
            match (key.as_str(), flag, seconds) {
                (name, true, _) => cc.apply(name),
                (name, false, Some(s)) => cc.apply(&format!("{name}={s}")),
                _ => {}
            }
        }
        Some(cc)
    }

    fn apply(&mut self, directive: &str) {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (directive.trim(), None),
        };
        match name.to_ascii_lowercase().as_str() {
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "no-transform" => self.no_transform = true,
            "immutable" => self.immutable = true,
            "only-if-cached" => self.only_if_cached = true,
            // A malformed max-age or s-maxage makes the response stale (0).
            "max-age" => self.max_age = min_of(self.max_age, Some(delta_seconds(arg).unwrap_or(0))),
            "s-maxage" => {
                self.s_maxage = min_of(self.s_maxage, Some(delta_seconds(arg).unwrap_or(0)))
            }
            "max-stale" => {
                self.max_stale = match (self.max_stale, arg.map(|a| delta_seconds(Some(a)))) {
                    (_, None) => Some(None),
                    (_, Some(None)) => self.max_stale,
                    (Some(Some(a)), Some(Some(b))) => Some(Some(a.min(b))),
                    (Some(None), Some(Some(_))) => Some(None),
                    (None, Some(Some(b))) => Some(Some(b)),
                }
            }
            "min-fresh" => self.min_fresh = min_of(self.min_fresh, delta_seconds(arg)),
            "stale-while-revalidate" => {
                self.stale_while_revalidate =
                    min_of(self.stale_while_revalidate, delta_seconds(arg))
            }
            "stale-if-error" => {
                self.stale_if_error = min_of(self.stale_if_error, delta_seconds(arg))
            }
            _ => {}
        }
    }
}

/// Splits a field value on commas outside quoted strings.
fn split_directives(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(values: &[&str]) -> CacheControl {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(CACHE_CONTROL, v.parse().unwrap());
        }
        CacheControl::from_headers(&headers)
    }

    #[test]
    fn parses_directives_across_fields() {
        let c = cc(&[
            "public, max-age=60",
            "S-MAXAGE=120, stale-while-revalidate=30",
        ]);
        assert!(c.public);
        assert_eq!(
            (c.max_age, c.s_maxage, c.stale_while_revalidate),
            (Some(60), Some(120), Some(30))
        );
    }

    #[test]
    fn quoted_commas_and_field_names() {
        let c = cc(&[r#"private="set-cookie, x", no-cache="a,b", max-age="10""#]);
        assert!(c.private && c.no_cache);
        assert_eq!(c.max_age, Some(10));
    }

    #[test]
    fn malformed_and_repeated_values_are_conservative() {
        assert_eq!(
            cc(&["max-age=abc"]).max_age,
            Some(0),
            "invalid max-age: stale"
        );
        assert_eq!(cc(&["max-age=60, max-age=10"]).max_age, Some(10));
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            Some(u64::MAX)
        );
        assert_eq!(cc(&["max-stale"]).max_stale, Some(None));
        assert_eq!(cc(&["max-stale=5"]).max_stale, Some(Some(5)));
        assert_eq!(cc(&["min-fresh=-1"]).min_fresh, None);
        assert_eq!(cc(&[",,, ,"]), CacheControl::default());
    }
}
