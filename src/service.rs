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
