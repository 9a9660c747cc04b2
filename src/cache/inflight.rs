//! Request coalescing: one fetch per key at a time; concurrent callers wait
//! for it (bounded) instead of fetching again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

/// How long a caller waits for an identical in-flight fetch.
pub(crate) const COALESCE_WAIT: Duration = Duration::from_secs(10);

/// The fetches in progress, shared by clones.
#[derive(Clone, Debug, Default)]
pub(crate) struct Coalescer {
    map: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
}

/// A caller's part in a fetch.
pub(crate) enum Role {
    /// Fetch; the waiters are released when this is dropped.
    Leader(InFlight),
    /// Wait for the leader, then read what it stored.
    Follower(watch::Receiver<bool>),
}

/// A fetch in progress; dropping it releases the callers waiting for it.
pub(crate) struct InFlight {
    map: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(done) = self.map.lock().remove(&self.key) {
            let _ = done.send(true);
        }
    }
}

impl Coalescer {
    /// Leads the fetch of `key`, or follows the one in progress.
    pub(crate) fn join_or_lead(&self, key: &str) -> Role {
        let mut map = self.map.lock();
        match map.get(key) {
            Some(done) => Role::Follower(done.subscribe()),
            None => {
                let (done, _) = watch::channel(false);
                map.insert(key.to_owned(), done);
                Role::Leader(InFlight {
                    map: self.map.clone(),
                    key: key.to_owned(),
                })
            }
        }
    }
}

/// Waits (bounded) for a leader to finish; `true` when it did.
pub(crate) async fn wait(mut done: watch::Receiver<bool>) -> bool {
    matches!(
        tokio::time::timeout(COALESCE_WAIT, done.wait_for(|d| *d)).await,
        Ok(Ok(_))
    )
}
