//! A read-through cache for handlers (`get_or_fetch(key, ttl, fetcher)`): read a JSON
//! value from the store, or fetch, store and return it — once per cold key,
//! however many requests ask at the same time.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::inflight::{wait, Coalescer, Role};
use crate::store::{KvStore, KvStoreExt, PutOptions};

/// A read-through cache of JSON values in a [`KvStore`].
///
/// ```
/// # async fn run() -> Result<(), std::io::Error> {
/// use std::time::Duration;
/// use tower_kv::cache::ReadThrough;
/// use tower_kv::store::MemoryStore;
///
/// let cache = ReadThrough::new(MemoryStore::new());
/// let users: Vec<String> = cache
///     .get_or_fetch("cache:users", Duration::from_secs(300), || async {
///         Ok::<_, std::io::Error>(vec!["ada".to_owned()]) // e.g. an upstream API call
///     })
///     .await?;
/// # assert_eq!(users, ["ada"]); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ReadThrough<St> {
    store: St,
    inflight: Coalescer,
}

impl<St: KvStore> ReadThrough<St> {
    /// Values cached in `store`.
    pub fn new(store: St) -> Self {
        Self {
            store,
            inflight: Coalescer::default(),
        }
    }

    /// The value at `key`, or `fetch`'s result stored there for `ttl`.
    ///
    /// Concurrent calls for a cold key in this process run `fetch` once; the
    /// others wait for it (bounded) and read what it stored. A store failure
    /// or an unreadable stored value is not an error: the value is fetched
    /// (and the failure logged). Only `fetch`'s own error is returned.
    pub async fn get_or_fetch<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        fetch: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Sync,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.cached(key).await {
            return Ok(value);
        }
        let _leader = match self.inflight.join_or_lead(key) {
            Role::Follower(done) => {
                if wait(done).await {
                    if let Some(value) = self.cached(key).await {
                        return Ok(value);
                    }
                }
                None
            }
            Role::Leader(guard) => Some(guard),
        };
        let value = fetch().await?;
        if let Err(e) = self
            .store
            .put_json(key, &value, PutOptions::new().ttl(ttl))
            .await
        {
            tracing::warn!(key, error = %e, "read-through value not stored");
        }
        Ok(value)
    }

    async fn cached<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.store.get_json(key).await {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(key, error = %e, "read-through cache unreadable: fetching");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cold_key_is_fetched_once() {
        let cache = ReadThrough::new(MemoryStore::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_fetch("k", Duration::from_secs(60), || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>(42u32)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(42));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn garbage_in_the_store_is_refetched_and_errors_pass_through() {
        let store = MemoryStore::new();
        store
            .put("k", bytes::Bytes::from_static(b"{nope"), PutOptions::new())
            .await
            .unwrap();
        let cache = ReadThrough::new(store);
        let v = cache
            .get_or_fetch("k", Duration::from_secs(60), || async { Ok::<_, ()>(7u32) })
            .await;
        assert_eq!(v, Ok(7));
        let err = cache
            .get_or_fetch::<u32, _, _, _>("other", Duration::from_secs(60), || async {
                Err("down")
            })
            .await;
        assert_eq!(err, Err("down"));
    }
}
