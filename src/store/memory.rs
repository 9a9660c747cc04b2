//! The embedded backend: sharded, bounded, LRU-evicting, with exact expiry.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::{Mutex, MutexGuard};

use self::rates::{Bucket, RateTable};
use super::limits::{check_expiration, check_key, check_list, check_rate, check_value};
use super::rate::{self, Fields, Verdict};
use super::{
    Announcer, CasOutcome, Change, Changes, Entry, Expiration, KeyInfo, KvStore, ListOptions,
    ListPage, PutOptions, RateDecision, RateRequest, StoreError, Version, DEFAULT_MAX_VALUE_LEN,
};
use crate::clock::{duration_ms_ceil, system_time_ms};
use crate::Clock;

mod rates;

/// Default byte budget of a [`MemoryStore`]: 1 GiB of keys, values and metadata.
const DEFAULT_MAX_BYTES: usize = 1 << 30;
/// Bookkeeping bytes charged per entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 96;
/// Expired entries reclaimed per write, so memory is freed without a sweeper task.
const RECLAIM_PER_WRITE: usize = 4;
const MAX_SHARDS: usize = 32;

/// The in-process backend: the default for a single instance.
///
/// Keys are spread over independently locked shards, so operations on
/// different keys do not contend on one lock. The store is bounded by entry
/// count and bytes; when full it drops expired entries first, then the least
/// recently used ones. Rate buckets live in a table of their own and make
/// room among themselves (expired first, then those closest to expiry), so
/// a flood of new clients does not push out sessions or cached responses.
/// Expired entries are invisible at once and reclaimed on later writes.
/// Time comes from a [`Clock`], so tests can advance it.
///
/// ```
/// use tower_kv::store::{KvStore, MemoryStore};
///
/// let store = MemoryStore::builder().max_entries(100_000).build();
/// # let _ = store;
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a key's shard. foldhash, seeded per store: a few ns per key
    /// where SipHash took tens, and still unpredictable to clients.
    hasher: foldhash::fast::RandomState,
    clock: Clock,
    max_value_len: usize,
    next_version: AtomicU64,
    sweep_cursor: AtomicU64,
    announcer: Announcer,
}

/// Configures a [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder {
    max_entries: usize,
    max_bytes: usize,
    max_value_len: usize,
    clock: Clock,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            max_entries: usize::MAX,
            max_bytes: DEFAULT_MAX_BYTES,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            clock: Clock::system(),
        }
    }
}

