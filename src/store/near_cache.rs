//! A bounded process-local read cache in front of any store (a per-read `cache_ttl`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{
    CasOutcome, Change, Entry, Expiration, KvStore, ListOptions, ListPage, PutOptions,
    RateDecision, RateRequest, ReadOptions, StoreError, TaskGuard, Version,
};
use crate::clock::{duration_ms_ceil, system_time_ms};
use crate::Clock;

const DEFAULT_CAPACITY: u64 = 10_000;

/// Serves hot reads from process memory for a per-read `cache_ttl`.
///
/// Reads ask the wrapped store at most once per `cache_ttl` per key (absent
/// keys are cached too); writes through this wrapper go to the store and drop
/// the local copy. When the wrapped store announces changes
/// ([`KvStore::watch`]: both backends do), a write anywhere in the fleet
/// drops the local copy at once; while the subscription is lost copies live
/// by their `cache_ttl` (and may answer with `stale_on_error`), and a new
/// subscription drops every copy, so nothing changed meanwhile is missed. By
/// default every key is watched, so every write through the wrapped store's
/// handles in this process is announced; narrow it with
/// [`NearCacheBuilder::watch_prefix`]. With
/// [`ReadOptions::stale_on_error`] a read that fails because the store is down
/// answers with the last value seen instead.
///
/// ```
/// use std::time::Duration;
/// use tower_kv::store::{KvStore, MemoryStore, NearCache, ReadOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_kv::store::StoreError> {
/// let store = NearCache::builder(MemoryStore::new()).max_entries(1_000).build();
/// let flags = store
///     .get_with("features:flags", ReadOptions::cache_ttl(Duration::from_secs(600)).stale_on_error())
///     .await?;
/// assert!(flags.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct NearCache<S> {
    store: S,
    local: moka::sync::Cache<String, Cached>,
    default_ttl: Option<Duration>,
    clock: Clock,
    /// Counts change notices: a read that raced one is not kept.
    notices: Arc<AtomicU64>,
    _listener: Option<Arc<TaskGuard>>,
}

#[derive(Clone, Debug)]
struct Cached {
    entry: Option<Entry>,
    fetched_at_ms: u64,
}

/// Configures a [`NearCache`].
#[derive(Debug)]
pub struct NearCacheBuilder<S> {
    store: S,
    max_entries: u64,
    default_ttl: Option<Duration>,
    clock: Clock,
    watch_prefix: Option<String>,
}

impl<S: KvStore> NearCacheBuilder<S> {
    /// Listen for changes to keys under `prefix` only (default: every key,
    /// `Some("")`); `None` never listens, leaving staleness to `cache_ttl`.
    #[must_use]
    pub fn watch_prefix(mut self, prefix: Option<&str>) -> Self {
        self.watch_prefix = prefix.map(str::to_owned);
        self
    }

    /// Keep at most this many keys locally (default 10,000).
    #[must_use]
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// The `cache_ttl` of reads that do not give one (plain [`KvStore::get`]).
    /// Default: none, so such reads go to the store.
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Read time from this clock (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> NearCache<S> {
        let local = moka::sync::Cache::new(self.max_entries);
        let notices = Arc::new(AtomicU64::new(0));
        let changes = self
            .watch_prefix
            .and_then(|prefix| self.store.watch(&prefix));
        let listener = changes.and_then(|mut changes| {
            let (local, notices) = (local.clone(), notices.clone());
            TaskGuard::spawn(async move {
                while let Some(change) = changes.next().await {
                    notices.fetch_add(1, Ordering::AcqRel);
                    match change {
                        Change::Key(key) => local.invalidate(&key),
                        _ => local.invalidate_all(),
                    }
                }
            })
        });
        NearCache {
            store: self.store,
            local,
            default_ttl: self.default_ttl,
            clock: self.clock,
            notices,
            _listener: listener.map(Arc::new),
        }
    }
}

impl<S: KvStore> NearCache<S> {
    /// Wraps `store` with default settings.
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// Configure a near cache over `store`.
    pub fn builder(store: S) -> NearCacheBuilder<S> {
        NearCacheBuilder {
            store,
            max_entries: DEFAULT_CAPACITY,
            default_ttl: None,
            clock: Clock::system(),
            watch_prefix: Some(String::new()),
        }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.store
    }

