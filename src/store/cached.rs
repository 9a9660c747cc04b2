//! A document read from the store at most once per TTL per process and kept
//! parsed in memory — for configuration that every
//! request reads (the flag document, A/B test configs). When the store
//! announces changes, a change anywhere in the fleet makes the next request
//! read it again; the TTL stays as the safety net.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::{Change, KvStore, StoreError, TaskGuard, Version};
use crate::clock::duration_ms_ceil;
use crate::Clock;

/// How soon a failed read is retried, at most.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Parses the stored bytes (`None`: no entry) into a document.
pub(crate) type Parse<T> = fn(Option<&[u8]>) -> Result<T, String>;

/// A parsed document cached for a TTL. A store failure or an unparsable
/// value keeps the last good document (logged) and retries within a second;
/// before any document was read, [`current`](Self::current) gives `None`.
pub(crate) struct CachedDocument<St, T> {
    store: St,
    key: String,
    ttl: Duration,
    clock: Clock,
    parse: Parse<T>,
    /// Read without a lock on every request; replaced under `writing`.
    snapshot: ArcSwap<Snapshot<T>>,
    writing: Mutex<()>,
    reading: AtomicBool,
    /// Set when the store announced a change to the key.
    changed: Arc<AtomicBool>,
    _listener: Option<TaskGuard>,
}

struct Snapshot<T> {
    doc: Option<Arc<T>>,
    version: Option<Version>,
    fresh_until: u64,
}

impl<T> Snapshot<T> {
    /// The same document, fresh until `until`.
    fn until(&self, until: u64) -> Self {
        Self {
            doc: self.doc.clone(),
            version: self.version,
            fresh_until: until,
        }
    }
}

impl<St, T> fmt::Debug for CachedDocument<St, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedDocument")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<St: KvStore, T: Send + Sync + 'static> CachedDocument<St, T> {
    /// The document at `key`, cached for `ttl`.
    pub(crate) fn new(
        store: St,
        key: String,
        ttl: Duration,
        clock: Clock,
        parse: Parse<T>,
    ) -> Self {
        let changed = Arc::new(AtomicBool::new(false));
        let listener = store.watch(&key).and_then(|mut changes| {
            let (changed, key) = (changed.clone(), key.clone());
            TaskGuard::spawn(async move {
                while let Some(change) = changes.next().await {
                    if matches!(&change, Change::Key(k) if *k != key) {
                        continue;
                    }
                    changed.store(true, Ordering::Release);
                }
            })
        });
        Self {
            changed,
            _listener: listener,
            store,
            key,
            ttl,
            clock,
            parse,
            snapshot: ArcSwap::from_pointee(Snapshot {
                doc: None,
                version: None,
                fresh_until: 0,
            }),
            writing: Mutex::new(()),
            reading: AtomicBool::new(false),
        }
    }

    /// The key, TTL and clock this cache was built with.
    pub(crate) fn settings(&self) -> (&str, Duration, &Clock) {
        (&self.key, self.ttl, &self.clock)
    }

    /// The store the document lives in.
    pub(crate) fn store(&self) -> &St {
        &self.store
    }

    /// The document's key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The document if usable without I/O: `Some(Some(doc))` fresh,
    /// `Some(None)` known unusable and not due for a retry, `None` due for a read.
    pub(crate) fn cached(&self) -> Option<Option<Arc<T>>> {
        let snapshot = self.snapshot.load();
        let fresh =
            self.clock.recent_ms() < snapshot.fresh_until && !self.changed.load(Ordering::Acquire);
        // While another request reads, a stale document is good enough.
        let busy = self.reading.load(Ordering::Acquire) && snapshot.doc.is_some();
        (fresh || busy).then(|| snapshot.doc.clone())
    }

    /// The document, reading the store when the cached one is stale.
    pub async fn current(&self) -> Option<Arc<T>> {
        match self.cached() {
            Some(doc) => doc,
            None => self.read().await,
        }
    }

    /// Reads the store now.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        self.changed.store(false, Ordering::Release);
        let entry = self.store.get(&self.key).await.inspect_err(|_| {
            self.changed.store(true, Ordering::Release);
        })?;
        self.install(entry.as_ref().map(|e| (&e.value[..], e.version)));
        Ok(())
    }

    /// Forgets freshness: the next request reads the store.
    pub(crate) fn invalidate(&self) {
        self.extend(0);
    }

    async fn read(&self) -> Option<Arc<T>> {
        self.reading.store(true, Ordering::Release);
        // A change announced from here on is read next time.
        self.changed.store(false, Ordering::Release);
        let result = self.store.get(&self.key).await;
        self.reading.store(false, Ordering::Release);
        match result {
            Ok(entry) => self.install(entry.as_ref().map(|e| (&e.value[..], e.version))),
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "store unavailable: keeping the last good document");
                self.retry_soon()
            }
        }
    }

    fn install(&self, value: Option<(&[u8], Version)>) -> Option<Arc<T>> {
        let version = value.map(|(_, v)| v);
        {
            // Same version as cached: no need to parse again.
            let _writing = self.writing.lock();
            let snapshot = self.snapshot.load();
            if snapshot.doc.is_some() && version.is_some() && snapshot.version == version {
                let until = self.clock.now_ms() + duration_ms_ceil(self.ttl);
                self.snapshot.store(Arc::new(snapshot.until(until)));
                return snapshot.doc.clone();
            }
        }
        match (self.parse)(value.map(|(bytes, _)| bytes)) {
            Ok(doc) => {
                let doc = Arc::new(doc);
                let _writing = self.writing.lock();
                self.snapshot.store(Arc::new(Snapshot {
                    doc: Some(doc.clone()),
                    version,
                    fresh_until: self.clock.now_ms() + duration_ms_ceil(self.ttl),
                }));
                Some(doc)
            }
            Err(e) => {
                tracing::error!(key = %self.key, error = %e, "malformed document: keeping the last good one");
                self.retry_soon()
            }
        }
    }

    fn retry_soon(&self) -> Option<Arc<T>> {
        let retry = duration_ms_ceil(RETRY_AFTER_ERROR.min(self.ttl));
        self.extend(self.clock.now_ms() + retry)
    }

    /// Keeps the current document, fresh until `until`; returns it.
    fn extend(&self, until: u64) -> Option<Arc<T>> {
        let _writing = self.writing.lock();
        let snapshot = self.snapshot.load();
        self.snapshot.store(Arc::new(snapshot.until(until)));
        snapshot.doc.clone()
    }
}
