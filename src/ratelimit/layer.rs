use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::Method;
use tower_layer::Layer;

use super::limit::{Limit, MissingIdentity, OnStoreError};
use super::{headers, RateLimit};
use crate::identity::Identity;
use crate::routes::RouteTable;
use crate::store::{KvStore, MemoryStore, RateRequest};

/// Limits requests per identity with quotas kept in a [`KvStore`]; answers
/// 429 itself when a request is over quota. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct RateLimitLayer<St> {
    config: Arc<Config<St>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Config<St> {
    pub(crate) store: St,
    pub(crate) local: MemoryStore,
    pub(crate) identity: Identity,
    /// `None` values are exempt routes.
    pub(crate) routes: RouteTable<Option<Arc<Prepared>>>,
    pub(crate) default: Option<Arc<Prepared>>,
    pub(crate) key_prefix: String,
    pub(crate) missing_identity: MissingIdentity,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) legacy_headers: bool,
    pub(crate) rejection: (HeaderValue, Bytes),
}

/// A route's limit with what can be computed once: its key stem and policy header.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) limit: Limit,
    pub(crate) key_stem: String,
    pub(crate) policy: HeaderValue,
}

impl Prepared {
    fn new(key_prefix: &str, route_id: &str, limit: Limit) -> Self {
        Self {
            key_stem: format!("{key_prefix}{route_id}"),
            policy: headers::policy(&limit.quotas),
            limit,
        }
    }

    /// One store request per quota for `identity`.
    pub(crate) fn requests(&self, identity: &str, cost: u32) -> Vec<RateRequest> {
        self.limit
            .quotas
            .iter()
            .map(|q| {
                let mut key = String::with_capacity(
                    self.key_stem.len() + q.name().len() + identity.len() + 2,
                );
                for part in [self.key_stem.as_str(), "|", q.name(), "|", identity] {
                    key.push_str(part);
                }
                RateRequest::new(key, q.rate(), cost)
            })
            .collect()
    }
}

impl<St: KvStore> RateLimitLayer<St> {
    /// Limits requests identified by `identity`, with state in `store`. Add
    /// a [`default_limit`](Self::default_limit) and/or [`route`](Self::route)s;
    /// requests matching neither are not limited.
    pub fn new(store: St, identity: Identity) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                local: MemoryStore::builder().max_entries(100_000).build(),
                identity,
                routes: RouteTable::new(),
                default: None,
                key_prefix: "ratelimit:".into(),
                missing_identity: MissingIdentity::default(),
                on_store_error: OnStoreError::default(),
                legacy_headers: false,
                rejection: (
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                    Bytes::from_static(b"Too Many Requests\n"),
                ),
            }),
        }
    }

    fn config(&mut self) -> &mut Config<St> {
        Arc::make_mut(&mut self.config)
    }

    /// The limit for requests that match no route (as a per-route layer
    /// under axum's `route_layer`, the only limit).
    #[must_use]
    pub fn default_limit(mut self, limit: impl Into<Limit>) -> Self {
        let prepared = Prepared::new(&self.config.key_prefix, "default", limit.into());
        self.config().default = Some(Arc::new(prepared));
        self
    }

    /// The limit for `method` requests to `pattern` (`/users/{id}`, `/api/{*rest}`).
    ///
    /// # Panics
    ///
    /// If the pattern is invalid or conflicts with another for that method.
    #[must_use]
    pub fn route(self, method: Method, pattern: &str, limit: impl Into<Limit>) -> Self {
        self.add_route(Some(method), pattern, Some(limit.into()))
    }

    /// The limit for requests of any method to `pattern`.
    #[must_use]
    pub fn route_any(self, pattern: &str, limit: impl Into<Limit>) -> Self {
        self.add_route(None, pattern, Some(limit.into()))
    }

    /// Never limit requests of any method to `pattern` (health checks, …).
    #[must_use]
    pub fn exempt(self, pattern: &str) -> Self {
        self.add_route(None, pattern, None)
    }

    fn add_route(mut self, method: Option<Method>, pattern: &str, limit: Option<Limit>) -> Self {
        let id = match &method {
            Some(m) => format!("{m} {pattern}"),
            None => format!("* {pattern}"),
        };
        let prepared = limit.map(|l| Arc::new(Prepared::new(&self.config.key_prefix, &id, l)));
        let config = self.config();
        config.routes = std::mem::take(&mut config.routes).route(method, pattern, prepared);
        self
    }

    /// Namespace this layer's store keys (default `ratelimit:`); give each
    /// per-route layer its own, so their buckets stay apart.
    ///
    /// Set it before adding limits: it is part of their keys.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config().key_prefix = prefix.into();
        self
    }

    /// What to do when a request has no identity (default: 400).
    #[must_use]
    pub fn on_missing_identity(mut self, policy: MissingIdentity) -> Self {
        self.config().missing_identity = policy;
        self
    }

    /// What to do while the store is unavailable (default: a local fallback limiter).
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.config().on_store_error = policy;
        self
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset` (delta
    /// seconds) for the quota closest to running out.
    #[must_use]
    pub fn legacy_headers(mut self, enabled: bool) -> Self {
        self.config().legacy_headers = enabled;
        self
    }

    /// The body of 429 responses (default `Too Many Requests`, plain text).
    #[must_use]
    pub fn rejection_body(mut self, content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        self.config().rejection = (content_type, body.into());
        self
    }

    /// Bound the local fallback limiter to this many buckets (default 100,000).
    #[must_use]
    pub fn local_fallback_capacity(mut self, buckets: usize) -> Self {
        self.config().local = MemoryStore::builder().max_entries(buckets).build();
        self
    }
}

impl<S, St: Clone> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimit<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_config(inner, self.config.clone())
    }
}
