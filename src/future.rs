//! The response future layers share: the inner service's future (plus
//! headers to add to its response), a response the layer wrote itself, or a
//! boxed future when the layer had to await the store first. The first two
//! need no allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderMap, Response};
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

/// Headers a layer adds to the inner service's response.
pub trait AddHeaders {
    /// Adds them.
    fn add_to(self, headers: &mut HeaderMap);
}

/// Nothing to add.
impl AddHeaders for () {
    fn add_to(self, _: &mut HeaderMap) {}
}

/// A boxed response future, for the slow path.
pub type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of a layer that may answer by itself.
    pub struct LayerFuture<F, B, E, H = ()> {
        #[pin]
        kind: Kind<F, B, E, H>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E, H> {
        Inner { #[pin] future: F, headers: Option<H> },
        Ready { response: Option<Response<ResponseBody<B>>> },
        Waiting { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E, H> LayerFuture<F, B, E, H> {
    /// The inner service's response, with `headers` added.
    pub(crate) fn inner(future: F, headers: Option<H>) -> Self {
        Self {
            kind: Kind::Inner { future, headers },
        }
    }

    /// A response the layer wrote.
    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    /// A response that needs the store first.
    pub(crate) fn waiting(future: BoxedResponse<B, E>) -> Self {
        Self {
            kind: Kind::Waiting { future },
        }
    }
}

impl<F, B, E, H> Future for LayerFuture<F, B, E, H>
where
    F: Future<Output = Result<Response<B>, E>>,
    H: AddHeaders,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, headers } => {
                let mut res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                if let Some(headers) = headers.take() {
                    headers.add_to(res.headers_mut());
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            KindProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}
