//! What a shared cache may store, for how long, and whether a stored
//! response may answer a request (RFC 9111 §3, §4.2, §5.2).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{
    HeaderMap, HeaderName, AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY,
};
use http::{Method, StatusCode};

use super::CacheControl;

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1):
/// only these get heuristic freshness or the configured default TTL.
pub(crate) const HEURISTICALLY_CACHEABLE: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// The targeted field for CDNs and reverse proxies (RFC 9213 §3.1).
pub(crate) const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// Heuristic freshness: this share of the time since `Last-Modified`…
const HEURISTIC_FRACTION: u32 = 10;
/// …but never more than a day (a common cache default).
const HEURISTIC_MAX: Duration = Duration::from_secs(86_400);

/// Why a response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum NotStorable {
    /// Only `GET` responses are stored (a `HEAD` is answered from a stored `GET`).
    Method,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: for one user's browser, never a shared cache.
    Private,
    /// The request carried `Authorization` and the response did not say
    /// `public`, `s-maxage` or `must-revalidate`.
    Authorization,
    /// The response sets a cookie (stored only when configured to).
    SetCookie,
    /// `Vary: *`: no stored response can ever match.
    VaryAll,
    /// A status this cache does not store (1xx, 206 partial content, 304, a
    /// 5xx without explicit freshness).
    Status,
    /// No explicit freshness, and no heuristic or default applies.
    NoFreshness,
}

