use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::layer::FeatureFlagsLayer;
use tower::util::future::EitherResponseFuture;
use tower::util::Either;

use super::evaluator::{evaluate, EvaluationCounters, Flags};
use super::FlagDocument;
use super::Reason;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::once::Once;
use crate::service::{inner_accessors, layer_service, take_ready};
use crate::store::KvStore;

/// Lets a request through only when a flag is on for it. Off: a response of
/// the layer's own (an empty 404 like axum's router by default, any status
/// and body, or a redirect) or a fallback service — "beta handler
/// or standard handler" is `flags.gate("beta_feature").fallback(standard)`.
///
/// The flag is evaluated for the request's targeting key; the request also
/// gets its [`Flags`](super::Flags) in extensions. Behind the
/// [`FeatureFlagsLayer`] it came from (or a clone), a gate decides on the
/// flags that layer put in the request: one evaluation, nothing copied; a
/// gate of another layer evaluates for its own layer's targeting key.
///
/// Its services clone (as axum does per request) with one reference each
/// for the flag and the response, plus the fallback service's clone.
#[derive(Clone, Debug)]
pub struct FlagGateLayer<St, F> {
    flag: Arc<GatedFlag<St>>,
    otherwise: F,
}

/// The flags a gate reads, the flag it checks, that flag's evaluation
/// counters, and whether it said the flag is missing.
#[derive(Debug)]
struct GatedFlag<St> {
    flags: FeatureFlagsLayer<St>,
    name: Box<str>,
    counters: EvaluationCounters,
    missing: Once,
}

impl<St> GatedFlag<St> {
    /// Whether the flag of `doc` is on for targeting key `key`; a flag
    /// missing from the document is off, and said once per gate.
    fn is_on(&self, doc: Option<&FlagDocument>, key: Option<&str>) -> bool {
        let evaluation = evaluate(doc, key, &self.name, Some(&self.counters));
        if evaluation.reason == Reason::Missing && !self.missing.done() && self.missing.first() {
            tracing::warn!(
                flag = %self.name,
                "FlagGateLayer: the flag is not in the flag document, so every request gets the gate's off response: add it with `FeatureFlags::set_flag`"
            );
        }
        evaluation.enabled
    }

    /// Whether the flag is on for `flags`, with the flags put in `req`
    /// when a service gets it: on, or off with `off_served` (a fallback).
    /// A request the gate answers itself is dropped: no map to fill.
    fn decided<B>(&self, flags: Flags, req: &mut Request<B>, off_served: bool) -> bool {
        let (doc, key) = flags.parts();
        let on = self.is_on(doc, key);
        if on || off_served {
            req.extensions_mut().insert(flags);
        }
        on
    }
}

/// Off: answer with this response (default: an empty 404).
#[derive(Clone, Debug)]
pub struct Respond(Arc<Answer>);

/// The response a gate answers with.
#[derive(Clone, Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Off: call this service instead.
#[derive(Clone, Debug)]
pub struct Fallback<T>(T);

impl<St: KvStore> FlagGateLayer<St, Respond> {
    pub(crate) fn new(flags: FeatureFlagsLayer<St>, name: &str) -> Self {
        Self {
            flag: Arc::new(GatedFlag {
                flags,
                name: name.into(),
                counters: EvaluationCounters::new(name),
                missing: Once::default(),
            }),
            otherwise: Respond(Arc::new(Answer {
                status: StatusCode::NOT_FOUND,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            })),
        }
    }

    /// Off: answer `status` with `body` instead of 404.
    #[must_use]
    pub fn respond(mut self, status: StatusCode, body: impl Into<Bytes>) -> Self {
        let answer = Arc::make_mut(&mut self.otherwise.0);
        answer.status = status;
        answer.body = body.into();
        self
    }

    /// Off: redirect (307) to `location`.
    #[must_use]
    pub fn redirect(mut self, location: HeaderValue) -> Self {
        let answer = Arc::make_mut(&mut self.otherwise.0);
        answer.status = StatusCode::TEMPORARY_REDIRECT;
        answer.headers.insert(LOCATION, location);
        self
    }

    /// Off: call `service` (same request and response types as the gated one).
    #[must_use]
    pub fn fallback<T>(self, service: T) -> FlagGateLayer<St, Fallback<T>> {
        FlagGateLayer {
            flag: self.flag,
            otherwise: Fallback(service),
        }
    }
}

