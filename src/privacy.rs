//! Marking responses that depend on who asked, so that no shared cache
//! stores them or serves them to another client.

use http::header::{Entry, HeaderName, HeaderValue, CACHE_CONTROL, VARY};
use http::HeaderMap;

/// Marks a response as one client's own: `private` merged into its
/// `Cache-Control` (replacing `public` and `s-maxage`, which speak to shared
/// caches), `no-store` added when `no_store` (a response that sets or clears
/// a client identifier), and `vary` added to `Vary` so no cache answers one
/// client's request with another's response.
pub(crate) fn mark_private(headers: &mut HeaderMap, vary: Option<&HeaderName>, no_store: bool) {
    if let Entry::Vacant(none) = headers.entry(CACHE_CONTROL) {
        // The common case: nothing to merge with.
        none.insert(HeaderValue::from_static(match no_store {
            true => "private, no-store",
            false => "private",
        }));
    } else {
        merge_private(headers, no_store);
    }
    if let Some(name) = vary {
        add_vary(headers, name);
    }
}

/// `private` (and `no-store`) merged into the response's `Cache-Control`.
fn merge_private(headers: &mut HeaderMap, no_store: bool) {
    let mut directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let name = d.split('=').next().unwrap_or("").trim();
            !name.eq_ignore_ascii_case("public") && !name.eq_ignore_ascii_case("s-maxage")
        })
        .map(str::to_owned)
        .collect();
    let has = |directives: &[String], name: &str| {
        directives.iter().any(|d| {
            d.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(name)
        })
    };
    if !has(&directives, "private") {
        directives.insert(0, "private".to_owned());
    }
    if no_store && !has(&directives, "no-store") {
        directives.push("no-store".to_owned());
    }
    if let Ok(value) = HeaderValue::from_str(&directives.join(", ")) {
        headers.insert(CACHE_CONTROL, value);
    }
}

/// Adds `name` to the response's `Vary`, unless it is there already (or `*`).
pub(crate) fn add_vary(headers: &mut HeaderMap, name: &HeaderName) {
    let mut vary = match headers.entry(VARY) {
        Entry::Vacant(none) => {
            none.insert(HeaderValue::from(name.clone()));
            return;
        }
        Entry::Occupied(vary) => vary,
    };
    let present = vary
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|f| f == "*" || f.eq_ignore_ascii_case(name.as_str()));
    if !present {
        vary.append(HeaderValue::from(name.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    fn marked(cache_control: Option<&str>, vary: Option<&str>, no_store: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(cc) = cache_control {
            headers.insert(CACHE_CONTROL, cc.parse().unwrap());
        }
        if let Some(v) = vary {
            headers.insert(VARY, v.parse().unwrap());
        }
        mark_private(&mut headers, Some(&COOKIE), no_store);
        headers
    }

    #[test]
    fn private_is_merged_with_the_handlers_directives() {
        let h = marked(Some("public, max-age=60, s-maxage=600"), None, false);
        assert_eq!(h[CACHE_CONTROL], "private, max-age=60");
        assert_eq!(h[VARY], "cookie");
        let h = marked(None, Some("Accept-Encoding"), true);
        assert_eq!(h[CACHE_CONTROL], "private, no-store");
        let vary: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "cookie"]);
        let h = marked(None, None, false);
        assert_eq!(h[CACHE_CONTROL], "private");
        assert_eq!(h[VARY], "cookie");
        let h = marked(Some("private, no-store"), Some("Cookie"), true);
        assert_eq!(h[CACHE_CONTROL], "private, no-store");
        assert_eq!(h.get_all(VARY).iter().count(), 1);
    }
}
