use std::sync::Arc;

use http::{Request, StatusCode};

use super::handle::Session;
use super::settings::Settings;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
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
    { future: S::Future, headers: () }
    fn call(&mut self, mut req) {
        let presented = self.settings.transport.read(req.headers());
        let expose_user = self.settings.expose_user && presented.is_some();
        let session = Session::new(self.settings.clone(), presented);
        req.extensions_mut().insert(session.clone());
        let mut inner = take_ready(&mut self.inner);
        let on_store_error = self.on_store_error;
        ResponseFuture::waiting(async move {
            if expose_user {
                insert_user(&session, &mut req).await;
            }
            let res = inner.call(req).await?.map(ResponseBody::inner);
            Ok(session.finish(res, on_store_error).await)
        })
    }
}

/// Puts the session's user in the request as a [`UserId`], for the layers
/// and handlers inside (rate limiting, flags and A/B tests by user).
async fn insert_user<B>(session: &Session, req: &mut Request<B>) {
    match session.user_id().await {
        Ok(Some(user)) => {
            req.extensions_mut().insert(UserId(user));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "session user unavailable"),
    }
}
