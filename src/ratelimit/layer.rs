use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request};
use tower_layer::Layer;

use super::access::{AccessList, AccessLists};
use super::known::KnownLimited;
use super::limit::{Limit, MissingIdentity, OnStoreError};
use super::outcome::Counters;
use super::tiers::{RouteLimit, RouteLimitKind, SelectTier};
use super::{headers, RateLimitService};
use crate::identity::{
    hash_tag, Identity, UserSourceCheck, HASH_TAG_LEN, HASH_TAG_PLACEHOLDER, IPV6_CLIENT_PREFIX,
};
use crate::routes::RouteTable;
use crate::store::{KvStore, MemoryStore, RateRequest};

/// Limits requests per identity with quotas kept in a [`KvStore`]; answers
/// 429 itself when a request is over quota. See the [module docs](super).
///
/// Setters may come in any order: the store keys are derived from the
/// configuration when the layer builds its service.
#[derive(Clone, Debug)]
pub struct RateLimitLayer<St> {
    store: St,
    local: MemoryStore,
    identity: Identity,
    user_check: Option<UserSourceCheck>,
    /// `None` values are exempt routes.
    routes: RouteTable<Option<RouteLimit>>,
    default: Option<RouteLimit>,
    key_prefix: String,
    missing_identity: MissingIdentity,
    on_store_error: OnStoreError,
    legacy_headers: bool,
    rejection: (HeaderValue, Bytes),
    shadow: bool,
    access: AccessLists,
    /// Shared by every service of this layer (and its clones).
    known_limited: Arc<KnownLimited>,
    ipv6_prefix: u8,
}

/// What a service of the layer runs on: the configuration with each limit
/// prepared (its key stem and policy header computed once).
#[derive(Debug)]
pub(crate) struct Config<St> {
    pub(crate) store: St,
    pub(crate) local: MemoryStore,
    pub(crate) identity: Identity,
    pub(crate) user_check: Option<UserSourceCheck>,
    /// `None` values are exempt routes.
    pub(crate) routes: RouteTable<Option<Rule>>,
    pub(crate) default: Option<Rule>,
    pub(crate) missing_identity: MissingIdentity,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) legacy_headers: bool,
    pub(crate) rejection: (HeaderValue, Bytes),
    pub(crate) access: AccessLists,
    pub(crate) known_limited: Arc<KnownLimited>,
    pub(crate) ipv6_prefix: u8,
}

/// A route's prepared limit: one, or one per tier.
pub(crate) enum Rule {
    One(Arc<Prepared>),
    Tiered {
        select: SelectTier,
        /// Never empty; the first is the fallback.
        tiers: Vec<(String, Arc<Prepared>)>,
    },
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(prepared) => f.debug_tuple("One").field(prepared).finish(),
            Self::Tiered { tiers, .. } => f
                .debug_struct("Tiered")
                .field("tiers", tiers)
                .finish_non_exhaustive(),
        }
    }
}

impl Rule {
    fn new(prefix: &str, route_id: &str, limit: &RouteLimit, shadow: bool) -> Option<Self> {
        match &limit.0 {
            RouteLimitKind::One(limit) => Some(Self::One(Prepared::new(
                prefix,
                route_id,
                route_id.to_owned(),
                limit.clone(),
                shadow,
            ))),
            RouteLimitKind::Tiered(tiers) if tiers.tiers.is_empty() => {
                tracing::warn!(
                    route = route_id,
                    "Tiers without any tier: the route is not limited"
                );
                None
            }
            RouteLimitKind::Tiered(tiers) => Some(Self::Tiered {
                select: tiers.select.clone(),
                tiers: tiers
                    .tiers
                    .iter()
                    .map(|(name, limit)| {
                        // Each tier counts in buckets of its own.
                        let id = format!("{route_id}|tier:{name}");
                        let label = format!("{route_id} [{name}]");
                        let prepared = Prepared::new(prefix, &id, label, limit.clone(), shadow);
                        (name.clone(), prepared)
                    })
                    .collect(),
            }),
        }
    }

    /// The limit that applies to `req`.
    pub(crate) fn select<B>(&self, req: &Request<B>) -> &Arc<Prepared> {
        match self {
            Self::One(prepared) => prepared,
            Self::Tiered { select, tiers } => {
                let name = select(req.headers(), req.extensions());
                tiers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(&tiers[0].1, |(_, prepared)| prepared)
            }
        }
    }
}

/// A route's limit with what can be computed once: its key stem and policy header.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) limit: Limit,
    key_prefix: String,
    route_id: String,
    /// The route as metrics and traces name it (`GET /users/{id}`, `default`, `… [pro]`).
    pub(crate) label: String,
    /// Decide and charge, never refuse.
    pub(crate) shadow: bool,
    pub(crate) counters: Counters,
    pub(crate) policy: HeaderValue,
    /// `"{quota}";r=` per quota, for the `RateLimit` field.
    pub(crate) current_prefixes: Box<[Box<str>]>,
}

