//! The crate's single error type.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = OciError> = std::result::Result<T, E>;

/// Everything that can go wrong while talking to the OCI runtime and conmon.
///
/// Variants carry the container ID, the binary involved and the runtime's own
/// message wherever one is known, so that callers can print them verbatim.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No candidate path for the requested runtime exists as an executable file.
    #[error("OCI runtime {name:?} not found (searched: {searched:?})")]
    RuntimeNotFound {
        /// Requested runtime name or path.
        name: String,
        /// Every path that was tried.
        searched: Vec<PathBuf>,
    },

    /// No candidate path of a binary rpod needs (runtime, conmon) exists.
    #[error("could not find a working {what} binary (configured options: [{}])", .candidates.join(", "))]
    BinaryNotFound {
        /// What was looked for: `OCI runtime "runc"`, `conmon`, ...
        what: String,
        /// The paths tried, in order.
        candidates: Vec<String>,
    },

    /// The runtime exists but cannot work on this host.
    #[error("{message}")]
    RuntimeUnsuitable {
        /// Path of the runtime binary.
        runtime: PathBuf,
        /// Human readable explanation, including the suggested fix.
        message: String,
    },

    /// The caller gave an argument that cannot be used.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A user or group name could not be resolved inside the rootfs.
    #[error("unable to find user {user:?} in {file}: {reason}")]
    UserNotFound {
        /// The user specification as given (`name`, `name:group`, `uid:gid`, ...).
        user: String,
        /// File that was searched (`<rootfs>/etc/passwd` or `<rootfs>/etc/group`).
        file: PathBuf,
        /// Why it failed.
        reason: String,
    },

    /// The `oci-spec` builders rejected the generated spec.
    #[error("generating OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),

    /// An I/O operation on a file failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error (carries the errno).
        #[source]
        source: std::io::Error,
    },

    /// A system call failed.
    #[error("{context}: {errno}")]
    Sys {
        /// What was being done.
        context: &'static str,
        /// The errno returned.
        errno: nix::errno::Errno,
    },

    /// A binary (runtime or conmon) could not be executed at all.
    #[error("executing {binary} for container {id}: {source}")]
    Spawn {
        /// Container ID.
        id: String,
        /// Binary that failed to start.
        binary: PathBuf,
        /// Underlying error (carries the errno).
        #[source]
        source: std::io::Error,
    },

    /// The OCI runtime (through conmon) failed to create the container.
    /// `message` is the runtime's own message.
    #[error("container create failed (runtime {runtime}, container {id}): {message}")]
    CreateFailed {
        /// Container ID.
        id: String,
        /// Runtime binary path.
        runtime: PathBuf,
        /// The runtime's error message (from its JSON log, or from conmon's report).
        message: String,
    },

    /// conmon died or closed the sync pipe without reporting a result.
    #[error("conmon exited without reporting (container {id}, conmon {conmon}, {status}){}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    ConmonNoReport {
        /// Container ID.
        id: String,
        /// conmon binary path.
        conmon: PathBuf,
        /// conmon's exit status, as text.
        status: String,
        /// Any runtime (oci-log) message or conmon stderr text found.
        detail: Option<String>,
    },

    /// conmon sent something that is not the expected JSON.
    #[error("invalid conmon sync message for container {id}: {line:?}")]
    ConmonProtocol {
        /// Container ID.
        id: String,
        /// The raw line received.
        line: String,
    },

    /// conmon did not answer within the create timeout.
    #[error("container creation timeout for {id} after {timeout:?} (conmon {conmon})")]
    CreateTimeout {
        /// Container ID.
        id: String,
        /// conmon binary path.
        conmon: PathBuf,
        /// The timeout that elapsed.
        timeout: Duration,
    },

    /// The runtime does not know the container.
    #[error("container {id} does not exist in runtime {runtime}")]
    NotFound {
        /// Container ID.
        id: String,
        /// Runtime binary path.
        runtime: PathBuf,
    },

    /// A runtime subcommand (start, kill, delete, ...) failed.
    #[error("{runtime} {op} {id} failed ({status}): {message}")]
    RuntimeCommand {
        /// Container ID.
        id: String,
        /// Runtime binary path.
        runtime: PathBuf,
        /// Subcommand, e.g. `start`.
        op: &'static str,
        /// Exit status, as text.
        status: String,
        /// The runtime's error message.
        message: String,
    },

    /// The runtime printed output that could not be parsed.
    #[error("parsing {runtime} {op} output for {id}: {message}")]
    RuntimeOutput {
        /// Container ID.
        id: String,
        /// Runtime binary path.
        runtime: PathBuf,
        /// Subcommand.
        op: &'static str,
        /// Parse error.
        message: String,
    },

    /// The container did not exit after SIGKILL.
    #[error("container {id} did not die within timeout {timeout:?}")]
    StopTimeout {
        /// Container ID.
        id: String,
        /// Grace period after SIGKILL that elapsed.
        timeout: Duration,
    },

    /// A process inside the container could not be executed by `runtime exec`.
    #[error("exec in container {id} failed: {message}")]
    ExecFailed {
        /// Container ID.
        id: String,
        /// The runtime's message.
        message: String,
    },

    /// The exit file exists but does not hold a number.
    #[error("invalid exit file {path}: {content:?}")]
    BadExitFile {
        /// Exit file path.
        path: PathBuf,
        /// Its content.
        content: String,
    },

    /// A k8s-file log line could not be parsed.
    #[error("invalid log line {line_no} in {path}: {line:?}")]
    BadLogLine {
        /// Log file path.
        path: PathBuf,
        /// 1-based line number.
        line_no: usize,
        /// The offending line (truncated).
        line: String,
    },
}

impl OciError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        OciError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(context: &'static str, errno: nix::errno::Errno) -> Self {
        OciError::Sys { context, errno }
    }

    /// For `map_err`: `binary` could not be run (or waited for) for container `id`.
    pub(crate) fn spawn(id: &str, binary: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let (id, binary) = (id.to_string(), binary.to_path_buf());
        move |source| OciError::Spawn { id, binary, source }
    }

    /// The runtime's own message when this error carries one.
    pub fn runtime_message(&self) -> Option<&str> {
        match self {
            OciError::CreateFailed { message, .. }
            | OciError::RuntimeCommand { message, .. }
            | OciError::ExecFailed { message, .. } => Some(message),
            OciError::ConmonNoReport { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// The CLI exit code for this error when it happens while creating or
    /// starting a container (125, 126 or 127, see [`crate::exit_code_for_create_error`]).
    pub fn create_exit_code(&self) -> u8 {
        match self {
            OciError::CreateFailed { message, .. } | OciError::ExecFailed { message, .. } => {
                crate::exitcode::exit_code_for_create_error(message)
            }
            _ => crate::exitcode::EXIT_RPOD_FAILURE,
        }
    }
}
