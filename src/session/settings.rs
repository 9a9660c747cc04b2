use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::id::SessionId;
use super::record::{Change, Record};
use super::transport::Transport;
use crate::clock::duration_ms_ceil;
use crate::identity::digest;
use crate::store::{CasOutcome, DynStore, ListOptions, PutOptions, StoreError, Version};
use crate::Clock;

/// How many times a save retries after losing a compare-and-swap race.
const MAX_SAVE_ATTEMPTS: usize = 16;

/// Everything a session needs at run time, shared by the layer and every
/// `Session` handle (the store behind a trait object, so handles are not generic).
pub(crate) struct Settings {
    pub(crate) store: Arc<dyn DynStore>,
    pub(crate) clock: Clock,
    pub(crate) key_prefix: String,
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    /// Renew (rewrite `seen` and the TTL) once this share of `idle` has passed.
    pub(crate) renew_fraction: f64,
    pub(crate) transport: Transport,
    /// Load the session of every request that presents an id, and put its
    /// user in the request extensions as a `UserId`.
    pub(crate) expose_user: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("key_prefix", &self.key_prefix)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("renew_fraction", &self.renew_fraction)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What the response must tell the client after a save.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// A new id to send.
    pub(crate) issue: Option<SessionId>,
    /// The client should forget its id.
    pub(crate) revoke: bool,
}

impl Settings {
    fn record_key(&self, id: &SessionId) -> String {
        format!("{}{}", self.key_prefix, id.expose())
    }

    fn user_prefix(&self, user: &str) -> String {
        format!("{}user:{}:", self.key_prefix, digest(user.as_bytes()))
    }

    pub(crate) fn renew_after_ms(&self) -> u64 {
        (duration_ms_ceil(self.idle) as f64 * self.renew_fraction) as u64
    }

    fn remaining_ms(&self, record: &Record, now: u64) -> Option<u64> {
        record.remaining_ms(
            now,
            duration_ms_ceil(self.idle),
            duration_ms_ceil(self.absolute),
        )
    }

