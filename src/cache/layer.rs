use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use super::entry::Entry;
use super::inflight::Coalescer;
use super::key::{normalized_prefix, primary_key};
use super::status::OutcomeCounters;
use super::storage::Purge;
use super::{CacheService, StoragePolicy};
use crate::decoded::Decoded;
use crate::live::{Live, LiveHandle};
use crate::routes::RouteTable;
use crate::store::{KvStore, StoreError};
use crate::Clock;

/// How long one instance may fetch a cold URL while the others wait.
const DEFAULT_FLEET_LEASE: Duration = Duration::from_secs(5);

type KeyFunction = dyn Fn(&http::Uri, &http::HeaderMap) -> String + Send + Sync;

/// A custom cache-key function.
#[derive(Clone)]
pub(crate) struct KeyFn(pub(crate) Arc<KeyFunction>);

impl std::fmt::Debug for KeyFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyFn(..)")
    }
}

/// A shared HTTP cache (RFC 9111) in front of a service, storing responses
/// in a [`KvStore`]. See the [module docs](super).
///
/// Setters may come in any order, before or after [`purger`](Self::purger).
#[derive(Clone, Debug)]
pub struct CacheLayer<St> {
    config: Live<CacheConfig<St>>,
}

#[derive(Clone, Debug)]
pub(crate) struct CacheConfig<St> {
    pub(crate) store: St,
    pub(crate) policy: StoragePolicy,
    pub(crate) max_body: u64,
    pub(crate) key_prefix: String,
    pub(crate) name: String,
    /// Counters labelled with `name`.
    pub(crate) counters: Arc<OutcomeCounters>,
    pub(crate) expose_key: bool,
    pub(crate) strip: Vec<HeaderName>,
    pub(crate) clock: Clock,
    pub(crate) normalize_query: bool,
    /// Default TTLs per route, overriding `policy.default_ttl`.
    pub(crate) route_ttls: RouteTable<Duration>,
    pub(crate) key_fn: Option<KeyFn>,
    /// Fetches in progress, for request coalescing.
    pub(crate) inflight: Coalescer,
    /// Cache requests that carry cookies, keyed on these cookies' values;
    /// `None`: such requests bypass the cache.
    pub(crate) key_cookies: Option<Vec<String>>,
    pub(crate) set_cookie: SetCookieResponses,
    /// Serve stale responses up to this stale when the origin is unreachable.
    pub(crate) stale_if_unreachable: Option<Duration>,
    /// The fleet-wide fetch lease's TTL (`None`: per-process coalescing only).
    pub(crate) fleet_lease: Option<Duration>,
    /// Remove the targeted cache-control fields from responses that leave.
    pub(crate) strip_targeted: bool,
    /// Recently read stored responses, decoded (without their bodies).
    pub(crate) decoded: Arc<Decoded<Entry>>,
}

/// How many decoded response heads a cache keeps.
const DECODED_HEADS: usize = 4_096;

/// What the cache does with a response that sets a cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetCookieResponses {
    /// Never store it (the default: a cookie is usually one client's).
    #[default]
    Refuse,
    /// Store it without its `Set-Cookie` fields: the client that caused the
    /// fetch gets its cookie, later clients get the response without it.
    StoreWithoutCookie,
    /// Store it with its `Set-Cookie` fields: every client served from
    /// storage gets the same cookie. Only for cookies that identify nobody.
    StoreWithCookie,
}

impl<St: KvStore> CacheLayer<St> {
    /// A cache in `store` with the defaults: 300 s default TTL for responses
    /// that say nothing about freshness, bodies up to 1 MiB, keys under
    /// `cache:`, responses with `Set-Cookie` (and 5xx without explicit
    /// freshness) never stored, requests
    /// with `Cookie` or `Authorization` passed through untouched.
    pub fn new(store: St) -> Self {
        Self {
            config: Live::new(CacheConfig {
                store,
                policy: StoragePolicy::default(),
                max_body: 1 << 20,
                key_prefix: "cache:".into(),
                name: "tower-kv".into(),
                counters: Arc::new(OutcomeCounters::new("tower-kv")),
                expose_key: false,
                strip: Vec::new(),
                clock: Clock::system(),
                normalize_query: false,
                route_ttls: RouteTable::new(),
                key_fn: None,
                inflight: Coalescer::default(),
                key_cookies: None,
                set_cookie: SetCookieResponses::Refuse,
                stale_if_unreachable: None,
                strip_targeted: false,
                fleet_lease: Some(DEFAULT_FLEET_LEASE),
                decoded: Arc::new(Decoded::new(DECODED_HEADS)),
            }),
        }
    }

