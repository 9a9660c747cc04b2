use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::handle::State;
use super::id::SessionId;
use super::record::{Change, Record};
use super::transport::Transport;
use crate::clock::duration_ms_ceil;
use crate::decoded::Decoded;
use crate::identity::digest;
use crate::live::LiveHandle;
use crate::metrics::{self, count};
use crate::store::update::{CasAttempts, KeyPages};
use crate::store::{CasOutcome, DynStore, Entry, PutOptions, StoreError, Version};
use crate::Clock;

/// Everything a session needs at run time, shared by the layer and every
/// `Session` handle (the store behind a trait object, so handles are not generic).
#[derive(Clone)]
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
    /// Recently loaded or written records, decoded.
    pub(crate) decoded: Arc<Decoded<Record>>,
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

impl Outcome {
    fn issue(id: SessionId) -> Self {
        Self {
            issue: Some(id),
            revoke: false,
        }
    }

    fn revoke() -> Self {
        Self {
            issue: None,
            revoke: true,
        }
    }
}

/// A live stored record and its version.
pub(crate) type Stored = (Arc<Record>, Version);

/// What a session's stored entry holds.
enum Found {
    Live(Stored),
    /// Absent or corrupt.
    Nothing,
    /// Past its idle or absolute timeout: to be deleted.
    Expired(Arc<Record>),
}

impl Settings {
    fn record_key(&self, id: &SessionId) -> String {
        let id = id.expose();
        let mut key = String::with_capacity(self.key_prefix.len() + id.len());
        key.push_str(&self.key_prefix);
        key.push_str(id);
        key
    }

    fn user_prefix(&self, user: &str) -> String {
        // The digest is the hash tag: one user's index shares a cluster slot.
        format!("{}user:{{{}}}:", self.key_prefix, digest(user.as_bytes()))
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
    pub(crate) async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        let key = self.record_key(id);
        let read = match self.store.get_now(&key) {
            Some(read) => read,
            None => self.store.get(&key).await,
        };
        match self.found(id, &key, read?) {
            Found::Live(stored) => Ok(Some(stored)),
            Found::Nothing => Ok(None),
            Found::Expired(record) => {
                self.forget(id, &record).await;
                Ok(None)
            }
        }
    }

    /// [`load`](Self::load) without waiting, when the store answers at
    /// once and the record needs no clean-up (`None`: call `load`).
    pub(crate) fn load_now(&self, id: &SessionId) -> Option<Result<Option<Stored>, StoreError>> {
        let key = self.record_key(id);
        let read = match self.store.get_now(&key)? {
            Ok(read) => read,
            Err(e) => return Some(Err(e)),
        };
        match self.found(id, &key, read) {
            Found::Live(stored) => Some(Ok(Some(stored))),
            Found::Nothing => Some(Ok(None)),
            Found::Expired(_) => None,
        }
    }

