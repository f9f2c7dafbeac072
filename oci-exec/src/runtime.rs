//! The OCI runtime driver handle: [`RuntimeConfig`] (which binaries, which
//! directories) and [`OciRuntime`] itself, plus the exit-file and process
//! liveness queries every operation shares.
//!
//! The operations live beside it, by protocol: `conmon.rs` creates containers
//! through conmon; `ocicli.rs` runs the runtime binary (runc/crun) for every
//! other operation.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::cgroup::CgroupManager;
use crate::conmon::{DEFAULT_CONMON_PATH, DEFAULT_CREATE_TIMEOUT};
use crate::error::{OciError, Result};
use crate::exitfile::{self, ExitInfo};
use crate::ocicli::DEFAULT_RUNTIME_PATH;

/// Static configuration of the runtime driver (plain data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Path of the OCI runtime binary (runc). Any executable works, which is
    /// the fake-runtime test seam.
    pub runtime_path: PathBuf,
    /// Runtime state root (`runc --root`); `None` = the runtime's default (`/run/runc`).
    pub runtime_root: Option<PathBuf>,
    /// Path of conmon.
    pub conmon_path: PathBuf,
    /// Environment for conmon (`KEY=VALUE`, libpod's `conmon_env_vars`).
    pub conmon_env: Vec<String>,
    /// Directory conmon writes exit files into (`<tmp_dir>/exits`).
    pub exit_dir: PathBuf,
    /// cgroup manager (`-s` for conmon when systemd).
    pub cgroup_manager: CgroupManager,
    /// conmon `--log-level` (`error`, `warning`, `info`, `debug`).
    pub conmon_log_level: String,
    /// How long to wait for conmon's report after starting it.
    pub create_timeout: Duration,
    /// Pass `--no-pivot` (for rootfs on ramfs).
    pub no_pivot: bool,
    /// conmon `--log-size-max` (bytes); negative = unlimited (flag omitted).
    pub max_log_size: i64,
}

impl RuntimeConfig {
    /// Configuration with libpod's defaults for the given exit directory.
    pub fn new(exit_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            runtime_path: PathBuf::from(DEFAULT_RUNTIME_PATH),
            runtime_root: None,
            conmon_path: PathBuf::from(DEFAULT_CONMON_PATH),
            conmon_env: vec![crate::spec::DEFAULT_PATH_ENV.to_string()],
            exit_dir: exit_dir.into(),
            cgroup_manager: CgroupManager::Cgroupfs,
            conmon_log_level: "warning".to_string(),
            create_timeout: DEFAULT_CREATE_TIMEOUT,
            no_pivot: false,
            max_log_size: -1,
        }
    }
}

/// The OCI runtime driver.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    /// The configuration (read by the conmon and runtime-CLI operations).
    pub(crate) cfg: RuntimeConfig,
}

impl OciRuntime {
    /// Create a driver. The exit directory is created (0750) if missing.
    pub fn new(cfg: RuntimeConfig) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&cfg.exit_dir)
            .map_err(|e| OciError::io("creating exit directory", cfg.exit_dir.clone(), e))?;
        Ok(OciRuntime { cfg })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    /// Exit directory.
    pub fn exit_dir(&self) -> &Path {
        &self.cfg.exit_dir
    }

    /// The exit recorded by conmon, if any (see [`exitfile::read_exit_file`]).
    pub fn exit_info(&self, id: &str, bundle: Option<&Path>) -> Result<Option<ExitInfo>> {
        exitfile::read_exit_file(&self.cfg.exit_dir, id, bundle)
    }

    /// Wait for the exit file (shared inotify watcher); `None` on timeout.
    pub fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<Option<i32>> {
        exitfile::wait_exit(&self.cfg.exit_dir, id, timeout)
    }
}

/// How a child process ended, as error messages say it (`exit status 1`,
/// `killed by signal 9`).
pub(crate) fn status_text(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// Whether process `pid` exists and is not a zombie (e.g. to notice a conmon
/// that died without writing an exit file after [`OciRuntime::wait_exit`]
/// timed out).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}