/// How a storable response may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Storable {
    /// How long it is fresh, from its (corrected) age 0.
    pub lifetime: Duration,
    /// `no-cache`: it must be revalidated before every reuse.
    pub no_cache: bool,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served stale.
    pub must_revalidate: bool,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error`.
    pub stale_if_error: Option<Duration>,
}

/// Settings of the storage decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoragePolicy {
    /// Lifetime for heuristically cacheable responses that say nothing about
    /// freshness (300 s by default); `None`: heuristic freshness only.
    pub default_ttl: Option<Duration>,
    /// Store responses that set cookies (default `false`).
    pub store_set_cookie: bool,
    /// Targeted cache-control fields this cache obeys, most specific first
    /// (default `CDN-Cache-Control`, RFC 9213).
    pub targeted: Arc<[HeaderName]>,
}

impl Default for StoragePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Some(Duration::from_secs(300)),
            store_set_cookie: false,
            targeted: Arc::from([CDN_CACHE_CONTROL]),
        }
    }
}

fn http_date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

/// Whether a shared cache may store this response to this request, and if
/// so how it may be reused.
pub(crate) fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    policy: &StoragePolicy,
) -> Result<Storable, NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    let req = CacheControl::from_headers(request);
    // RFC 9213 §2.2: the first valid targeted field this cache obeys
    // replaces `Cache-Control` (and `Expires`) for it.
    let targeted = policy
        .targeted
        .iter()
        .find_map(|name| CacheControl::from_targeted(response, name));
    let expires_counts = targeted.is_none();
    let res = targeted.unwrap_or_else(|| CacheControl::from_headers(response));
    if req.no_store || res.no_store {
        return Err(NotStorable::NoStore);
    }
    if res.private {
        return Err(NotStorable::Private);
    }
    // RFC 9111 §3: any final status may be stored when the response says
    // how long it is fresh. 1xx are interim, 206 partial and 304 a
    // validation answer: never stored. A 5xx without explicit freshness is
    // never stored (no default TTL or heuristic applies to it).
    let explicit = explicit_lifetime(&res, response, expires_counts);
    let code = status.as_u16();
    if code < 200 || code == 206 || code == 304 || (status.is_server_error() && explicit.is_none())
    {
        return Err(NotStorable::Status);
    }
    if request.contains_key(AUTHORIZATION)
        && !(res.public || res.s_maxage.is_some() || res.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if response.contains_key(SET_COOKIE) && !policy.store_set_cookie {
        return Err(NotStorable::SetCookie);
    }
    let vary_all = response
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "*");
    if vary_all {
        return Err(NotStorable::VaryAll);
    }
    let lifetime = explicit
        .or_else(|| heuristic_lifetime(status, response, policy))
        .ok_or(NotStorable::NoFreshness)?;
    Ok(Storable {
        lifetime,
        no_cache: res.no_cache,
        must_revalidate: res.must_revalidate || res.proxy_revalidate || res.s_maxage.is_some(),
        stale_while_revalidate: res.stale_while_revalidate.map(Duration::from_secs),
        stale_if_error: res.stale_if_error.map(Duration::from_secs),
    })
}

/// `s-maxage`, else `max-age`, else `Expires - Date` (an invalid `Expires`
/// means already stale).
fn explicit_lifetime(res: &CacheControl, headers: &HeaderMap, expires: bool) -> Option<Duration> {
    if let Some(s) = res.s_maxage.or(res.max_age) {
        return Some(Duration::from_secs(s));
    }
    if !expires {
        return None;
    }
    let expires = headers.get(EXPIRES)?;
    let Some(expires) = expires
        .to_str()
        .ok()
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return Some(Duration::ZERO);
    };
    let date = http_date(headers, DATE).unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The configured default, else 10 % of the time since `Last-Modified`
/// (at most a day) — only for heuristically cacheable statuses.
fn heuristic_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    policy: &StoragePolicy,
) -> Option<Duration> {
    if !HEURISTICALLY_CACHEABLE.contains(&status.as_u16()) {
        return None;
    }
    if let Some(ttl) = policy.default_ttl {
        return Some(ttl);
    }
    let modified = http_date(headers, LAST_MODIFIED)?;
    let date = http_date(headers, DATE).unwrap_or_else(SystemTime::now);
    let since = date.duration_since(modified).ok()?;
    Some((since / HEURISTIC_FRACTION).min(HEURISTIC_MAX))
}

/// The `Age` a response arrived with (RFC 9111 §5.1): the first member of a
/// list-valued field; none is zero. An invalid value makes the response as
/// old as can be, so it never looks fresher than it is.
fn age_field(headers: &HeaderMap) -> Duration {
    let Some(value) = headers.get(http::header::AGE) else {
        return Duration::ZERO;
    };
    let first = value.to_str().ok().and_then(|v| v.split(',').next());
    let seconds = first
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    seconds.map_or(Duration::MAX, Duration::from_secs)
}

/// A stored response's current age (RFC 9111 §4.2.3): what it was worth
/// when received (its `Age`, or the age its `Date` implies, plus the
/// request's transit) plus the time it has spent in this cache.
pub(crate) fn current_age(
    stored: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let age_value = age_field(stored);
    let apparent_age = http_date(stored, DATE)
        .and_then(|date| response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    // Saturating: an absurd `Age` from upstream is "very old", never a panic.
    let corrected_initial_age = apparent_age.max(age_value.saturating_add(response_delay));
    let resident_time = now.duration_since(response_time).unwrap_or(Duration::ZERO);
    corrected_initial_age.saturating_add(resident_time)
}

/// Whether a stored response may answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Reuse {
    /// Fresh enough for this request: serve it.
    Fresh,
    /// Stale, but the request's `max-stale` accepts it: serve it.
    StaleAllowed,
    /// Stale within `stale-while-revalidate`: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Must be revalidated with the origin first (stale, or `no-cache`).
    Revalidate,
}

/// Decides reuse from the stored response's freshness, its age and the
/// request's directives (RFC 9111 §4.2, §5.2.1).
pub(crate) fn reuse(stored: &Storable, age: Duration, request: &CacheControl) -> Reuse {
    if request.no_cache || stored.no_cache {
        return Reuse::Revalidate;
    }
    let mut lifetime = stored.lifetime;
    if let Some(max_age) = request.max_age {
        lifetime = lifetime.min(Duration::from_secs(max_age));
    }
    let min_fresh = Duration::from_secs(request.min_fresh.unwrap_or(0));
    if age.saturating_add(min_fresh) < lifetime {
        return Reuse::Fresh;
    }
    if stored.must_revalidate {
        return Reuse::Revalidate;
    }
    let staleness = age.saturating_sub(stored.lifetime);
    match request.max_stale {
        Some(None) => return Reuse::StaleAllowed,
        Some(Some(s)) if staleness <= Duration::from_secs(s) && request.max_age.is_none() => {
            return Reuse::StaleAllowed
        }
        _ => {}
    }
    match stored.stale_while_revalidate {
        Some(window) if staleness <= window => Reuse::StaleWhileRevalidate,
        _ => Reuse::Revalidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targeted_cache_control_replaces_cache_control() {
        use NotStorable::*;
        let cdn = "cdn-cache-control";
        let lifetime = |res: &[(&str, &str)]| store(&[], 200, res).map(|s| s.lifetime);
        assert_eq!(
            lifetime(&[("cache-control", "no-store"), (cdn, "max-age=60")]),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), (cdn, "private")]),
            Err(Private)
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), (cdn, "no-store")]),
            Err(NoStore)
        );
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), (cdn, "max-age=0")]),
            Ok(Duration::ZERO)
        );
        let no_cache = store(
            &[],
            200,
            &[
                ("cache-control", "max-age=60"),
                (cdn, "no-cache, max-age=5"),
            ],
        );
        assert!(no_cache.unwrap().no_cache);
        // `Expires` no longer counts once a targeted field is obeyed.
        assert_eq!(
            lifetime(&[
                (cdn, "must-revalidate"),
                ("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
            ]),
            Err(NoFreshness)
        );
        // An invalid targeted field is ignored as a whole.
        assert_eq!(
            lifetime(&[("cache-control", "max-age=60"), (cdn, "max-age=\"x\", ;;")]),
            Ok(Duration::from_secs(60))
        );
        // Another targeted field, when configured.
        let policy = StoragePolicy {
            default_ttl: None,
            targeted: Arc::from([HeaderName::from_static("acme-cache-control")]),
            ..StoragePolicy::default()
        };
        let headers = headers(&[
            ("cache-control", "max-age=60"),
            ("acme-cache-control", "max-age=5"),
        ]);
        let stored = storable(
            &http::Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers,
            &policy,
        );
        assert_eq!(stored.map(|s| s.lifetime), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn age_uses_the_first_member_and_distrusts_invalid_values() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let age = |value: &str| current_age(&headers(&[("age", value)]), t, t, t);
        assert_eq!(age("30"), Duration::from_secs(30));
        assert_eq!(
            age("30, 5"),
            Duration::from_secs(30),
            "list-valued: the first"
        );
        assert_eq!(age(" 7 "), Duration::from_secs(7));
        for invalid in ["-5", "1.5", "abc", "", "0x10", ", 5"] {
            assert_eq!(age(invalid), Duration::MAX, "{invalid:?} never looks fresh");
        }
        assert_eq!(current_age(&headers(&[]), t, t, t), Duration::ZERO);
    }

    #[test]
    fn an_absurd_age_is_very_old_not_a_panic() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let stored = headers(&[("age", "18446744073709551615")]);
        let age = current_age(
            &stored,
            t,
            t + Duration::from_secs(1),
            t + Duration::from_secs(60),
        );
        assert_eq!(age, Duration::MAX);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn store(
        req: &[(&str, &str)],
        status: u16,
        res: &[(&str, &str)],
    ) -> Result<Storable, NotStorable> {
        let policy = StoragePolicy {
            default_ttl: None,
            ..StoragePolicy::default()
        };
        storable(
            &Method::GET,
            &headers(req),
            StatusCode::from_u16(status).unwrap(),
            &headers(res),
            &policy,
        )
    }

    #[test]
    fn shared_cache_storage_rules() {
        use NotStorable::*;
        assert_eq!(
            store(&[], 200, &[("cache-control", "no-store, max-age=60")]),
            Err(NoStore)
        );
        assert_eq!(
            store(
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")]
            ),
            Err(NoStore)
        );
        assert_eq!(
            store(&[], 200, &[("cache-control", "private, max-age=60")]),
            Err(Private)
        );
        assert_eq!(
            store(
                &[("authorization", "Bearer x")],
                200,
                &[("cache-control", "max-age=60")]
            ),
            Err(Authorization)
        );
        assert!(store(
            &[("authorization", "Bearer x")],
            200,
            &[("cache-control", "public, max-age=60")]
        )
        .is_ok());
        assert!(store(
            &[("authorization", "Bearer x")],
            200,
            &[("cache-control", "s-maxage=60")]
        )
        .is_ok());
        assert_eq!(
            store(
                &[],
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
            ),
            Err(SetCookie)
        );
        assert_eq!(
            store(
                &[],
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept, *")]
            ),
            Err(VaryAll)
        );
        // A 5xx is stored only with explicit freshness (RFC 9111 §3).
        assert!(store(&[], 503, &[("cache-control", "max-age=60")]).is_ok());
        assert!(store(&[], 500, &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")]).is_ok());
        assert_eq!(store(&[], 500, &[]), Err(Status));
        assert_eq!(
            store(
                &[],
                501,
                &[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")]
            ),
            Err(Status),
            "no heuristic for a 5xx"
        );
        assert_eq!(
            store(&[], 206, &[("cache-control", "max-age=60")]),
            Err(Status)
        );
        assert_eq!(
            store(&[], 200, &[]),
            Err(NoFreshness),
            "nothing said, no default"
        );
        assert_eq!(
            store(
                &[],
                302,
                &[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")]
            ),
            Err(NoFreshness),
            "302 is not heuristically cacheable"
        );
        let head = storable(
            &http::Method::HEAD,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=5")]),
            &StoragePolicy::default(),
        );
        assert_eq!(head, Err(Method));
    }

    #[test]
    fn lifetime_precedence() {
        let life = |res: &[(&str, &str)]| store(&[], 200, res).unwrap().lifetime.as_secs();
        assert_eq!(life(&[("cache-control", "max-age=60, s-maxage=120")]), 120);
        assert_eq!(
            life(&[
                ("cache-control", "max-age=60"),
                ("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
            ]),
            60
        );
        let dated = [
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("expires", "Mon, 01 Jan 2024 00:10:00 GMT"),
        ];
        assert_eq!(life(&dated), 600);
        assert_eq!(life(&[("expires", "0")]), 0, "invalid Expires: stale");
        let heuristic = [
            ("date", "Wed, 11 Jan 2024 00:00:00 GMT"),
            ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ];
        assert_eq!(life(&heuristic), 86_400, "10 % of 10 days, capped at a day");
        let with_default = storable(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &HeaderMap::new(),
            &StoragePolicy::default(),
        );
        assert_eq!(
            with_default.unwrap().lifetime.as_secs(),
            300,
            "the default TTL"
        );
        assert!(
            store(&[], 200, &[("cache-control", "s-maxage=5")])
                .unwrap()
                .must_revalidate
        );
    }

    #[test]
    fn age_and_reuse() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let stored = headers(&[("age", "10")]);
        let age = current_age(
            &stored,
            t0,
            t0 + Duration::from_secs(2),
            t0 + Duration::from_secs(32),
        );
        assert_eq!(age.as_secs(), 42, "Age 10 + 2 s transit + 30 s resident");

        let s = Storable {
            lifetime: Duration::from_secs(60),
            no_cache: false,
            must_revalidate: false,
            stale_while_revalidate: Some(Duration::from_secs(30)),
            stale_if_error: None,
        };
        let req = |v: &str| CacheControl::from_headers(&headers(&[("cache-control", v)]));
        let none = CacheControl::default();
        assert_eq!(reuse(&s, Duration::from_secs(59), &none), Reuse::Fresh);
        assert_eq!(
            reuse(&s, Duration::from_secs(70), &none),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(
            reuse(&s, Duration::from_secs(100), &none),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(&s, Duration::from_secs(100), &req("max-stale")),
            Reuse::StaleAllowed
        );
        assert_eq!(
            reuse(&s, Duration::from_secs(70), &req("max-stale=5")),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(
            reuse(&s, Duration::from_secs(20), &req("max-age=10")),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(
            reuse(&s, Duration::from_secs(50), &req("min-fresh=20")),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(
            reuse(&s, Duration::from_secs(1), &req("no-cache")),
            Reuse::Revalidate
        );
        let strict = Storable {
            must_revalidate: true,
            ..s
        };
        assert_eq!(
            reuse(&strict, Duration::from_secs(100), &req("max-stale")),
            Reuse::Revalidate
        );
    }
}
