use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::handle::Session;
use super::settings::{Outcome, Settings};
use crate::body::ResponseBody;
use crate::identity::UserId;

/// The session service; see [`SessionLayer`](super::SessionLayer).
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    settings: Arc<Settings>,
    on_store_error: StatusCode,
}

/// The response future of [`SessionService`].
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

impl<S> SessionService<S> {
    pub(crate) fn from_parts(
        inner: S,
        settings: Arc<Settings>,
        on_store_error: StatusCode,
    ) -> Self {
        Self {
            inner,
            settings,
            on_store_error,
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

    /// Consumes the layer's service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for SessionService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let presented = self.settings.transport.read(req.headers());
        let load_user = self.settings.expose_user && presented.is_some();
        let session = Session::new(self.settings.clone(), presented);
        req.extensions_mut().insert(session.clone());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        let on_store_error = self.on_store_error;
        Box::pin(async move {
            if load_user {
                // Layers and handlers inside see the user as a `UserId`
                // (rate limiting, flags and A/B tests by user).
                match session.user_id().await {
                    Ok(Some(user)) => {
                        req.extensions_mut().insert(UserId(user));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "session user unavailable"),
                }
            }
            let mut res = inner.call(req).await?.map(ResponseBody::inner);
            let state = session.inner.state.lock().await;
            if !state.loaded {
                return Ok(res);
            }
            let saved = settings
                .save(
                    state.presented.as_ref(),
                    state.stored.as_ref(),
                    &state.changes,
                    state.cycle,
                    state.destroy,
                    state.renew,
                )
                .await;
            match saved {
                Ok(outcome) => tell_client(&settings, &mut res, outcome),
                Err(e) => {
                    tracing::error!(error = %e, "session could not be saved");
                    res = Response::new(ResponseBody::empty());
                    *res.status_mut() = on_store_error;
                }
            }
            Ok(res)
        })
    }
}

fn tell_client<B>(settings: &Settings, res: &mut Response<B>, outcome: Outcome) {
    let headers = res.headers_mut();
    if let Some(id) = &outcome.issue {
        settings.transport.issue(headers, id);
    } else if outcome.revoke {
        settings.transport.revoke(headers);
    } else {
        return;
    }
    // A response that sets a session must never be stored by a shared cache.
    crate::body::mark_private(headers);
}
