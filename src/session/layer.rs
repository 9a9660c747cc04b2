use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::settings::{SessionManager, Settings};
use super::transport::{CookieConfig, Transport};
use super::SessionService;
use crate::decoded::Decoded;
use crate::live::Live;
use crate::store::KvStore;
use crate::Clock;

/// How many decoded session records a layer keeps.
const DECODED_RECORDS: usize = 10_000;

/// Puts a [`Session`](super::Session) in every request's extensions and
/// saves it when the response leaves. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct SessionLayer {
    settings: Live<Settings>,
    on_store_error: http::StatusCode,
}

impl SessionLayer {
    /// Sessions stored in `store`, with the defaults: cookie `id`
    /// (`HttpOnly; Secure; SameSite=Lax; Path=/`), idle timeout 24 h, absolute timeout 7 days, renewal after a quarter of the idle
    /// timeout, keys under `session:`.
    pub fn new<St: KvStore>(store: St) -> Self {
        Self {
            settings: Live::new(Settings {
                store: Arc::new(store),
                clock: Clock::system(),
                key_prefix: "session:".into(),
                idle: Duration::from_secs(24 * 3600),
                absolute: Duration::from_secs(7 * 24 * 3600),
                renew_fraction: 0.25,
                transport: Transport::default(),
                expose_user: false,
                decoded: Arc::new(Decoded::new(DECODED_RECORDS)),
            }),
            on_store_error: http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn set(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        self.settings.update(change);
        self
    }

    /// End a session this long after its last use (default 24 h).
    #[must_use]
    pub fn idle_timeout(self, idle: Duration) -> Self {
        self.set(|s| s.idle = idle)
    }

    /// End a session this long after its creation, however active (default 7 days).
    #[must_use]
    pub fn absolute_timeout(self, absolute: Duration) -> Self {
        self.set(|s| s.absolute = absolute)
    }

    /// Renew an unchanged session (rewrite its last-seen time and TTL) once
    /// this share of the idle timeout has passed since the last renewal
    /// (default 0.25). Requests in between do no store writes; the idle
    /// timeout is enforced to within this share.
    #[must_use]
    pub fn renew_after(self, share_of_idle: f64) -> Self {
        self.set(|s| s.renew_fraction = share_of_idle.clamp(0.0, 1.0))
    }

    /// Carry the id in a cookie configured so. A `__Host-` or `__Secure-`
    /// name's rules win over conflicting settings (logged).
    #[must_use]
    pub fn cookie(self, cookie: CookieConfig) -> Self {
        self.transport(Transport::Cookie(cookie))
    }

    /// Carry the id another way (a header, a bearer token).
    #[must_use]
    pub fn transport(self, transport: Transport) -> Self {
        let transport = match transport {
            Transport::Cookie(c) => Transport::Cookie(c.with_prefix_rules()),
            other => other,
        };
        self.set(|s| s.transport = transport)
    }

    /// Load the session of every request that presents an id (one store
    /// read) and put its signed-in user in the request extensions as a
    /// [`UserId`](crate::identity::UserId), so layers inside this one can
    /// key on the user: `Identity::User` in rate limiting, flags and A/B
    /// tests. Off by default (sessions stay lazy).
    #[must_use]
    pub fn expose_user(self) -> Self {
        self.set(|s| s.expose_user = true)
    }

    /// Namespace the store keys (default `session:`).
    #[must_use]
    pub fn key_prefix(self, prefix: impl Into<String>) -> Self {
        self.set(|s| s.key_prefix = prefix.into())
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(self, clock: Clock) -> Self {
        self.set(|s| s.clock = clock)
    }

    /// The status answered when a changed session cannot be saved because
    /// the store is down (default 503), instead of the handler's response:
    /// a client is never told a change succeeded that was lost.
    #[must_use]
    pub fn on_store_error(mut self, status: http::StatusCode) -> Self {
        self.on_store_error = status;
        self
    }

    /// A handle for work outside requests ("log this user out everywhere").
    /// Settings changed on this layer afterwards reach it too.
    pub fn manager(&self) -> SessionManager {
        SessionManager {
            settings: self.settings.handle(),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::from_parts(inner, self.settings.get(), self.on_store_error)
    }
}
