//! Tower middleware for response caching, sessions, rate limiting, feature
//! flags and A/B tests, all on one key-value backend trait.
//!
//! Every layer stores its state through [`KvStore`]: pick [`MemoryStore`]
//! for one process, or `RedisStore` (feature `redis`; a Redis Cluster and
//! TLS too) when many instances share state, and every layer follows.
//!
//! - [`ratelimit`]: exact, distributed rate limiting with a route table and
//!   the IETF `RateLimit` headers.
//! - [`session`]: lazy, secure sessions that survive concurrent requests.
//! - [`cache`]: an RFC 9111 shared response cache, and a read-through helper.
//! - [`flags`]: feature flags and route gates.
//! - [`abtest`]: sticky A/B assignment injected as request headers.
//! - [`identity`]: who a request is (peer, client behind trusted proxies,
//!   API key, user), shared by the layers.
//! - [`store`]: the backend trait, its two backends and a near cache.
//!
//! # The whole stack
//!
//! ```
//! use axum::extract::ConnectInfo;
//! use axum::http::{HeaderMap, Method, Request, StatusCode};
//! use axum::routing::{get, post};
//! use axum::Router;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_kv::{
//!     AbTestLayer, CacheLayer, FeatureFlags, FeatureFlagsLayer, Identity, MemoryStore, Quota,
//!     RateLimitLayer, Session, SessionLayer,
//! };
//!
//! /// Reads the session's user and the variant the A/B layer assigned.
//! async fn checkout(session: Session, headers: HeaderMap) -> String {
//!     let user = session.user_id().await.ok().flatten();
//!     let variant = headers["x-variant-checkout"].to_str().unwrap_or("control");
//!     format!("{} sees {variant}", user.as_deref().unwrap_or("anonymous"))
//! }
//!
//! async fn login(session: Session) -> StatusCode {
//!     match session.login("ada").await {
//!         Ok(()) => StatusCode::NO_CONTENT,
//!         Err(_) => StatusCode::SERVICE_UNAVAILABLE,
//!     }
//! }
//!
//! # #[cfg(feature = "axum")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let flags = FeatureFlags::new(store.clone());
//! let ab = AbTestLayer::new(store.clone(), Identity::User).test("checkout");
//! ab.set_config("checkout", br#"{"variants": ["control", "new"], "weights": [1, 1]}"#)
//!     .await?;
//!
//! let app = Router::new()
//!     // Per route: the cache inside the A/B layer, so each variant is cached apart.
//!     .route(
//!         "/checkout",
//!         get(checkout)
//!             .route_layer(CacheLayer::new(store.clone()))
//!             .route_layer(ab),
//!    )
//!     .route(
//!         "/beta",
//!         get(|| async { "beta" })
//!             .route_layer(FeatureFlagsLayer::new(flags.clone(), Identity::User).gate("beta")),
//!    )
//!     .route("/login", post(login))
//!     // Around everything, outermost first: the session (which exposes its
//!     // user), then the layers that key on that user.
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(SessionLayer::new(store.clone()).expose_user())
//!             .layer(
//!                 RateLimitLayer::new(store.clone(), Identity::User.or(Identity::PeerIp))
//!                     .default_limit(Quota::per_minute(600))
//!                     .route(Method::POST, "/login", Quota::per_minute(5)),
//!            )
//!             .layer(FeatureFlagsLayer::new(flags, Identity::User)),
//!    );
//!
//! // axum gives each request its peer address with
//! // `app.into_make_service_with_connect_info::<SocketAddr>()`; here by hand:
//! let request = |method: Method, path: &str| {
//!     let mut req = Request::builder().method(method).uri(path);
//!     req = req.extension(ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 1], 4000))));
//!     req.body(axum::body::Body::empty()).unwrap()
//! };
//! let res = app.clone().oneshot(request(Method::GET, "/checkout")).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert!(res.headers().contains_key("ratelimit"));
//! let res = app.clone().oneshot(request(Method::GET, "/beta")).await?;
//! assert_eq!(res.status(), StatusCode::NOT_FOUND, "flag `beta` is off");
//! let res = app.oneshot(request(Method::POST, "/login")).await?;
//! assert_eq!(res.headers()["cache-control"], "private, no-store");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! # Ordering rules
//!
//! Every layer is safe in any order and on any route — no order makes one
//! user's response reach another — but some orders lose features. A layer
//! that misses what it needs says so once, with a `tracing` warning naming
//! the fix.
//!
//! - **The session outermost of the identity users.** `Identity::User` (in
//!   rate limiting, flags and A/B tests) reads the user that
//!   [`SessionLayer::expose_user`] puts in the request, so the session layer
//!   must run first. A rate limit by address alone may sit outside it, to
//!   shield the session store.
//! - **Cache and A/B tests as route layers**, on the routes they serve.
//! - **The cache inside the A/B layer** when variants must be cached apart:
//!   the cache keys on the variants assigned to the request.
//! - **Credentials stay out of the cache.** Requests with `Cookie` or
//!   `Authorization` pass through the cache untouched unless you name the
//!   cookies responses depend on ([`CacheLayer::key_cookies`]); a response
//!   whose handler read the session is marked `private` by the session layer
//!   and never stored, wherever the cache sits.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod abtest;
mod body;
mod bucket;
pub mod cache;
mod clock;
mod cookies;
mod decoded;
#[cfg(feature = "axum")]
mod extract;
pub mod flags;
mod future;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
mod integer;
mod live;
pub mod metrics;
mod once;
mod privacy;
pub mod ratelimit;
mod routes;
mod service;
pub mod session;
pub mod store;

pub use abtest::{AbTestLayer, Variants};
pub use body::ResponseBody;
pub use cache::CacheLayer;
pub use clock::Clock;
pub use flags::{FeatureFlags, FeatureFlagsLayer, Flags};
pub use identity::{Identity, TrustedProxies, UserId};
pub use ratelimit::{Limit, Quota, RateLimitLayer};
pub use session::{Session, SessionLayer};
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use store::{KvStore, MemoryStore};
