use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap};

use super::{Limit, Quota};

pub(crate) type SelectTier = Arc<dyn Fn(&HeaderMap, &Extensions) -> &'static str + Send + Sync>;

/// A route's limit chosen per request among named tiers — e.g. by the plan
/// of the signed-in user. Each tier counts in buckets of its own, so moving
/// a user to another plan starts them on that plan's quota.
///
/// The selector sees the request's headers and extensions (put the plan
/// there from your authentication, or read it from a header your gateway
/// sets) and returns a tier name; a name that is not one of the tiers gets
/// the first tier, so add the most restrictive first.
///
/// ```
/// use tower_kv::identity::{Identity, UserId};
/// use tower_kv::ratelimit::{Limit, Quota, RateLimitLayer, Tiers};
/// use tower_kv::store::MemoryStore;
///
/// #[derive(Clone)]
/// enum Plan { Free, Pro }
///
/// let by_plan = Tiers::new(|_headers, extensions| match extensions.get::<Plan>() {
///     Some(Plan::Pro) => "pro",
///     _ => "free",
/// })
/// .tier("free", Quota::per_minute(60))
/// .tier("pro", Limit::new(Quota::per_minute(6000)).and(Quota::per_day(1_000_000)));
/// let layer = RateLimitLayer::new(MemoryStore::new(), Identity::User).route_any("/api/{*rest}", by_plan);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct Tiers {
    pub(crate) select: SelectTier,
    pub(crate) tiers: Vec<(String, Limit)>,
}

impl fmt::Debug for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiers")
            .field("tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

impl Tiers {
    /// Tiers chosen by `select`; add them with [`tier`](Self::tier).
    pub fn new(
        select: impl Fn(&HeaderMap, &Extensions) -> &'static str + Send + Sync + 'static,
    ) -> Self {
        Self {
            select: Arc::new(select),
            tiers: Vec::new(),
        }
    }

    /// Adds tier `name` with its limit (a later tier of the same name replaces it).
    #[must_use]
    pub fn tier(mut self, name: &str, limit: impl Into<Limit>) -> Self {
        let limit = limit.into();
        match self.tiers.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = limit,
            None => self.tiers.push((name.to_owned(), limit)),
        }
        self
    }
}

/// What a route is limited by: one [`Limit`] (a [`Quota`] converts), or
/// [`Tiers`] chosen per request. The argument of
/// [`RateLimitLayer::route`](super::RateLimitLayer::route) and friends.
#[derive(Clone, Debug)]
pub struct RouteLimit(pub(crate) RouteLimitKind);

#[derive(Clone, Debug)]
pub(crate) enum RouteLimitKind {
    One(Limit),
    Tiered(Tiers),
}

impl From<Quota> for RouteLimit {
    fn from(quota: Quota) -> Self {
        Self(RouteLimitKind::One(quota.into()))
    }
}

impl From<Limit> for RouteLimit {
    fn from(limit: Limit) -> Self {
        Self(RouteLimitKind::One(limit))
    }
}

impl From<Tiers> for RouteLimit {
    fn from(tiers: Tiers) -> Self {
        Self(RouteLimitKind::Tiered(tiers))
    }
}