    fn set(mut self, change: impl FnOnce(&mut CacheConfig<St>)) -> Self {
        self.config.update(change);
        self
    }

    /// Also cache requests that carry cookies (by default they bypass the
    /// cache, which then neither serves nor stores them), keying responses
    /// on the values of these cookies; other cookies are ignored.
    ///
    /// Only for responses that depend on no other cookie: a response that
    /// read the session is marked private by [`SessionLayer`](crate::session::SessionLayer)
    /// and never stored, but your own cookie-reading code must say
    /// `Cache-Control: private` itself. Requests with `Authorization` always
    /// bypass the cache.
    #[must_use]
    pub fn key_cookies<I, N>(self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.set(|c| c.key_cookies = Some(names))
    }

    /// Store responses that set cookies, with or without the cookie
    /// (default: [`SetCookieResponses::Refuse`]). A response marked
    /// `private` or `no-store` (as the session layer marks the responses
    /// that set its cookie) is still never stored.
    #[must_use]
    pub fn set_cookie_responses(self, policy: SetCookieResponses) -> Self {
        self.set(|c| {
            c.set_cookie = policy;
            c.policy.store_set_cookie = policy != SetCookieResponses::Refuse;
        })
    }

    /// When the origin cannot be reached (the inner service fails, or
    /// answers with the [`OriginUnreachable`](super::OriginUnreachable)
    /// extension), answer with a stored response up to `max_staleness`
    /// stale (RFC 9111 §4.2.4), with `Cache-Status: …; detail=origin-unreachable`
    /// — unless it says `must-revalidate`, `proxy-revalidate`, `s-maxage`
    /// or `no-cache`. Off by default.
    #[must_use]
    pub fn serve_stale_if_unreachable(self, max_staleness: Duration) -> Self {
        self.set(|c| c.stale_if_unreachable = Some(max_staleness))
    }

    /// Fleet-wide single flight (default: on, 5 s): concurrent misses of a
    /// URL on instances sharing the store make one origin call. The first
    /// instance takes a lease in the store for `ttl`; the others wait for
    /// what it stores — at most `ttl`, after which (a holder that died or
    /// hangs) they fetch themselves. A holder whose response cannot be
    /// stored tells them to fetch at once. Costs a store write per miss
    /// (and a poll every 20 ms per waiting instance); `None` keeps
    /// coalescing per process.
    #[must_use]
    pub fn fleet_single_flight(self, ttl: Option<Duration>) -> Self {
        self.set(|c| c.fleet_lease = ttl)
    }

    /// The targeted cache-control fields this cache obeys, most specific
    /// first (RFC 9213; default: `CDN-Cache-Control`). The first one a
    /// response carries with a valid value replaces `Cache-Control` and
    /// `Expires` for this cache — `private`, `no-store`, `no-cache` and
    /// `max-age=0` included; an invalid one is ignored.
    #[must_use]
    pub fn targeted_cache_control<I: IntoIterator<Item = HeaderName>>(self, fields: I) -> Self {
        let fields: Arc<[HeaderName]> = fields.into_iter().collect();
        self.set(|c| c.policy.targeted = fields)
    }

    /// Remove the targeted fields from responses before they leave (default
    /// `false`): for the last cache that obeys them, so that caches further
    /// down see only `Cache-Control`.
    #[must_use]
    pub fn strip_targeted_fields(self, strip: bool) -> Self {
        self.set(|c| c.strip_targeted = strip)
    }

    /// The lifetime of heuristically cacheable responses that say nothing
    /// about freshness (default 300 s); `None`: RFC 9111
    /// heuristics only.
    #[must_use]
    pub fn default_ttl(self, ttl: Option<Duration>) -> Self {
        self.set(|c| c.policy.default_ttl = ttl)
    }

    /// The default TTL for `GET` requests matching `pattern` (axum route
    /// syntax: `/users/{id}`, `/api/{*rest}`), instead of the layer's.
    ///
    /// # Panics
    ///
    /// If the pattern is invalid or conflicts with another.
    #[must_use]
    pub fn route_ttl(self, pattern: &str, ttl: Duration) -> Self {
        self.set(|c| c.route_ttls = std::mem::take(&mut c.route_ttls).route(None, pattern, ttl))
    }

