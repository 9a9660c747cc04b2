use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::header::HeaderValue;
use http::{HeaderMap, Response};
use pin_project_lite::pin_project;

use super::headers;
use crate::body::ResponseBody;

/// The rate-limit headers a response gets, computed before the inner service runs.
#[derive(Debug)]
pub(crate) struct Annotation {
    pub(crate) policy: HeaderValue,
    pub(crate) current: HeaderValue,
    pub(crate) legacy: Option<Box<[HeaderValue; 3]>>,
}

impl Annotation {
    pub(crate) fn apply(self, h: &mut HeaderMap) {
        h.insert(headers::RATELIMIT_POLICY, self.policy);
        h.insert(headers::RATELIMIT, self.current);
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            h.insert(headers::X_LIMIT, limit);
            h.insert(headers::X_REMAINING, remaining);
            h.insert(headers::X_RESET, reset);
        }
    }
}

type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    ///
    /// Decisions the store makes without I/O (the in-memory store) need no
    /// allocation: the future is the inner service's, plus the headers to add.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] future: F, annotation: Option<Annotation> },
        Ready { response: Option<Response<ResponseBody<B>>> },
        Waiting { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn inner(future: F, annotation: Option<Annotation>) -> Self {
        Self {
            kind: Kind::Inner { future, annotation },
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn waiting(future: BoxedResponse<B, E>) -> Self {
        Self {
            kind: Kind::Waiting { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, annotation } => {
                let mut res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                if let Some(annotation) = annotation.take() {
                    annotation.apply(res.headers_mut());
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
