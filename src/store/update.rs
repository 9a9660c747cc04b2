//! Loops that several layers run over the store, with their bookkeeping
//! written once: retrying a compare-and-swap update, and paging through
//! every key under a prefix.

use super::{DynStore, KeyInfo, ListOptions, StoreError};

/// How many times a read-change-swap update is tried before it reports
/// [`StoreError::Contention`].
const MAX_CAS_ATTEMPTS: usize = 16;

/// The attempts of one read-change-swap update:
/// `loop { attempts.next()?; /* read, change, swap; return on success */ }`.
pub(crate) struct CasAttempts<'a> {
    key: &'a str,
    made: usize,
}

impl<'a> CasAttempts<'a> {
    pub(crate) fn new(key: &'a str) -> Self {
        Self { key, made: 0 }
    }

    /// Starts one more attempt, or gives up with [`StoreError::Contention`].
    pub(crate) fn next(&mut self) -> Result<(), StoreError> {
        if self.made == MAX_CAS_ATTEMPTS {
            return Err(StoreError::Contention {
                key: self.key.to_owned(),
                attempts: self.made,
            });
        }
        self.made += 1;
        Ok(())
    }
}

/// Every key under a prefix, a page at a time, in byte order:
/// `while let Some(keys) = pages.next().await? { … }`.
pub(crate) struct KeyPages<'a> {
    store: &'a dyn DynStore,
    prefix: &'a str,
    cursor: Option<String>,
    done: bool,
}

impl<'a> KeyPages<'a> {
    pub(crate) fn new(store: &'a dyn DynStore, prefix: &'a str) -> Self {
        Self {
            store,
            prefix,
            cursor: None,
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<KeyInfo>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let options = ListOptions::prefix(self.prefix).cursor(self.cursor.take());
        let page = self.store.list(options).await?;
        self.cursor = page.cursor;
        self.done = self.cursor.is_none();
        Ok(Some(page.keys))
    }
}
