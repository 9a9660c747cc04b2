//! The key-value backend every layer stores its state in.
//!
//! [`KvStore`] is one trait with two backends — [`MemoryStore`] for a single
//! process and `RedisStore` (feature `redis`) for a fleet, on one Redis node
//! or a Redis Cluster, over TLS with feature `tls` — plus the
//! [`NearCache`] wrapper that serves hot reads from process memory. Layers are
//! generic over the trait, so an application picks a backend once.
//!
//! Besides plain `get` / `put` / `delete` / `list`, the trait offers the atomic
//! operations the layers need so that none of them ever reads then writes:
//! [`insert_if_absent`](KvStore::insert_if_absent),
//! [`compare_and_swap`](KvStore::compare_and_swap),
//! [`increment`](KvStore::increment) and a multi-bucket
//! [`rate_limit`](KvStore::rate_limit) decision (GCRA, fixed or sliding
//! window). Each is one round trip on Redis.
//!
//! ```
//! use std::time::Duration;
//! use tower_kv::store::{KvStore, KvStoreExt, MemoryStore, PutOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_kv::store::StoreError> {
//! let store = MemoryStore::new();
//! store
//!     .put_json("user:123:profile", &serde_json::json!({"name": "John"}),
//!               PutOptions::new().ttl(Duration::from_secs(300)))
//!     .await?;
//! let profile: Option<serde_json::Value> = store.get_json("user:123:profile").await?;
//! assert_eq!(profile.unwrap()["name"], "John");
//!
//! // Atomic: two racing creators, exactly one wins.
//! assert!(store.insert_if_absent("lock", "a".into(), PutOptions::new()).await?.is_some());
//! assert!(store.insert_if_absent("lock", "b".into(), PutOptions::new()).await?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! # Limits
//!
//! Keys are 1 to [`MAX_KEY_LEN`] bytes of UTF-8; values are at most the
//! store's configured maximum ([`DEFAULT_MAX_VALUE_LEN`] by default). A
//! violation is a [`StoreError`], never a truncation.

use std::future::Future;

use bytes::Bytes;

mod cached;
mod changes;
mod dyn_store;
mod error;
mod json;
mod limits;
mod memory;
mod near_cache;
mod rate;
#[cfg(feature = "redis")]
mod redis;
mod types;
pub(crate) mod update;

pub(crate) use cached::CachedDocument;
pub(crate) use changes::{Announcer, TaskGuard};
pub use changes::{Change, Changes};
pub(crate) use dyn_store::DynStore;
pub use error::StoreError;
pub use json::KvStoreExt;
pub use limits::{DEFAULT_MAX_VALUE_LEN, MAX_KEY_LEN, MAX_LIST_LIMIT};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use near_cache::{NearCache, NearCacheBuilder};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};
pub use types::{
    CasOutcome, Entry, Expiration, GcraRate, KeyInfo, ListOptions, ListPage, PutOptions, Rate,
    RateDecision, RateMode, RateRequest, RateState, ReadOptions, Version,
};

/// A key-value backend shared by every tower-kv layer.
///
/// Implementations are cheap to clone (an `Arc` inside) and every operation
/// is atomic with respect to the others on the same key.
pub trait KvStore: Clone + Send + Sync + 'static {
    /// The entry at `key`, or `None` when absent or expired.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send;

    /// Like [`get`](Self::get), with hints for a near cache (how long
    /// the value may be kept in process). Stores without a near cache ignore them.
    fn get_with(
        &self,
        key: &str,
        options: ReadOptions,
    ) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send {
        let _ = options;
        self.get(key)
    }

    /// Writes `value` at `key`, replacing any entry, and returns the new version.
    fn put(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Removes `key`; returns whether an entry was there.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One page of the keys under a prefix, in byte order of their names.
    fn list(
        &self,
        options: ListOptions,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// Writes only if no live entry exists at `key`. Returns the new version
    /// when this call won, `None` when an entry was already there.
    fn insert_if_absent(
        &self,
        key: &str,
        value: Bytes,
        options: PutOptions,
    ) -> impl Future<Output = Result<Option<Version>, StoreError>> + Send;

    /// Writes only if the entry's current version is `expected`
    /// (`None`: only if there is no live entry).
    ///
    /// An entry deleted or expired meanwhile is a conflict, so an update never
    /// resurrects it.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Version>,
        value: Bytes,
        options: PutOptions,
    ) -> impl Future<Output = Result<CasOutcome, StoreError>> + Send;

    /// Adds `delta` to the decimal counter at `key` and returns the new value.
    /// A missing key counts from zero and gets `expiration_on_create`; an
    /// existing key keeps its expiry.
    fn increment(
        &self,
        key: &str,
        delta: i64,
        expiration_on_create: Expiration,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// An all-or-nothing rate decision over one or several buckets, on the
    /// store's clock (Redis `TIME` on Redis): each bucket is charged its cost
    /// only if every bucket has room. Requests marked
    /// [`peek`](RateRequest::peek) are decided but never charged; requests
    /// marked [`refund`](RateRequest::refund) give their cost back.
    fn rate_limit(
        &self,
        requests: &[RateRequest],
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// Change notices for keys under `prefix`: writes made through any
    /// handle on this data — in this process ([`MemoryStore`]), or anywhere
    /// in the fleet (`RedisStore`, over pub/sub) — so cached copies can be
    /// dropped at once. `None` when this store cannot announce changes.
    ///
    /// Watching a prefix also makes this process announce its own writes
    /// under it (a message per write; rate decisions are never announced).
    /// Notices are best effort: [`Change::Missed`] says some may be lost,
    /// and a cached copy should keep a TTL as the safety net.
    fn watch(&self, prefix: &str) -> Option<Changes> {
        let _ = prefix;
        None
    }

    /// Announces writes under `prefix` without watching them: for a process
    /// that writes what others watch (an admin tool).
    fn announce(&self, prefix: &str) {
        let _ = prefix;
    }

    /// [`get`](Self::get) answered synchronously, for stores that need no
    /// I/O for it (the in-memory store); `None` means "use `get`". Lets
    /// layers decide without allocating a future on the hot path.
    fn get_now(&self, key: &str) -> Option<Result<Option<Entry>, StoreError>> {
        let _ = key;
        None
    }

    /// The same decision made synchronously, for stores that need no I/O
    /// for it (the in-memory store); `None` means "use
    /// [`rate_limit`](Self::rate_limit)". Lets layers skip allocating a
    /// future on the hot path.
    fn rate_limit_now(&self, requests: &[RateRequest]) -> Option<Result<RateDecision, StoreError>> {
        let _ = requests;
        None
    }
}
