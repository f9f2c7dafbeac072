//! The image root filesystem: a container's writable layer in the image store, mounted at init
//! and released at cleanup, counted with `rpod mount` by the store's mount counts.
//!
//! Whether the container itself holds a mount is remembered by a marker file
//! `<run_root>/rpod-mounted/<id>` beside the store's mount counts (both vanish at a reboot), so
//! release is idempotent and never takes away a count that `rpod mount` holds.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::StoreHandle;
use crate::error::RuntimeError;
use crate::rootfs::{RootfsProvider, RootfsRequest};

/// Mounts containers' layers from the image store.
#[derive(Debug, Clone)]
pub struct ImageRootfs {
    pub(crate) store: Arc<StoreHandle>,
}

impl ImageRootfs {
    fn marker(&self, id: &str) -> PathBuf {
        self.store.options.run_root.join("rpod-mounted").join(id)
    }
}

impl RootfsProvider for ImageRootfs {
    fn prepare(&self, request: &RootfsRequest) -> Result<PathBuf, RuntimeError> {
        let Some(layer) = &request.layer else {
            return Err(RuntimeError::InvalidSpec(format!(
                "container {} has no image layer to mount",
                request.container_id
            )));
        };
        let store = self.store.get()?;
        let marker = self.marker(&request.container_id);
        let path = store.layers().mount(layer).map_err(super::layer_err)?;
        if marker.exists() {
            // An earlier prepare kept its mount (no release ran): keep one count, not two.
            let _ = store.layers().unmount(layer);
        } else {
            let written = marker
                .parent()
                .map_or(Ok(()), |d| {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(d)
                })
                .and_then(|()| std::fs::write(&marker, layer.as_bytes()));
            if let Err(source) = written {
                let _ = store.layers().unmount(layer);
                return Err(RuntimeError::Write {
                    path: marker,
                    source,
                });
            }
        }
        Ok(path)
    }

    fn release(&self, request: &RootfsRequest) -> Result<(), RuntimeError> {
        let Some(layer) = &request.layer else {
            return Ok(());
        };
        let marker = self.marker(&request.container_id);
        if !marker.exists() {
            return Ok(());
        }
        // Marker first: a crash in between leaves a count too many (removed with the layer),
        // never one too few under `rpod mount`.
        std::fs::remove_file(&marker).map_err(|source| RuntimeError::Write {
            path: marker.clone(),
            source,
        })?;
        let store = self.store.get()?;
        match store.layers().unmount(layer) {
            Ok(_) => Ok(()),
            Err(rpod_storage::LayerError::NotMounted { .. })
            | Err(rpod_storage::LayerError::NotFound { .. }) => Ok(()),
            Err(e) => Err(super::layer_err(e)),
        }
    }
}
