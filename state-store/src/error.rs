//! The one error type of the crate, [`StateError`], and its comparable [`ErrorKind`].

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// A coarse, `Copy` classification of [`StateError`].
///
/// Two backends that agree on semantics return the same kind for the same operation, even where the message
/// (a file path, for instance) differs. Callers branch on the kind; people read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No such container (also: a name or prefix that belongs to a pod, a missing dependency, not a member).
    NoSuchContainer,
    /// No such pod (also: a name or prefix that belongs to a container).
    NoSuchPod,
    /// The ID is already used by a container or a pod.
    IdInUse,
    /// The name is already used by a container or a pod.
    NameInUse,
    /// The container belongs to a pod; use the pod-aware operation.
    PodExists,
    /// The pod still has containers.
    NotEmpty,
    /// Other containers depend on this one.
    HasDependants,
    /// An ID prefix matches more than one container or pod.
    AmbiguousPrefix,
    /// The object lives in another namespace than the one the state is set to.
    NsMismatch,
    /// The request itself is invalid.
    InvalidArg,
    /// The state was closed.
    DbClosed,
    /// An empty ID or name was given.
    EmptyId,
    /// The database was created with other paths than the ones configured now.
    DbMismatch,
    /// The database file or a record in it cannot be read.
    Corrupt,
    /// An I/O error outside LMDB (creating the directory, inspecting the file).
    Io,
    /// An error reported by LMDB.
    Lmdb,
    /// The database is internally inconsistent (an index entry without its record).
    Internal,
}

/// Everything that can go wrong in the state store. Each message names the object (ID, name) or file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No container with this ID, name or prefix (in the current namespace).
    #[error("no container with name or ID {0:?} found: no such container")]
    NoSuchContainer(String),
    /// The name or unique prefix given for a container belongs to a pod.
    #[error("{0:?} is a pod, not a container: no such container")]
    IsPodNotContainer(String),
    /// A dependency of a new container does not exist.
    #[error("container {ctr} depends on container {dependency}, but it does not exist in the state: no such container")]
    MissingDependency {
        /// The container being added.
        ctr: String,
        /// The dependency that is missing.
        dependency: String,
    },
    /// The container is not a member of the pod.
    #[error("container {ctr} is not in pod {pod}: no such container")]
    NotInPod {
        /// Container ID.
        ctr: String,
        /// Pod ID.
        pod: String,
    },
    /// No pod with this ID, name or prefix (in the current namespace).
    #[error("no pod with name or ID {0:?} found: no such pod")]
    NoSuchPod(String),
    /// The name or unique prefix given for a pod belongs to a container.
    #[error("{0:?} is a container, not a pod: no such pod")]
    IsContainerNotPod(String),
    /// The ID is already used by a container or a pod.
    #[error("ID {0} is in use by another container or pod")]
    IdInUse(String),
    /// The name is already used by a container or a pod.
    #[error("name {0:?} is in use by another container or pod")]
    NameInUse(String),
    /// The container is a pod member; pod membership is changed through the pod operations.
    #[error("container {ctr} is part of pod {pod}: use remove_container_from_pod instead")]
    PodMember {
        /// Container ID.
        ctr: String,
        /// Pod ID.
        pod: String,
    },
    /// The pod still has containers.
    #[error("pod {pod} is not empty: it has {count} container(s); remove them first")]
    NotEmpty {
        /// Pod ID.
        pod: String,
        /// Number of member containers.
        count: usize,
    },
    /// Other containers depend on this container.
    #[error("container {ctr} is a dependency of the following containers: {}", .dependants.join(", "))]
    HasDependants {
        /// The container that was to be removed.
        ctr: String,
        /// IDs of the containers that depend on it.
        dependants: Vec<String>,
    },
    /// A pod member has a dependant outside the pod.
    #[error("container {ctr} has dependant {dependant} outside of pod {pod}")]
    DependantOutsidePod {
        /// The member container.
        ctr: String,
        /// The dependant outside the pod.
        dependant: String,
        /// Pod ID.
        pod: String,
    },
    /// An ID prefix matches more than one container or pod.
    #[error("ID prefix {prefix:?} is ambiguous: it matches {}", .candidates.join(", "))]
    AmbiguousPrefix {
        /// The prefix that was looked up.
        prefix: String,
        /// The full IDs of every container and pod it matches.
        candidates: Vec<String>,
    },
    /// The object is in another namespace than the state.
    #[error("{what} is in namespace {found:?}, but the state is set to namespace {expected:?}: target is in a different namespace")]
    NsMismatch {
        /// What was refused (e.g. `container <id>`).
        what: String,
        /// The object's namespace.
        found: String,
        /// The namespace the state is set to (or the object's pod / dependency is in).
        expected: String,
    },
    /// The request is invalid.
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// The state was closed with [`State::close`](crate::State::close).
    #[error("the state database has been closed")]
    DbClosed,
    /// An empty ID or name was given.
    #[error("name or ID cannot be empty")]
    EmptyId,
    /// The stored runtime paths differ from the configured ones.
    #[error("database {field} {db:?} does not match our {field} {ours:?}: database configuration mismatch")]
    DbMismatch {
        /// The libpod label of the field, e.g. `libpod root directory (staticdir)`.
        field: &'static str,
        /// The value stored in the database.
        db: String,
        /// The value the runtime is configured with.
        ours: String,
    },
    /// The database file is not an rpod state database, or is damaged (empty, truncated, not LMDB, another
    /// program's, a newer schema). The message names the file and the way back.
    #[error("state database {}: {reason}; run `rpod system reset --force` to start over (it removes every container and pod of this root), or move the file and its -lock file aside", .path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        reason: String,
    },
    /// A record does not decode.
    #[error("{what} in {} does not decode ({source}); remove the object or restore the database from a backup", .path.display())]
    Corrupt {
        /// The database file (`<memory>` for the in-memory backend).
        path: PathBuf,
        /// Which record, e.g. `state of container <id>`.
        what: String,
        /// The decoding error.
        #[source]
        source: DecodeError,
    },
    /// The database is inconsistent.
    #[error("state database {} is inconsistent: {what}", .path.display())]
    Internal {
        /// The database file (`<memory>` for the in-memory backend).
        path: PathBuf,
        /// What is inconsistent.
        what: String,
    },
    /// An I/O error (creating the directory, inspecting the file).
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An error reported by LMDB.
    #[error("LMDB error on {} while {op}: {source}", .path.display())]
    Lmdb {
        /// What was being done.
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: heed::Error,
    },
}