    /// What the entry read at `key` holds for session `id`.
    fn found(&self, id: &SessionId, key: &str, entry: Option<Entry>) -> Found {
        let Some(entry) = entry else {
            return Found::Nothing;
        };
        let record = match self
            .decoded
            .decode(key, &entry.value, |b| serde_json::from_slice(b))
        {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "corrupt session record: treated as no session");
                return Found::Nothing;
            }
        };
        // Session times are read from the coarse clock: timeouts count in
        // minutes, and the store's TTL ends a record on time anyway.
        match self.remaining_ms(&record, self.clock.recent_ms()) {
            Some(_) => Found::Live((record, entry.version)),
            None => Found::Expired(record),
        }
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
        let value = encode(record);
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
                count!(metrics::SESSION_EVENTS, 1, "event" => "create");
                return Ok(id);
            }
            tracing::warn!("session id collision: generating another");
        }
    }

    /// Persists what a request did to its session (the request is done
    /// with it: its changed copy is taken, not cloned).
    pub(crate) async fn save(&self, state: &mut State) -> Result<Outcome, StoreError> {
        if !state.writes() {
            return Ok(Outcome::default());
        }
        if state.destroy {
            let ended = self.end(state).await;
            return match state.changes.is_empty() {
                true => Ok(ended),
                // Changed after logging out: a new session, never the old one.
                false => self.start(&state.changes).await,
            };
        }
        match (state.presented.clone(), state.stored.clone()) {
            (Some(id), Some(stored)) => self.update(&id, stored, state).await,
            _ => self.start(&state.changes).await,
        }
    }

    /// Deletes the presented session (logout) and tells the client to forget it.
    async fn end(&self, state: &State) -> Outcome {
        if let (Some(id), Some((record, _))) = (&state.presented, &state.stored) {
            self.forget(id, record).await;
        }
        match state.presented {
            Some(_) => Outcome::revoke(),
            None => Outcome::default(),
        }
    }

    /// A request without a live session made changes: a new session.
    async fn start(&self, changes: &[Change]) -> Result<Outcome, StoreError> {
        let now = self.clock.recent_ms();
        let mut record = Record::new(now);
        changes.iter().for_each(|c| record.apply(c));
        let ttl = self.remaining_ms(&record, now).unwrap_or(1);
        let id = self.create(&record, ttl).await?;
        Ok(Outcome::issue(id))
    }

    /// Replays the request's changes onto the latest stored record with a
    /// compare-and-swap (retried on conflict), moves it to a new id when
    /// asked to, or renews it.
    ///
    /// The first attempt writes the request's changed copy as is (taken,
    /// not cloned); the written record becomes the state's stored one.
    async fn update(
        &self,
        id: &SessionId,
        (mut base, mut version): Stored,
        state: &mut State,
    ) -> Result<Outcome, StoreError> {
        let now = self.clock.recent_ms();
        let key = self.record_key(id);
        let mut attempts = CasAttempts::new(&key);
        let mut changed = state.view.take();
        loop {
            attempts.next()?;
            let mut record = changed.take().unwrap_or_else(|| {
                let mut record = Record::clone(&base);
                state.changes.iter().for_each(|c| record.apply(c));
                record
            });
            record.seen = now;
            let Some(ttl) = self.remaining_ms(&record, now) else {
                self.forget(id, &base).await;
                return Ok(Outcome::revoke());
            };
            if state.cycle {
                let new_id = self.create(&record, ttl).await?;
                self.forget(id, &base).await;
                return Ok(Outcome::issue(new_id));
            }
            let options = PutOptions::new().ttl(Duration::from_millis(ttl));
            let bytes = encode(&record);
            let swapped = self
                .store
                .compare_and_swap(&key, Some(version), bytes.clone(), options)
                .await?;
            if let CasOutcome::Swapped(written) = swapped {
                self.reindex(id, &base, &record, ttl).await?;
                let record = Arc::new(record);
                self.decoded.remember(&key, bytes, record.clone());
                state.stored = Some((record, written));
                count!(metrics::SESSION_EVENTS, 1, "event" => "save");
                return Ok(Outcome::default());
            }
            count!(metrics::SESSION_EVENTS, 1, "event" => "cas_retry");
            let Some(fresh) = self.load(id).await? else {
                tracing::info!(session = %id, "session ended meanwhile: changes dropped, not resurrected");
                return Ok(Outcome::revoke());
            };
            (base, version) = fresh;
        }
    }

    /// Keeps the user index in step with a saved record.
    async fn reindex(
        &self,
        id: &SessionId,
        before: &Record,
        after: &Record,
        ttl: u64,
    ) -> Result<(), StoreError> {
        if let (Some(old), true) = (&before.user, before.user != after.user) {
            let _ = self
                .store
                .delete(&format!("{}{}", self.user_prefix(old), id.expose()))
                .await;
        }
        self.index(id, after, ttl).await
    }

    /// Every live session id of `user`.
    pub(crate) async fn sessions_of(&self, user: &str) -> Result<Vec<SessionId>, StoreError> {
        let prefix = self.user_prefix(user);
        let mut ids = Vec::new();
        let mut pages = KeyPages::new(&*self.store, &prefix);
        while let Some(keys) = pages.next().await? {
            ids.extend(
                keys.iter()
                    .filter_map(|k| SessionId::parse(&k.name[prefix.len()..])),
            );
        }
        Ok(ids)
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

fn encode(record: &Record) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("records serialize"))
}

/// Session helpers that need no request: "log this user out everywhere".
/// It follows the layer it came from: settings changed on that layer after
/// [`manager()`](super::SessionLayer::manager) reach it too.
#[derive(Clone, Debug)]
pub struct SessionManager {
    pub(crate) settings: LiveHandle<Settings>,
}

impl SessionManager {
    /// Ends every session of `user` (on every device); returns how many ended.
    pub async fn revoke_user(&self, user: &str) -> Result<usize, StoreError> {
        self.settings.get().revoke_user(user).await
    }

    /// How many live sessions `user` has.
    pub async fn count_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        Ok(self.settings.get().sessions_of(user).await?.len())
    }
}