    /// Store responses whose declared length is at most `bytes` (default
    /// 1 MiB); larger or unsized bodies stream through unbuffered.
    #[must_use]
    pub fn max_body(self, bytes: u64) -> Self {
        self.set(|c| c.max_body = bytes)
    }

    /// Namespace the store keys (default `cache:`).
    #[must_use]
    pub fn key_prefix(self, prefix: impl Into<String>) -> Self {
        self.set(|c| c.key_prefix = prefix.into())
    }

    /// This cache's name in `Cache-Status` and in its metrics' `cache` label
    /// (default `tower-kv`): an RFC 9651 token such as `edge` or `api-cache`;
    /// anything else is sent as `tower-kv`.
    #[must_use]
    pub fn name(self, name: &str) -> Self {
        self.set(|c| {
            c.name = name.to_owned();
            c.counters = Arc::new(OutcomeCounters::new(name));
        })
    }

    /// Disclose the cache key in `Cache-Status` (off by default).
    #[must_use]
    pub fn expose_key(self, expose: bool) -> Self {
        self.set(|c| c.expose_key = expose)
    }

    /// Remove these request headers before the inner service sees them
    /// (poisoning defence: headers that change a response but are not part
    /// of the cache key, such as `X-Forwarded-Host`).
    #[must_use]
    pub fn strip_request_header(self, name: HeaderName) -> Self {
        self.set(|c| c.strip.push(name))
    }

    /// Treat URLs whose query parameters differ only in order as one
    /// (`?b=2&a=1` = `?a=1&b=2`). Off by default: some origins care.
    #[must_use]
    pub fn normalize_query(self, normalize: bool) -> Self {
        self.set(|c| c.normalize_query = normalize)
    }

    /// Key responses by your own function of the request URI and headers
    /// instead of scheme, host, path and query (`Vary` still applies).
    /// Same-origin `Location` invalidation needs the default key.
    #[must_use]
    pub fn key_fn(
        self,
        f: impl Fn(&http::Uri, &http::HeaderMap) -> String + Send + Sync + 'static,
    ) -> Self {
        self.set(|c| c.key_fn = Some(KeyFn(Arc::new(f))))
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(self, clock: Clock) -> Self {
        self.set(|c| c.clock = clock)
    }
}

impl<St: KvStore> CacheLayer<St> {
    /// A handle to purge stored responses by URL, key prefix or tag. It
    /// follows this layer: a key prefix set afterwards reaches it too.
    pub fn purger(&self) -> CachePurger<St> {
        CachePurger {
            config: self.config.handle(),
            how: Purge::Delete,
        }
    }
}

/// Purges stored responses, on every instance sharing the store: deletes
/// them, or with [`soft`](Self::soft) marks them stale.
#[derive(Clone, Debug)]
pub struct CachePurger<St> {
    config: LiveHandle<CacheConfig<St>>,
    how: Purge,
}

impl<St: KvStore> CachePurger<St> {
    /// The same purger, marking responses stale instead of deleting them
    /// (a soft purge): the next request revalidates with the origin —
    /// cheap with validators — or, within `stale-while-revalidate`, is
    /// answered at once while one background request refreshes.
    #[must_use]
    pub fn soft(mut self) -> Self {
        self.how = Purge::MarkStale;
        self
    }

    /// Purges every stored variant of an absolute URL
    /// (`https://example.com/users?page=2`); returns how many responses
    /// went (soft: were marked stale).
    pub async fn purge_url(&self, url: &str) -> Result<usize, StoreError> {
        let uri = url
            .parse::<http::Uri>()
            .map_err(|e| StoreError::InvalidArgument(format!("purge URL {url:?}: {e}")))?;
        let config = self.config.get();
        let key = primary_key(&config.key_prefix, &uri);
        config.purge_prefix(&format!("{key}|"), self.how).await
    }

    /// Purges everything stored under a URL prefix
    /// (`https://example.com/api/`: hierarchical keys); returns how many
    /// responses.
    pub async fn purge_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let config = self.config.get();
        let prefix = format!("{}{}", config.key_prefix, normalized_prefix(prefix));
        config.purge_prefix(&prefix, self.how).await
    }

    /// Purges every response that listed `tag` in its `Surrogate-Key` header.
    pub async fn purge_tag(&self, tag: &str) -> Result<usize, StoreError> {
        self.config.get().purge_tag(tag, self.how).await
    }
}

impl<S, St: Clone> Layer<S> for CacheLayer<St> {
    type Service = CacheService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::from_parts(inner, self.config.get())
    }
}