    /// Drops the local copy of `key`, so the next read asks the store.
    pub fn invalidate(&self, key: &str) {
        self.local.invalidate(key);
    }

    /// Drops every local copy.
    pub fn invalidate_all(&self) {
        self.local.invalidate_all();
    }

    fn fresh(&self, cached: &Cached, ttl: Duration, now: u64) -> bool {
        let within_ttl = now < cached.fetched_at_ms.saturating_add(duration_ms_ceil(ttl));
        let entry_live = cached
            .entry
            .as_ref()
            .and_then(|e| e.expires_at)
            .is_none_or(|at| system_time_ms(at) > now);
        within_ttl && entry_live
    }
}

impl<S: KvStore> KvStore for NearCache<S> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.get_with(key, ReadOptions::default()).await
    }

    /// A fresh local copy (what [`get`](KvStore::get) would answer with at
    /// once), or the inner store's own answer when nothing is cached locally
    /// by default.
    fn get_now(&self, key: &str) -> Option<Result<Option<Entry>, StoreError>> {
        let Some(ttl) = self.default_ttl else {
            return self.store.get_now(key);
        };
        let cached = self.local.get(key)?;
        self.fresh(&cached, ttl, self.clock.now_ms())
            .then(|| Ok(cached.entry.clone()))
    }

    async fn get_with(&self, key: &str, options: ReadOptions) -> Result<Option<Entry>, StoreError> {
        let Some(ttl) = options.cache_ttl.or(self.default_ttl) else {
            return self.store.get(key).await;
        };
        let now = self.clock.now_ms();
        let cached = self.local.get(key);
        if let Some(cached) = &cached {
            if self.fresh(cached, ttl, now) {
                return Ok(cached.entry.clone());
            }
        }
        let notices = self.notices.load(Ordering::Acquire);
        match self.store.get(key).await {
            Ok(entry) => {
                // A change announced while reading may be newer than this.
                if self.notices.load(Ordering::Acquire) == notices {
                    let fetched = Cached {
                        entry: entry.clone(),
                        fetched_at_ms: now,
                    };
                    self.local.insert(key.to_owned(), fetched);
                }
                Ok(entry)
            }
            Err(e) if e.is_unavailable() && options.stale_on_error => match cached {
                Some(cached) => {
                    tracing::warn!(key, error = %e, "store unavailable, serving last known value");
                    Ok(cached.entry)
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<Version, StoreError> {
        let result = self.store.put(key, value, options).await;
        self.invalidate(key);
        result
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let result = self.store.delete(key).await;
        self.invalidate(key);
        result
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, StoreError> {
        self.store.list(options).await
    }

    async fn insert_if_absent(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<Option<Version>, StoreError> {
        let result = self.store.insert_if_absent(key, value, options).await;
        self.invalidate(key);
        result
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Version>,
        value: Bytes,
        options: PutOptions,
    ) -> Result<CasOutcome, StoreError> {
        let result = self
            .store
            .compare_and_swap(key, expected, value, options)
            .await;
        self.invalidate(key);
        result
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        expiration_on_create: Expiration,
    ) -> Result<i64, StoreError> {
        let result = self.store.increment(key, delta, expiration_on_create).await;
        self.invalidate(key);
        result
    }

    fn watch(&self, prefix: &str) -> Option<super::Changes> {
        self.store.watch(prefix)
    }

    fn announce(&self, prefix: &str) {
        self.store.announce(prefix);
    }

    fn rate_limit_now(&self, requests: &[RateRequest]) -> Option<Result<RateDecision, StoreError>> {
        let result = self.store.rate_limit_now(requests)?;
        for r in requests {
            self.invalidate(&r.key);
        }
        Some(result)
    }

    async fn rate_limit(&self, requests: &[RateRequest]) -> Result<RateDecision, StoreError> {
        let result = self.store.rate_limit(requests).await;
        for r in requests {
            self.invalidate(&r.key);
        }
        result
    }
}
