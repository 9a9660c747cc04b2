//! Fleet-wide single flight: instances sharing a store take turns to fetch
//! a cold URL from the origin. The first takes a short lease in the store
//! (insert-if-absent with a TTL); the others wait for what it stores and
//! answer from it. When the holder stores nothing (the response may not be
//! stored) it leaves a "pass" mark for the lease's TTL, so the others fetch
//! at once instead of one after another; when it dies or hangs, the others
//! fetch themselves once the lease's TTL has passed.

use std::time::Duration;

use bytes::Bytes;

use crate::store::{KvStore, PutOptions, Version};

/// The lease of an instance fetching.
const FETCHING: &[u8] = b"fetching";
/// Left by a holder whose response could not be stored: fetch yourself.
const PASS: &[u8] = b"pass";
/// How often a waiting instance looks for the stored response.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Who fetches.
pub(crate) enum Turn<St: KvStore> {
    /// This instance: it holds the lease.
    Mine(Lease<St>),
    /// Another instance holds the lease: wait for its response.
    Theirs,
    /// Fetch without a lease: the last holder could not store its
    /// response, or the store cannot say.
    Anyone,
}

/// Takes the lease at `key` for `ttl`, or says who has it.
pub(crate) async fn take<St: KvStore>(store: &St, key: &str, ttl: Duration) -> Turn<St> {
    let lease = Bytes::from_static(FETCHING);
    match store
        .insert_if_absent(key, lease, PutOptions::new().ttl(ttl))
        .await
    {
        Ok(Some(version)) => Turn::Mine(Lease {
            store: store.clone(),
            key: key.to_owned(),
            version,
            ttl,
            stored: true,
        }),
        Ok(None) => match store.get(key).await {
            Ok(Some(entry)) if entry.value == PASS => Turn::Anyone,
            Ok(_) => Turn::Theirs,
            Err(_) => Turn::Anyone,
        },
        // A store in trouble decides nothing: fetch.
        Err(_) => Turn::Anyone,
    }
}

/// A held lease, released when dropped (the fetch is over).
pub(crate) struct Lease<St: KvStore> {
    store: St,
    key: String,
    version: Version,
    ttl: Duration,
    stored: bool,
}

impl<St: KvStore> Lease<St> {
    /// The response will not be stored: the others should fetch themselves.
    pub(crate) fn nothing_stored(&mut self) {
        self.stored = false;
    }
}

impl<St: KvStore> Drop for Lease<St> {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the lease expires by itself
        };
        let (store, key) = (self.store.clone(), std::mem::take(&mut self.key));
        let (version, ttl, stored) = (self.version, self.ttl, self.stored);
        runtime.spawn(async move {
            if stored {
                // Waiters find the stored response; later misses may lead.
                let _ = store.delete(&key).await;
            } else {
                // Only our own lease becomes a pass mark: one that expired
                // meanwhile and was taken is another instance's.
                let pass = Bytes::from_static(PASS);
                let _ = store
                    .compare_and_swap(&key, Some(version), pass, PutOptions::new().ttl(ttl))
                    .await;
            }
        });
    }
}
