use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::access::{Access, AccessLists};
use super::headers::{self, Annotation};
use super::layer::{Config, Prepared, Rule};
use super::limit::{MissingIdentity, OnStoreError, RateLimitBypassed, ShadowLimited};
use super::outcome::{record, Outcome};
use crate::body::ResponseBody;
use crate::future::{AddHeaders, ResponseFuture};
use crate::identity::IDENTITY_CAPACITY;
use crate::service::{inner_accessors, layer_service, take_ready};
use crate::store::{KvStore, RateDecision, RateRequest};

/// The rate-limiting service; see [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone, Debug)]
pub struct RateLimitService<S, St> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S, St> RateLimitService<S, St> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<St>>) -> Self {
        Self { inner, config }
    }

    inner_accessors!();
}

/// What the store said, after the store-failure policy.
enum Verdict {
    /// By the store, or (`by_store: false`) by the in-process fallback
    /// while the store is unavailable.
    Decided {
        decision: RateDecision,
        by_store: bool,
    },
    Bypass,
    Unavailable(Duration),
}

impl<St: KvStore> Config<St> {
    fn rule_for<B>(&self, req: &Request<B>) -> Option<&Rule> {
        match self.routes.at(req.method(), req.uri().path()) {
            Some(route) => route.as_ref(),
            None => self.default.as_ref(),
        }
    }

    async fn decide(&self, prepared: &Prepared, requests: &[RateRequest]) -> Verdict {
        let error = match self.store.rate_limit(requests).await {
            Ok(decision) => {
                return Verdict::Decided {
                    decision,
                    by_store: true,
                }
            }
            Err(e) => e,
        };
        let policy = prepared.limit.on_store_error.unwrap_or(self.on_store_error);
        tracing::warn!(error = %error, ?policy, "rate-limit store failed");
        match policy {
            OnStoreError::LocalFallback => match self.local.rate_limit(requests).await {
                Ok(decision) => Verdict::Decided {
                    decision,
                    by_store: false,
                },
                Err(_) => Verdict::Bypass,
            },
            OnStoreError::Allow => Verdict::Bypass,
            OnStoreError::Reject { retry_after } => Verdict::Unavailable(retry_after),
        }
    }

    fn respond<B>(&self, status: StatusCode, body: Bytes) -> Response<ResponseBody<B>> {
        let mut res = Response::new(ResponseBody::full(body));
        *res.status_mut() = status;
        res
    }

    fn too_many<B>(
        &self,
        prepared: &Prepared,
        decision: &RateDecision,
    ) -> Response<ResponseBody<B>> {
        let mut res = self.respond(StatusCode::TOO_MANY_REQUESTS, self.rejection.1.clone());
        res.headers_mut()
            .insert(CONTENT_TYPE, self.rejection.0.clone());
        self.annotation(prepared, decision)
            .add_to(res.headers_mut());
        headers::retry_after(res.headers_mut(), decision.retry_after());
        res
    }

    fn annotation(&self, prepared: &Prepared, decision: &RateDecision) -> Annotation {
        let quotas = &prepared.limit.quotas;
        Annotation {
            policy: prepared.policy.clone(),
            current: headers::current(&prepared.current_prefixes, &decision.states),
            legacy: self
                .legacy_headers
                .then(|| headers::legacy(quotas, &decision.states))
                .flatten()
                .map(Box::new),
        }
    }

    /// The rate-limit fields for a passing request; none in shadow mode,
    /// whose limits are not in force.
    fn fields(&self, prepared: &Prepared, decision: &RateDecision) -> Option<Annotation> {
        (!prepared.shadow).then(|| self.annotation(prepared, decision))
    }
}

/// Counts a decision and whether its request passes: allowed, or
/// refused in shadow mode (then marked [`ShadowLimited`]).
fn passes<B>(prepared: &Prepared, decision: &RateDecision, req: &mut Request<B>) -> bool {
    if decision.allowed {
        record(prepared, Outcome::Allowed, Some(decision));
        return true;
    }
    if prepared.shadow {
        record(prepared, Outcome::ShadowLimited, Some(decision));
        req.extensions_mut().insert(ShadowLimited {
            retry_after: decision.retry_after(),
        });
        return true;
    }
    record(prepared, Outcome::Limited, Some(decision));
    false
}