    /// The live record of `id`; `None` when absent, expired or corrupt.
    pub(crate) async fn load(
        &self,
        id: &SessionId,
    ) -> Result<Option<(Record, Version)>, StoreError> {
        let key = self.record_key(id);
        let Some(entry) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let record: Record = match serde_json::from_slice(&entry.value) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "corrupt session record: treated as no session");
                return Ok(None);
            }
        };
        if self.remaining_ms(&record, self.clock.now_ms()).is_none() {
            self.forget(id, &record).await;
            return Ok(None);
        }
        Ok(Some((record, entry.version)))
    }

    /// Deletes a session and its user-index entry, best effort.
    async fn forget(&self, id: &SessionId, record: &Record) {
        let _ = self.store.delete(&self.record_key(id)).await;
        if let Some(user) = &record.user {
            let _ = self
                .store
                .delete(&format!("{}{}", self.user_prefix(user), id.expose()))
                .await;
        }
    }

    async fn index(&self, id: &SessionId, record: &Record, ttl_ms: u64) -> Result<(), StoreError> {
        if let Some(user) = &record.user {
            let key = format!("{}{}", self.user_prefix(user), id.expose());
            let ttl = PutOptions::new().ttl(Duration::from_millis(ttl_ms));
            self.store.put(&key, Bytes::new(), ttl).await?;
        }
        Ok(())
    }

    /// Writes a brand-new session under a fresh id (retrying on the
    /// vanishingly unlikely collision).
    async fn create(&self, record: &Record, ttl_ms: u64) -> Result<SessionId, StoreError> {
        let value = Bytes::from(serde_json::to_vec(record).expect("records serialize"));
        loop {
            let id = SessionId::generate();
            let options = PutOptions::new().ttl(Duration::from_millis(ttl_ms));
            if self
                .store
                .insert_if_absent(&self.record_key(&id), value.clone(), options)
                .await?
                .is_some()
            {
                self.index(&id, record, ttl_ms).await?;
                return Ok(id);
            }
            tracing::warn!("session id collision: generating another");
        }
    }

    /// Persists what a request did to its session.
    pub(crate) async fn save(
        &self,
        presented: Option<&SessionId>,
        stored: Option<&(Record, Version)>,
        changes: &[Change],
        cycle: bool,
        destroy: bool,
        renew: bool,
    ) -> Result<Outcome, StoreError> {
        let revoke = Outcome {
            issue: None,
            revoke: true,
        };
        if destroy {
            if let (Some(id), Some((record, _))) = (presented, stored) {
                self.forget(id, record).await;
            }
            return Ok(if presented.is_some() {
                revoke
            } else {
                Outcome::default()
            });
        }
        let now = self.clock.now_ms();
        let Some((id, (base, version))) = presented.zip(stored) else {
            if changes.is_empty() {
                return Ok(Outcome::default());
            }
            let mut record = Record::new(now);
            changes.iter().for_each(|c| record.apply(c));
            let ttl = self.remaining_ms(&record, now).unwrap_or(1);
            let id = self.create(&record, ttl).await?;
            return Ok(Outcome {
                issue: Some(id),
                revoke: false,
            });
        };
        if changes.is_empty() && !cycle && !renew {
            return Ok(Outcome::default());
        }
        let (mut base, mut version) = (base.clone(), *version);
        for _ in 0..MAX_SAVE_ATTEMPTS {
            let mut record = base.clone();
            changes.iter().for_each(|c| record.apply(c));
            record.seen = now;
            let Some(ttl) = self.remaining_ms(&record, now) else {
                self.forget(id, &base).await;
                return Ok(revoke);
            };
            if cycle {
                let new_id = self.create(&record, ttl).await?;
                self.forget(id, &base).await;
                return Ok(Outcome {
                    issue: Some(new_id),
                    revoke: false,
                });
            }
            let value = Bytes::from(serde_json::to_vec(&record).expect("records serialize"));
            let options = PutOptions::new().ttl(Duration::from_millis(ttl));
            let key = self.record_key(id);
            match self
                .store
                .compare_and_swap(&key, Some(version), value, options)
                .await?
            {
                CasOutcome::Swapped(_) => {
                    if base.user != record.user {
                        if let Some(old) = &base.user {
                            let _ = self
                                .store
                                .delete(&format!("{}{}", self.user_prefix(old), id.expose()))
                                .await;
                        }
                    }
                    self.index(id, &record, ttl).await?;
                    return Ok(Outcome::default());
                }
                CasOutcome::Conflict => match self.load(id).await? {
                    Some((fresh, fresh_version)) => (base, version) = (fresh, fresh_version),
                    None => {
                        tracing::info!(session = %id, "session ended meanwhile: changes dropped, not resurrected");
                        return Ok(revoke);
                    }
                },
            }
        }
        Err(StoreError::InvalidArgument(format!(
            "session {id} changed concurrently {MAX_SAVE_ATTEMPTS} times in a row"
        )))
    }

    /// Every live session id of `user`.
    pub(crate) async fn sessions_of(&self, user: &str) -> Result<Vec<SessionId>, StoreError> {
        let prefix = self.user_prefix(user);
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list(ListOptions::prefix(prefix.clone()).cursor(cursor))
                .await?;
            ids.extend(
                page.keys
                    .iter()
                    .filter_map(|k| SessionId::parse(&k.name[prefix.len()..])),
            );
            cursor = page.cursor;
            if cursor.is_none() {
                return Ok(ids);
            }
        }
    }

    /// Ends every session of `user`; returns how many there were.
    pub(crate) async fn revoke_user(&self, user: &str) -> Result<usize, StoreError> {
        let ids = self.sessions_of(user).await?;
        let prefix = self.user_prefix(user);
        for id in &ids {
            self.store.delete(&self.record_key(id)).await?;
            self.store
                .delete(&format!("{prefix}{}", id.expose()))
                .await?;
        }
        Ok(ids.len())
    }
}

/// Session helpers that need no request: "log this user out everywhere".
#[derive(Clone, Debug)]
pub struct SessionManager {
    pub(crate) settings: Arc<Settings>,
}

impl SessionManager {
    /// Ends every session of `user` (on every device); returns how many ended.
    pub async fn revoke_user(&self, user: &str) -> Result<usize, StoreError> {
        self.settings.revoke_user(user).await
    }

    /// How many live sessions `user` has.
    pub async fn count_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        Ok(self.settings.sessions_of(user).await?.len())
    }
}
