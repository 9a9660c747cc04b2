//! The one response future every layer returns: the inner service's future
//! (with headers to add to its response), a response the layer wrote
//! itself, or a boxed future when the layer had to await the store first.
//! The first two need no allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::future::BoxFuture;
use http::{HeaderMap, Response};
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

pub(crate) use sealed::{AddHeaders, Finish, Finished};

mod sealed {
    use super::{BoxFuture, Response, ResponseBody};

    /// Headers a layer adds to the inner service's response.
    pub trait AddHeaders {
        /// Adds them.
        fn add_to(self, headers: &mut http::HeaderMap);
    }

    /// What a layer does with the inner service's response: add headers
    /// (any [`AddHeaders`]), or store work that must come first.
    pub trait Finish {
        /// Finishes `response`.
        fn finish<B: Send + 'static, E: 'static>(
            self,
            response: Response<ResponseBody<B>>,
        ) -> Finished<B, E>;
    }

    /// A finished response, or the work still to do for it.
    pub enum Finished<B, E> {
        /// Done now.
        Now(Response<ResponseBody<B>>),
        /// Done when this future is.
        Later(BoxFuture<'static, Result<Response<ResponseBody<B>>, E>>),
    }
}

impl<H: AddHeaders> Finish for H {
    fn finish<B: Send + 'static, E: 'static>(
        self,
        mut response: Response<ResponseBody<B>>,
    ) -> Finished<B, E> {
        self.add_to(response.headers_mut());
        Finished::Now(response)
    }
}

/// One header.
impl AddHeaders for (http::header::HeaderName, http::header::HeaderValue) {
    fn add_to(self, headers: &mut HeaderMap) {
        headers.insert(self.0, self.1);
    }
}

/// Nothing to add.
impl AddHeaders for () {
    fn add_to(self, _: &mut HeaderMap) {}
}

pin_project! {
    /// The response future of every tower-kv service.
    pub struct ResponseFuture<F, B, E, H = ()> {
        #[pin]
        kind: Kind<F, B, E, H>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E, H> {
        Inner { #[pin] future: F, headers: Option<H> },
        Ready { response: Option<Response<ResponseBody<B>>> },
        Waiting { future: BoxFuture<'static, Result<Response<ResponseBody<B>>, E>> },
    }
}

impl<F, B, E, H> ResponseFuture<F, B, E, H> {
    /// The inner service's response, finished by `headers` (added to it).
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

    /// A response that needs the store (or more) first.
    pub(crate) fn waiting(
        future: impl Future<Output = Result<Response<ResponseBody<B>>, E>> + Send + 'static,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                future: Box::pin(future),
            },
        }
    }
}

impl<F, B, E, H> std::fmt::Debug for ResponseFuture<F, B, E, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E, H> Future for ResponseFuture<F, B, E, H>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Send + 'static,
    E: 'static,
    H: Finish,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Inner { future, headers } => {
                    let res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    let Some(headers) = headers.take() else {
                        return Poll::Ready(Ok(res));
                    };
                    match headers.finish(res) {
                        Finished::Now(res) => return Poll::Ready(Ok(res)),
                        Finished::Later(future) => kind.set(Kind::Waiting { future }),
                    }
                }
                KindProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")))
                }
                KindProj::Waiting { future } => return future.as_mut().poll(cx),
            }
        }
    }
}