/// Why a stored record does not decode (see [`StateError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A record in the compact encoding (rpod-state/2).
    #[error("compact record: {0}")]
    Compact(#[from] rmp_serde::decode::Error),
    /// A JSON record (rpod-state/1, or written when the compact encoding failed).
    #[error("JSON record: {0}")]
    Json(#[from] serde_json::Error),
}

impl StateError {
    /// The kind of this error, comparable across backends.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::NoSuchContainer(_)
            | StateError::IsPodNotContainer(_)
            | StateError::MissingDependency { .. }
            | StateError::NotInPod { .. } => ErrorKind::NoSuchContainer,
            StateError::NoSuchPod(_) | StateError::IsContainerNotPod(_) => ErrorKind::NoSuchPod,
            StateError::IdInUse(_) => ErrorKind::IdInUse,
            StateError::NameInUse(_) => ErrorKind::NameInUse,
            StateError::PodMember { .. } => ErrorKind::PodExists,
            StateError::NotEmpty { .. } => ErrorKind::NotEmpty,
            StateError::HasDependants { .. } | StateError::DependantOutsidePod { .. } => {
                ErrorKind::HasDependants
            }
            StateError::AmbiguousPrefix { .. } => ErrorKind::AmbiguousPrefix,
            StateError::NsMismatch { .. } => ErrorKind::NsMismatch,
            StateError::InvalidArg(_) => ErrorKind::InvalidArg,
            StateError::DbClosed => ErrorKind::DbClosed,
            StateError::EmptyId => ErrorKind::EmptyId,
            StateError::DbMismatch { .. } => ErrorKind::DbMismatch,
            StateError::Damaged { .. } | StateError::Corrupt { .. } => ErrorKind::Corrupt,
            StateError::Internal { .. } => ErrorKind::Internal,
            StateError::Io { .. } => ErrorKind::Io,
            StateError::Lmdb { .. } => ErrorKind::Lmdb,
        }
    }

    /// True for the "not found" kinds ([`ErrorKind::NoSuchContainer`], [`ErrorKind::NoSuchPod`]), which name
    /// generation and idempotent removal treat as "absent".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::NoSuchContainer | ErrorKind::NoSuchPod
        )
    }
}
