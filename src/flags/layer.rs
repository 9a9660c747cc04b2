use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::Request;
use tower_layer::Layer;

use super::evaluator::Flags;
use super::gate::{FlagGateLayer, Respond};
use super::FeatureFlags;
use super::FlagDocument;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::identity::{Identity, UserSourceCheck};
use crate::service::{inner_accessors, layer_service, take_ready};
use crate::store::KvStore;

/// Puts the request's [`Flags`] in its extensions. See the [module docs](super).
///
/// Cloning it (and its services, which axum clones per request) copies one
/// reference.
#[derive(Clone, Debug)]
pub struct FeatureFlagsLayer<St>(Arc<Targeting<St>>);

/// The flags, and whom a request's are evaluated for.
#[derive(Debug)]
struct Targeting<St> {
    /// Unique in the process: marks the [`Flags`] this layer makes.
    id: u64,
    flags: FeatureFlags<St>,
    targeting: Identity,
    user_check: Option<UserSourceCheck>,
}

impl<St: KvStore> FeatureFlagsLayer<St> {
    /// Evaluate `flags` for the targeting key `targeting` names
    /// (`Identity::User.or(Identity::Cookie("visitor"))`, a header, …).
    pub fn new(flags: FeatureFlags<St>, targeting: Identity) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self(Arc::new(Targeting {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            flags,
            user_check: UserSourceCheck::new("FeatureFlagsLayer", &targeting),
            targeting,
        }))
    }

    /// A layer letting requests through only when flag `name` is on for
    /// them; otherwise a 404 like the router's (or a fallback).
    pub fn gate(&self, name: &str) -> FlagGateLayer<St, Respond> {
        FlagGateLayer::new(self.clone(), name)
    }

    /// The request's flags: at once from a fresh document, else after reading the store.
    pub(crate) fn flags_now<B>(
        &self,
        req: &Request<B>,
    ) -> Result<Flags, impl Future<Output = Flags> + Send + 'static> {
        self.targeting_now(req)
            .map(|(doc, key)| self.flags_with(doc, key.map(Cow::into_owned)))
    }

    /// The flags of this layer made of `doc` and `key`.
    pub(crate) fn flags_with(&self, doc: Option<Arc<FlagDocument>>, key: Option<String>) -> Flags {
        Flags::new(self.0.id, doc, key)
    }

    /// The flags this layer (or a clone of it) already put in `req`.
    pub(crate) fn flags_in<'r, B>(&self, req: &'r Request<B>) -> Option<&'r Flags> {
        let flags = req.extensions().get::<Flags>()?;
        (flags.origin() == self.0.id).then_some(flags)
    }

    /// [`flags_now`](Self::flags_now) in parts, the targeting key borrowed
    /// where the request holds it as is: the document (`None`: no usable
    /// one) and the key.
    #[allow(clippy::type_complexity)]
    pub(crate) fn targeting_now<'r, B>(
        &self,
        req: &'r Request<B>,
    ) -> Result<
        (Option<Arc<FlagDocument>>, Option<Cow<'r, str>>),
        impl Future<Output = Flags> + Send + 'static,
    > {
        let Targeting {
            id,
            flags,
            targeting,
            user_check,
        } = &*self.0;
        if let Some(check) = user_check {
            check.check(req);
        }
        match flags.cached() {
            Some(doc) => Ok((doc, targeting.value_in(req))),
            None => {
                let key = targeting.value_of(req);
                let flags = flags.clone();
                let id = *id;
                Err(async move { Flags::new(id, flags.current().await, key) })
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
    inner_accessors!();
}

layer_service! {
    impl<S, St: KvStore> FeatureFlagsService<S, St>
    { future: S::Future, headers: () }
    fn call(&mut self, mut req) {
        match self.layer.flags_now(&req) {
            Ok(flags) => {
                req.extensions_mut().insert(flags);
                ResponseFuture::inner(self.inner.call(req), None)
            }
            Err(loading) => {
                let mut inner = take_ready(&mut self.inner);
                ResponseFuture::waiting(async move {
                    req.extensions_mut().insert(loading.await);
                    Ok(inner.call(req).await?.map(ResponseBody::inner))
                })
            }
        }
    }
}
