//! Configuration a layer shares with the handles it hands out
//! (`SessionLayer::manager`, `CacheLayer::purger`), so that a setter called
//! after taking a handle still reaches it.

use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

/// A layer's configuration, readable by its handles.
///
/// Setters on the layer publish the new configuration to every handle taken
/// from it. Cloning forks: a clone configured differently does not change
/// the original's handles. Services take a snapshot when they are built.
pub(crate) struct Live<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Live<T> {
    pub(crate) fn new(value: T) -> Self {
        Self::from_arc(Arc::new(value))
    }

    fn from_arc(value: Arc<T>) -> Self {
        Self {
            current: Arc::new(RwLock::new(value)),
        }
    }

    /// The configuration as it is now.
    pub(crate) fn get(&self) -> Arc<T> {
        self.current.read().clone()
    }

    /// A handle that follows this configuration (no fork).
    pub(crate) fn handle(&self) -> LiveHandle<T> {
        LiveHandle {
            current: self.current.clone(),
        }
    }
}

/// What a handle reads of its layer's [`Live`] configuration: always the
/// layer's current one. Its clones follow the same layer (app state holding
/// a handle is cloned per request: no fork, no allocation).
pub(crate) struct LiveHandle<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> LiveHandle<T> {
    /// The layer's configuration as it is now.
    pub(crate) fn get(&self) -> Arc<T> {
        self.current.read().clone()
    }
}

impl<T> Clone for LiveHandle<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for LiveHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl<T: Clone> Live<T> {
    /// Changes the configuration and publishes it to the handles.
    pub(crate) fn update(&mut self, change: impl FnOnce(&mut T)) {
        let mut current = self.current.write();
        change(Arc::make_mut(&mut current));
    }
}

impl<T> Clone for Live<T> {
    /// A fork: the clone starts from the same configuration but its
    /// changes are its own.
    fn clone(&self) -> Self {
        Self::from_arc(self.get())
    }
}

impl<T: fmt::Debug> fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}
