use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, LOCATION};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::layer::FeatureFlagsLayer;
use crate::body::ResponseBody;
use crate::either::Either;
use crate::future::LayerFuture;
use crate::store::KvStore;

/// Lets a request through only when a flag is on for it. Off: a response of
/// the layer's own (an empty 404 like axum's router by default, any status
/// and body, or a redirect) or a fallback service — the seed's "beta handler
/// or standard handler" is `flags.gate("beta_feature").fallback(standard)`.
///
/// The flag is evaluated for the request's targeting key; the request also
/// gets its [`Flags`](super::Flags) in extensions.
#[derive(Clone, Debug)]
pub struct FlagGateLayer<St, F> {
    flags: FeatureFlagsLayer<St>,
    name: Arc<str>,
    otherwise: F,
}

/// Off: answer with this response (default: an empty 404).
#[derive(Clone, Debug)]
pub struct Respond {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// The default of [`FlagGateLayer`]: an empty 404, as a router answers an unknown path.
pub type NotFound = Respond;

/// Off: call this service instead.
#[derive(Clone, Debug)]
pub struct Fallback<T>(T);

impl<St: KvStore> FlagGateLayer<St, Respond> {
    pub(crate) fn new(flags: FeatureFlagsLayer<St>, name: &str) -> Self {
        Self {
            flags,
            name: Arc::from(name),
            otherwise: Respond {
                status: StatusCode::NOT_FOUND,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            },
        }
    }

    /// Off: answer `status` with `body` instead of 404.
    #[must_use]
    pub fn respond(mut self, status: StatusCode, body: impl Into<Bytes>) -> Self {
        self.otherwise.status = status;
        self.otherwise.body = body.into();
        self
    }

    /// Off: redirect (307) to `location`.
    #[must_use]
    pub fn redirect(mut self, location: HeaderValue) -> Self {
        self.otherwise.status = StatusCode::TEMPORARY_REDIRECT;
        self.otherwise.headers.insert(LOCATION, location);
        self
    }

    /// Off: call `service` (same request and response types as the gated one).
    #[must_use]
    pub fn fallback<T>(self, service: T) -> FlagGateLayer<St, Fallback<T>> {
        FlagGateLayer {
            flags: self.flags,
            name: self.name,
            otherwise: Fallback(service),
        }
    }
}

impl<S, St: Clone, F: Clone> Layer<S> for FlagGateLayer<St, F> {
    type Service = Gate<S, St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            flags: self.flags.clone(),
            name: self.name.clone(),
            otherwise: self.otherwise.clone(),
        }
    }
}

/// The service of [`FlagGateLayer`].
#[derive(Clone, Debug)]
pub struct Gate<S, St, F> {
    inner: S,
    flags: FeatureFlagsLayer<St>,
    name: Arc<str>,
    otherwise: F,
}

/// The response future of a [`Gate`] with a fallback service.
pub type GateFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The response future of a [`Gate`] that answers by itself when off.
pub type RespondFuture<F, B, E> = LayerFuture<F, B, E>;

impl Respond {
    fn response<B>(&self) -> Response<ResponseBody<B>> {
        let mut res = Response::new(ResponseBody::full(self.body.clone()));
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers.clone();
        res
    }
}

impl<S, St: KvStore, F> Gate<S, St, F> {
    /// Whether the flag is on for `req` (after a store read if the document
    /// is stale); also puts the request's flags in its extensions.
    fn decide<B>(
        &self,
        req: &mut Request<B>,
    ) -> Result<bool, impl Future<Output = crate::flags::Flags> + Send + 'static> {
        match self.flags.flags_now(req) {
            Ok(flags) => {
                let on = flags.is_enabled(&self.name);
                req.extensions_mut().insert(flags);
                Ok(on)
            }
            Err(loading) => Err(loading),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the gate, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Gate<S, St, Respond>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = RespondFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        match self.decide(&mut req) {
            Ok(true) => LayerFuture::inner(self.inner.call(req), None),
            Ok(false) => LayerFuture::ready(self.otherwise.response()),
            Err(loading) => {
                let (name, respond) = (self.name.clone(), self.otherwise.clone());
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                LayerFuture::waiting(Box::pin(async move {
                    let flags = loading.await;
                    let on = flags.is_enabled(&name);
                    req.extensions_mut().insert(flags);
                    if on {
                        Ok(inner.call(req).await?.map(ResponseBody::inner))
                    } else {
                        Ok(respond.response())
                    }
                }))
            }
        }
    }
}

impl<S, St, T, ReqB, ResB> Service<Request<ReqB>> for Gate<S, St, Fallback<T>>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    T: Service<Request<ReqB>, Response = Response<ResB>, Error = S::Error> + Clone + Send + 'static,
    T::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Either<Either<S::Future, T::Future>, GateFuture<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both must be ready: which one is called is only known per request.
        match self.inner.poll_ready(cx)? {
            Poll::Ready(()) => self.otherwise.0.poll_ready(cx),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        match self.decide(&mut req) {
            Ok(true) => Either::left(Either::left(self.inner.call(req))),
            Ok(false) => Either::left(Either::right(self.otherwise.0.call(req))),
            Err(loading) => {
                let name = self.name.clone();
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let clone = self.otherwise.0.clone();
                let mut fallback = std::mem::replace(&mut self.otherwise.0, clone);
                Either::right(Box::pin(async move {
                    let flags = loading.await;
                    let on = flags.is_enabled(&name);
                    req.extensions_mut().insert(flags);
                    if on {
                        inner.call(req).await
                    } else {
                        fallback.call(req).await
                    }
                }))
            }
        }
    }
}
