//! The `Cache-Status` response field (RFC 9211), serialized as a structured
//! field: `tower-kv; hit; ttl=42` or `tower-kv; fwd=uri-miss; fwd-status=200; stored`.

use http::header::HeaderValue;
use sfv::{key_ref, token_ref, ItemSerializer};

use crate::integer;
use crate::metrics::{self, Counter};

/// Why a request went to the origin (RFC 9211 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Forward {
    /// Nothing stored for the URI.
    UriMiss,
    /// Something stored for the URI, but not for this request's `Vary` headers.
    VaryMiss,
    /// A stored response was stale and had to be revalidated.
    Stale,
    /// The cache was configured (or failed) to not serve from storage.
    Bypass,
    /// The request's method is not served from the cache.
    Method,
    /// The request's directives (`no-cache`, …) required going forward.
    Request,
}

impl Forward {
    fn token(self) -> &'static str {
        match self {
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Stale => "stale",
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::Request => "request",
        }
    }
}

/// How metrics and traces name a response's outcome.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// Served fresh.
    Hit,
    /// Served stale.
    Stale,
    /// A 304 refreshed it.
    Revalidated,
    /// Waited for another request's fetch.
    Collapsed,
    /// Not served from the cache: method, request directives, credentials.
    Bypass,
    /// Fetched and stored.
    Miss,
    /// Fetched, not storable.
    Uncacheable,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Self::Hit,
        Self::Stale,
        Self::Revalidated,
        Self::Collapsed,
        Self::Bypass,
        Self::Miss,
        Self::Uncacheable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
            Self::Miss => "miss",
            Self::Uncacheable => "uncacheable",
        }
    }
}

/// One cache's request counters, one per outcome, built once.
#[derive(Debug)]
pub(crate) struct OutcomeCounters([Counter; Outcome::ALL.len()]);

impl OutcomeCounters {
    pub(crate) fn new(cache: &str) -> Self {
        Self(Outcome::ALL.map(|outcome| {
            let labels = [("cache", cache), ("outcome", outcome.as_str())];
            Counter::new(metrics::CACHE_REQUESTS, &labels)
        }))
    }
}

/// One cache's entry in `Cache-Status`: a hit or a forward, never both.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum CacheStatus {
    /// Served from storage; `ttl` is its remaining freshness in seconds
    /// (negative when served stale).
    Hit {
        /// Remaining freshness, seconds.
        ttl: i64,
        /// Why a stale response was served, when that is worth saying.
        detail: Option<&'static str>,
    },
    /// Went to the origin.
    Forward {
        /// Why.
        reason: Forward,
        /// The origin's status code, when a response came back.
        status: Option<u16>,
        /// The response was stored.
        stored: bool,
        /// The request waited for another request's identical fetch.
        collapsed: bool,
    },
}

impl CacheStatus {
    /// Went to the origin for `reason`, which answered `status`.
    pub(crate) fn forwarded(reason: Forward, status: u16, stored: bool) -> Self {
        CacheStatus::Forward {
            reason,
            status: Some(status),
            stored,
            collapsed: false,
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            CacheStatus::Hit { ttl, .. } if *ttl < 0 => Outcome::Stale,
            CacheStatus::Hit { .. } => Outcome::Hit,
            CacheStatus::Forward {
                collapsed: true, ..
            } => Outcome::Collapsed,
            CacheStatus::Forward {
                reason: Forward::Stale,
                status: Some(304),
                ..
            } => Outcome::Revalidated,
            CacheStatus::Forward {
                reason: Forward::Bypass | Forward::Method | Forward::Request,
                ..
            } => Outcome::Bypass,
            CacheStatus::Forward { stored: true, .. } => Outcome::Miss,
            CacheStatus::Forward { .. } => Outcome::Uncacheable,
        }
    }

    /// Counts (on `counters`, cache `cache`'s) and traces the outcome of a
    /// response about to be sent.
    pub(crate) fn record(&self, cache: &str, counters: &OutcomeCounters) {
        let outcome = self.outcome();
        counters.0[outcome as usize].increment(1);
        let span = tracing::debug_span!("cache", outcome = outcome.as_str(), cache);
        span.in_scope(|| tracing::debug!("cache decision"));
    }

