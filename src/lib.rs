//! Tower middleware for response caching, sessions, rate limiting, feature
//! flags and A/B tests, all on one key-value backend trait.
//!
//! Every layer stores its state through [`store::KvStore`]: pick
//! [`store::MemoryStore`] for one process, or `RedisStore` (feature `redis`)
//! when many instances share state, and every layer follows.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
mod clock;
pub mod identity;
pub mod ratelimit;
pub mod routes;
pub mod session;
pub mod store;

pub use clock::Clock;