impl Prepared {
    fn new(
        key_prefix: &str,
        route_id: &str,
        label: String,
        limit: Limit,
        shadow: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            key_prefix: key_prefix.to_owned(),
            route_id: route_id.to_owned(),
            counters: Counters::new(&label, &limit.quotas),
            label,
            shadow: limit.shadow.unwrap_or(shadow),
            policy: headers::policy(&limit.quotas),
            current_prefixes: headers::current_prefixes(&limit.quotas),
            limit,
        })
    }

    /// One store request per quota: `first` (quota 0's, whose key ends
    /// with the identity's `identity_len` bytes), then the others' for the
    /// same identity.
    pub(crate) fn requests(
        &self,
        first: RateRequest,
        identity_len: usize,
        cost: u32,
    ) -> Vec<RateRequest> {
        let mut requests = Vec::with_capacity(self.limit.quotas.len());
        requests.push(first);
        for index in 1..self.limit.quotas.len() {
            let key = &requests[0].key;
            let request = self.request(index, &key[key.len() - identity_len..], cost);
            requests.push(request);
        }
        requests
    }

    /// The store request of quota `index` for `identity`: key
    /// `{prefix}{tag}{route}|{quota}|{identity}`, where the identity's hash
    /// tag keeps all its buckets in one cluster slot (one atomic decision).
    pub(crate) fn request(&self, index: usize, identity: &str, cost: u32) -> RateRequest {
        let mut key = self.key_draft(index, identity.len());
        key.buffer().push_str(identity);
        self.request_from(index, key, cost)
    }

    /// The key of quota `index` without its identity, which the caller
    /// appends (with room for `identity_len` bytes of it).
    pub(crate) fn key_draft(&self, index: usize, identity_len: usize) -> KeyDraft {
        let quota = self.limit.quotas[index].name();
        let mut key = String::with_capacity(
            self.key_prefix.len()
                + HASH_TAG_LEN
                + self.route_id.len()
                + quota.len()
                + 2
                + identity_len,
        );
        key.push_str(&self.key_prefix);
        let tag_at = key.len();
        // A placeholder until the identity is known.
        key.push_str(HASH_TAG_PLACEHOLDER);
        for part in [self.route_id.as_str(), "|", quota, "|"] {
            key.push_str(part);
        }
        KeyDraft {
            identity_at: key.len(),
            key,
            tag_at,
        }
    }

    /// The store request of quota `index` at the finished `key`.
    pub(crate) fn request_from(&self, index: usize, key: KeyDraft, cost: u32) -> RateRequest {
        RateRequest::new(key.finish(), self.limit.quotas[index].rate(), cost)
    }
}

/// A bucket key being written: everything before the identity, the
/// identity appended by the caller, then [`finish`](Self::finish)ed with
/// the identity's hash tag.
pub(crate) struct KeyDraft {
    key: String,
    tag_at: usize,
    identity_at: usize,
}

impl KeyDraft {
    /// The key so far, for the identity to be appended to.
    pub(crate) fn buffer(&mut self) -> &mut String {
        &mut self.key
    }

    /// The identity appended so far.
    pub(crate) fn identity(&self) -> &str {
        &self.key[self.identity_at..]
    }

    fn finish(self) -> String {
        let tag = hash_tag(self.identity());
        // The placeholder's bytes overwritten in place (cheaper than
        // `replace_range`): ASCII for ASCII, so the check cannot fail.
        let mut key = self.key.into_bytes();
        key[self.tag_at..self.tag_at + HASH_TAG_LEN].copy_from_slice(&tag);
        String::from_utf8(key).expect("a hash tag is ASCII")
    }
}

impl<St: KvStore> RateLimitLayer<St> {
    /// Limits requests identified by `identity`, with state in `store`. Add
    /// a [`default_limit`](Self::default_limit) and/or [`route`](Self::route)s;
    /// requests matching neither are not limited.
    pub fn new(store: St, identity: Identity) -> Self {
        Self {
            store,
            local: MemoryStore::builder().max_entries(100_000).build(),
            user_check: UserSourceCheck::new("RateLimitLayer", &identity),
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
            shadow: false,
            access: AccessLists::default(),
            known_limited: Arc::new(KnownLimited::new(10_000)),
            ipv6_prefix: IPV6_CLIENT_PREFIX,
        }
    }

    /// The limit for requests that match no route (as a per-route layer
    /// under axum's `route_layer`, the only limit).
    #[must_use]
    pub fn default_limit(mut self, limit: impl Into<RouteLimit>) -> Self {
        self.default = Some(limit.into());
        self
    }

    /// The limit for `method` requests to `pattern` (`/users/{id}`, `/api/{*rest}`).
    ///
    /// # Panics
    ///
    /// If the pattern is invalid or conflicts with another for that method.
    #[must_use]
    pub fn route(self, method: Method, pattern: &str, limit: impl Into<RouteLimit>) -> Self {
        self.add_route(Some(method), pattern, Some(limit.into()))
    }

