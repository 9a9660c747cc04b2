use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;

use super::document::{Flag, FlagDocument, InvalidFlags};
use crate::clock::duration_ms_ceil;
use crate::store::{CasOutcome, KvStore, PutOptions, StoreError};
use crate::Clock;

/// How soon a failed refresh is retried, at most.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);
/// How many times a write retries after losing a compare-and-swap race.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// The flag document, read from the store at most once per `cache_ttl` per
/// process (the seed's `cacheTtl`, default 600 s) and kept parsed in memory.
///
/// If the store fails or holds malformed JSON, the last good document stays
/// in use (and the failure is logged); before any document was ever loaded,
/// every flag is off with reason [`Error`](super::Reason::Error).
///
/// ```
/// # async fn run() -> Result<(), tower_kv::flags::FlagWriteError> {
/// use tower_kv::flags::{FeatureFlags, Flag};
/// use tower_kv::store::MemoryStore;
///
/// let flags = FeatureFlags::new(MemoryStore::new());
/// flags.set_flag("beta_feature", Flag::Bool(true)).await?;
/// assert!(flags.document().await.flags.contains_key("beta_feature"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct FeatureFlags<St> {
    inner: Arc<Source<St>>,
}

#[derive(Debug)]
struct Source<St> {
    store: St,
    key: String,
    cache_ttl: Duration,
    clock: Clock,
    snapshot: RwLock<Snapshot>,
    refreshing: AtomicBool,
}

#[derive(Clone, Debug, Default)]
struct Snapshot {
    /// `None` until a document (or its absence) was read successfully.
    doc: Option<Arc<FlagDocument>>,
    /// When the snapshot stops being fresh, ms since the epoch.
    fresh_until: u64,
}

/// Why a flag write failed.
#[derive(Debug, thiserror::Error)]
pub enum FlagWriteError {
    /// The new flags are invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidFlags),
    /// The stored document is invalid, so one flag cannot be merged into it
    /// (replace the whole document instead).
    #[error("the stored flag document is invalid ({0}); replace it whole")]
    StoredInvalid(InvalidFlags),
    /// The store failed, or other writers kept winning.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<St: KvStore> FeatureFlags<St> {
    /// Flags at `features:flags` in `store`, cached 600 s.
    pub fn new(store: St) -> Self {
        Self::with_settings(
            store,
            "features:flags".into(),
            Duration::from_secs(600),
            Clock::system(),
        )
    }

    fn with_settings(store: St, key: String, cache_ttl: Duration, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Source {
                store,
                key,
                cache_ttl,
                clock,
                snapshot: RwLock::new(Snapshot::default()),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut String, &mut Duration, &mut Clock)) -> Self {
        let Ok(source) = Arc::try_unwrap(self.inner) else {
            panic!("configure FeatureFlags before cloning it");
        };
        let (store, mut key, mut ttl, mut clock) =
            (source.store, source.key, source.cache_ttl, source.clock);
        f(&mut key, &mut ttl, &mut clock);
        Self::with_settings(store, key, ttl, clock)
    }

    /// Read the document at `key` instead of `features:flags`.
    #[must_use]
    pub fn key(self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.rebuild(|k, _, _| *k = key)
    }

    /// Read the store at most once per `ttl` (default 600 s).
    #[must_use]
    pub fn cache_ttl(self, ttl: Duration) -> Self {
        self.rebuild(|_, t, _| *t = ttl)
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(self, clock: Clock) -> Self {
        self.rebuild(|_, _, c| *c = clock)
    }

    /// The document if it can be used without I/O: `Some(Some(doc))` fresh,
    /// `Some(None)` known unusable and not due for a retry, `None` due for a read.
    pub(crate) fn cached(&self) -> Option<Option<Arc<FlagDocument>>> {
        let snapshot = self.inner.snapshot.read();
        let fresh = self.inner.clock.now_ms() < snapshot.fresh_until;
        // While another request refreshes, a stale document is good enough.
        let busy = self.inner.refreshing.load(Ordering::Acquire) && snapshot.doc.is_some();
        (fresh || busy).then(|| snapshot.doc.clone())
    }

    /// The current document, reading the store if the cached one is older
    /// than the cache TTL. Never fails: see the type's docs.
    pub async fn document(&self) -> Arc<FlagDocument> {
        let doc = match self.cached() {
            Some(doc) => doc,
            None => self.read().await,
        };
        doc.unwrap_or_default()
    }

    /// The document for a request: `None` when no document was ever loaded.
    pub(crate) async fn current(&self) -> Option<Arc<FlagDocument>> {
        match self.cached() {
            Some(doc) => doc,
            None => self.read().await,
        }
    }

    /// Reads the store now (after a write elsewhere, or to warm up).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let entry = self.inner.store.get(&self.inner.key).await?;
        self.install(entry.map(|e| e.value));
        Ok(())
    }

