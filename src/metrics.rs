//! What the layers count, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): install any recorder (e.g.
//! `metrics-exporter-prometheus`) and these series appear. Without the
//! feature every recording compiles to nothing.
//!
//! Label values come from bounded sets only: route patterns, configured quota,
//! flag and test names, fixed outcome words. Never a raw path, an identity
//! or anything else a client chooses.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `tower_kv_ratelimit_decisions_total` | counter | `route`, `quota`, `outcome` | rate-limit decisions: `allowed`, `limited`, `shadow_limited`, `allow_listed`, `deny_listed`, `bypassed`, `store_error` |
//! | `tower_kv_store_operation_seconds` | histogram | `operation`, `backend` | `RedisStore` operation latency: `get`, `write` (put, insert-if-absent, compare-and-swap), `delete`, `increment`, `rate_limit`, `list`; `backend` is `redis` or `redis_cluster` |
//! | `tower_kv_store_errors_total` | counter | `operation`, `backend` | `RedisStore` operations that failed |
//! | `tower_kv_cache_requests_total` | counter | `cache`, `outcome` | responses by outcome: `hit`, `stale` (served stale), `revalidated` (a 304 refreshed it), `collapsed` (waited for another request's fetch), `miss` (fetched and stored), `uncacheable` (fetched, not storable), `bypass` (not served from the cache: method, directives, credentials, route) |
//! | `tower_kv_cache_stored_total` | counter | `cache` | responses stored |
//! | `tower_kv_cache_stored_bytes_total` | counter | `cache` | body bytes of the responses stored |
//! | `tower_kv_session_events_total` | counter | `event` | `load`, `create`, `save`, `cas_retry`, `store_error` |
//! | `tower_kv_flag_evaluations_total` | counter | `flag`, `reason`, `value` | flag evaluations: `reason` `static`, `rollout`, `allow_list`, `deny_list`, `missing`, `error`; `value` `on` or `off`; a name the flag document does not define counts as `(undefined)` |
//! | `tower_kv_abtest_exposures_total` | counter | `test`, `variant` | first exposures: a new stored assignment, or a new visitor whose assignment is not stored |
//!
//! `cache` is the cache's [name](crate::cache::CacheLayer::name). `route` is the pattern as configured, prefixed with its method (`GET
//! /users/{id}`, `* /api/{*rest}`) or `default`; a tiered route adds its tier
//! (`GET /search [pro]`).

/// Rate-limit decisions (counter).
pub const RATELIMIT_DECISIONS: &str = "tower_kv_ratelimit_decisions_total";
/// `RedisStore` operation latency in seconds (histogram).
pub const STORE_OPERATION_SECONDS: &str = "tower_kv_store_operation_seconds";
/// `RedisStore` operations that failed (counter).
pub const STORE_ERRORS: &str = "tower_kv_store_errors_total";
/// Cache outcomes (counter).
pub const CACHE_REQUESTS: &str = "tower_kv_cache_requests_total";
/// Responses the cache stored (counter).
pub const CACHE_STORED: &str = "tower_kv_cache_stored_total";
/// Body bytes of the responses the cache stored (counter).
pub const CACHE_STORED_BYTES: &str = "tower_kv_cache_stored_bytes_total";
/// Session events (counter).
pub const SESSION_EVENTS: &str = "tower_kv_session_events_total";
/// Flag evaluations (counter).
pub const FLAG_EVALUATIONS: &str = "tower_kv_flag_evaluations_total";
/// New A/B assignments (counter).
pub const ABTEST_EXPOSURES: &str = "tower_kv_abtest_exposures_total";

/// A counter whose key (name and label values) is built once, so counting
/// allocates nothing: for hot paths with labels from configuration.
#[derive(Debug)]
pub(crate) struct Counter {
    #[cfg(feature = "metrics")]
    key: ::metrics::Key,
}

#[cfg(feature = "metrics")]
static METADATA: ::metrics::Metadata<'static> =
    ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

impl Counter {
    pub(crate) fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        #[cfg(feature = "metrics")]
        {
            let labels: Vec<::metrics::Label> = labels
                .iter()
                .map(|(k, v)| ::metrics::Label::new(*k, (*v).to_owned()))
                .collect();
            Self {
                key: ::metrics::Key::from_parts(name, labels),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (name, labels);
            Self {}
        }
    }

    /// Adds `n` in the installed recorder.
    pub(crate) fn increment(&self, n: u64) {
        #[cfg(feature = "metrics")]
        increment(&self.key, n);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }
}

/// Adds `n` to the counter at `key` in the installed recorder.
#[cfg(feature = "metrics")]
pub(crate) fn increment(key: &::metrics::Key, n: u64) {
    ::metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(n));
}

/// Adds `value` to counter `name` with `labels` (nothing without the
/// feature). Label values are `&'static str` (no allocation) or `String`;
/// with literal values the whole key is a `static`, built at compile time.
macro_rules! count {
    ($name:expr, $value:expr $(, $label:literal => $v:literal)+ $(,)?) => {{
        #[cfg(feature = "metrics")]
        {
            static LABELS: &[::metrics::Label] = &[$(::metrics::Label::from_static_parts($label, $v)),+];
            static KEY: ::metrics::Key = ::metrics::Key::from_static_parts($name, LABELS);
            $crate::metrics::increment(&KEY, $value);
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = ($name, $value);
        }
    }};
    ($name:expr, $value:expr $(, $label:literal => $v:expr)* $(,)?) => {{
        #[cfg(feature = "metrics")]
        ::metrics::counter!($name $(, $label => $v)*).increment($value);
        #[cfg(not(feature = "metrics"))]
        {
            let _ = ($name, $value $(, &$v)*);
        }
    }};
}

/// Records `seconds` in histogram `name` with `labels`.
#[cfg(all(feature = "redis", feature = "metrics"))]
macro_rules! observe {
    ($name:expr, $seconds:expr $(, $label:literal => $v:expr)* $(,)?) => {
        ::metrics::histogram!($name $(, $label => $v)*).record($seconds)
    };
}

pub(crate) use count;
#[cfg(all(feature = "redis", feature = "metrics"))]
pub(crate) use observe;
