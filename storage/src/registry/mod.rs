//! A small synchronous Docker Registry v2 / OCI distribution client.
//!
//! * [`Reference`] parses `[registry[:port]/]repository[:tag][@sha256:…]`, leaving unqualified names
//!   unqualified so the caller can apply its `unqualified-search-registries`.
//! * [`Client`] talks to one registry over `https://` (rustls; `tls_verify: false` accepts any certificate) or
//!   plain `http://` (`insecure_http`), answering Basic and Bearer (token) challenges. It fetches manifests
//!   with digest verification and a size limit ([`Client::get_manifest`]), streams blobs into a
//!   [`BlobStore`](crate::BlobStore) whose `put` verifies them ([`Client::fetch_blob`]), and pushes blobs and
//!   manifests ([`Client::push_blob`], [`Client::put_manifest`]).
//! * [`manifest`] has minimal serde types for OCI/Docker manifests, indexes and configs, and
//!   [`resolve_platform`] to pick an index entry.
//!
//! Not done yet: chunked or resumable uploads, cross-repository mounts, Docker schema 1, credential files
//! (`auth.json`), the http-after-https fallback podman does for insecure registries, and proxies.

mod auth;
mod client;
mod error;
mod http;
pub mod manifest;
mod reference;

pub use client::{Client, ClientOptions, Manifest, MAX_MANIFEST_SIZE};
pub use error::{ErrorEntry, RegistryError};
pub use manifest::{resolve_platform, ImageConfig, ImageIndex, ImageManifest, Platform};
pub use reference::{Reference, DEFAULT_TAG, DOCKER_HUB, DOCKER_HUB_API};