impl<S, St, F: Clone> Layer<S> for FlagGateLayer<St, F> {
    type Service = FlagGateService<S, St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        FlagGateService {
            inner,
            flag: self.flag.clone(),
            otherwise: self.otherwise.clone(),
        }
    }
}

/// The service of [`FlagGateLayer`].
#[derive(Debug)]
pub struct FlagGateService<S, St, F> {
    inner: S,
    flag: Arc<GatedFlag<St>>,
    otherwise: F,
}

impl<S: Clone, St, F: Clone> Clone for FlagGateService<S, St, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            flag: self.flag.clone(),
            otherwise: self.otherwise.clone(),
        }
    }
}

impl Respond {
    fn response<B>(&self) -> Response<ResponseBody<B>> {
        let answer = &*self.0;
        let mut res = Response::new(ResponseBody::full(answer.body.clone()));
        *res.status_mut() = answer.status;
        if !answer.headers.is_empty() {
            *res.headers_mut() = answer.headers.clone();
        }
        res
    }
}

impl<S, St, F> FlagGateService<S, St, F> {
    inner_accessors!();
}

impl<St: KvStore> GatedFlag<St> {
    /// Whether the flag is on for `req`, on the flags its layer put in
    /// the request or else with the request's flags put in its extensions
    /// when a service gets it (see [`GatedFlag::decided`]); else, when the
    /// document is stale, the flags to wait for. On the fast path the
    /// request is borrowed, never moved, and its targeting key copied only
    /// into the flags a service gets.
    fn decide<B>(
        &self,
        req: &mut Request<B>,
        off_served: bool,
    ) -> Result<bool, impl Future<Output = Flags> + Send + 'static> {
        // Behind its own layer: the flags it put in are the request's.
        if let Some(flags) = self.flags.flags_in(req) {
            let (doc, key) = flags.parts();
            return Ok(self.is_on(doc, key));
        }
        // Not `?`: the error is an opaque future `From` cannot name.
        #[allow(clippy::question_mark)]
        let (doc, key) = match self.flags.targeting_now(req) {
            Ok(parts) => parts,
            Err(loading) => return Err(loading),
        };
        let on = self.is_on(doc.as_deref(), key.as_deref());
        if on || off_served {
            let flags = self.flags.flags_with(doc, key.map(Cow::into_owned));
            req.extensions_mut().insert(flags);
        }
        Ok(on)
    }
}

layer_service! {
    impl<S, St: KvStore> FlagGateService<S, St, Respond>
    { future: S::Future, headers: () }
    fn call(&mut self, mut req) {
        match self.flag.decide(&mut req, false) {
            Ok(true) => ResponseFuture::inner(self.inner.call(req), None),
            Ok(false) => ResponseFuture::ready(self.otherwise.response()),
            Err(loading) => {
                // Only the slow path keeps the flag past `call`.
                let flag = self.flag.clone();
                let respond = self.otherwise.clone();
                let mut inner = take_ready(&mut self.inner);
                ResponseFuture::waiting(async move {
                    match flag.decided(loading.await, &mut req, false) {
                        true => Ok(inner.call(req).await?.map(ResponseBody::inner)),
                        false => Ok(respond.response()),
                    }
                })
            }
        }
    }
}

layer_service! {
    impl<S, St: KvStore, T> FlagGateService<S, St, Fallback<T>>
    where [
        T: Service<Request<ReqB>, Response = Response<ResB>, Error = S::Error> + Clone + Send + 'static,
        T::Future: Send,
    ]
    { future: EitherResponseFuture<S::Future, T::Future>, headers: () }
    fn poll_ready(&mut self, cx) {
        // Both must be ready: which one is called is only known per request.
        match self.inner.poll_ready(cx)? {
            Poll::Ready(()) => self.otherwise.0.poll_ready(cx),
            Poll::Pending => Poll::Pending,
        }
    }
    fn call(&mut self, mut req) {
        match self.flag.decide(&mut req, true) {
            Ok(on) => {
                let mut either = match on {
                    true => Either::Left(&mut self.inner),
                    false => Either::Right(&mut self.otherwise.0),
                };
                ResponseFuture::inner(either.call(req), None)
            }
            Err(loading) => {
                let flag = self.flag.clone();
                let mut inner = take_ready(&mut self.inner);
                let mut fallback = take_ready(&mut self.otherwise.0);
                ResponseFuture::waiting(async move {
                    let res = match flag.decided(loading.await, &mut req, true) {
                        true => inner.call(req).await?,
                        false => fallback.call(req).await?,
                    };
                    Ok(res.map(ResponseBody::inner))
                })
            }
        }
    }
}
