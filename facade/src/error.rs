//! Errors of the runtime facade.

use std::io;
use std::path::PathBuf;

impl From<rpod_net::NetError> for RuntimeError {
    fn from(e: rpod_net::NetError) -> Self {
        RuntimeError::Network(Box::new(e))
    }
}

impl RuntimeError {
    /// The exit code podman gives for this failure: 126 or 127 when the container's command
    /// cannot be invoked or found, 125 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::Oci(e) => e.create_exit_code(),
            RuntimeError::RolledBack { source, .. } => source.exit_code(),
            _ => 125,
        }
    }

    /// Whether the container or pod named does not exist (podman's exit code 1 for `rm`).
    pub fn is_not_found(&self) -> bool {
        match self {
            RuntimeError::State(e) => e.is_not_found(),
            RuntimeError::RolledBack { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// podman's exit code for a failed `rm` or `pod rm`: 1 when the object does not exist, 2
    /// when it runs (and force was not given), 125 otherwise.
    pub fn rm_exit_code(&self) -> u8 {
        match self {
            e if e.is_not_found() => 1,
            RuntimeError::ContainerRunning { .. } | RuntimeError::PodRunning { .. } => 2,
            _ => 125,
        }
    }

    /// `error`, with the undo steps that failed after it (if any).
    pub(crate) fn with_failures(error: RuntimeError, failures: Vec<String>) -> RuntimeError {
        if failures.is_empty() {
            error
        } else {
            RuntimeError::RolledBack {
                source: Box::new(error),
                failures,
            }
        }
    }

    /// Whether an ID prefix matched several containers or pods.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, RuntimeError::State(e) if e.kind() == rpod_state::ErrorKind::AmbiguousPrefix)
    }

    /// Whether the state database is damaged (the way out is `system reset --force`).
    pub fn is_corrupt_state(&self) -> bool {
        matches!(self, RuntimeError::State(e) if e.kind() == rpod_state::ErrorKind::Corrupt)
    }

    /// Whether the lock segment exists but cannot be used as it is: truncated, overwritten,
    /// left half-made by a creator that died, of another layout version or lock count. Its
    /// allocations are lost either way; removing it lets the next runtime recreate it and reserve
    /// every recorded ID again (what `system renumber` and `system reset --force` do).
    pub fn is_unusable_lock_segment(&self) -> bool {
        use rpod_lock::LockError as L;
        matches!(
            self,
            RuntimeError::Lock(
                L::BadMagic { .. }
                    | L::BadVersion { .. }
                    | L::BadSize { .. }
                    | L::NotInitialised { .. }
                    | L::CountMismatch { .. }
            )
        )
    }
}

impl From<rpod_oci::OciError> for RuntimeError {
    /// A binary that could not be found stays [`RuntimeError::BinaryNotFound`] (same message);
    /// everything else is [`RuntimeError::Oci`].
    fn from(e: rpod_oci::OciError) -> Self {
        match e {
            rpod_oci::OciError::BinaryNotFound { what, candidates } => {
                RuntimeError::BinaryNotFound { what, candidates }
            }
            e => RuntimeError::Oci(e),
        }
    }
}

/// Anything the [`crate::Runtime`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration could not be assembled or is invalid.
    #[error(transparent)]
    Config(#[from] rpod_config::ConfigError),
    /// No candidate path of a required binary exists.
    #[error("could not find a working {what} binary (configured options: [{}])", .candidates.join(", "))]
    BinaryNotFound {
        /// `OCI runtime "runc"` or `conmon`.
        what: String,
        /// The paths tried, in order.
        candidates: Vec<String>,
    },
    /// A directory rpod needs could not be created.
    #[error("creating directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The lock manager failed (segment missing, damaged, exhausted, …).
    #[error(transparent)]
    Lock(#[from] rpod_lock::LockError),
    /// The `alive.lck` file lock could not be taken.
    #[error("locking {path}: {source}")]
    AliveLock {
        /// `<tmp_dir>/alive.lck`.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The state database failed or refused the operation.
    #[error(transparent)]
    State(#[from] rpod_state::StateError),
    /// The request cannot be carried out as given.
    #[error("{0}")]
    InvalidSpec(String),
    /// The root filesystem given for a container is unusable.
    #[error("rootfs {path}: {source}")]
    Rootfs {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        source: io::Error,
    },
    /// The container is a pod's infra container.
    #[error("container {id} is the infra container of pod {pod} and cannot be removed without removing the pod")]
    InfraContainer {
        /// The container.
        id: String,
        /// The pod's name.
        pod: String,
    },
    /// The container runs and `force` was not given.
    #[error("cannot remove container {id} as it is {status} - running or paused containers cannot be removed without force")]
    ContainerRunning {
        /// The container.
        id: String,
        /// Its status.
        status: String,
    },
    /// A pod member runs and `force` was not given.
    #[error("pod {pod} has running container {container}: stop it first or use force")]
    PodRunning {
        /// The pod's name.
        pod: String,
        /// The running member's name.
        container: String,
    },
    /// Exec sessions run in the container and `force` was not given.
    #[error("cannot remove container {id}: it has {sessions} active exec session(s); use force")]
    ExecSessions {
        /// The container.
        id: String,
        /// How many sessions run.
        sessions: usize,
    },
    /// Other containers depend on this one.
    #[error("container {id} has dependent containers which must be removed before it: {}", .dependants.join(", "))]
    HasDependants {
        /// The container.
        id: String,
        /// Its dependants.
        dependants: Vec<String>,
    },
    /// The OCI runtime or conmon failed; the message is the runtime's own.
    #[error(transparent)]
    Oci(rpod_oci::OciError),
    /// The container's state does not allow the operation.
    #[error("cannot {action} container {id}: it is {status}")]
    InvalidState {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// What was asked.
        action: &'static str,
    },
    /// `stop` of a container that is not running (podman's CLI treats this as success).
    #[error("container {id} is not running: it is {status}")]
    AlreadyStopped {
        /// The container.
        id: String,
        /// Its status.
        status: String,
    },
    /// A container it shares namespaces with is not running.
    #[error("container {id} shares namespaces with container {dependency}, which is not running")]
    DependencyNotRunning {
        /// The container.
        id: String,
        /// The dependency.
        dependency: String,
    },
    /// Some containers of a pod failed the operation.
    #[error("pod {pod}: {}", .errors.join("; "))]
    Pod {
        /// The pod's name.
        pod: String,
        /// One message per failed container.
        errors: Vec<String>,
    },
    /// After a reboot, objects were found sharing lock IDs.
    #[error("{}: deadlock would follow; run `rpod system renumber` to give every container and pod its own lock", .0.join("; "))]
    LockConflicts(Vec<String>),
    /// Writing a file rpod keeps failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The runtime was shut down.
    #[error("the runtime has been shut down and can no longer be used")]
    Stopped,
    /// [`RuntimeBuilder::existing_state_only`](crate::RuntimeBuilder::existing_state_only) and
    /// there is no state database.
    #[error("there is no rpod state at {path} (removed by `system reset`?)")]
    NoState {
        /// The state database that does not exist.
        path: PathBuf,
    },
    /// Removing rpod's files failed.
    #[error("removing {path}: {source}")]
    Remove {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The operating system's random number generator could not be read.
    #[error("reading random bytes from the operating system: {0}")]
    Random(String),
    /// A step failed, and undoing the steps before it failed too.
    #[error("{source}; undoing the steps before it also failed: {}", .failures.join("; "))]
    RolledBack {
        /// The step's error.
        source: Box<RuntimeError>,
        /// Each undo that failed.
        failures: Vec<String>,
    },
    /// Releasing what a container held failed.
    #[error("cleaning up container {id}: {}", .failures.join("; "))]
    Cleanup {
        /// The container.
        id: String,
        /// Each step that failed.
        failures: Vec<String>,
    },
    /// Reading a file rpod keeps failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A user-chosen name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Networking failed (CNI configuration, a plugin, the network namespace, ports); the
    /// message names the network, plugin, file or port.
    #[error(transparent)]
    Network(Box<rpod_net::NetError>),
    /// A network cannot be removed while containers use it.
    #[error("network {name} is used by containers {}: remove them first or use force", .containers.join(", "))]
    NetworkInUse {
        /// The network.
        name: String,
        /// The containers that use it.
        containers: Vec<String>,
    },
    /// An image store, registry or archive operation failed; the message names the image,
    /// reference, layer or file.
    #[error(transparent)]
    Image(Box<rpod_storage::ImageError>),
    /// An image cannot be removed while containers use it.
    #[error("image {image} ({id:.12}) is in use by containers {}: remove them first or use --force", .containers.join(", "))]
    ImageInUse {
        /// The image as named.
        image: String,
        /// Its ID.
        id: String,
        /// The containers created from it.
        containers: Vec<String>,
    },
    /// `registries.conf` is unreadable or malformed.
    #[error("reading registries: {0}")]
    Registries(#[from] rpod_config::RegistriesError),
}
