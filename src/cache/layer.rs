use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use super::{CacheService, StoragePolicy};
use crate::store::KvStore;
use crate::Clock;

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

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config().clock = clock;
        self
    }
}

impl<S, St: Clone> Layer<S> for CacheLayer<St> {
    type Service = CacheService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::from_parts(inner, self.config.clone())
    }
}
