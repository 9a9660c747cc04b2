//! A future that is one of two futures with the same output: lets a layer
//! return the inner service's future untouched on its fast path and a boxed
//! one when it must await the store first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// One of two futures with the same output.
    #[derive(Debug)]
    pub struct Either<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[derive(Debug)]
    #[project = KindProj]
    enum Kind<A, B> {
        Left { #[pin] future: A },
        Right { #[pin] future: B },
    }
}

impl<A, B> Either<A, B> {
    /// The first kind.
    pub fn left(future: A) -> Self {
        Self {
            kind: Kind::Left { future },
        }
    }

    /// The second kind.
    pub fn right(future: B) -> Self {
        Self {
            kind: Kind::Right { future },
        }
    }
}

impl<A, B> Future for Either<A, B>
where
    A: Future,
    B: Future<Output = A::Output>,
{
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Left { future } => future.poll(cx),
            KindProj::Right { future } => future.poll(cx),
        }
    }
}
