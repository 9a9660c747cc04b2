//! Plumbing every layer's service shares: the inner-service accessors and
//! the "take the ready service" step.

/// `get_ref`, `get_mut` and `into_inner` for a service whose inner service
/// is its `inner` field.
macro_rules! inner_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service, returning the inner one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
pub(crate) use inner_accessors;

/// Takes the service `poll_ready` prepared, leaving a clone in its place: a
/// layer that awaits the store before calling the inner service must move
/// the ready one into its future (tower's "be careful when cloning inner
/// services").
pub(crate) fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}

/// The `Service` implementation of a layer's service, written once: every
/// layer takes `Request<ReqB>` to an inner service `S` answering
/// `Response<ResB>`, answers `Response<ResponseBody<ResB>>` with the inner
/// error type, and returns the shared [`ResponseFuture`](crate::future::ResponseFuture).
/// Only `call` (and, for a service with two inner services, `poll_ready`)
/// differs between layers.
macro_rules! layer_service {
    (
        impl<$($param:ident $(: $bound:path)?),*> $service:ty
        $(where [$($extra:tt)*])?
        { future: $future:ty, headers: $headers:ty }
        $(fn poll_ready(&mut $ready_self:ident, $cx:ident) $poll_ready:block)?
        fn call(&mut $self:ident, $req:pat) $call:block
    ) => {
        impl<$($param $(: $bound)?,)* ReqB, ResB> tower_service::Service<http::Request<ReqB>>
            for $service
        where
            S: tower_service::Service<http::Request<ReqB>, Response = http::Response<ResB>>
                + Clone
                + Send
                + 'static,
            S::Future: Send,
            ReqB: Send + 'static,
            ResB: Send + 'static,
            $($($extra)*)?
        {
            type Response = http::Response<crate::body::ResponseBody<ResB>>;
            type Error = S::Error;
            type Future = crate::future::ResponseFuture<$future, ResB, S::Error, $headers>;

            $crate::service::layer_service!(@poll_ready $(&mut $ready_self, $cx, $poll_ready)?);

            fn call(&mut $self, $req: http::Request<ReqB>) -> Self::Future $call
        }
    };
    (@poll_ready) => {
        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }
    };
    (@poll_ready &mut $ready_self:ident, $cx:ident, $poll_ready:block) => {
        fn poll_ready(
            &mut $ready_self,
            $cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> $poll_ready
    };
}
pub(crate) use layer_service;
