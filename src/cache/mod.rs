//! Response caching: an RFC 9111 shared cache as Tower middleware, on the
//! shared store.
//!
//! [`CacheLayer`] stores responses in a [`KvStore`](crate::store::KvStore),
//! so every instance of a fleet shares one cache. It follows the rules of a
//! *shared* cache, so one user's response never reaches another:
//! `no-store`, `private`, `Authorization`, `Set-Cookie`, `Vary: *` and 5xx
//! are never stored; `s-maxage` > `max-age` > `Expires`; heuristic freshness
//! and the default TTL (the seed's 300 s, per route with
//! [`CacheLayer::route_ttl`], per response with [`CacheTtl`]) only for
//! heuristically cacheable statuses.
//!
//! ```
//! use std::time::Duration;
//! use tower_kv::cache::CacheLayer;
//! use tower_kv::store::MemoryStore;
//!
//! let cache = CacheLayer::new(MemoryStore::new())
//!     .route_ttl("/api/users", Duration::from_secs(300))
//!     .strip_request_header(http::HeaderName::from_static("x-forwarded-host"));
//! let purger = cache.purger(); // purge_url, purge_prefix, purge_tag (Surrogate-Key)
//! # let _ = (cache, purger);
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
//! [`ReadThrough`] is the seed's `getCachedData(key, fetcher, ttl)` for
//! handlers, fetching a cold key once. The RFC 9111 rules are public too:
//! [`storable`], [`reuse`], [`current_age`], [`CacheControl`], [`CacheStatus`].

mod directives;
mod entry;
mod freshness;
mod inflight;
mod key;
mod layer;
mod read_through;
mod respond;
mod service;
mod status;
mod storage;

pub use crate::future::ResponseFuture;
pub use directives::CacheControl;
pub use freshness::{
    current_age, reuse, storable, NotStorable, Reuse, Storable, StoragePolicy,
    HEURISTICALLY_CACHEABLE,
};
pub use layer::{CacheLayer, CachePurger};
pub use read_through::ReadThrough;
pub use service::{CacheService, CacheTtl, CACHE_STATUS, SURROGATE_KEY};
pub use status::{CacheStatus, Forward};
