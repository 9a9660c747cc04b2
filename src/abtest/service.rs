use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cookie::{Cookie, SameSite};
use http::header::{HeaderValue, SET_COOKIE, VARY};
use http::{Request, Response};
use tower_service::Service;

use super::layer::{Config, Variants, OVERRIDE_HEADER};
use crate::identity::{cookie_value, random_hex};
use crate::store::KvStore;

/// The A/B service; see [`AbTestLayer`](super::AbTestLayer).
pub struct AbTest<S, St> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S: Clone, St> Clone for AbTest<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St> std::fmt::Debug for AbTest<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbTest")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The response future of [`AbTest`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, St> AbTest<S, St> {
    pub(crate) fn from_parts(inner: S, config: Arc<Config<St>>) -> Self {
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

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for AbTest<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    St: KvStore,
    ReqB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = self.config.clone();
        // A client never chooses its variant: drop any copies it sent.
        for test in &config.tests {
            req.headers_mut().remove(&test.header);
        }
        let forced = config.overrides(req.headers());
        req.headers_mut().remove(OVERRIDE_HEADER);
        let visitor = config.visitor_cookie.clone();
        let known = config
            .identity
            .value_of(&req)
            .or_else(|| visitor.as_deref().and_then(|name| cookie_value(&req, name)));
        let new_visitor = match (&known, &visitor) {
            (None, Some(_)) => Some(random_hex(16)),
            _ => None,
        };
        let identity = known.or_else(|| new_visitor.clone());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut variants = BTreeMap::new();
            for test in &config.tests {
                let variant = match (forced.get(&test.name), &identity) {
                    (Some(v), _) => v.clone(),
                    (None, Some(id)) => config.assign(test, id).await,
                    (None, None) => "control".to_owned(),
                };
                let value =
                    HeaderValue::from_str(&variant).expect("variants are validated header values");
                req.headers_mut().insert(test.header.clone(), value);
                variants.insert(test.name.clone(), variant);
            }
            let echo: Vec<_> = match config.echo {
                true => config
                    .tests
                    .iter()
                    .filter_map(|t| Some((t.header.clone(), req.headers().get(&t.header)?.clone())))
                    .collect(),
                false => Vec::new(),
            };
            req.extensions_mut().insert(Variants(variants));
            let mut res = inner.call(req).await?;
            let headers = res.headers_mut();
            for (name, value) in echo {
                headers.append(VARY, HeaderValue::from(name.clone()));
                headers.insert(name, value);
            }
            if let (Some(id), Some(name)) = (new_visitor, visitor) {
                let cookie = Cookie::build((name, id))
                    .http_only(true)
                    .secure(true)
                    .same_site(SameSite::Lax)
                    .path("/")
                    .max_age(cookie::time::Duration::days(365))
                    .build();
                if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
                    headers.append(SET_COOKIE, value);
                    crate::body::mark_private(headers);
                }
            }
            Ok(res)
        })
    }
}