    /// The limit for requests of any method to `pattern`.
    #[must_use]
    pub fn route_any(self, pattern: &str, limit: impl Into<RouteLimit>) -> Self {
        self.add_route(None, pattern, Some(limit.into()))
    }

    /// Never limit requests of any method to `pattern` (health checks, …).
    #[must_use]
    pub fn exempt(self, pattern: &str) -> Self {
        self.add_route(None, pattern, None)
    }

    fn add_route(
        mut self,
        method: Option<Method>,
        pattern: &str,
        limit: Option<RouteLimit>,
    ) -> Self {
        self.routes = std::mem::take(&mut self.routes).route(method, pattern, limit);
        self
    }

    /// Namespace this layer's store keys (default `ratelimit:`); give each
    /// per-route layer its own, so their buckets stay apart.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// What to do when a request has no identity (default: 400).
    #[must_use]
    pub fn on_missing_identity(mut self, policy: MissingIdentity) -> Self {
        self.missing_identity = policy;
        self
    }

    /// What to do while the store is unavailable (default: a local fallback limiter).
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset` (delta
    /// seconds) for the quota closest to running out.
    #[must_use]
    pub fn legacy_headers(mut self, enabled: bool) -> Self {
        self.legacy_headers = enabled;
        self
    }

    /// The body of 429 responses (default `Too Many Requests`, plain text).
    #[must_use]
    pub fn rejection_body(mut self, content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        self.rejection = (content_type, body.into());
        self
    }

    /// Bound the local fallback limiter to this many buckets (default 100,000).
    #[must_use]
    pub fn local_fallback_capacity(mut self, buckets: usize) -> Self {
        self.local = MemoryStore::builder().max_entries(buckets).build();
        self
    }

    /// Shadow mode for every route without its own
    /// [`Limit::shadow`]: decide and charge as usual, never refuse. A request
    /// that would have been refused goes through with a [`ShadowLimited`](super::ShadowLimited)
    /// extension and counts as `shadow_limited` (see [`crate::metrics`]) —
    /// try a new limit on real traffic before enforcing it.
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Never limit these clients (on every route; routes can add their own
    /// with [`Limit::allow`]).
    #[must_use]
    pub fn allow(mut self, list: AccessList) -> Self {
        self.access.allow = Some(Arc::new(list));
        self
    }

    /// Answer these clients `403 Forbidden` (on every limited route). A
    /// deny wins over an allow.
    #[must_use]
    pub fn deny(mut self, list: AccessList) -> Self {
        self.access.deny = Some(Arc::new(list));
        self
    }

    /// How many refused keys this instance remembers (default 10,000; 0
    /// turns it off). Once the store refuses a request until *t*, repeats on
    /// this instance are refused until *t* without asking the store again —
    /// on Redis, a flood of over-limit requests costs no round trips.
    /// Exact: a refusal consumes nothing and the wait only grows elsewhere.
    #[must_use]
    pub fn known_limited_capacity(mut self, keys: usize) -> Self {
        self.known_limited = Arc::new(KnownLimited::new(keys));
        self
    }

    /// How many leading bits of an IPv6 address are one client (default
    /// [64](IPV6_CLIENT_PREFIX)): a host holds at least a /64 and can send
    /// from any address in it, so counting each address apart lets one
    /// client pass its limit 2⁶⁴ times over. 128 counts each address; 56 or
    /// 48 count a whole site's allocation as one client.
    ///
    /// # Panics
    ///
    /// If `bits` is 0 or over 128.
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        assert!(
            (1..=128).contains(&bits),
            "an IPv6 prefix is 1 to 128 bits, not {bits}"
        );
        self.ipv6_prefix = bits;
        self
    }
}

impl<St: Clone> RateLimitLayer<St> {
    /// The configuration a service runs on, with every limit prepared.
    fn config(&self) -> Config<St> {
        let prefix = &self.key_prefix;
        Config {
            store: self.store.clone(),
            local: self.local.clone(),
            identity: self.identity.clone(),
            user_check: self.user_check.clone(),
            routes: self.routes.map(|id, limit| {
                limit
                    .as_ref()
                    .and_then(|l| Rule::new(prefix, id, l, self.shadow))
            }),
            default: self
                .default
                .as_ref()
                .and_then(|l| Rule::new(prefix, "default", l, self.shadow)),
            missing_identity: self.missing_identity,
            on_store_error: self.on_store_error,
            legacy_headers: self.legacy_headers,
            rejection: self.rejection.clone(),
            access: self.access.clone(),
            known_limited: self.known_limited.clone(),
            ipv6_prefix: self.ipv6_prefix,
        }
    }
}

impl<S, St: Clone> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimitService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::from_config(inner, Arc::new(self.config()))
    }
}
