use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode};
use parking_lot::{Mutex, MutexGuard};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::id::SessionId;
use super::record::{Change, Record};
use super::settings::{Outcome, Settings, Stored};
use crate::body::ResponseBody;
use crate::metrics::{self, count};
use crate::privacy::mark_private;
use crate::store::StoreError;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed (unreachable, timed out, …).
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    /// A value could not be converted to or from JSON.
    #[error("session value {key:?}: {source}")]
    Value {
        /// The session key.
        key: String,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// The session of the current request, in request extensions.
///
/// Cheap to clone; clones share one state. Nothing touches the store until a
/// method needs the record, and nothing is written unless something changed
/// (or the session is due for renewal). Changes are saved when the response
/// leaves the layer.
///
/// ```no_run
/// # async fn handler(session: tower_kv::session::Session) -> Result<(), tower_kv::session::SessionError> {
/// let visits: u64 = session.get("visits").await?.unwrap_or(0);
/// session.insert("visits", visits + 1).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: Arc<Settings>,
    pub(crate) state: Mutex<State>,
}

/// What a request has seen and done to its session.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    /// The id the client presented (well-formed, not yet checked against the store).
    pub(crate) presented: Option<SessionId>,
    /// Whether the store was read.
    pub(crate) loaded: bool,
    /// The stored record and its version, when the presented id is live.
    pub(crate) stored: Option<Stored>,
    /// The stored record with this request's changes, once it made one.
    pub(crate) view: Option<Record>,
    pub(crate) changes: Vec<Change>,
    pub(crate) cycle: bool,
    /// The presented session ends when the request is done; changes made
    /// after it ended go to a new session.
    pub(crate) destroy: bool,
    pub(crate) renew: bool,
}

impl State {
    /// Whether saving writes to the store (or ends the session).
    pub(crate) fn writes(&self) -> bool {
        match (&self.presented, &self.stored) {
            _ if self.destroy => true,
            (Some(_), Some(_)) => !self.changes.is_empty() || self.cycle || self.renew,
            _ => !self.changes.is_empty(),
        }
    }

    /// The record as this request sees it: the changed copy, else the
    /// stored record unless it was destroyed.
    fn record(&self) -> Option<&Record> {
        match (&self.view, &self.stored) {
            (Some(view), _) => Some(view),
            (None, Some((stored, _))) if !self.destroy => Some(stored),
            _ => None,
        }
    }
}

impl Session {
    /// Saves what the request did to its session and tells the client:
    /// the response carries a new id, or the order to forget the old one,
    /// and is marked private (it depends on the session), or it becomes
    /// the configured error status when a change could not be saved.
    pub(crate) async fn finish<B>(
        mut self,
        res: Response<ResponseBody<B>>,
        on_store_error: StatusCode,
    ) -> Response<ResponseBody<B>> {
        // The handler usually drops its handles with the request: then the
        // state is this handle's alone, no lock to take.
        if let Some(Inner { settings, state }) = Arc::get_mut(&mut self.inner) {
            return finish(settings, state.get_mut(), res, on_store_error).await;
        }
        // Another handle lives on (in a task the handler spawned): save a
        // copy, then keep what saving did. The lock is never held across
        // the store's await.
        let mut state = self.inner.state.lock().clone();
        let res = finish(&self.inner.settings, &mut state, res, on_store_error).await;
        *self.inner.state.lock() = state;
        res
    }

    /// [`finish`](Self::finish) without waiting, when the request wrote
    /// nothing to its session (unused, or only read) and nobody else holds
    /// it: whether `res` is finished (else it is untouched, for `finish`).
    pub(crate) fn finish_now<B>(&mut self, res: &mut Response<ResponseBody<B>>) -> bool {
        if let Some(Inner { settings, state }) = Arc::get_mut(&mut self.inner) {
            return finish_now(settings, state.get_mut(), res);
        }
        let mut state = self.inner.state.lock();
        finish_now(&self.inner.settings, &mut state, res)
    }

