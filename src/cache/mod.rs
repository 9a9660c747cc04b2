//! The HTTP caching rules of a shared cache (RFC 9111, RFC 9211), as pure
//! functions: the foundation of the response-cache layer.
//!
//! - [`CacheControl`]: request and response directives, parsed leniently
//!   and conservatively.
//! - [`storable`]: whether a response may be stored (`no-store`, `private`,
//!   `Authorization`, `Set-Cookie`, `Vary: *`, status) and its freshness
//!   lifetime (`s-maxage` > `max-age` > `Expires`; heuristic or the default
//!   TTL only for heuristically cacheable statuses).
//! - [`current_age`] and [`reuse`]: whether a stored response may answer a
//!   request (`max-age`, `min-fresh`, `max-stale`, `no-cache`,
//!   `must-revalidate`, `stale-while-revalidate`).
//! - [`CacheStatus`]: the `Cache-Status` field.
//!
//! ```
//! use http::{HeaderMap, Method, StatusCode};
//! use tower_kv::cache::{storable, StoragePolicy};
//!
//! let mut response = HeaderMap::new();
//! response.insert("cache-control", "public, s-maxage=600, max-age=60".parse().unwrap());
//! let stored = storable(&Method::GET, &HeaderMap::new(), StatusCode::OK, &response, &StoragePolicy::default()).unwrap();
//! assert_eq!(stored.lifetime.as_secs(), 600); // a shared cache obeys s-maxage
//! ```

mod directives;
mod entry;
mod freshness;
mod inflight;
mod layer;
mod read_through;
mod service;
mod status;

pub use directives::CacheControl;
pub use freshness::{
    current_age, reuse, storable, NotStorable, Reuse, Storable, StoragePolicy,
    HEURISTICALLY_CACHEABLE,
};
pub use layer::{CacheLayer, CachePurger};
pub use read_through::ReadThrough;
pub use service::{CacheService, CacheTtl, ResponseFuture, CACHE_STATUS, SURROGATE_KEY};
pub use status::{CacheStatus, Forward};
