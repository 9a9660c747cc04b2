use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// When an entry written by [`KvStore::put`](super::KvStore::put) expires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiration {
    /// The entry stays until deleted or evicted.
    #[default]
    Never,
    /// The entry expires this long after the write.
    /// Rounded up to whole milliseconds; zero is rejected.
    Ttl(Duration),
    /// The entry expires at this instant. An instant
    /// in the past makes the write a delete.
    At(SystemTime),
}

/// Opaque version of a stored entry, changed by every write.
///
/// Used with [`KvStore::compare_and_swap`](super::KvStore::compare_and_swap).
/// Versions are random or globally unique, so a key that is deleted and
/// written again never repeats an old version (no ABA).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub(crate) u64);

impl Version {
    #[cfg(feature = "redis")]
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }

    /// The version as a number, for logging or external storage.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:016x})", self.0)
    }
}

/// A stored value with its metadata, expiry and version.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The value bytes.
    pub value: Bytes,
    /// JSON metadata written with the value, if any.
    pub metadata: Option<serde_json::Value>,
    /// When the entry expires, if it does.
    pub expires_at: Option<SystemTime>,
    /// The entry's current version.
    pub version: Version,
}

/// Options for a write: expiry and metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PutOptions {
    /// When the entry expires.
    pub expiration: Expiration,
    /// JSON metadata stored with the value and returned by `get` and `list`.
    pub metadata: Option<serde_json::Value>,
}

impl PutOptions {
    /// No expiry, no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire `ttl` after the write.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiration = Expiration::Ttl(ttl);
        self
    }

    /// Expire at an absolute instant.
    #[must_use]
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expiration = Expiration::At(at);
        self
    }

    /// Store JSON metadata with the value.
    #[must_use]
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// Options for a read through [`KvStore::get_with`](super::KvStore::get_with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// How long a near cache may serve this read without asking the store
    /// (a per-read `cache_ttl`). Ignored by stores without a near cache.
    pub cache_ttl: Option<Duration>,
    /// On a store failure, a near cache may answer with the last value it saw,
    /// even past `cache_ttl`.
    pub stale_on_error: bool,
}

impl ReadOptions {
    /// Allow a near cache to serve this read for `ttl`.
    pub fn cache_ttl(ttl: Duration) -> Self {
        Self {
            cache_ttl: Some(ttl),
            stale_on_error: false,
        }
    }

    /// Allow the last known value on a store failure.
    #[must_use]
    pub fn stale_on_error(mut self) -> Self {
        self.stale_on_error = true;
        self
    }
}

/// Which keys [`KvStore::list`](super::KvStore::list) returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys that start with this prefix.
    pub prefix: String,
    /// At most this many keys per page (1 ..= [`MAX_LIST_LIMIT`](super::MAX_LIST_LIMIT)).
    pub limit: usize,
    /// Where to continue: the cursor of the previous page.
    pub cursor: Option<String>,
}

impl ListOptions {
    /// The first page of keys under `prefix`, 1,000 at most .
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            limit: 1000,
            cursor: None,
        }
    }

    /// At most `limit` keys per page.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Continue after a previous page.
    #[must_use]
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// A listed key with its expiry and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyInfo {
    /// The key.
    pub name: String,
    /// When it expires, if it does.
    pub expires_at: Option<SystemTime>,
    /// Its metadata, if any.
    pub metadata: Option<serde_json::Value>,
}

/// One page of a listing, in lexicographic (byte) order of key names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListPage {
    /// The keys of this page.
    pub keys: Vec<KeyInfo>,
    /// Pass this to the next call; `None` once the listing is complete.
    pub cursor: Option<String>,
}

/// The outcome of [`KvStore::compare_and_swap`](super::KvStore::compare_and_swap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The write happened; the entry now has this version.
    Swapped(Version),
    /// The entry's version (or absence) was not the expected one; nothing was written.
    Conflict,
}

