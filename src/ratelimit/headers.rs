//! The IETF `RateLimit` / `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers-10),
//! serialized as RFC 9651 structured fields, plus `Retry-After` and the
//! optional legacy `X-RateLimit-*` trio.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use sfv::{key_ref, string_ref, ListSerializer};

use super::Quota;
use crate::future::AddHeaders;
use crate::integer;
use crate::store::RateState;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub(crate) const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub(crate) const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub(crate) const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The rate-limit headers a response gets, computed before the inner
/// service runs.
#[derive(Debug)]
pub struct Annotation {
    pub(crate) policy: HeaderValue,
    pub(crate) current: HeaderValue,
    pub(crate) legacy: Option<Box<[HeaderValue; 3]>>,
}

impl AddHeaders for Annotation {
    fn add_to(self, h: &mut HeaderMap) {
        h.reserve(if self.legacy.is_some() { 5 } else { 2 });
        h.insert(RATELIMIT_POLICY, self.policy);
        h.insert(RATELIMIT, self.current);
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            h.insert(X_LIMIT, limit);
            h.insert(X_REMAINING, remaining);
            h.insert(X_RESET, reset);
        }
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn sf_int(n: u64) -> sfv::Integer {
    sfv::integer(
        i64::try_from(n)
            .unwrap_or(i64::MAX)
            .min(integer::MAX as i64),
    )
}

fn to_header(list: Option<String>) -> HeaderValue {
    HeaderValue::try_from(list.unwrap_or_default())
        .expect("structured fields are valid header values")
}

/// `"minute";q=100;w=60, "hour";q=1000;w=3600`: fixed per route, built once.
pub(crate) fn policy(quotas: &[Quota]) -> HeaderValue {
    let mut list = ListSerializer::new();
    for q in quotas {
        let _ = list
            .bare_item(string_ref(q.name()))
            .parameter(key_ref("q"), sf_int(u64::from(q.limit())))
            .parameter(key_ref("w"), sf_int(ceil_secs(q.period())));
    }
    to_header(list.finish())
}

/// Each quota's serialized name and first parameter key (`"minute";r=`),
/// built once per route so a request only writes numbers.
pub(crate) fn current_prefixes(quotas: &[Quota]) -> Box<[Box<str>]> {
    quotas
        .iter()
        .map(|q| {
            let mut list = ListSerializer::new();
            let _ = list.bare_item(string_ref(q.name()));
            format!("{};r=", list.finish().unwrap_or_default()).into()
        })
        .collect()
}

/// `"minute";r=42;t=17, …`: the state of every quota after this request,
/// from the prefixes [`current_prefixes`] built (the same RFC 9651 list sfv
/// would write, without serializing the names again on every request).
pub(crate) fn current(prefixes: &[Box<str>], states: &[RateState]) -> HeaderValue {
    let numbers = |s: &RateState| (u64::from(s.remaining), ceil_secs(s.reset_after));
    // The exact length, so the buffer becomes the header's bytes as it is
    // (spare capacity would cost `Bytes` a second allocation).
    let len = prefixes
        .iter()
        .zip(states)
        .map(|(prefix, s)| {
            let (remaining, reset) = numbers(s);
            prefix.len() + integer::len(remaining) + b";t=".len() + integer::len(reset)
        })
        .sum::<usize>()
        + b", ".len() * prefixes.len().saturating_sub(1);
    let mut out = Vec::with_capacity(len);
    for (i, (prefix, s)) in prefixes.iter().zip(states).enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let (remaining, reset) = numbers(s);
        out.extend_from_slice(prefix.as_bytes());
        integer::push(&mut out, remaining);
        out.extend_from_slice(b";t=");
        integer::push(&mut out, reset);
    }
    debug_assert_eq!(out.len(), len);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .expect("structured fields are valid header values")
}

/// `Retry-After` in whole seconds, rounded up and never 0.
pub(crate) fn retry_after(headers: &mut HeaderMap, after: Duration) {
    headers.insert(RETRY_AFTER, integer::header_value(ceil_secs(after).max(1)));
}

/// The legacy trio (limit, remaining, reset) for the quota closest to running out.
pub(crate) fn legacy(quotas: &[Quota], states: &[RateState]) -> Option<[HeaderValue; 3]> {
    let (q, s) = quotas.iter().zip(states).min_by_key(|(_, s)| s.remaining)?;
    Some([
        integer::header_value(q.limit().into()),
        integer::header_value(s.remaining.into()),
        integer::header_value(ceil_secs(s.reset_after)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(remaining: u32, reset_ms: u64) -> RateState {
        RateState {
            allowed: true,
            remaining,
            retry_after: Duration::ZERO,
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn fields_are_structured_lists() {
        let quotas = [
            Quota::per_minute(100),
            Quota::per_hour(1000).named("hourly"),
        ];
        assert_eq!(
            policy(&quotas),
            r#""minute";q=100;w=60, "hourly";q=1000;w=3600"#
        );
        let states = [state(42, 16_200), state(999, 3_599_999)];
        assert_eq!(
            current(&current_prefixes(&quotas), &states),
            r#""minute";r=42;t=17, "hourly";r=999;t=3600"#
        );
        let zero = [state(0, 0)];
        assert_eq!(
            current(&current_prefixes(&quotas[..1]), &zero),
            r#""minute";r=0;t=0"#
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let mut h = HeaderMap::new();
        retry_after(&mut h, Duration::from_millis(1));
        assert_eq!(h[RETRY_AFTER], "1");
        retry_after(&mut h, Duration::ZERO);
        assert_eq!(h[RETRY_AFTER], "1");
        retry_after(&mut h, Duration::from_millis(2001));
        assert_eq!(h[RETRY_AFTER], "3");
    }
}
