//! Errors of the registry client.

use crate::error::StorageError;

/// One entry of a registry's error body `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorEntry {
    /// The machine-readable code (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`, ...).
    #[serde(default)]
    pub code: String,
    /// The human-readable message.
    #[serde(default)]
    pub message: String,
}

/// Every error of [`Client`](super::Client) and of reference and manifest handling. Each variant names the
/// registry URL, repository and reference concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An image reference cannot be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached (connection refused, DNS, TLS, timeout).
    #[error("cannot reach registry at {url}: {source}")]
    Connect {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: ureq::Error,
    },
    /// The request or the reading of its answer failed after the connection was made.
    #[error("{method} {url}: {source}")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: ureq::Error,
    },
    /// The registry refused the credentials given (401 after authenticating).
    #[error("{registry}: unauthorized: wrong username or password ({message})")]
    Unauthorized {
        /// The registry's base URL.
        registry: String,
        /// The registry's own message.
        message: String,
    },
    /// The registry requires authentication and no credentials were given.
    #[error("{registry}: authentication required ({message})")]
    AuthRequired {
        /// The registry's base URL.
        registry: String,
        /// The registry's own message.
        message: String,
    },
    /// A token server answered without a token, or with an error.
    #[error("token request to {realm} failed: {reason}")]
    Token {
        /// The token realm URL.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// The manifest or blob does not exist (404).
    #[error("{kind} {repository}:{reference} not found in {registry}: {message}")]
    NotFound {
        /// "manifest" or "blob".
        kind: &'static str,
        /// The registry's base URL.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The registry's message (its body, verbatim).
        message: String,
    },
    /// Any other unexpected answer; `body` is the registry's error body, verbatim.
    #[error("{method} {url}: registry answered {status}: {body}")]
    Registry {
        /// The HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The parsed `errors` array (empty if the body was not the standard JSON).
        errors: Vec<ErrorEntry>,
        /// The body as received (truncated at 64 KiB).
        body: String,
    },
    /// A manifest larger than the client accepts.
    #[error("manifest {repository}:{reference} is larger than {limit} bytes; refusing it")]
    ManifestTooLarge {
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A manifest's bytes do not hash to the digest it was requested by or announced with.
    #[error("manifest {repository}:{reference}: digest did not match, expected {expected}, got {actual}")]
    ManifestDigestMismatch {
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The digest expected.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A manifest media type this client does not handle (e.g. Docker schema 1).
    #[error("manifest {repository}:{reference} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The media type received.
        media_type: String,
    },
    /// A manifest, index or config is not valid JSON of the expected shape.
    #[error("invalid {what}: {source}")]
    InvalidJson {
        /// What was being parsed.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// An index has no manifest for the requested platform.
    #[error("no manifest for {platform} in {name} (available: {available})")]
    NoMatchingPlatform {
        /// The platform asked for, `os/arch[/variant]`.
        platform: String,
        /// The image name.
        name: String,
        /// The platforms the index offers, comma-separated.
        available: String,
    },
    /// The registry broke the protocol (missing `Location`, bad header, ...).
    #[error("{url}: {reason}")]
    Protocol {
        /// The URL requested.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// Storing a blob failed, including a digest mismatch of the downloaded content.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RegistryError {
    /// Whether this is a digest mismatch of a blob or manifest.
    pub fn is_digest_mismatch(&self) -> bool {
        matches!(
            self,
            RegistryError::ManifestDigestMismatch { .. }
                | RegistryError::Storage(StorageError::DigestMismatch { .. })
        )
    }
}