    /// Whether the request read or changed its session so far (a response
    /// made since then may depend on it).
    pub(crate) fn was_used(&self) -> bool {
        self.inner.state.lock().loaded
    }

    /// Whether the layer that made this session puts its user in requests.
    pub(crate) fn exposes_user(&self) -> bool {
        self.inner.settings.expose_user
    }

    pub(crate) fn new(settings: Arc<Settings>, presented: Option<SessionId>) -> Self {
        let state = State {
            presented,
            ..State::default()
        };
        Self {
            inner: Arc::new(Inner {
                settings,
                state: Mutex::new(state),
            }),
        }
    }

    /// The state, its record loaded. The lock is never held across the
    /// store's await: handles loading at once each read, the first to
    /// finish settles the state.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let settings = &self.inner.settings;
        let presented = {
            let mut state = self.inner.state.lock();
            match &state.presented {
                _ if state.loaded => return Ok(state),
                Some(id) => match settings.load_now(id) {
                    // The usual case: the store answers at once.
                    Some(loaded) => {
                        settle(settings, &mut state, Some(loaded))?;
                        return Ok(state);
                    }
                    None => id.clone(),
                },
                None => {
                    settle(settings, &mut state, None)?;
                    return Ok(state);
                }
            }
        };
        let loaded = settings.load(&presented).await;
        let mut state = self.inner.state.lock();
        if !state.loaded {
            settle(settings, &mut state, Some(loaded))?;
        }
        Ok(state)
    }

    /// The signed-in user, when the session is at hand or loads without
    /// waiting (`None`: ask [`user_id`](Self::user_id)).
    pub(crate) fn user_id_now(&self) -> Option<Result<Option<String>, SessionError>> {
        let mut state = self.inner.state.try_lock()?;
        if !state.loaded {
            let loaded = match &state.presented {
                Some(id) => Some(self.inner.settings.load_now(id)?),
                None => None,
            };
            if let Err(e) = settle(&self.inner.settings, &mut state, loaded) {
                return Some(Err(e));
            }
        }
        Some(Ok(state.record().and_then(|r| r.user.clone())))
    }

    async fn change(&self, change: Change) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        if state.view.is_none() {
            // Copy the stored record only when this request changes it.
            let base = state.record().cloned();
            let clock = &self.inner.settings.clock;
            state.view = Some(base.unwrap_or_else(|| Record::new(clock.recent_ms())));
        }
        state.view.as_mut().expect("set above").apply(&change);
        state.changes.push(change);
        Ok(())
    }

    /// The value at `key`, or `None`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded().await?;
        let Some(value) = state.record().and_then(|r| r.data.get(key)) else {
            return Ok(None);
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|source| SessionError::Value {
                key: key.to_owned(),
                source,
            })
    }

    /// Sets `key` to `value` (creating the session if there is none).
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|source| SessionError::Value {
            key: key.to_owned(),
            source,
        })?;
        self.change(Change::Set(key.to_owned(), value)).await
    }

    /// Removes `key`.
    pub async fn remove(&self, key: &str) -> Result<(), SessionError> {
        if self.loaded().await?.record().is_none() {
            return Ok(());
        }
        self.change(Change::Remove(key.to_owned())).await
    }

    /// Removes every value (the session and its user stay).
    pub async fn clear(&self) -> Result<(), SessionError> {
        if self.loaded().await?.record().is_none() {
            return Ok(());
        }
        self.change(Change::Clear).await
    }

    /// The signed-in user, if any.
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        Ok(self.loaded().await?.record().and_then(|r| r.user.clone()))
    }

    /// Signs `user` in: records the user and gives the session a new id
    /// (the old one stops working), against session fixation.
    pub async fn login(&self, user: impl Into<String>) -> Result<(), SessionError> {
        self.change(Change::User(Some(user.into()))).await?;
        self.cycle_id().await
    }

    /// Gives the session a new id; the old id stops working.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        state.cycle = true;
        Ok(())
    }

    /// Logs out: deletes the session and tells the client to forget its id.
    /// A change made after it in the same request starts a new session
    /// (under a new id, without the old values or user).
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut state = self.loaded().await?;
        state.destroy = true;
        state.changes.clear();
        state.view = None;
        Ok(())
    }

    /// Logs the user out on every device: ends all their sessions, this one
    /// included. Returns how many sessions ended.
    pub async fn logout_everywhere(&self) -> Result<usize, SessionError> {
        let ended = match self.user_id().await? {
            Some(user) => self.inner.settings.revoke_user(&user).await?,
            None => 0,
        };
        self.destroy().await?;
        Ok(ended)
    }

    /// When the session was created, if it exists.
    pub async fn created_at(&self) -> Result<Option<SystemTime>, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .record()
            .map(|r| UNIX_EPOCH + Duration::from_millis(r.created)))
    }

    /// Whether the request has a live session (or created one).
    pub async fn exists(&self) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.record().is_some())
    }
}