/// A GCRA rate: one unit replenished every `emission_interval`, at most
/// `burst` units available at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraRate {
    /// Time to replenish one unit (period / limit).
    pub emission_interval: Duration,
    /// Maximum units spendable at once.
    pub burst: u32,
}

impl GcraRate {
    /// `limit` units per `period`, all of them available at once.
    pub fn per(limit: u32, period: Duration) -> Self {
        Self {
            emission_interval: period / limit.max(1),
            burst: limit,
        }
    }

    /// The same rate with a different burst.
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
}

/// How a rate bucket counts. Every algorithm is decided atomically by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rate {
    /// Generic cell rate algorithm: smooth, with a burst allowance.
    Gcra(GcraRate),
    /// At most `limit` units per aligned window (atomic).
    FixedWindow {
        /// Units per window.
        limit: u32,
        /// Window length.
        window: Duration,
    },
    /// At most `limit` units in any trailing window, estimated from the
    /// current and previous fixed windows (the previous weighted by its overlap).
    SlidingWindow {
        /// Units per window.
        limit: u32,
        /// Window length.
        window: Duration,
    },
}

impl Rate {
    /// The most units this rate ever allows at once.
    pub fn capacity(&self) -> u32 {
        match *self {
            Rate::Gcra(g) => g.burst,
            Rate::FixedWindow { limit, .. } | Rate::SlidingWindow { limit, .. } => limit,
        }
    }
}

impl From<GcraRate> for Rate {
    fn from(rate: GcraRate) -> Self {
        Rate::Gcra(rate)
    }
}

/// One (key, rate, cost) triple of a [`KvStore::rate_limit`](super::KvStore::rate_limit) decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateRequest {
    /// The bucket's key.
    pub key: String,
    /// How the bucket counts.
    pub rate: Rate,
    /// Units this request spends (1 for an ordinary request), or gives back.
    pub cost: u32,
    /// What the decision does to the bucket.
    pub mode: RateMode,
}

/// What a [`RateRequest`] does to its bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateMode {
    /// Spend the cost if the whole decision is allowed.
    #[default]
    Charge,
    /// Decide with the cost but never spend it: "would this pass?".
    Peek,
    /// Give back units spent earlier (a reservation that turned out not to
    /// count): the bucket as if they had never been spent, as far as time
    /// has not replenished them already. Always allowed; a bucket with
    /// nothing to give back is left as it is. Like a charge, a refund is
    /// applied only if every bucket of the decision allows.
    Refund,
}

impl RateRequest {
    /// A request spending `cost` units of `rate` at `key`.
    pub fn new(key: impl Into<String>, rate: impl Into<Rate>, cost: u32) -> Self {
        Self {
            key: key.into(),
            rate: rate.into(),
            cost,
            mode: RateMode::Charge,
        }
    }

    /// Decide without charging: would this request pass?
    #[must_use]
    pub fn peek(mut self) -> Self {
        self.mode = RateMode::Peek;
        self
    }

    /// Give the cost back instead of spending it; see [`RateMode::Refund`].
    #[must_use]
    pub fn refund(mut self) -> Self {
        self.mode = RateMode::Refund;
        self
    }
}

/// The state of one bucket after a rate decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateState {
    /// Whether this bucket alone had room for the request.
    pub allowed: bool,
    /// Units left after the decision (not consumed when the whole decision was denied).
    pub remaining: u32,
    /// How long until the request would be allowed by this bucket (zero when allowed).
    pub retry_after: Duration,
    /// How long until this bucket is fully replenished.
    pub reset_after: Duration,
}

/// The outcome of an all-or-nothing rate decision over one or several buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateDecision {
    /// True when every bucket had room; only then was anything consumed.
    pub allowed: bool,
    /// One state per request, in the order given.
    pub states: Vec<RateState>,
}

impl RateDecision {
    /// The longest `retry_after` among the buckets: when the whole request
    /// could be allowed.
    pub fn retry_after(&self) -> Duration {
        self.states
            .iter()
            .map(|s| s.retry_after)
            .max()
            .unwrap_or_default()
    }
}