    /// The field value, naming this cache `cache` and disclosing `key` only
    /// when given.
    pub(crate) fn header_value(&self, cache: &str, key: Option<&str>) -> HeaderValue {
        let token = sfv::TokenRef::from_str(cache).unwrap_or(token_ref("tower-kv"));
        if let (CacheStatus::Hit { ttl, detail: None }, None) = (self, key) {
            return plain_hit(token.as_str(), *ttl);
        }
        let mut out = String::with_capacity(64);
        let item = ItemSerializer::with_buffer(&mut out);
        let mut params = item.bare_item(token);
        match self {
            CacheStatus::Hit { ttl, detail } => {
                params = params
                    .parameter(key_ref("hit"), true)
                    .parameter(key_ref("ttl"), sfv::integer(*ttl));
                if let Some(detail) = detail {
                    params = params.parameter(key_ref("detail"), token_ref(detail));
                }
            }
            CacheStatus::Forward {
                reason,
                status,
                stored,
                collapsed,
            } => {
                params = params.parameter(key_ref("fwd"), token_ref(reason.token()));
                if let Some(code) = status {
                    params =
                        params.parameter(key_ref("fwd-status"), sfv::integer(i64::from(*code)));
                }
                if *stored {
                    params = params.parameter(key_ref("stored"), true);
                }
                if *collapsed {
                    params = params.parameter(key_ref("collapsed"), true);
                }
            }
        }
        if let Some(key) = key.and_then(|k| sfv::StringRef::from_str(k).ok()) {
            params = params.parameter(key_ref("key"), key);
        }
        let _ = params.finish();
        HeaderValue::try_from(out).expect("structured fields are valid header values")
    }
}

/// `{cache};hit;ttl={ttl}`, the field of every plain hit, written without
/// the serializer (its output for this shape, byte for byte).
fn plain_hit(cache: &str, ttl: i64) -> HeaderValue {
    let ttl_abs = ttl.unsigned_abs();
    let sign = usize::from(ttl < 0);
    let mut out =
        Vec::with_capacity(cache.len() + b";hit;ttl=".len() + sign + integer::len(ttl_abs));
    out.extend_from_slice(cache.as_bytes());
    out.extend_from_slice(b";hit;ttl=");
    if ttl < 0 {
        out.push(b'-');
    }
    integer::push(&mut out, ttl_abs);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .expect("a token and an integer are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_indexes_its_own_counter() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, i, "{}", outcome.as_str());
        }
    }

    #[test]
    fn hits_and_forwards_follow_rfc_9211() {
        assert_eq!(
            CacheStatus::Hit {
                ttl: 42,
                detail: None
            }
            .header_value("tower-kv", None),
            "tower-kv;hit;ttl=42"
        );
        let fwd = CacheStatus::Forward {
            reason: Forward::UriMiss,
            status: Some(200),
            stored: true,
            collapsed: false,
        };
        assert_eq!(
            fwd.header_value("tower-kv", None),
            "tower-kv;fwd=uri-miss;fwd-status=200;stored"
        );
        let collapsed = CacheStatus::Forward {
            reason: Forward::UriMiss,
            status: Some(200),
            stored: false,
            collapsed: true,
        };
        assert_eq!(
            collapsed.header_value("tower-kv", Some("GET https://a/b")),
            r#"tower-kv;fwd=uri-miss;fwd-status=200;collapsed;key="GET https://a/b""#
        );
        assert_eq!(
            CacheStatus::Hit {
                ttl: -3,
                detail: None
            }
            .header_value("bad name!", None),
            "tower-kv;hit;ttl=-3"
        );
    }

    #[test]
    fn plain_hits_match_the_serializer() {
        let cap = integer::MAX as i64;
        for ttl in [
            0,
            1,
            -1,
            42,
            -3,
            86_400,
            cap,
            -cap,
            cap + 1,
            i64::MIN,
            i64::MAX,
        ] {
            let mut expected = String::new();
            let _ = ItemSerializer::with_buffer(&mut expected)
                .bare_item(token_ref("my-cache"))
                .parameter(key_ref("hit"), true)
                .parameter(key_ref("ttl"), sfv::integer(ttl.clamp(-cap, cap)))
                .finish();
            assert_eq!(plain_hit("my-cache", ttl), expected.as_str(), "{ttl}");
        }
    }
}
