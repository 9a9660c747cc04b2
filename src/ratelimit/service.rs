use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::headers;
use super::layer::{Config, Prepared};
use super::limit::{MissingIdentity, OnStoreError, RateLimitBypassed};
use crate::body::ResponseBody;
use crate::store::{KvStore, RateDecision, RateRequest};

/// The rate-limiting service; see [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone, Debug)]
pub struct RateLimit<S, St> {
    inner: S,
    config: Arc<Config<St>>,
}

/// The future of [`RateLimit`]'s responses.
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

impl<S, St> RateLimit<S, St> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<St>>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the limiter, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What the store said, after the store-failure policy.
enum Verdict {
    Decided(RateDecision),
    Bypass,
    Unavailable(Duration),
}

impl<St: KvStore> Config<St> {
    fn limit_for<B>(&self, req: &Request<B>) -> Option<Arc<Prepared>> {
        match self.routes.at(req.method(), req.uri().path()) {
            Some(route) => route.value.clone(),
            None => self.default.clone(),
        }
    }

    async fn decide(&self, prepared: &Prepared, requests: &[RateRequest]) -> Verdict {
        let error = match self.store.rate_limit(requests).await {
            Ok(decision) => return Verdict::Decided(decision),
            Err(e) => e,
        };
        let policy = prepared.limit.on_store_error.unwrap_or(self.on_store_error);
        tracing::warn!(error = %error, ?policy, "rate-limit store failed");
        match policy {
            OnStoreError::LocalFallback => match self.local.rate_limit(requests).await {
                Ok(decision) => Verdict::Decided(decision),
                Err(_) => Verdict::Bypass,
            },
            OnStoreError::Allow => Verdict::Bypass,
            OnStoreError::Reject { retry_after } => Verdict::Unavailable(retry_after),
        }
    }

    fn respond<B>(&self, status: StatusCode, body: bytes::Bytes) -> Response<ResponseBody<B>> {
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
        self.annotate(res.headers_mut(), prepared, decision);
        headers::retry_after(res.headers_mut(), decision.retry_after());
        res
    }

    fn annotate(&self, h: &mut http::HeaderMap, prepared: &Prepared, decision: &RateDecision) {
        let quotas = &prepared.limit.quotas;
        h.insert(&headers::RATELIMIT_POLICY, prepared.policy.clone());
        h.insert(
            &headers::RATELIMIT,
            headers::current(quotas, &decision.states),
        );
        if self.legacy_headers {
            headers::legacy(h, quotas, &decision.states);
        }
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The ready service handles this request; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let Some(prepared) = config.limit_for(&req) else {
            let fut = inner.call(req);
            return Box::pin(async move { Ok(fut.await?.map(ResponseBody::inner)) });
        };
        let identity = match (config.identity.of(&req), config.missing_identity) {
            (Some(id), _) => id,
            (None, MissingIdentity::SharedBucket) => "anonymous".to_owned(),
            (None, MissingIdentity::Allow) => {
                let fut = inner.call(req);
                return Box::pin(async move { Ok(fut.await?.map(ResponseBody::inner)) });
            }
            (None, MissingIdentity::Reject(status)) => {
                tracing::debug!(identity = ?config.identity, "request has no rate-limit identity");
                let body = bytes::Bytes::from_static(b"missing client identity\n");
                let res = config.respond(status, body);
                return Box::pin(async move { Ok(res) });
            }
        };
        Box::pin(async move {
            let limit = &prepared.limit;
            let counts_later = limit.count_when.is_some();
            let mut requests = prepared.requests(&identity, limit.cost);
            if counts_later {
                requests = requests.into_iter().map(RateRequest::peek).collect();
            }
            let mut decision = match config.decide(&prepared, &requests).await {
                Verdict::Decided(d) if d.allowed => d,
                Verdict::Decided(d) => return Ok(config.too_many(&prepared, &d)),
                Verdict::Unavailable(retry) => {
                    let mut res =
                        config.respond(StatusCode::SERVICE_UNAVAILABLE, bytes::Bytes::new());
                    headers::retry_after(res.headers_mut(), retry);
                    return Ok(res);
                }
                Verdict::Bypass => {
                    let mut res = inner.call(req).await?.map(ResponseBody::inner);
                    res.extensions_mut().insert(RateLimitBypassed);
                    return Ok(res);
                }
            };
            let res = inner.call(req).await?;
            let (parts, body) = res.into_parts();
            if let Some(count_when) = &limit.count_when {
                if count_when(&parts) {
                    let charge = prepared.requests(&identity, limit.cost);
                    if let Verdict::Decided(d) = config.decide(&prepared, &charge).await {
                        decision = d;
                    }
                }
            }
            let mut res = Response::from_parts(parts, ResponseBody::inner(body));
            config.annotate(res.headers_mut(), &prepared, &decision);
            Ok(res)
        })
    }
}
