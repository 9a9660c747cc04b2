//! Rate limiting: exact, distributed, per route, with standard headers.
//!
//! [`RateLimitLayer`] counts requests per [`Identity`](crate::identity::Identity)
//! in the shared [`KvStore`](crate::store::KvStore) and answers
//! `429 Too Many Requests` itself (the inner service is not called) when a
//! request is over quota. Every decision is one atomic store operation — one
//! round trip on Redis — even when a route has several quotas: they are
//! checked and consumed together, all or nothing. Redis decides on its own
//! clock, so instances with skewed clocks agree.
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Method, Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_kv::identity::Identity;
//! use tower_kv::ratelimit::{Limit, Quota, RateLimitLayer};
//! use tower_kv::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Infallible> {
//! let layer = RateLimitLayer::new(MemoryStore::new(), Identity::PeerIp)
//!     // Every route not listed below: 1,000 per minute.
//!     .default_limit(Quota::per_minute(1000))
//!     // 10/s and 1,000/h together; a search costs 5.
//!     .route(Method::GET, "/search", Limit::new(Quota::per_second(10)).and(Quota::per_hour(1000)).cost(5))
//!     .route(Method::POST, "/login", Quota::per_minute(2))
//!     .exempt("/health");
//! let app = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
//!
//! let login = || {
//!     let mut req = Request::post("/login").body(()).unwrap();
//!     // axum's `ConnectInfo<SocketAddr>` works too; with plain hyper, insert the peer.
//!     req.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 7], 5000)));
//!     req
//! };
//! for _ in 0..2 {
//!     let res = app.clone().oneshot(login()).await?;
//!     assert_eq!(res.status(), StatusCode::OK);
//!     assert!(res.headers().contains_key("ratelimit"));
//! }
//! let res = app.oneshot(login()).await?;
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(res.headers().contains_key("retry-after"));
//! # Ok(())
//! # }
//! ```
//!
//! Wrap a service with `tower::ServiceBuilder::new().layer(layer)`, or put it
//! on one axum route with `route_layer` (give each such layer its own
//! [`key_prefix`](RateLimitLayer::key_prefix)).
//!
//! # Responses
//!
//! Limited responses carry the IETF draft-10 fields, e.g.
//! `RateLimit-Policy: "minute";q=100;w=60` and `RateLimit: "minute";r=42;t=17`;
//! a 429 also carries `Retry-After` in whole seconds, rounded up and never 0.
//! The legacy `X-RateLimit-*` trio is optional.
//!
//! # Failure modes
//!
//! - No identity (no peer address, no API key header, …): [`MissingIdentity`],
//!   400 by default — never an accidental shared bucket.
//! - Store unavailable: [`OnStoreError`], per layer or per route — a local
//!   in-process limiter by default, or allow (marked with
//!   [`RateLimitBypassed`]), or 503 with `Retry-After`.
//! - Client IPs behind proxies come only from [`TrustedProxies`](crate::identity::TrustedProxies):
//!   a spoofed `X-Forwarded-For` from anyone else changes nothing.
//!
//! # In production
//!
//! - [Shadow mode](RateLimitLayer::shadow) (layer or [route](Limit::shadow)):
//!   decide and charge, never refuse; would-be refusals carry
//!   [`ShadowLimited`] and count as `shadow_limited`.
//! - [`Tiers`]: a route's limit chosen per request (the user's plan), each
//!   tier in buckets of its own.
//! - [`AccessList`]s: networks and users never limited
//!   ([`allow`](RateLimitLayer::allow)) or answered 403
//!   ([`deny`](RateLimitLayer::deny)), per layer or route.
//! - Refusals are remembered in process until the store's wait is over
//!   ([`known_limited_capacity`](RateLimitLayer::known_limited_capacity)):
//!   over-limit floods cost no round trips.
//! - Every decision is counted (`tower_kv_ratelimit_decisions_total`, see
//!   [`crate::metrics`]) and traced (a `ratelimit` span at debug level).

mod access;
mod headers;
mod known;
mod layer;
mod limit;
mod outcome;
mod quota;
mod service;
mod tiers;

pub use crate::future::ResponseFuture;
pub use access::AccessList;
pub use headers::{RATELIMIT, RATELIMIT_POLICY};
pub use layer::RateLimitLayer;
pub use limit::{Limit, MissingIdentity, OnStoreError, RateLimitBypassed, ShadowLimited};
pub use quota::{Algorithm, Quota};
pub use service::RateLimitService;
pub use tiers::{RouteLimit, Tiers};