impl MemoryStoreBuilder {
    /// Evict least recently used entries beyond this many (default: no count limit).
    #[must_use]
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }

    /// Evict least recently used entries beyond this many bytes of keys,
    /// values and metadata (default 1 GiB).
    #[must_use]
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max.max(1);
        self
    }

    /// Reject values larger than this (default 25 MiB; never more than `max_bytes`).
    #[must_use]
    pub fn max_value_len(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self
    }

    /// Read time from this clock (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let max_value_len = self.max_value_len.min(self.max_bytes);
        // Every shard must hold at least 64 entries and one largest value, so
        // sharding never makes the effective capacity smaller than asked.
        let by_entries = self.max_entries / 64;
        let by_bytes = self.max_bytes / (max_value_len + ENTRY_OVERHEAD).max(1);
        let shard_count = by_entries.min(by_bytes).clamp(1, MAX_SHARDS);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard::new(
                    self.max_entries.div_ceil(shard_count),
                    self.max_bytes.div_ceil(shard_count),
                ))
            })
            .collect();
        MemoryStore {
            inner: Arc::new(Inner {
                shards,
                hasher: Default::default(),
                clock: self.clock,
                max_value_len,
                next_version: AtomicU64::new(1),
                sweep_cursor: AtomicU64::new(0),
                announcer: Announcer::default(),
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with default limits on the system clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configure a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Live entries currently held (expired ones not yet reclaimed excluded).
    pub fn len(&self) -> usize {
        let now = self.inner.clock.now_ms();
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().live_count(now))
            .sum()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged for the entries held, expired ones included until reclaimed.
    pub fn bytes(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().bytes()).sum()
    }

    fn shard_index(&self, key: &str) -> usize {
        (self.inner.hasher.hash_one(key) as usize) % self.inner.shards.len()
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        self.inner.shards[self.shard_index(key)].lock()
    }

    /// Reclaims a few expired entries of the next shard in turn, so shards
    /// that see no writes still give their memory back.
    fn sweep_one_shard(&self, now: u64) {
        let n = self.inner.sweep_cursor.fetch_add(1, Ordering::Relaxed);
        let shard = &self.inner.shards[(n % self.inner.shards.len() as u64) as usize];
        if let Some(mut shard) = shard.try_lock() {
            shard.reclaim_expired(now, RECLAIM_PER_WRITE);
        }
    }

    fn next_version(&self) -> Version {
        Version(self.inner.next_version.fetch_add(1, Ordering::Relaxed))
    }

    /// Validates a write and turns it into a slot; `None` when the expiry is
    /// already past (the write is a delete).
    fn slot(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
        now: u64,
    ) -> Result<Option<Slot>, StoreError> {
        check_key(key)?;
        check_value(key, value.len(), self.inner.max_value_len)?;
        check_expiration(options.expiration)?;
        let expires_at = expiry_ms(options.expiration, now);
        if expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        Ok(Some(Slot {
            value: Value::Bytes(value),
            metadata: options.metadata,
            expires_at,
            version: self.next_version(),
            indexed_at: None,
        }))
    }

    /// Applies a conditional write under the key's shard lock.
    fn write_if(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
        condition: impl FnOnce(Option<&Slot>) -> bool,
    ) -> Result<Option<Version>, StoreError> {
        let now = self.inner.clock.now_ms();
        let slot = self.slot(key, value, options, now)?;
        self.sweep_one_shard(now);
        let mut shard = self.shard(key);
        shard.demote(key, now);
        if !shard.with_live(key, now, condition) {
            return Ok(None);
        }
        let version = match slot {
            Some(slot) => {
                let version = slot.version;
                shard.insert(key, slot, now);
                version
            }
            None => {
                shard.remove(key);
                self.next_version()
            }
        };
        drop(shard);
        self.announce_write(key);
        Ok(Some(version))
    }

    /// Tells this process's watchers that `key` changed, if it is watched.
    fn announce_write(&self, key: &str) {
        let announcer = &self.inner.announcer;
        if announcer.announces(key) {
            announcer.notify(Change::Key(key.to_owned()));
        }
    }
}

impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.read(key)
    }

    fn get_now(&self, key: &str) -> Option<Result<Option<Entry>, StoreError>> {
        Some(self.read(key))
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<Version, StoreError> {
        self.write_if(key, value, options, |_| true)
            .map(|v| v.expect("an unconditional write always applies"))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        let now = self.inner.clock.now_ms();
        let mut shard = self.shard(key);
        shard.demote(key, now);
        let was_live = shard.with_live(key, now, |s| s.is_some());
        shard.remove(key);
        drop(shard);
        self.announce_write(key);
        Ok(was_live)
    }

    async fn list(&self, options: ListOptions) -> Result<ListPage, StoreError> {
        check_list(&options)?;
        let now = self.inner.clock.now_ms();
        let mut keys: Vec<KeyInfo> = Vec::new();
        for shard in self.inner.shards.iter() {
            shard.lock().collect(&options, now, &mut keys);
        }
        keys.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let cursor = if keys.len() > options.limit {
            keys.truncate(options.limit);
            keys.last().map(|k| k.name.clone())
        } else {
            None
        };
        Ok(ListPage { keys, cursor })
    }

    async fn insert_if_absent(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> Result<Option<Version>, StoreError> {
        self.write_if(key, value, options, |current| current.is_none())
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Version>,
        value: Bytes,
        options: PutOptions,
    ) -> Result<CasOutcome, StoreError> {
        let swapped = self.write_if(key, value, options, |current| {
            current.map(|s| s.version) == expected
        })?;
        Ok(swapped.map_or(CasOutcome::Conflict, CasOutcome::Swapped))
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        expiration_on_create: Expiration,
    ) -> Result<i64, StoreError> {
        check_key(key)?;
        check_expiration(expiration_on_create)?;
        let now = self.inner.clock.now_ms();
        let version = self.next_version();
        self.sweep_one_shard(now);
        let mut shard = self.shard(key);
        shard.demote(key, now);
        let slot = shard.with_live(key, now, |slot| match slot {
            Some(slot) => Ok(Slot {
                value: Value::Counter(
                    slot.value
                        .counter()
                        .and_then(|n| n.checked_add(delta))
                        .ok_or_else(|| StoreError::NotACounter {
                            key: key.to_owned(),
                        })?,
                ),
                metadata: slot.metadata.clone(),
                expires_at: slot.expires_at,
                version,
                indexed_at: None,
            }),
            None => Ok(Slot {
                value: Value::Counter(delta),
                metadata: None,
                expires_at: expiry_ms(expiration_on_create, now),
                version,
                indexed_at: None,
            }),
        })?;
        let total = slot.value.counter().expect("written as a counter above");
        if slot.is_live(now) {
            shard.insert(key, slot, now);
        }
        drop(shard);
        self.announce_write(key);
        Ok(total)
    }

    fn watch(&self, prefix: &str) -> Option<Changes> {
        Some(self.inner.announcer.watch(prefix))
    }

    fn announce(&self, prefix: &str) {
        self.inner.announcer.announce(prefix);
    }

    async fn rate_limit(&self, requests: &[RateRequest]) -> Result<RateDecision, StoreError> {
        self.decide_rate(requests)
    }

    fn rate_limit_now(&self, requests: &[RateRequest]) -> Option<Result<RateDecision, StoreError>> {
        Some(self.decide_rate(requests))
    }
}

impl MemoryStore {
    fn read(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        let now = self.inner.clock.now_ms();
        let mut shard = self.shard(key);
        if let Some(bucket) = shard.rates.get(key) {
            return Ok(bucket.is_live(now).then(|| bucket_entry(bucket)));
        }
        Ok(shard.touch(key, now))
    }

    fn decide_rate(&self, requests: &[RateRequest]) -> Result<RateDecision, StoreError> {
        check_rate(requests)?;
        let now_ms = self.inner.clock.now_ms();
        let now_us = now_ms.saturating_mul(1000);
        if let [r] = requests {
            // One bucket (the common case): one lock, no bookkeeping vectors,
            // and a live bucket updated where it is (one lookup).
            let mut shard = self.shard(&r.key);
            if let Some(bucket) = shard.rates.live_mut(&r.key, now_ms) {
                let v = rate::apply(r, bucket.state, now_us);
                if v.state.allowed && v.writes {
                    *bucket = self.bucket(&v, now_ms);
                }
                return Ok(RateDecision {
                    allowed: v.state.allowed,
                    states: vec![v.state],
                });
            }
            let v = rate::apply(r, shard.rate_state(&r.key, now_ms), now_us);
            let allowed = v.state.allowed;
            if allowed {
                self.store_verdict(&mut shard, r, &v, now_ms);
            }
            return Ok(RateDecision {
                allowed,
                states: vec![v.state],
            });
        }
        // Lock every shard involved, in index order, so the decision is atomic
        // across buckets and concurrent decisions cannot deadlock.
        let shard_of: Vec<usize> = requests.iter().map(|r| self.shard_index(&r.key)).collect();
        let mut lock_order = shard_of.clone();
        lock_order.sort_unstable();
        lock_order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> = lock_order
            .into_iter()
            .map(|i| (i, self.inner.shards[i].lock()))
            .collect();
        let verdicts: Vec<Verdict> = requests
            .iter()
            .zip(&shard_of)
            .map(|(r, &index)| {
                let state = locked(&mut guards, index).rate_state(&r.key, now_ms);
                rate::apply(r, state, now_us)
            })
            .collect();
        let allowed = verdicts.iter().all(|v| v.state.allowed);
        if !allowed {
            let states = verdicts.iter().map(|v| v.unconsumed).collect();
            return Ok(RateDecision { allowed, states });
        }
        let mut states = Vec::with_capacity(verdicts.len());
        for ((r, v), &index) in requests.iter().zip(&verdicts).zip(&shard_of) {
            states.push(v.state);
            self.store_verdict(locked(&mut guards, index), r, v, now_ms);
        }
        Ok(RateDecision { allowed, states })
    }

    /// Stores a bucket's new state after an allowed decision, if the
    /// verdict changes it (a peek, or a refund of nothing, does not).
    fn store_verdict(&self, shard: &mut Shard, r: &RateRequest, v: &Verdict, now_ms: u64) {
        if !v.writes {
            return;
        }
        shard.set_rate(&r.key, self.bucket(v, now_ms), now_ms);
    }

    /// The bucket holding a verdict's new state.
    fn bucket(&self, v: &Verdict, now_ms: u64) -> Bucket {
        Bucket {
            state: v.new_state,
            expires_at: now_ms + rate_state_lifetime(v),
            version: self.next_version(),
        }
    }
}

/// How long a rate bucket's new state is kept, in milliseconds: as long as
/// it matters, and at least a second, so a bucket visited again soon is
/// updated in place instead of re-created (a state past its time decides
/// like no state, so keeping it longer changes no decision).
fn rate_state_lifetime(v: &Verdict) -> u64 {
    (v.ttl_us / 1000 + 1).max(1_000)
}

/// The already locked shard `index` among `guards`.
fn locked<'a>(guards: &'a mut [(usize, MutexGuard<'_, Shard>)], index: usize) -> &'a mut Shard {
    let (_, guard) = guards
        .iter_mut()
        .find(|(i, _)| *i == index)
        .expect("every shard of the decision is locked");
    guard
}

fn expiry_ms(expiration: Expiration, now: u64) -> Option<u64> {
    match expiration {
        Expiration::Never => None,
        Expiration::Ttl(ttl) => Some(now.saturating_add(duration_ms_ceil(ttl))),
        Expiration::At(at) => Some(system_time_ms(at)),
    }
}

fn parse_counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A stored value: bytes, or a counter or rate state kept typed so hot
/// paths neither parse nor format; `get` renders the same decimal text
/// the Redis backend stores.
#[derive(Clone, Debug)]
enum Value {
    Bytes(Bytes),
    Counter(i64),
    Rate(Fields),
}

impl Value {
    fn to_bytes(&self) -> Bytes {
        match self {
            Value::Bytes(b) => b.clone(),
            Value::Counter(n) => Bytes::from(n.to_string()),
            Value::Rate(f) => Bytes::from(f.render()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Value::Bytes(b) => b.len(),
            Value::Counter(_) | Value::Rate(_) => 24,
        }
    }

    fn counter(&self) -> Option<i64> {
        match self {
            Value::Bytes(b) => parse_counter(b),
            Value::Counter(n) => Some(*n),
            Value::Rate(f) => parse_counter(f.render().as_bytes()),
        }
    }

    fn rate_state(&self) -> Fields {
        match self {
            Value::Bytes(b) => Fields::parse(b),
            Value::Counter(n) => Fields::parse(n.to_string().as_bytes()),
            Value::Rate(f) => *f,
        }
    }
}

#[derive(Debug)]
struct Slot {
    value: Value,
    metadata: Option<serde_json::Value>,
    expires_at: Option<u64>,
    version: Version,
    /// The time this slot is filed under in `Shard::expiries`: never later
    /// than `expires_at`, so extending an expiry needs no index update.
    indexed_at: Option<u64>,
}

impl Slot {
    fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn charge(&self, key: &str) -> usize {
        let metadata = self
            .metadata
            .as_ref()
            .map_or(0, |m| serde_json::to_vec(m).map_or(0, |v| v.len()));
        key.len() + self.value.len() + metadata + ENTRY_OVERHEAD
    }

    fn to_entry(&self) -> Entry {
        Entry {
            value: self.value.to_bytes(),
            metadata: self.metadata.clone(),
            expires_at: self.expires_at.map(ms_to_time),
            version: self.version,
        }
    }
}

/// Keeps `slot`'s filing in `expiries` (under `key`) no later than its
/// expiry, moving it only when the expiry went away or came earlier.
fn refile(expiries: &mut BTreeSet<(u64, Arc<str>)>, key: &Arc<str>, slot: &mut Slot) {
    let keep = match (slot.indexed_at, slot.expires_at) {
        (Some(filed), Some(at)) => filed <= at,
        (None, None) => true,
        _ => false,
    };
    if keep {
        return;
    }
    let old = std::mem::replace(&mut slot.indexed_at, slot.expires_at);
    if let Some(filed) = old {
        expiries.remove(&(filed, key.clone()));
    }
    if let Some(at) = slot.indexed_at {
        expiries.insert((at, key.clone()));
    }
}

/// Takes `key` out of the list index, if one is kept.
fn unlist(order: &mut Option<BTreeSet<Arc<str>>>, key: &str) {
    if let Some(order) = order {
        order.remove(key);
    }
}

/// A rate bucket as `get` shows it: the state's text, like Redis stores it.
fn bucket_entry(bucket: &Bucket) -> Entry {
    Entry {
        value: Bytes::from(bucket.state.render()),
        metadata: None,
        expires_at: Some(ms_to_time(bucket.expires_at)),
        version: bucket.version,
    }
}

fn ms_to_time(ms: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// One independently locked part of the key space. A key is either a
/// general entry or a rate bucket: rate decisions keep it as a bucket,
/// other writes as an entry.
#[derive(Debug)]
struct Shard {
    entries: LruCache<Arc<str>, Slot, foldhash::fast::RandomState>,
    rates: RateTable,
    /// Key names in order, for `list`: built by the first `list` on this
    /// shard and maintained from then on, so stores nobody lists (rate
    /// limits, counters) never pay for it.
    order: Option<BTreeSet<Arc<str>>>,
    /// (expiry, key) pairs in expiry order, for reclaiming memory.
    expiries: BTreeSet<(u64, Arc<str>)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Shard {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default()),
            rates: RateTable::default(),
            order: None,
            expiries: BTreeSet::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// `f` of the live slot at `key` (`None`: absent or expired), without
    /// touching its recency; an expired slot is dropped after. One lookup.
    fn with_live<R>(&mut self, key: &str, now: u64, f: impl FnOnce(Option<&Slot>) -> R) -> R {
        let (result, expired) = match self.entries.peek(key) {
            Some(slot) if slot.is_live(now) => (f(Some(slot)), false),
            Some(_) => (f(None), true),
            None => (f(None), false),
        };
        if expired {
            self.remove(key);
        }
        result
    }

    /// Bytes charged for entries and buckets.
    fn bytes(&self) -> usize {
        self.bytes + self.rates.bytes()
    }

    /// The rate state at `key`: its bucket's, or a general entry's value
    /// read as one (fresh when absent or expired).
    fn rate_state(&mut self, key: &str, now: u64) -> Fields {
        if let Some(bucket) = self.rates.get(key) {
            return match bucket.is_live(now) {
                true => bucket.state,
                false => Fields::default(),
            };
        }
        self.with_live(key, now, |s| {
            s.map_or_else(Fields::default, |s| s.value.rate_state())
        })
    }

    /// Stores `bucket` at `key`, in place of a general entry there.
    fn set_rate(&mut self, key: &str, bucket: Bucket, now: u64) {
        self.remove(key);
        if self.rates.due_for_sweep() {
            let order = &mut self.order;
            self.rates.sweep(now, |k| unlist(order, k));
        }
        if self.rates.insert(key, bucket) {
            if let Some(order) = &mut self.order {
                order.insert(Arc::from(key));
            }
            // Other buckets make room first, so a flood of new clients
            // does not push out sessions and cached responses.
            while self.over_capacity() && self.shrink_rates(now, Some(key)) {}
            while self.over_capacity() && self.reclaim_expired(now, 1) == 1 {}
            while self.over_capacity() && self.pop_lru() {}
        }
    }

    /// Moves the bucket at `key`, if any, to the general entries, where a
    /// general operation sees (and may replace) it like any entry.
    fn demote(&mut self, key: &str, now: u64) {
        let Some(bucket) = self.rates.remove(key) else {
            return;
        };
        unlist(&mut self.order, key);
        if bucket.is_live(now) {
            let slot = Slot {
                value: Value::Rate(bucket.state),
                metadata: None,
                expires_at: Some(bucket.expires_at),
                version: bucket.version,
                indexed_at: None,
            };
            self.insert(key, slot, now);
        }
    }

    /// Drops expired buckets or, failing that, those closest to expiry.
    fn shrink_rates(&mut self, now: u64, keep: Option<&str>) -> bool {
        let order = &mut self.order;
        self.rates.shrink(now, keep, |k| unlist(order, k))
    }

    /// The live entry at `key`, marked as most recently used (one lookup:
    /// the entry is copied out where it is found).
    fn touch(&mut self, key: &str, now: u64) -> Option<Entry> {
        match self.entries.get(key) {
            Some(slot) if slot.is_live(now) => return Some(slot.to_entry()),
            Some(_) => {}
            None => return None,
        }
        self.remove(key);
        None
    }

    fn insert(&mut self, key: &str, mut slot: Slot, now: u64) {
        let charge = slot.charge(key);
        if let Some((stored, current)) = self.entries.get_key_value_mut(key) {
            // Update in place: the key keeps its allocation and its place in `order`.
            slot.indexed_at = current.indexed_at;
            let old = std::mem::replace(current, slot);
            self.bytes = self.bytes - old.charge(stored) + charge;
            refile(&mut self.expiries, stored, current);
        } else {
            let key: Arc<str> = Arc::from(key);
            self.bytes += charge;
            if let Some(order) = &mut self.order {
                order.insert(key.clone());
            }
            refile(&mut self.expiries, &key, &mut slot);
            self.entries.push(key, slot);
        }
        self.reclaim_expired(now, RECLAIM_PER_WRITE);
        self.evict(now);
    }

    fn remove(&mut self, key: &str) {
        if let Some((key, slot)) = self.entries.pop_entry(key) {
            self.forget(&key, &slot);
        }
    }

    fn forget(&mut self, key: &Arc<str>, slot: &Slot) {
        self.bytes -= slot.charge(key);
        if let Some(order) = &mut self.order {
            order.remove(key);
        }
        if let Some(filed) = slot.indexed_at {
            self.expiries.remove(&(filed, key.clone()));
        }
    }

    /// Processes up to `max` due filings: expired entries are removed,
    /// extended ones re-filed at their real expiry. Returns how many were processed.
    fn reclaim_expired(&mut self, now: u64, max: usize) -> usize {
        let due: Vec<(u64, Arc<str>)> = self
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .cloned()
            .collect();
        for (filed, key) in &due {
            match self.entries.peek_mut(key) {
                Some(slot) if slot.is_live(now) => {
                    slot.indexed_at = slot.expires_at;
                    let at = slot.expires_at;
                    self.expiries.remove(&(*filed, key.clone()));
                    if let Some(at) = at {
                        self.expiries.insert((at, key.clone()));
                    }
                }
                _ => self.remove(key),
            }
        }
        due.len()
    }

    fn over_capacity(&self) -> bool {
        self.entries.len() + self.rates.len() > self.max_entries || self.bytes() > self.max_bytes
    }

    /// Makes room after a general write: expired entries first, then the
    /// least recently used (never the one just written), then buckets.
    fn evict(&mut self, now: u64) {
        while self.over_capacity() && self.reclaim_expired(now, 1) == 1 {}
        while self.over_capacity() && self.entries.len() > 1 && self.pop_lru() {}
        while self.over_capacity() && self.shrink_rates(now, None) {}
    }

    /// Drops the least recently used entry; false when there is none.
    fn pop_lru(&mut self) -> bool {
        let Some((key, slot)) = self.entries.pop_lru() else {
            return false;
        };
        self.forget(&key, &slot);
        true
    }

    fn live_count(&self, now: u64) -> usize {
        self.entries.iter().filter(|(_, s)| s.is_live(now)).count() + self.rates.live_count(now)
    }

    /// Appends up to `limit + 1` live keys of this shard after the cursor.
    fn collect(&mut self, options: &ListOptions, now: u64, out: &mut Vec<KeyInfo>) {
        let start = match &options.cursor {
            Some(cursor) => Bound::Excluded(cursor.as_str()),
            None => Bound::Included(options.prefix.as_str()),
        };
        let (entries, rates) = (&self.entries, &self.rates);
        let order = self.order.get_or_insert_with(|| {
            let general = entries.iter().map(|(k, _)| k.clone());
            general.chain(rates.keys().map(Arc::from)).collect()
        });
        let live = order
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|key| key.starts_with(options.prefix.as_str()))
            .filter_map(|key| {
                let (expires_at, metadata) = match (entries.peek(key), rates.get(key)) {
                    (Some(slot), _) => (slot.expires_at, &slot.metadata),
                    (None, Some(bucket)) => (Some(bucket.expires_at), &None),
                    (None, None) => return None,
                };
                expires_at.is_none_or(|at| at > now).then(|| KeyInfo {
                    name: key.to_string(),
                    expires_at: expires_at.map(ms_to_time),
                    metadata: metadata.clone(),
                })
            })
            .take(options.limit + 1);
        out.extend(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::GcraRate;

    #[tokio::test]
    async fn evicts_least_recently_used_beyond_capacity() {
        let store = MemoryStore::builder().max_entries(3).build();
        for k in ["a", "b", "c"] {
            store
                .put(k, Bytes::from_static(b"v"), PutOptions::new())
                .await
                .unwrap();
        }
        store.get("a").await.unwrap();
        store
            .put("d", Bytes::from_static(b"v"), PutOptions::new())
            .await
            .unwrap();
        assert!(
            store.get("b").await.unwrap().is_none(),
            "b was least recently used"
        );
        for k in ["a", "c", "d"] {
            assert!(store.get(k).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn evicts_expired_before_live_entries() {
        let clock = Clock::manual();
        let store = MemoryStore::builder()
            .max_entries(2)
            .clock(clock.clone())
            .build();
        let short = PutOptions::new().ttl(Duration::from_secs(1));
        store
            .put("old", Bytes::from_static(b"v"), PutOptions::new())
            .await
            .unwrap();
        store
            .put("short", Bytes::from_static(b"v"), short)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2));
        store
            .put("new", Bytes::from_static(b"v"), PutOptions::new())
            .await
            .unwrap();
        assert!(store.get("old").await.unwrap().is_some());
        assert!(store.get("new").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn expired_memory_is_reclaimed_by_later_writes() {
        let clock = Clock::manual();
        let store = MemoryStore::builder().clock(clock.clone()).build();
        let ttl = PutOptions::new().ttl(Duration::from_secs(1));
        for i in 0..8 {
            store
                .put(&format!("k{i}"), Bytes::from(vec![0; 1000]), ttl.clone())
                .await
                .unwrap();
        }
        clock.advance(Duration::from_secs(2));
        assert_eq!(store.len(), 0);
        for i in 0..64 {
            store
                .put(
                    &format!("n{i}"),
                    Bytes::from_static(b"x"),
                    PutOptions::new(),
                )
                .await
                .unwrap();
        }
        let live: usize = (0..64)
            .map(|i| format!("n{i}").len() + 1 + ENTRY_OVERHEAD)
            .sum();
        assert_eq!(store.bytes(), live, "expired values were not reclaimed");
    }

    #[tokio::test]
    async fn extended_and_shortened_expiries_are_both_honoured() {
        let clock = Clock::manual();
        let store = MemoryStore::builder()
            .max_entries(64)
            .clock(clock.clone())
            .build();
        let ttl = |s| PutOptions::new().ttl(Duration::from_secs(s));
        store
            .put("k", Bytes::from_static(b"v"), ttl(1))
            .await
            .unwrap();
        store
            .put("k", Bytes::from_static(b"v"), ttl(10))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2));
        for i in 0..8 {
            store
                .put(&format!("x{i}"), Bytes::new(), PutOptions::new())
                .await
                .unwrap();
        }
        assert!(
            store.get("k").await.unwrap().is_some(),
            "an extended entry is not reclaimed early"
        );
        store
            .put("k", Bytes::from_static(b"v"), ttl(1))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2));
        store
            .put("y", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        let live: usize =
            (0..8).map(|i| format!("x{i}").len()).sum::<usize>() + 1 + 9 * ENTRY_OVERHEAD;
        assert_eq!(
            store.bytes(),
            live,
            "the shortened entry's memory is reclaimed"
        );
        assert!(store.get("k").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_list_index_is_built_on_demand_and_then_maintained() {
        let store = MemoryStore::new();
        store
            .put("a:1", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        let names = |page: ListPage| page.keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list(ListOptions::prefix("a:")).await.unwrap()),
            ["a:1"]
        );
        store
            .put("a:0", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        store.delete("a:1").await.unwrap();
        store
            .put("a:2", Bytes::new(), PutOptions::new())
            .await
            .unwrap();
        assert_eq!(
            names(store.list(ListOptions::prefix("a:")).await.unwrap()),
            ["a:0", "a:2"]
        );
    }

    /// One unit of a bucket of 10 per `secs`.
    fn charge(key: &str, secs: u64) -> RateRequest {
        RateRequest::new(key, GcraRate::per(10, Duration::from_secs(secs)), 1)
    }

    #[tokio::test]
    async fn new_buckets_make_room_among_buckets_first() {
        let store = MemoryStore::builder().max_entries(64).build();
        store
            .put("session", Bytes::from_static(b"v"), PutOptions::new())
            .await
            .unwrap();
        // Long windows first, so the later (short) ones are closest to expiry.
        for i in 0..1000 {
            let window = if i < 32 { 86_400 } else { 60 };
            let key = format!("rl:{i}");
            assert!(store.decide_rate(&[charge(&key, window)]).unwrap().allowed);
            assert!(
                store.get(&key).await.unwrap().is_some(),
                "the bucket just charged stays"
            );
        }
        assert!(store.len() <= 64);
        assert!(
            store.get("session").await.unwrap().is_some(),
            "a flood of clients does not push out other entries"
        );
        for i in 0..32 {
            let key = format!("rl:{i}");
            assert!(
                store.get(&key).await.unwrap().is_some(),
                "{key} lives longest"
            );
        }
    }

    #[tokio::test]
    async fn a_bucket_that_expires_first_still_finds_room() {
        let store = MemoryStore::builder().max_entries(4).build();
        for i in 0..4 {
            store
                .decide_rate(&[charge(&format!("long:{i}"), 86_400)])
                .unwrap();
        }
        store.decide_rate(&[charge("short", 1)]).unwrap();
        assert_eq!(store.len(), 4, "the bound holds");
        assert!(store.get("short").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn expired_buckets_are_swept_as_the_table_grows() {
        let clock = Clock::manual();
        // One shard, so one table sees every key.
        let store = MemoryStore::builder()
            .max_value_len(1 << 20)
            .max_bytes(1 << 20)
            .clock(clock.clone())
            .build();
        for i in 0..2000 {
            store
                .decide_rate(&[charge(&format!("old:{i}"), 1)])
                .unwrap();
        }
        clock.advance(Duration::from_secs(5));
        let new: Vec<String> = (0..4096).map(|i| format!("new:{i}")).collect();
        for key in &new {
            store.decide_rate(&[charge(key, 1)]).unwrap();
        }
        assert_eq!(store.len(), new.len());
        let live: usize = new.iter().map(|k| rates::charge(k)).sum();
        assert_eq!(store.bytes(), live, "expired buckets were not reclaimed");
    }

    #[tokio::test]
    async fn a_general_write_over_a_bucket_replaces_it() {
        let store = MemoryStore::new();
        let request = charge("rl:k", 60);
        store.decide_rate(std::slice::from_ref(&request)).unwrap();
        store
            .put("rl:k", Bytes::from_static(b"v"), PutOptions::new())
            .await
            .unwrap();
        assert_eq!(store.len(), 1);
        let remaining = store.decide_rate(&[request]).unwrap().states[0].remaining;
        assert_eq!(remaining, 9, "a value that is no state is a fresh bucket");
        assert_eq!(store.len(), 1, "the decision took the key back as a bucket");
        assert_eq!(store.bytes(), rates::charge("rl:k"));
    }

    #[tokio::test]
    async fn byte_budget_bounds_the_store() {
        let store = MemoryStore::builder().max_bytes(10_000).build();
        for i in 0..100 {
            store
                .put(
                    &format!("k{i}"),
                    Bytes::from(vec![0; 1000]),
                    PutOptions::new(),
                )
                .await
                .unwrap();
        }
        assert!(store.bytes() <= 10_000);
        assert!(store.get("k99").await.unwrap().is_some());
    }
}