/// [`Session::finish`] on the session's state.
async fn finish<B>(
    settings: &Settings,
    state: &mut State,
    mut res: Response<ResponseBody<B>>,
    on_store_error: StatusCode,
) -> Response<ResponseBody<B>> {
    if !state.loaded {
        return res;
    }
    let outcome = match settings.save(state).await {
        Ok(outcome) => outcome,
        Err(e) => {
            count!(metrics::SESSION_EVENTS, 1, "event" => "store_error");
            tracing::error!(error = %e, "session could not be saved");
            let mut res = Response::new(ResponseBody::empty());
            *res.status_mut() = on_store_error;
            return res;
        }
    };
    tell(settings, &mut res, &outcome);
    res
}

/// [`Session::finish_now`] on the session's state.
fn finish_now<B>(
    settings: &Settings,
    state: &mut State,
    res: &mut Response<ResponseBody<B>>,
) -> bool {
    if state.loaded && state.writes() {
        return false;
    }
    if state.loaded {
        tell(settings, res, &Outcome::default());
    }
    true
}

/// Tells the client what saving did, and marks the response private.
fn tell<B>(settings: &Settings, res: &mut Response<ResponseBody<B>>, outcome: &Outcome) {
    let headers = res.headers_mut();
    if let Some(id) = &outcome.issue {
        settings.transport.issue(headers, id);
    } else if outcome.revoke {
        settings.transport.revoke(headers);
    }
    let no_store = outcome.issue.is_some() || outcome.revoke;
    mark_private(headers, Some(settings.transport.request_field()), no_store);
}

/// Records in `state` what loading its session found (`None`: no id was
/// presented): the stored record, and whether it is due for renewal.
fn settle(
    settings: &Settings,
    state: &mut State,
    loaded: Option<Result<Option<Stored>, StoreError>>,
) -> Result<(), SessionError> {
    state.stored = match loaded {
        Some(result) => {
            count!(metrics::SESSION_EVENTS, 1, "event" => "load");
            result.inspect_err(|_| {
                count!(metrics::SESSION_EVENTS, 1, "event" => "store_error");
            })?
        }
        None => None,
    };
    let found = if state.stored.is_some() {
        "found"
    } else {
        "none"
    };
    let span = tracing::debug_span!("session", record = found);
    span.in_scope(|| tracing::debug!("session loaded"));
    if let (None, Some(id)) = (&state.stored, &state.presented) {
        tracing::info!(session = %id, "unknown or expired session id: starting a fresh session");
    }
    if let Some((record, _)) = &state.stored {
        // Renewal is due after a share of the idle timeout (minutes):
        // the coarse clock is precise enough.
        let now = settings.clock.recent_ms();
        state.renew = now.saturating_sub(record.seen) >= settings.renew_after_ms();
    }
    state.loaded = true;
    Ok(())
}
