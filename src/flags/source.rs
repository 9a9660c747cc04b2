use std::sync::Arc;
use std::time::Duration;

use super::document::{Flag, FlagDocument, InvalidFlags};
use crate::store::update::CasAttempts;
use crate::store::{CachedDocument, CasOutcome, KvStore, PutOptions, StoreError};
use crate::Clock;

/// The flag document, read from the store at most once per `cache_ttl` per
/// process (default 600 s) and kept parsed in memory — and read again on the
/// next request when another instance changes it, if the store announces
/// changes ([`KvStore::watch`]: both backends do).
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
    cache: Arc<CachedDocument<St, FlagDocument>>,
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
    /// The store failed before writing, or other writers kept winning:
    /// nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store became unavailable during the write: it may or may not
    /// have been applied. This process reads the document again on its
    /// next request; check, then retry.
    #[error("flag write outcome unknown: {0}")]
    OutcomeUnknown(StoreError),
}

impl<St: KvStore> FeatureFlags<St> {
    /// A write failed: when the store may have applied it, the outcome is
    /// unknown and the local copy is dropped, so the next request reads
    /// what the store holds.
    fn write_failed(&self, error: StoreError) -> FlagWriteError {
        if !error.is_unavailable() {
            return FlagWriteError::Store(error);
        }
        self.invalidate();
        FlagWriteError::OutcomeUnknown(error)
    }
}

fn parse(bytes: Option<&[u8]>) -> Result<FlagDocument, String> {
    bytes.map_or(Ok(FlagDocument::default()), |b| {
        FlagDocument::from_json(b).map_err(|e| e.to_string())
    })
}

impl<St: KvStore> FeatureFlags<St> {
    /// Flags at `features:flags` in `store`, cached 600 s.
    pub fn new(store: St) -> Self {
        Self::with(
            store,
            "features:flags".into(),
            Duration::from_secs(600),
            Clock::system(),
        )
    }

    fn with(store: St, key: String, ttl: Duration, clock: Clock) -> Self {
        Self {
            cache: Arc::new(CachedDocument::new(store, key, ttl, clock, parse)),
        }
    }

    /// The same flags with other settings: a new document cache (clones
    /// made before keep theirs).
    fn rebuild(self, key: Option<String>, ttl: Option<Duration>, clock: Option<Clock>) -> Self {
        let (old_key, old_ttl, old_clock) = self.cache.settings();
        let key = key.unwrap_or_else(|| old_key.to_owned());
        let (ttl, clock) = (
            ttl.unwrap_or(old_ttl),
            clock.unwrap_or_else(|| old_clock.clone()),
        );
        Self::with(self.cache.store().clone(), key, ttl, clock)
    }

    /// Read the document at `key` instead of `features:flags`.
    #[must_use]
    pub fn key(self, key: impl Into<String>) -> Self {
        self.rebuild(Some(key.into()), None, None)
    }

    /// Read the store at most once per `ttl` (default 600 s).
    #[must_use]
    pub fn cache_ttl(self, ttl: Duration) -> Self {
        self.rebuild(None, Some(ttl), None)
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(self, clock: Clock) -> Self {
        self.rebuild(None, None, Some(clock))
    }

    pub(crate) fn cached(&self) -> Option<Option<Arc<FlagDocument>>> {
        self.cache.cached()
    }

    pub(crate) async fn current(&self) -> Option<Arc<FlagDocument>> {
        self.cache.current().await
    }

    /// The current document, reading the store if the cached one is older
    /// than the cache TTL. Never fails: see the type's docs.
    pub async fn document(&self) -> Arc<FlagDocument> {
        self.current().await.unwrap_or_default()
    }

    /// Reads the store now (after a write elsewhere, or to warm up).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        self.cache.refresh().await
    }

    /// Forgets the cached document: the next request reads the store.
    pub fn invalidate(&self) {
        self.cache.invalidate();
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
        let bytes = doc.to_json()?;
        let store = self.cache.store();
        store
            .put(self.cache.key(), bytes.into(), PutOptions::new())
            .await
            .map_err(|e| self.write_failed(e))?;
        self.invalidate();
        Ok(())
    }

    /// Replaces the whole document from JSON, validated first.
    pub async fn replace_json(&self, json: &[u8]) -> Result<(), FlagWriteError> {
        self.replace(&FlagDocument::from_json(json)?).await
    }

    async fn update(&self, change: impl Fn(&mut FlagDocument)) -> Result<(), FlagWriteError> {
        let (store, key) = (self.cache.store(), self.cache.key());
        let mut attempts = CasAttempts::new(key);
        loop {
            attempts.next()?;
            let entry = store.get(key).await?;
            let (mut doc, expected) = match &entry {
                Some(e) => (
                    FlagDocument::from_json(&e.value).map_err(FlagWriteError::StoredInvalid)?,
                    Some(e.version),
                ),
                None => (FlagDocument::default(), None),
            };
            change(&mut doc);
            let bytes = doc.to_json()?;
            let outcome = store
                .compare_and_swap(key, expected, bytes.into(), PutOptions::new())
                .await
                .map_err(|e| self.write_failed(e))?;
            if let CasOutcome::Swapped(_) = outcome {
                self.invalidate();
                return Ok(());
            }
        }
    }
}
