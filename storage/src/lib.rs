//! # rpod-storage: image blobs, layers and registries
//!
//! This crate owns the on-disk pieces of image storage and the registry transport:
//!
//! * [`BlobStore`]: a content-addressed store of blobs under `<root>/blobs/sha256/<hex>`, written from any
//!   [`Read`](std::io::Read) in one streaming pass that computes the sha256 [`Digest`], verifies it, fsyncs and
//!   renames into place; a mismatch leaves nothing behind.
//! * [`unpack_layer`]: applies a layer blob (gzip, zstd or plain tar) to a directory following the OCI layer
//!   rules, with whiteouts represented for overlayfs or applied by deletion ([`WhiteoutMode`]), refusing every
//!   entry that could write outside the destination.
//! * [`LayerStore`] with the [`Driver`]s `overlay` (short `l/` links, `lower` files, counted mounts) and `vfs`
//!   (full copies): layers by chain ID, unpacked once and shared, container read-write layers, a store lock.
//! * [`registry`]: a synchronous Docker Registry v2 / OCI distribution client (references, Basic and Bearer
//!   auth, manifests and indexes with platform resolution, blobs streamed into a [`BlobStore`], push).
//! * [`images::Store`]: image records (names, tags, digests) over the two stores, with `pull`, `push`,
//!   `import`, `save` / `load` of docker-archive and oci-archive tarballs, removal and garbage collection.
//!
//! Errors are [`StorageError`], [`LayerError`], [`RegistryError`](registry::RegistryError) and
//! [`ImageError`], which name the path, digest, layer or entry concerned.
//!
//! ```
//! use rpod_storage::{BlobStore, Digest};
//!
//! # fn main() -> Result<(), rpod_storage::StorageError> {
//! let root = tempfile::tempdir().map_err(|e| rpod_storage::StorageError::Io { op: "mkdtemp", path: "/tmp".into(), source: e })?;
//! let store = BlobStore::open(root.path())?;
//! let data = b"hello";
//! let info = store.put(&data[..], &Digest::of_bytes(data))?;
//! assert!(store.has(&info.digest)?);
//! # Ok(())
//! # }
//! ```

mod blobs;
mod digest;
mod error;
pub mod registry;
mod unpack;

pub use blobs::{BlobInfo, BlobStore, BlobWriter, Tee};
pub use digest::Digest;
pub use error::{Result, StorageError};
pub use unpack::{unpack_layer, Compression, LayerStats, WhiteoutMode};

// The layer store and its storage drivers.
mod driver;
mod layers;
pub use driver::Driver;
pub use layers::{chain_id, Layer, LayerError, LayerResult, LayerStore, PreparedLayer};

// Images: records, pulls, imports.
pub mod images;
pub use images::{Image, ImageError, ImageResult, Store, StoreOptions};
