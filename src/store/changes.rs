//! Change notices: a store tells the processes sharing its data that keys
//! changed, so their cached copies (flag documents, A/B configs, near-cached
//! entries) are dropped at once instead of when a TTL runs out.
//!
//! Announcing costs a message per write, so a store announces only writes
//! to keys under a prefix some handle in this process watches (or that
//! [`KvStore::announce`](super::KvStore::announce) named). Every instance of
//! an application watches the same prefixes, so each announces its own
//! writes to the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::broadcast;

/// How many notices a slow watcher may fall behind before it is told it
/// missed some ([`Change::Missed`]).
const BACKLOG: usize = 1024;

/// What changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The entry at this key was written or deleted.
    Key(String),
    /// Notices may have been lost (a subscription was just re-established,
    /// or this watcher fell behind): anything cached may be stale.
    Missed,
}

/// A stream of change notices for keys under one prefix.
#[derive(Debug)]
pub struct Changes {
    prefix: String,
    notices: broadcast::Receiver<Change>,
}

impl Changes {
    /// The next notice for a key under the prefix (or [`Change::Missed`]);
    /// `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            match self.notices.recv().await {
                Ok(Change::Key(key)) if !key.starts_with(&self.prefix) => continue,
                Ok(change) => return Some(change),
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Change::Missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A store's side: which prefixes it announces, and the channel its
/// watchers listen on. Shared by the store's clones.
#[derive(Clone, Debug)]
pub(crate) struct Announcer {
    prefixes: Arc<RwLock<Vec<String>>>,
    /// Whether any prefix is announced: most stores announce none, and
    /// then a write checks one flag instead of taking a shared lock.
    any: Arc<AtomicBool>,
    notices: broadcast::Sender<Change>,
}

impl Default for Announcer {
    fn default() -> Self {
        Self {
            prefixes: Arc::default(),
            any: Arc::default(),
            notices: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Announcer {
    /// Announces writes under `prefix` from now on.
    pub(crate) fn announce(&self, prefix: &str) {
        let mut prefixes = self.prefixes.write();
        if !prefixes.iter().any(|p| prefix.starts_with(p.as_str())) {
            prefixes.retain(|p| !p.starts_with(prefix));
            prefixes.push(prefix.to_owned());
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether a write to `key` is announced.
    pub(crate) fn announces(&self, key: &str) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .prefixes
                .read()
                .iter()
                .any(|p| key.starts_with(p.as_str()))
    }

    /// Watches `prefix` (and announces it).
    pub(crate) fn watch(&self, prefix: &str) -> Changes {
        self.announce(prefix);
        Changes {
            prefix: prefix.to_owned(),
            notices: self.notices.subscribe(),
        }
    }

    /// Tells this process's watchers.
    pub(crate) fn notify(&self, change: Change) {
        // No watcher: nobody to tell.
        let _ = self.notices.send(change);
    }
}

/// A background task that stops when the last handle owning this guard is
/// dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(tokio::task::AbortHandle);

impl TaskGuard {
    /// Spawns `task` on the current runtime; `None` outside one.
    pub(crate) fn spawn<F>(task: F) -> Option<Self>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(Self(runtime.spawn(task).abort_handle()))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_see_their_prefix_only() {
        let announcer = Announcer::default();
        let mut flags = announcer.watch("flags:");
        assert!(announcer.announces("flags:doc"));
        assert!(!announcer.announces("session:x"));
        announcer.notify(Change::Key("session:x".into()));
        announcer.notify(Change::Key("flags:doc".into()));
        assert_eq!(flags.next().await, Some(Change::Key("flags:doc".into())));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told() {
        let announcer = Announcer::default();
        let mut all = announcer.watch("");
        for i in 0..BACKLOG + 5 {
            announcer.notify(Change::Key(format!("k{i}")));
        }
        assert_eq!(all.next().await, Some(Change::Missed));
    }

    #[test]
    fn prefixes_collapse() {
        let announcer = Announcer::default();
        announcer.announce("a:b");
        announcer.announce("a:");
        announcer.announce("a:c");
        assert_eq!(*announcer.prefixes.read(), vec!["a:".to_owned()]);
    }
}
