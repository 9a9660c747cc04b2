//! Response caching: an RFC 9111 shared cache as Tower middleware, on the
//! shared store.
//!
//! [`CacheLayer`] stores responses in a [`KvStore`](crate::store::KvStore),
//! so every instance of a fleet shares one cache. It follows the rules of a
//! *shared* cache, so one user's response never reaches another:
//! `no-store`, `private`, `Set-Cookie` and `Vary: *` are never stored, nor
//! a 5xx without explicit freshness; `s-maxage` > `max-age` > `Expires`;
//! heuristic freshness and the default TTL (300 s, per route with
//! [`CacheLayer::route_ttl`], per response with [`CacheTtl`]) only for
//! heuristically cacheable statuses. `Age` (RFC 9111 §5.1): the first member
//! of a list counts, and an invalid value makes a response stale, never
//! fresher.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_kv::cache::CacheLayer;
//! use tower_kv::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Infallible> {
//! let cache = CacheLayer::new(MemoryStore::new())
//!     .route_ttl("/api/users", Duration::from_secs(60))
//!     .strip_request_header(http::HeaderName::from_static("x-forwarded-host"));
//! let purger = cache.purger(); // purge_url, purge_prefix, purge_tag (Surrogate-Key)
//! let app = ServiceBuilder::new()
//!     .layer(cache)
//!     .service(service_fn(|_: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("[\"ada\"]")))
//!     }));
//!
//! let get = || Request::get("http://example.com/api/users").body(String::new()).unwrap();
//! let first = app.clone().oneshot(get()).await?;
//! assert_eq!(first.headers()["cache-status"], "tower-kv;fwd=uri-miss;fwd-status=200;stored");
//! let second = app.clone().oneshot(get()).await?;
//! assert_eq!(second.headers()["cache-status"], "tower-kv;hit;ttl=60");
//!
//! // A request with credentials is neither served from nor stored in the cache.
//! let mut with_cookie = get();
//! with_cookie.headers_mut().insert("cookie", "id=42".parse().unwrap());
//! let res = app.oneshot(with_cookie).await?;
//! assert_eq!(res.headers()["cache-status"], "tower-kv;fwd=bypass");
//! # let _ = purger;
//! # Ok(())
//! # }
//! ```
//!
//! Served responses carry `Age` and `Cache-Status` (RFC 9211: `tower-kv;
//! hit; ttl=N` or `tower-kv; fwd=uri-miss; fwd-status=200; stored`). The
//! request directives `no-cache`, `no-store`, `max-age`, `max-stale`,
//! `min-fresh` and `only-if-cached` are honoured; conditional requests get a
//! 304 from a fresh entry; stale entries are revalidated with a conditional
//! request, served during `stale-while-revalidate` (refreshed once in the
//! background) and on origin errors within `stale-if-error`. Concurrent
//! misses of one URL make one origin call. Unsafe methods invalidate their
//! target and same-origin `Location`/`Content-Location`. Bodies over the
//! size limit stream through unbuffered. A store outage bypasses the cache.
//!
//! [`ReadThrough`] caches a handler's own values (`get_or_fetch(key, ttl,
//! fetcher)`), fetching a cold key once.
//!
//! # Credentials
//!
//! By default a request that carries `Cookie` or `Authorization` bypasses
//! the cache: nothing is served from storage for it and nothing it gets is
//! stored. [`CacheLayer::key_cookies`] lets requests with cookies in, keyed
//! on the cookies you name. Wherever the cache sits, a response whose
//! handler used the request's [`Session`](crate::session::Session) is never
//! stored.

mod directives;
mod entry;
mod freshness;
#[cfg(fuzzing)]
pub(crate) mod fuzz;
mod inflight;
mod key;
mod layer;
mod lease;
mod range;
mod read_through;
mod respond;
mod service;
mod status;
mod storage;

pub use crate::future::ResponseFuture;
use directives::CacheControl;
use freshness::{current_age, reuse, storable, NotStorable, Reuse, Storable, StoragePolicy};
pub use layer::{CacheLayer, CachePurger, SetCookieResponses};
pub use read_through::ReadThrough;
pub use service::{CacheService, CacheTtl, OriginUnreachable, CACHE_STATUS, SURROGATE_KEY};
use status::{CacheStatus, Forward};
