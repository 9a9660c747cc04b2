use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::response;
use http::StatusCode;

use super::access::{AccessList, AccessLists};
use super::Quota;

/// What to do when the store cannot be reached (timeout, connection refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Keep limiting with an in-process limiter until the store answers again
    /// (default). Each instance then enforces the quotas on its own, so a
    /// fleet of N instances admits up to N times the quota meanwhile.
    #[default]
    LocalFallback,
    /// Let the request through unlimited, log a warning, and mark the
    /// response with a [`RateLimitBypassed`] extension.
    Allow,
    /// Answer 503 Service Unavailable with this `Retry-After`.
    Reject {
        /// The `Retry-After` sent with the 503 (rounded up to whole seconds).
        retry_after: Duration,
    },
}

/// Marks a response that was let through unlimited because the store was
/// unavailable ([`OnStoreError::Allow`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitBypassed;

/// What to do with a request whose identity cannot be found (no peer address,
/// missing API-key header, no signed-in user, …). Never a silent shared bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingIdentity {
    /// Answer with this status (default: 400 Bad Request).
    Reject(StatusCode),
    /// Let the request through unlimited.
    Allow,
    /// Count every such request in one shared bucket named `anonymous`.
    SharedBucket,
}

impl Default for MissingIdentity {
    fn default() -> Self {
        Self::Reject(StatusCode::BAD_REQUEST)
    }
}

type CountWhen = Arc<dyn Fn(&response::Parts) -> bool + Send + Sync>;

/// The quotas of one route, with their cost and policies.
///
/// ```
/// use http::StatusCode;
/// use tower_kv::ratelimit::{Limit, Quota};
///
/// // Two quotas checked and consumed together; the request costs 5.
/// let search = Limit::new(Quota::per_second(10)).and(Quota::per_hour(1000)).cost(5);
/// // Only failed logins count.
/// let login = Limit::new(Quota::per_minute(5))
///     .count_when(|res| res.status == StatusCode::UNAUTHORIZED);
/// # let _ = (search, login);
/// ```
#[derive(Clone)]
pub struct Limit {
    pub(crate) quotas: Vec<Quota>,
    pub(crate) cost: u32,
    pub(crate) count_when: Option<CountWhen>,
    pub(crate) on_store_error: Option<OnStoreError>,
    pub(crate) shadow: Option<bool>,
    pub(crate) access: AccessLists,
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("quotas", &self.quotas)
            .field("cost", &self.cost)
            .field("count_when", &self.count_when.as_ref().map(|_| ".."))
            .field("on_store_error", &self.on_store_error)
            .field("shadow", &self.shadow)
            .field("access", &self.access)
            .finish()
    }
}

impl From<Quota> for Limit {
    fn from(quota: Quota) -> Self {
        Self::new(quota)
    }
}

impl Limit {
    /// One quota, cost 1.
    pub fn new(quota: Quota) -> Self {
        Self {
            quotas: vec![quota],
            cost: 1,
            count_when: None,
            on_store_error: None,
            shadow: None,
            access: AccessLists::default(),
        }
    }

    /// Also enforce `quota`; all quotas are checked and consumed together
    /// (all-or-nothing), so the tightest one decides.
    ///
    /// # Panics
    ///
    /// If a quota with the same name is already present.
    #[must_use]
    pub fn and(mut self, quota: Quota) -> Self {
        assert!(
            self.quotas.iter().all(|q| q.name() != quota.name()),
            "two quotas named {:?} on one route; use Quota::named",
            quota.name()
        );
        self.quotas.push(quota);
        self
    }

    /// Each request spends `cost` units (default 1).
    ///
    /// # Panics
    ///
    /// If `cost` is zero or exceeds a quota's limit or burst (it could never pass).
    #[must_use]
    pub fn cost(mut self, cost: u32) -> Self {
        assert!(
            cost > 0,
            "a cost of 0 would never limit; exempt the route instead"
        );
        for q in &self.quotas {
            assert!(
                cost <= q.rate().capacity(),
                "cost {cost} exceeds what quota {:?} allows at once",
                q.name()
            );
        }
        self.cost = cost;
        self
    }

    /// Only responses for which `predicate` holds consume quota (e.g. failed
    /// logins). A request is still refused once the quota is spent.
    ///
    /// Each request reserves its cost before the handler runs and gets it
    /// back when its response does not count, so requests in flight at once
    /// never pass more than the quota allows (a burst of concurrent guesses
    /// cannot slip through together). The price: while requests are in
    /// flight their reservations count, so a client with as many uncounted
    /// requests in flight as the quota allows is refused until one ends. A
    /// request whose response never comes (handler error, client gone)
    /// stays counted.
    #[must_use]
    pub fn count_when(
        mut self,
        predicate: impl Fn(&response::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.count_when = Some(Arc::new(predicate));
        self
    }

    /// Override the layer's store-failure policy for this route.
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = Some(policy);
        self
    }

    /// Shadow mode for this route (overrides the layer's
    /// [`shadow`](super::RateLimitLayer::shadow)): decide and charge as
    /// usual, but never refuse; see [`ShadowLimited`].
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Never limit these clients on this route (besides the layer's list).
    #[must_use]
    pub fn allow(mut self, list: AccessList) -> Self {
        self.access.allow = Some(Arc::new(list));
        self
    }

    /// Answer these clients `403 Forbidden` on this route (besides the
    /// layer's list). A deny wins over an allow.
    #[must_use]
    pub fn deny(mut self, list: AccessList) -> Self {
        self.access.deny = Some(Arc::new(list));
        self
    }
}

/// In request extensions when a [shadow-mode](Limit::shadow) limit would
/// have refused the request: it was let through (like any refused decision,
/// it consumed nothing) and counted as `shadow_limited`. Its response carries no rate-limit fields (a limit
/// in shadow mode is not in force, so clients are not told of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShadowLimited {
    /// When the limit would have let it through.
    pub retry_after: Duration,
}
