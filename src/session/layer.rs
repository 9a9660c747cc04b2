use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::settings::{SessionManager, Settings};
use super::transport::{CookieConfig, Transport};
use super::SessionService;
use crate::store::KvStore;
use crate::Clock;

/// Puts a [`Session`](super::Session) in every request's extensions and
/// saves it when the response leaves. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct SessionLayer {
    settings: Arc<Settings>,
    on_store_error: http::StatusCode,
}

impl SessionLayer {
    /// Sessions stored in `store`, with the defaults: cookie `id`
    /// (`HttpOnly; Secure; SameSite=Lax; Path=/`), idle timeout 24 h (the
    /// seed's), absolute timeout 7 days, renewal after a quarter of the idle
    /// timeout, keys under `session:`.
    pub fn new<St: KvStore>(store: St) -> Self {
        Self {
            settings: Arc::new(Settings {
                store: Arc::new(store),
                clock: Clock::system(),
                key_prefix: "session:".into(),
                idle: Duration::from_secs(24 * 3600),
                absolute: Duration::from_secs(7 * 24 * 3600),
                renew_fraction: 0.25,
                transport: Transport::default(),
                expose_user: false,
            }),
            on_store_error: http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::get_mut(&mut self.settings).expect("configure the layer before cloning it")
    }

    /// End a session this long after its last use (default 24 h).
    #[must_use]
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.settings().idle = idle;
        self
    }

    /// End a session this long after its creation, however active (default 7 days).
    #[must_use]
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.settings().absolute = absolute;
        self
    }

    /// Renew an unchanged session (rewrite its last-seen time and TTL) once
    /// this share of the idle timeout has passed since the last renewal
    /// (default 0.25). Requests in between do no store writes; the idle
    /// timeout is enforced to within this share.
    #[must_use]
    pub fn renew_after(mut self, share_of_idle: f64) -> Self {
        self.settings().renew_fraction = share_of_idle.clamp(0.0, 1.0);
        self
    }

    /// Carry the id in a cookie configured so.
    ///
    /// # Panics
    ///
    /// If the cookie breaks its name prefix's rules (`__Host-`, `__Secure-`).
    #[must_use]
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        cookie.check_prefix();
        self.settings().transport = Transport::Cookie(cookie);
        self
    }

    /// Carry the id another way (a header, a bearer token).
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        if let Transport::Cookie(c) = &transport {
            c.check_prefix();
        }
        self.settings().transport = transport;
        self
    }

    /// Load the session of every request that presents an id (one store
    /// read) and put its signed-in user in the request extensions as a
    /// [`UserId`](crate::identity::UserId), so layers inside this one can
    /// key on the user: `Identity::User` in rate limiting, flags and A/B
    /// tests. Off by default (sessions stay lazy).
    #[must_use]
    pub fn expose_user(mut self) -> Self {
        self.settings().expose_user = true;
        self
    }

    /// Namespace the store keys (default `session:`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings().key_prefix = prefix.into();
        self
    }

    /// Read time from this clock (tests).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings().clock = clock;
        self
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
    pub fn manager(&self) -> SessionManager {
        SessionManager {
            settings: self.settings.clone(),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::from_parts(inner, self.settings.clone(), self.on_store_error)
    }
}
