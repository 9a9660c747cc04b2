use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::evaluator::Flags;
use super::gate::{FlagGateLayer, NotFound};
use super::FeatureFlags;
use crate::identity::Identity;
use crate::store::KvStore;

/// Puts the request's [`Flags`] in its extensions. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct FeatureFlagsLayer<St> {
    pub(crate) flags: FeatureFlags<St>,
    pub(crate) targeting: Identity,
}

impl<St: KvStore> FeatureFlagsLayer<St> {
    /// Evaluate `flags` for the targeting key `targeting` names
    /// (`Identity::User.or(Identity::Cookie("visitor"))`, a header, …).
    pub fn new(flags: FeatureFlags<St>, targeting: Identity) -> Self {
        Self { flags, targeting }
    }

    /// A layer letting requests through only when flag `name` is on for
    /// them; otherwise a 404 like the router's (or a fallback).
    pub fn gate(&self, name: &str) -> FlagGateLayer<St, NotFound> {
        FlagGateLayer::new(self.clone(), name)
    }

    /// The request's flags: at once from a fresh document, else after reading the store.
    pub(crate) fn flags_now<B>(
        &self,
        req: &Request<B>,
    ) -> Result<Flags, impl Future<Output = Flags> + Send + 'static> {
        let key = self.targeting.value_of(req);
        match self.flags.cached() {
            Some(doc) => Ok(Flags::new(doc, key)),
            None => {
                let flags = self.flags.clone();
                Err(async move { Flags::new(flags.current().await, key) })
            }
        }
    }
}

impl<S, St: Clone> Layer<S> for FeatureFlagsLayer<St> {
    type Service = FeatureFlagsService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        FeatureFlagsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`FeatureFlagsLayer`].
#[derive(Clone, Debug)]
pub struct FeatureFlagsService<S, St> {
    inner: S,
    layer: FeatureFlagsLayer<St>,
}

impl<S, St> FeatureFlagsService<S, St> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The response future of [`FeatureFlagsService`]: the inner service's own
/// when the document was fresh, boxed when the store had to be read first.
pub type FlagsFuture<F, T, E> =
    crate::either::Either<F, Pin<Box<dyn Future<Output = Result<T, E>> + Send>>>;

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for FeatureFlagsService<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = FlagsFuture<S::Future, Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        match self.layer.flags_now(&req) {
            Ok(flags) => {
                req.extensions_mut().insert(flags);
                crate::either::Either::left(self.inner.call(req))
            }
            Err(loading) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                crate::either::Either::right(Box::pin(async move {
                    req.extensions_mut().insert(loading.await);
                    inner.call(req).await
                }))
            }
        }
    }
}
