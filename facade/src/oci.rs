//! The seam around the OCI runtime: [`OciDriver`] is what the container life cycle asks of
//! conmon and runc/crun. The real driver is [`rpod_oci::OciRuntime`], built on first use from the
//! configuration; unit tests put a recording fake in its place, so the life cycle's order of
//! steps is tested without root.

use std::path::Path;
use std::time::Duration;

use rpod_oci::{
    CreateOptions, Created, ExecOptions, ExecOutput, OciError, OciRuntime, RuntimeState,
};

use crate::error::RuntimeError;
use crate::Runtime;

/// Environment variables passed on to conmon so the cleanup command it runs sees the same
/// configuration directories as this process.
const FORWARDED_ENV: &[&str] = &["RPOD_CONFIG_ETC_DIR", "RPOD_CONFIG_SHARE_DIR", "HOME"];

/// The operations the life cycle needs from the OCI runtime and conmon.
pub(crate) trait OciDriver: Send + Sync + std::fmt::Debug {
    /// conmon + `runtime create`: the container is created, not started.
    fn create(&self, opts: &CreateOptions) -> Result<Created, OciError>;
    /// `runtime start`.
    fn start(&self, id: &str) -> Result<(), OciError>;
    /// `runtime kill [--all] <signal>`.
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError>;
    /// `runtime delete [--force]`; [`OciError::NotFound`] when the runtime does not know it.
    fn delete(&self, id: &str, force: bool) -> Result<(), OciError>;
    /// `runtime pause`.
    fn pause(&self, id: &str) -> Result<(), OciError>;
    /// `runtime state`: what the runtime knows of the container.
    fn state(&self, id: &str) -> Result<RuntimeState, OciError>;
    /// `runtime resume`.
    fn resume(&self, id: &str) -> Result<(), OciError>;
    /// Stop signal, up to `timeout`, then SIGKILL; the exit code.
    fn stop(&self, id: &str, timeout: Duration, signal: Option<i32>) -> Result<i32, OciError>;
    /// `runtime exec`.
    fn exec(&self, id: &str, opts: &ExecOptions) -> Result<ExecOutput, OciError>;
    /// Waits up to `timeout` for the exit file; the exit code, or `None` on timeout.
    fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<Option<i32>, OciError>;
    /// Removes conmon's per-run files from the bundle.
    fn remove_conmon_files(&self, id: &str, bundle: &Path) -> Result<(), OciError>;
}

impl OciDriver for OciRuntime {
    fn create(&self, opts: &CreateOptions) -> Result<Created, OciError> {
        OciRuntime::create(self, opts)
    }
    fn start(&self, id: &str) -> Result<(), OciError> {
        OciRuntime::start(self, id)
    }
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        OciRuntime::kill(self, id, signal, all)
    }
    fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        OciRuntime::delete(self, id, force)
    }
    fn pause(&self, id: &str) -> Result<(), OciError> {
        OciRuntime::pause(self, id)
    }
    fn state(&self, id: &str) -> Result<RuntimeState, OciError> {
        OciRuntime::state(self, id)
    }
    fn resume(&self, id: &str) -> Result<(), OciError> {
        OciRuntime::resume(self, id)
    }
    fn stop(&self, id: &str, timeout: Duration, signal: Option<i32>) -> Result<i32, OciError> {
        OciRuntime::stop(self, id, timeout, signal)
    }
    fn exec(&self, id: &str, opts: &ExecOptions) -> Result<ExecOutput, OciError> {
        OciRuntime::exec(self, id, opts)
    }
    fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<Option<i32>, OciError> {
        OciRuntime::wait_exit(self, id, timeout)
    }
    fn remove_conmon_files(&self, id: &str, bundle: &Path) -> Result<(), OciError> {
        OciRuntime::remove_conmon_files(self, id, bundle)
    }
}

impl Runtime {
    /// The OCI runtime driver, built on first use (refuses a runtime that cannot work here, such
    /// as crun on a cgroups v1 or hybrid host).
    pub(crate) fn oci(&self) -> Result<&dyn OciDriver, RuntimeError> {
        if let Some(oci) = self.oci.get() {
            return Ok(oci.as_ref());
        }
        let oci = self.build_oci()?;
        Ok(self.oci.get_or_init(|| std::sync::Arc::new(oci)).as_ref())
    }

    fn build_oci(&self) -> Result<OciRuntime, RuntimeError> {
        let choice = rpod_oci::RuntimeChoice {
            name: self.oci_runtime().name.clone(),
            path: self.oci_runtime().path.clone(),
        };
        rpod_oci::check_runtime_suitable(&choice, rpod_oci::host_cgroup_mode()).map_err(|e| {
            RuntimeError::InvalidSpec(format!(
                "{e} (runtime from {})",
                self.config.sources.get("runtime")
            ))
        })?;
        let v = &self.config.values;
        if v.cgroup_manager == rpod_config::CgroupManager::Systemd
            && !self.config.env.systemd_booted
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "the systemd cgroup manager is configured ({}) but systemd is not running on this \
                 host; use --cgroup-manager cgroupfs",
                self.config.sources.get("cgroup_manager")
            )));
        }
        let mut cfg = rpod_oci::RuntimeConfig::new(self.exits_dir());
        cfg.runtime_path = choice.path;
        cfg.conmon_path = self.conmon().path.clone();
        cfg.conmon_env = v.conmon_env_vars.clone();
        for k in FORWARDED_ENV {
            if let Some(val) = std::env::var_os(k) {
                cfg.conmon_env
                    .push(format!("{k}={}", val.to_string_lossy()));
            }
        }
        cfg.cgroup_manager = crate::convert::cgroup_manager(v.cgroup_manager);
        cfg.no_pivot = v.no_pivot_root;
        cfg.max_log_size = v.max_log_size;
        cfg.conmon_log_level = "error".to_owned();
        Ok(OciRuntime::new(cfg)?)
    }
}
