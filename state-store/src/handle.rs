//! [`Handle`]: what every backend's [`State`](crate::State) handle holds, the shared data (an LMDB
//! environment, the in-memory tables) and the handle's own namespace and closed flag, plus the trait
//! methods that only depend on that.

use std::sync::{Arc, RwLock};

use crate::error::{Result, StateError};

/// One handle on shared data `D`. The namespace is fixed when the handle is made; closing drops this
/// handle's reference (the data goes with the last one). Views are further handles on the same `D`.
#[derive(Debug)]
pub(crate) struct Handle<D> {
    /// The shared data; `None` once this handle is closed.
    data: RwLock<Option<Arc<D>>>,
    namespace: String,
}

impl<D> Handle<D> {
    /// A handle on `data` that sees every namespace.
    pub(crate) fn new(data: Arc<D>) -> Self {
        Handle {
            data: RwLock::new(Some(data)),
            namespace: String::new(),
        }
    }

    /// The same handle restricted to `namespace` (consumes it: nobody else can hold it yet).
    pub(crate) fn with_namespace(self, namespace: &str) -> Self {
        Handle {
            namespace: namespace.to_string(),
            ..self
        }
    }

    /// Another handle on the same data with `namespace` ([`StateError::DbClosed`] once this one is closed).
    pub(crate) fn view(&self, namespace: &str) -> Result<Self> {
        Ok(Handle {
            data: RwLock::new(Some(self.data()?)),
            namespace: namespace.to_string(),
        })
    }

    /// The shared data ([`StateError::DbClosed`] once this handle is closed).
    pub(crate) fn data(&self) -> Result<Arc<D>> {
        // A poisoned lock only means another thread panicked while cloning or taking the `Arc`.
        self.data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StateError::DbClosed)
    }

    /// The namespace this handle sees (`""` = every namespace).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Close this handle (idempotent).
    pub(crate) fn close(&self) {
        self.data.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}