layer_service! {
    impl<S, St: KvStore> RateLimitService<S, St>
    { future: S::Future, headers: Annotation }
    fn call(&mut self, mut req) {
        let config = &self.config;
        let Some(rule) = config.rule_for(&req) else {
            return ResponseFuture::inner(self.inner.call(req), None);
        };
        let prepared = rule.select(&req);
        if let Some(check) = &config.user_check {
            check.check(&req);
        }
        match AccessLists::check(&config.identity, &req, [&config.access, &prepared.limit.access]) {
            Access::Limited => {}
            Access::Allowed => {
                record(prepared, Outcome::AllowListed, None);
                return ResponseFuture::inner(self.inner.call(req), None);
            }
            Access::Denied => {
                record(prepared, Outcome::DenyListed, None);
                let mut res = config.respond(StatusCode::FORBIDDEN, Bytes::from_static(b"Forbidden\n"));
                res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                return ResponseFuture::ready(res);
            }
        }
        // The first quota's key, the identity written straight into it.
        let mut key = prepared.key_draft(0, IDENTITY_CAPACITY);
        if !config.identity.push_grouped(&req, config.ipv6_prefix, key.buffer()) {
            match config.missing_identity {
                MissingIdentity::SharedBucket => key.buffer().push_str("anonymous"),
                MissingIdentity::Allow => return ResponseFuture::inner(self.inner.call(req), None),
                MissingIdentity::Reject(status) => {
                    tracing::debug!(identity = ?config.identity, "request has no rate-limit identity");
                    let body = Bytes::from_static(b"missing client identity\n");
                    return ResponseFuture::ready(config.respond(status, body));
                }
            }
        }
        let limit = &prepared.limit;
        let identity_len = key.identity().len();
        let first = prepared.request_from(0, key, limit.cost);
        let requests = match limit.quotas.len() {
            1 => Requests::One(first),
            _ => Requests::Many(prepared.requests(first, identity_len, limit.cost)),
        };
        if limit.count_when.is_none() {
            // Fast path: a store that decides without I/O needs no boxed future.
            if let Some(Ok(d)) = config.store.rate_limit_now(requests.as_slice()) {
                if !passes(prepared, &d, &mut req) {
                    return ResponseFuture::ready(config.too_many(prepared, &d));
                }
                let fields = config.fields(prepared, &d);
                return ResponseFuture::inner(self.inner.call(req), fields);
            }
        }
        let requests = requests.into_vec();
        let inner = take_ready(&mut self.inner);
        ResponseFuture::waiting(wait_then_call(
            inner,
            config.clone(),
            prepared.clone(),
            requests,
            req,
        ))
    }
}

/// A request's store requests, one per quota; one quota's without a vector
/// unless the store must be awaited.
enum Requests {
    One(RateRequest),
    Many(Vec<RateRequest>),
}

impl Requests {
    fn as_slice(&self) -> &[RateRequest] {
        match self {
            Requests::One(request) => std::slice::from_ref(request),
            Requests::Many(requests) => requests,
        }
    }

    fn into_vec(self) -> Vec<RateRequest> {
        match self {
            Requests::One(request) => vec![request],
            Requests::Many(requests) => requests,
        }
    }
}

/// The slow path: await the store's decision, then the inner service. With
/// `count_when` the decision reserves the quota, given back after the
/// response if it does not count: requests in flight at once cannot pass
/// together what the quota allows only one by one.
async fn wait_then_call<S, St, ReqB, ResB>(
    mut inner: S,
    config: Arc<Config<St>>,
    prepared: Arc<Prepared>,
    requests: Vec<RateRequest>,
    mut req: Request<ReqB>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    St: KvStore,
{
    let limit = &prepared.limit;
    // Refused by the store a moment ago: refused again without asking (not
    // in shadow mode, which must still charge; not with `count_when`, whose
    // reservations in flight may be given back a moment later).
    let remembered = !prepared.shadow && limit.count_when.is_none();
    if remembered {
        if let Some(known) = config.known_limited.get(&requests[0].key) {
            record(&prepared, Outcome::Limited, Some(&known));
            return Ok(config.too_many(&prepared, &known));
        }
    }
    let (mut decision, by_store) = match config.decide(&prepared, &requests).await {
        Verdict::Decided { decision, by_store } => {
            // Only the store's refusals hold fleet-wide; a fallback's are this instance's guess.
            if remembered && by_store {
                config.known_limited.remember(&requests[0].key, &decision);
            }
            if !passes(&prepared, &decision, &mut req) {
                return Ok(config.too_many(&prepared, &decision));
            }
            (decision, by_store)
        }
        Verdict::Unavailable(retry) => {
            record(&prepared, Outcome::StoreError, None);
            let mut res = config.respond(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
            headers::retry_after(res.headers_mut(), retry);
            return Ok(res);
        }
        Verdict::Bypass => {
            record(&prepared, Outcome::Bypassed, None);
            let mut res = inner.call(req).await?.map(ResponseBody::inner);
            res.extensions_mut().insert(RateLimitBypassed);
            return Ok(res);
        }
    };
    let (parts, body) = inner.call(req).await?.into_parts();
    let uncounted = limit
        .count_when
        .as_ref()
        .is_some_and(|counts| !counts(&parts));
    // Shadow mode lets refused requests through; they reserved nothing.
    if uncounted && decision.allowed {
        let refunds: Vec<RateRequest> = requests.into_iter().map(RateRequest::refund).collect();
        let refunded = match by_store {
            true => config.store.rate_limit(&refunds).await,
            false => config.local.rate_limit(&refunds).await,
        };
        match refunded {
            Ok(d) => decision = d,
            Err(error) => {
                tracing::warn!(%error, "rate-limit refund failed; the reservation stays spent")
            }
        }
    }
    let mut res = Response::from_parts(parts, ResponseBody::inner(body));
    if let Some(fields) = config.fields(&prepared, &decision) {
        fields.add_to(res.headers_mut());
    }
    Ok(res)
}
