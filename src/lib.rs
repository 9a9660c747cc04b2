//! Tower middleware for response caching, sessions, rate limiting, feature
//! flags and A/B tests, all on one key-value backend trait.
//!
//! Every layer stores its state through [`store::KvStore`]: pick
//! [`store::MemoryStore`] for one process, or `RedisStore` (feature `redis`)
//! when many instances share state, and every layer follows.
//!
//! - [`ratelimit`]: exact, distributed rate limiting with a route table and
//!   the IETF `RateLimit` headers.
//! - [`session`]: lazy, secure sessions that survive concurrent requests.
//! - [`cache`]: an RFC 9111 shared response cache, and a read-through helper.
//! - [`flags`]: feature flags and route gates.
//! - [`abtest`]: sticky A/B assignment injected as request headers.
//! - [`bucket`]: the stable bucketing function flags and A/B tests share.
//! - [`identity`]: who a request is (peer, client behind trusted proxies,
//!   API key, user), shared by the layers.
//! - [`routes`]: per-route configuration by method and path pattern.
//! - [`body`], [`future`], [`either`]: the response body and futures the
//!   layers answer with.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod abtest;
mod body;
pub mod bucket;
pub mod cache;
mod clock;
pub mod flags;
mod future;
pub mod identity;
mod live;
mod privacy;
pub mod ratelimit;
mod routes;
mod service;
pub mod session;
pub mod store;

pub use body::ResponseBody;
pub use clock::Clock;
