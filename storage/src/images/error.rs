//! Errors of the image store.

use std::io;
use std::path::PathBuf;

use crate::layers::LayerError;
use crate::registry::RegistryError;
use crate::StorageError;

/// Every error of [`Store`](super::Store): each variant names the image, reference, layer or path concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No image has this name, ID or ID prefix.
    #[error("{name}: image not known")]
    NotFound {
        /// What was looked up.
        name: String,
    },
    /// An ID prefix or short name matches several images.
    #[error("{name}: ambiguous image name or ID prefix, it matches {matches}")]
    Ambiguous {
        /// What was looked up.
        name: String,
        /// The candidates, comma separated.
        matches: String,
    },
    /// The image's layer is the base of a container layer.
    #[error(
        "image {id} is in use by a container (its layer {layer} has a container layer on top)"
    )]
    InUse {
        /// The image ID.
        id: String,
        /// The top layer that has children.
        layer: String,
    },
    /// An image name or tag cannot be used.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The image's manifest or config is not usable (wrong type, inconsistent layer counts, bad JSON).
    #[error("image {image}: {reason}")]
    InvalidImage {
        /// The reference or ID of the image.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// The store was created with another storage driver.
    #[error("the image store at {root} was created with the {recorded} storage driver, not {requested}: use --storage-driver {recorded} (or reset the store)")]
    DriverMismatch {
        /// The graph root.
        root: PathBuf,
        /// The driver its layers were made with.
        recorded: &'static str,
        /// The driver asked for.
        requested: &'static str,
    },
    /// An archive (`load`) is malformed.
    #[error("archive {path}: {reason}")]
    Archive {
        /// The archive's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing an archive (`save`) failed: the output or a stored blob being copied into it.
    #[error("cannot write archive entry {entry}: {source}")]
    ArchiveWrite {
        /// The archive entry being written.
        entry: String,
        /// The I/O error (its message names the blob when reading it failed).
        #[source]
        source: io::Error,
    },
    /// The signature policy forbids the operation.
    #[error("{reference}: {reason}")]
    Policy {
        /// The image reference.
        reference: String,
        /// Why the policy refuses it.
        reason: String,
    },
    /// The image record file cannot be parsed.
    #[error("image records {path} are corrupt: {source}")]
    Metadata {
        /// `images.json`.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A layer operation failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A blob operation failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The registry transport failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result of image store operations.
pub type ImageResult<T> = std::result::Result<T, ImageError>;
