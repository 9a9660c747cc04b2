use http::header::HeaderValue;
use http::HeaderMap;

use super::headers;
use crate::future::{AddHeaders, LayerFuture};

/// The response future of [`RateLimit`](super::RateLimit): no allocation when
/// the store decides without I/O (the in-memory store).
pub type ResponseFuture<F, B, E> = LayerFuture<F, B, E, Annotation>;

/// The rate-limit headers a response gets, computed before the inner service
/// runs (opaque).
#[derive(Debug)]
pub struct Annotation {
    pub(crate) policy: HeaderValue,
    pub(crate) current: HeaderValue,
    pub(crate) legacy: Option<Box<[HeaderValue; 3]>>,
}

impl AddHeaders for Annotation {
    fn add_to(self, h: &mut HeaderMap) {
        h.insert(headers::RATELIMIT_POLICY, self.policy);
        h.insert(headers::RATELIMIT, self.current);
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            h.insert(headers::X_LIMIT, limit);
            h.insert(headers::X_REMAINING, remaining);
            h.insert(headers::X_RESET, reset);
        }
    }
}