    /// Forgets the cached document: the next request reads the store.
    pub fn invalidate(&self) {
        self.inner.snapshot.write().fresh_until = 0;
    }

    async fn read(&self) -> Option<Arc<FlagDocument>> {
        self.inner.refreshing.store(true, Ordering::Release);
        let result = self.inner.store.get(&self.inner.key).await;
        self.inner.refreshing.store(false, Ordering::Release);
        match result {
            Ok(entry) => self.install(entry.map(|e| e.value)),
            Err(e) => {
                tracing::warn!(key = %self.inner.key, error = %e, "flag store unavailable: keeping the last good flags");
                self.retry_soon()
            }
        }
    }

    /// Parses and caches what the store holds; keeps the last good document
    /// if it is malformed.
    fn install(&self, value: Option<Bytes>) -> Option<Arc<FlagDocument>> {
        let parsed = match value {
            None => Ok(FlagDocument::default()),
            Some(bytes) => FlagDocument::from_json(&bytes),
        };
        match parsed {
            Ok(doc) => {
                let doc = Arc::new(doc);
                let fresh_until =
                    self.inner.clock.now_ms() + duration_ms_ceil(self.inner.cache_ttl);
                *self.inner.snapshot.write() = Snapshot {
                    doc: Some(doc.clone()),
                    fresh_until,
                };
                Some(doc)
            }
            Err(e) => {
                tracing::error!(key = %self.inner.key, error = %e, "malformed flag document: keeping the last good flags");
                self.retry_soon()
            }
        }
    }

    fn retry_soon(&self) -> Option<Arc<FlagDocument>> {
        let retry = duration_ms_ceil(RETRY_AFTER_ERROR.min(self.inner.cache_ttl));
        let mut snapshot = self.inner.snapshot.write();
        snapshot.fresh_until = self.inner.clock.now_ms() + retry;
        snapshot.doc.clone()
    }

    /// Sets one flag without losing concurrent changes to others
    /// (compare-and-swap on the stored document, retried on conflict).
    pub async fn set_flag(&self, name: &str, flag: Flag) -> Result<(), FlagWriteError> {
        flag.validate(name)?;
        self.update(|doc| {
            doc.flags.insert(name.to_owned(), flag.clone());
        })
        .await
    }

    /// Removes one flag (it then evaluates off, reason `Missing`).
    pub async fn remove_flag(&self, name: &str) -> Result<(), FlagWriteError> {
        self.update(|doc| {
            doc.flags.remove(name);
        })
        .await
    }

    /// Replaces the whole document.
    pub async fn replace(&self, doc: &FlagDocument) -> Result<(), FlagWriteError> {
        doc.validate()?;
        let bytes = serde_json::to_vec(doc).map_err(InvalidFlags::from)?;
        self.inner
            .store
            .put(&self.inner.key, bytes.into(), PutOptions::new())
            .await?;
        self.invalidate();
        Ok(())
    }

    /// Replaces the whole document from JSON, validated first.
    pub async fn replace_json(&self, json: &[u8]) -> Result<(), FlagWriteError> {
        self.replace(&FlagDocument::from_json(json)?).await
    }

    async fn update(&self, change: impl Fn(&mut FlagDocument)) -> Result<(), FlagWriteError> {
        let store = &self.inner.store;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let entry = store.get(&self.inner.key).await?;
            let (mut doc, expected) = match &entry {
                Some(e) => (
                    FlagDocument::from_json(&e.value).map_err(FlagWriteError::StoredInvalid)?,
                    Some(e.version),
                ),
                None => (FlagDocument::default(), None),
            };
            change(&mut doc);
            let bytes = serde_json::to_vec(&doc).map_err(InvalidFlags::from)?;
            let outcome = store
                .compare_and_swap(&self.inner.key, expected, bytes.into(), PutOptions::new())
                .await?;
            if let CasOutcome::Swapped(_) = outcome {
                self.invalidate();
                return Ok(());
            }
        }
        Err(StoreError::InvalidArgument(format!(
            "flag document {:?} changed concurrently {MAX_WRITE_ATTEMPTS} times in a row",
            self.inner.key
        ))
        .into())
    }
}
