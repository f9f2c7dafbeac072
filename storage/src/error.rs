//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Every error of this crate. Each variant names what it was working on: a path, a digest or a layer entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A digest string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The content written for a blob does not hash to the digest it was announced with.
    #[error("digest did not match, expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the caller announced.
        expected: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// The blob is not in the store.
    #[error("blob {digest} not found in {path}")]
    BlobNotFound {
        /// The digest looked up.
        digest: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done ("create", "rename", ...).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error (its errno is `source.raw_os_error()`).
        #[source]
        source: io::Error,
    },
    /// Reading the (decompressed) layer stream failed or it is not a valid tar archive.
    #[error("reading layer {what}: {source}")]
    Read {
        /// What was being read: "stream", or `entry <name>`.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The layer blob is compressed with an algorithm this crate does not handle.
    #[error("unsupported layer compression {format} (only gzip, zstd and plain tar are accepted)")]
    UnsupportedCompression {
        /// The format recognised from its magic bytes.
        format: &'static str,
    },
    /// A layer entry would write outside the destination, or its name is not acceptable.
    #[error("refusing layer entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's name as stored in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A hard link entry names a target that is not usable.
    #[error("hard link {entry:?} -> {target:?}: {reason}")]
    BadHardLink {
        /// The entry's name.
        entry: String,
        /// Its link name.
        target: String,
        /// Why it is refused.
        reason: String,
    },
    /// A tar entry type this unpacker does not handle.
    #[error("layer entry {entry:?} has unsupported type {kind}")]
    UnsupportedEntry {
        /// The entry's name.
        entry: String,
        /// The tar type flag, as a character or number.
        kind: String,
    },
    /// Applying an entry to the destination failed.
    #[error("cannot {op} for layer entry {entry:?} at {path}: {source}")]
    Apply {
        /// What was being done ("create file", "chown", "set xattr user.x", ...).
        op: String,
        /// The entry's name.
        entry: String,
        /// The destination path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn unsafe_entry(entry: &str, reason: impl Into<String>) -> Self {
        StorageError::UnsafeEntry {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
