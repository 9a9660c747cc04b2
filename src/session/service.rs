use std::sync::Arc;

use http::{Request, Response, StatusCode};

use super::handle::Session;
use super::settings::Settings;
use super::SessionError;
use crate::body::ResponseBody;
use crate::future::{Finish, Finished, ResponseFuture};
use crate::identity::UserId;
use crate::service::{inner_accessors, layer_service, take_ready};

/// The session service; see [`SessionLayer`](super::SessionLayer).
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    settings: Arc<Settings>,
    on_store_error: StatusCode,
}

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

    inner_accessors!();
}

layer_service! {
    impl<S> SessionService<S>
    where [S::Future: 'static]
    { future: S::Future, headers: Finishing }
    fn call(&mut self, mut req) {
        let presented = self.settings.transport.read(req.headers());
        let expose_user = self.settings.expose_user && presented.is_some();
        let session = Session::new(self.settings.clone(), presented);
        req.extensions_mut().insert(session.clone());
        let finishing = Finishing {
            session,
            on_store_error: self.on_store_error,
        };
        // A session the store gives at once (or none to read before the
        // handler): no future to box, nor after the handler unless it
        // changed the session.
        if expose_user {
            let Some(user) = finishing.session.user_id_now() else {
                let mut inner = take_ready(&mut self.inner);
                return ResponseFuture::waiting(async move {
                    insert_user(finishing.session.user_id().await, &mut req);
                    let res = inner.call(req).await?.map(ResponseBody::inner);
                    Ok(finishing.save(res).await)
                });
            };
            insert_user(user, &mut req);
        }
        ResponseFuture::inner(self.inner.call(req), Some(finishing))
    }
}

/// Saves the session once the handler has answered, if the request changed
/// it (and marks the response private if the request used it).
pub struct Finishing {
    session: Session,
    on_store_error: StatusCode,
}

impl Finishing {
    async fn save<B>(self, res: Response<ResponseBody<B>>) -> Response<ResponseBody<B>> {
        self.session.finish(res, self.on_store_error).await
    }
}

impl Finish for Finishing {
    fn finish<B: Send + 'static, E: 'static>(
        mut self,
        mut res: Response<ResponseBody<B>>,
    ) -> Finished<B, E> {
        // Unused, or only read: nothing to write, nothing to wait for.
        if self.session.finish_now(&mut res) {
            return Finished::Now(res);
        }
        Finished::Later(Box::pin(async move { Ok(self.save(res).await) }))
    }
}

/// Puts the session's user in the request as a [`UserId`], for the layers
/// and handlers inside (rate limiting, flags and A/B tests by user).
fn insert_user<B>(user: Result<Option<String>, SessionError>, req: &mut Request<B>) {
    match user {
        Ok(Some(user)) => {
            req.extensions_mut().insert(UserId(user));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "session user unavailable"),
    }
}
