use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use super::inflight::Coalescer;
use super::{CacheService, StoragePolicy};
use crate::routes::RouteTable;
use crate::store::KvStore;
use crate::Clock;

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
#[derive(Clone, Debug)]
pub struct CacheLayer<St> {
    pub(crate) config: Arc<CacheConfig<St>>,
}

#[derive(Clone, Debug)]
pub(crate) struct CacheConfig<St> {
    pub(crate) store: St,
    pub(crate) policy: StoragePolicy,
    pub(crate) max_body: u64,
    pub(crate) key_prefix: String,
    pub(crate) name: String,
    pub(crate) expose_key: bool,
    pub(crate) strip: Vec<HeaderName>,
    pub(crate) clock: Clock,
    pub(crate) normalize_query: bool,
    /// Default TTLs per route, overriding `policy.default_ttl`.
    pub(crate) route_ttls: RouteTable<Duration>,
    pub(crate) key_fn: Option<KeyFn>,
    /// Fetches in progress, for request coalescing.
    pub(crate) inflight: Coalescer,
}

impl<St: KvStore> CacheLayer<St> {
    /// A cache in `store` with the defaults: 300 s default TTL for responses
    /// that say nothing about freshness, bodies up to 1 MiB, keys under
    /// `cache:`, responses with `Set-Cookie` and 5xx never stored.
    pub fn new(store: St) -> Self {
        Self {
            config: Arc::new(CacheConfig {
                store,
                policy: StoragePolicy::default(),
                max_body: 1 << 20,
                key_prefix: "cache:".into(),
                name: "tower-kv".into(),
                expose_key: false,
                strip: Vec::new(),
                clock: Clock::system(),
                normalize_query: false,
                route_ttls: RouteTable::new(),
                key_fn: None,
                inflight: Coalescer::default(),
            }),
        }
    }

    fn config(&mut self) -> &mut CacheConfig<St> {
        Arc::make_mut(&mut self.config)
    }

    /// The lifetime of heuristically cacheable responses that say nothing
    /// about freshness (default 300 s, the seed's); `None`: RFC 9111
    /// heuristics only.
    #[must_use]
    pub fn default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.config().policy.default_ttl = ttl;
        self
    }

    /// The default TTL for `GET` requests matching `pattern` (`/api/{*rest}`,
    /// as in [`RouteTable`]), instead of the layer's.
    ///
    /// # Panics
    ///
    /// If the pattern is invalid or conflicts with another.
    #[must_use]
    pub fn route_ttl(mut self, pattern: &str, ttl: Duration) -> Self {
        let config = self.config();
        config.route_ttls = std::mem::take(&mut config.route_ttls).route(None, pattern, ttl);
        self
    }

    /// Store responses whose declared length is at most `bytes` (default
    /// 1 MiB); larger or unsized bodies stream through unbuffered.
    #[must_use]
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.config().max_body = bytes;
        self
    }

    /// Namespace the store keys (default `cache:`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config().key_prefix = prefix.into();
        self
    }

    /// Disclose the cache key in `Cache-Status` (off by default).
    #[must_use]
    pub fn expose_key(mut self, expose: bool) -> Self {
        self.config().expose_key = expose;
        self
    }

    /// Remove these request headers before the inner service sees them
    /// (poisoning defence: headers that change a response but are not part
    /// of the cache key, such as `X-Forwarded-Host`).
    #[must_use]
    pub fn strip_request_header(mut self, name: HeaderName) -> Self {
        self.config().strip.push(name);
        self
    }

    /// Treat URLs whose query parameters differ only in order as one
    /// (`?b=2&a=1` = `?a=1&b=2`). Off by default: some origins care.
    #[must_use]
    pub fn normalize_query(mut self, normalize: bool) -> Self {
        self.config().normalize_query = normalize;
        self
    }

    /// Key responses by your own function of the request URI and headers
    /// instead of scheme, host, path and query (`Vary` still applies).
    /// Same-origin `Location` invalidation needs the default key.
    #[must_use]
    pub fn key_fn(
        mut self,
        f: impl Fn(&http::Uri, &http::HeaderMap) -> String + Send + Sync + 'static,
    ) -> Self {
        self.config().key_fn = Some(KeyFn(Arc::new(f)));
        self
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config().clock = clock;
        self
    }
}

impl<St: KvStore> CacheLayer<St> {
    /// A handle to purge stored responses by URL, key prefix or tag.
    pub fn purger(&self) -> CachePurger<St> {
        CachePurger {
            config: self.config.clone(),
        }
    }
}

/// Purges stored responses, on every instance sharing the store.
#[derive(Clone, Debug)]
pub struct CachePurger<St> {
    config: Arc<CacheConfig<St>>,
}

impl<St: KvStore> CachePurger<St> {
    /// Purges every stored variant of an absolute URL
    /// (`https://example.com/users?page=2`); returns how many keys went.
    pub async fn purge_url(&self, url: &str) -> usize {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return 0;
        };
        let key = super::service::primary_key(&self.config.key_prefix, &uri);
        self.config.delete_prefix(&format!("{key}|")).await
    }

    /// Purges everything stored under a URL prefix
    /// (`https://example.com/api/`: hierarchical keys).
    pub async fn purge_prefix(&self, prefix: &str) -> usize {
        self.config
            .delete_prefix(&format!("{}{prefix}", self.config.key_prefix))
            .await
    }

    /// Purges every response that listed `tag` in its `Surrogate-Key` header.
    pub async fn purge_tag(&self, tag: &str) -> usize {
        let store = &self.config.store;
        let prefix = format!("{}tag:{tag}:", self.config.key_prefix);
        let mut purged = 0;
        let mut cursor = None;
        loop {
            let Ok(page) = store
                .list(crate::store::ListOptions::prefix(&prefix).cursor(cursor))
                .await
            else {
                return purged;
            };
            for tag_key in &page.keys {
                if let Ok(Some(entry)) = store.get(&tag_key.name).await {
                    let key = String::from_utf8_lossy(&entry.value).into_owned();
                    purged += usize::from(store.delete(&key).await.unwrap_or(false));
                }
                let _ = store.delete(&tag_key.name).await;
            }
            cursor = page.cursor;
            if cursor.is_none() {
                return purged;
            }
        }
    }
}

impl<S, St: Clone> Layer<S> for CacheLayer<St> {
    type Service = CacheService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::from_parts(inner, self.config.clone())
    }
}
