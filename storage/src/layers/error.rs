//! The layer store's error type.

use std::io;
use std::path::PathBuf;

use crate::error::StorageError;

/// Every error of the layer store and its drivers. Each variant names the layer, path or mount concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// Unpacking the layer blob failed (bad stream, hostile entry, ...); nothing was recorded.
    #[error("unpacking layer onto parent {parent:?}: {source}")]
    Unpack {
        /// The parent layer ID, if any.
        parent: Option<String>,
        /// What the unpacker reported.
        #[source]
        source: StorageError,
    },
    /// The uncompressed layer does not hash to the diff ID it was announced with; nothing was recorded.
    #[error("layer diff ID did not match, expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff ID the caller announced.
        expected: String,
        /// The sha256 of the uncompressed tar actually read.
        actual: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error (its errno is `source.raw_os_error()`).
        #[source]
        source: io::Error,
    },
    /// The layer metadata file cannot be parsed or serialised.
    #[error("layer metadata {path}: {source}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No layer with this ID is recorded.
    #[error("layer {id} not found")]
    NotFound {
        /// The ID looked up.
        id: String,
    },
    /// The layer is mounted, so it cannot be deleted.
    #[error("layer {id} is mounted {mounts} time(s)")]
    Mounted {
        /// The layer.
        id: String,
        /// Its current mount count.
        mounts: u32,
    },
    /// Another layer is built on this one, so it cannot be deleted.
    #[error("layer {id} has child layer {child}")]
    HasChildren {
        /// The layer.
        id: String,
        /// One of its children.
        child: String,
    },
    /// The layer is not mounted, so it cannot be unmounted.
    #[error("layer {id} is not mounted")]
    NotMounted {
        /// The layer.
        id: String,
    },
    /// The overlay stack would exceed the number of lower layers the driver mounts.
    #[error("layer {id}: max depth exceeded ({depth} lower layers, at most {max})")]
    MaxDepth {
        /// The layer.
        id: String,
        /// Its number of lower layers.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// A mount or unmount failed.
    #[error("cannot {op} {target} (options {options:?}): {source}")]
    Mount {
        /// "mount overlay", "unmount", ...
        op: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The mount data passed, if any.
        options: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Gathering random bytes for a name failed.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

impl LayerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LayerError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the layer store.
pub type LayerResult<T, E = LayerError> = std::result::Result<T, E>;
