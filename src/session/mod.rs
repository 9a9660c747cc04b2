//! Sessions: lazy, secure, concurrent-safe, on the shared store.
//!
//! [`SessionLayer`] puts a [`Session`] in each request's extensions. A
//! session is one coalesced record (`session:{id}`: user, created, last seen,
//! values). Nothing touches the store until a handler uses the session, and
//! nothing is written unless it changed or is due for renewal; a request
//! without a cookie that creates nothing gets no cookie.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_kv::session::{Session, SessionLayer};
//! use tower_kv::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Infallible> {
//! let layer = SessionLayer::new(MemoryStore::new())
//!     .idle_timeout(Duration::from_secs(30 * 60))
//!     .absolute_timeout(Duration::from_secs(8 * 3600));
//! // With axum, take `session: Session` as a handler argument instead.
//! let app = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
//!     let session = req.extensions().get::<Session>().expect("the layer is outside").clone();
//!     session.login("user-42").await.expect("store up"); // new id (anti-fixation) + user
//!     Ok::<_, Infallible>(Response::new(()))
//! }));
//!
//! let res = app.oneshot(Request::post("/login").body(()).unwrap()).await?;
//! let cookie = res.headers()["set-cookie"].to_str().unwrap();
//! assert!(cookie.starts_with("id=") && cookie.contains("HttpOnly") && cookie.contains("Secure"));
//! assert_eq!(res.headers()["cache-control"], "private, no-store");
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//!
//! - Ids: 192 bits from a CSPRNG, created with insert-if-absent. An id the
//!   server did not issue, or one that expired, is never adopted: the client
//!   gets a fresh session. Ids are never logged (a digest is).
//! - Cookie `id`: `HttpOnly; Secure; SameSite=Lax; Path=/`; `__Host-` names
//!   enforced; optional signing.
//! - Every response to a request whose session was read or changed is
//!   marked `Cache-Control: private` (merged with the handler's directives,
//!   replacing `public` and `s-maxage`) and `Vary: Cookie` (or the
//!   transport's header), so no shared cache serves it to someone else;
//!   responses that set or clear the id are also `no-store`.
//! - Idle **and** absolute timeouts, both checked on load and enforced by
//!   the store's TTL.
//! - [`Session::login`] and [`Session::cycle_id`] give a new id and end the
//!   old; [`Session::destroy`] deletes; [`Session::logout_everywhere`] and
//!   [`SessionManager::revoke_user`] end every session of a user (through
//!   `session:user:{digest}:{id}` index keys and `list`).
//!
//! # Concurrency
//!
//! A request records its changes (set, remove, clear, user) and replays them
//! onto the latest stored record with a versioned compare-and-swap, retrying
//! on conflict: two concurrent requests of one session that change different
//! keys both persist, and a session deleted meanwhile (logout elsewhere) is
//! never resurrected.
//!
//! # Failures
//!
//! Malformed, oversized, duplicated or badly signed cookies and corrupt
//! records are treated as "no session" (logged). Session methods return
//! [`SessionError`] when the store is down (a 503 with the `axum`
//! feature); a change that cannot be saved turns the response into a 503
//! (configurable) rather than pretending it was kept.

#[cfg(feature = "axum")]
mod extract;
mod handle;
mod id;
mod layer;
mod record;
mod service;
mod settings;
mod transport;

pub use crate::future::ResponseFuture;
pub use cookie::{Key, SameSite};
pub use handle::{Session, SessionError};
pub use id::SessionId;
pub use layer::SessionLayer;
pub use service::SessionService;
pub use settings::SessionManager;
pub use transport::{CookieConfig, Transport};
