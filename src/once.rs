//! Saying something once per layer instance (its services share the flag).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether a layer has already said it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Once(Arc<AtomicBool>);

impl Once {
    /// Whether it was said already (cheap: check this first).
    pub(crate) fn done(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `true` for exactly one caller: the one that gets to say it.
    pub(crate) fn first(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }
}
