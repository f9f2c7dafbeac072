//! Running containers: init (OCI spec + conmon + `runc create`), start, stop, kill, pause,
//! wait, exec, logs and cleanup, with libpod's states and transitions (reference §3, §5.3).
//!
//! Every operation takes the container's lock, re-syncs the state from the database and the
//! exit file, acts, and saves. Waiting for an exit never holds the lock.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rpod_oci::{
    AttachConn, CreateOptions, ExecOptions, ExecStdio, LogEntry, LogOptions, NsMode, OciError,
    OciRuntime, SpecInput,
};
use rpod_state::{ContainerRecord, ContainerStatus};

use crate::error::RuntimeError;
use crate::Runtime;

/// Environment variables passed on to conmon so the cleanup command it runs sees the same
/// configuration directories as this process.
const FORWARDED_ENV: &[&str] = &["RPOD_CONFIG_ETC_DIR", "RPOD_CONFIG_SHARE_DIR", "HOME"];

/// How [`Runtime::start_attached`] connects to the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Keep the container's stdin open and connected (`-i`).
    pub stdin: bool,
    /// Initial size `(rows, cols)` of the container's terminal, for containers created with one
    /// (`-t`); usually the caller's own terminal size.
    pub console_size: Option<(u16, u16)>,
}

/// A container started by [`Runtime::start_attached`].
#[derive(Debug)]
pub struct Attached {
    /// The container's record after the start.
    pub record: ContainerRecord,
    /// The attach connection: its output (and input, if asked for).
    pub conn: AttachConn,
    /// The container's log, opened before the start (the output is also there).
    pub log: Option<std::fs::File>,
}

/// What [`Runtime::exec`] should run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User (`uid[:gid]` or a name from the container's `/etc/passwd`).
    pub user: Option<String>,
    /// Inherit this process' stdio (the CLI) instead of capturing output.
    pub inherit_stdio: bool,
    /// Give the process a terminal (`-t`); needs `inherit_stdio` and a terminal on this
    /// process's stdio.
    pub tty: bool,
}

/// The result of [`Runtime::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The process' exit code.
    pub exit_code: i32,
    /// Captured standard output (empty with inherited stdio).
    pub stdout: Vec<u8>,
    /// Captured standard error (empty with inherited stdio).
    pub stderr: Vec<u8>,
}

fn oci_err(e: OciError) -> RuntimeError {
    RuntimeError::Oci(e)
}

impl Runtime {
    /// The OCI runtime driver, built on first use (refuses a runtime that cannot work here, such
    /// as crun on a cgroups v1 or hybrid host).
    pub(crate) fn oci(&self) -> Result<&OciRuntime, RuntimeError> {
        if let Some(oci) = self.oci.get() {
            return Ok(oci);
        }
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
        let mut cfg = rpod_oci::RuntimeConfig::new(v.tmp_dir.join("exits"));
        cfg.runtime_path = choice.path;
        cfg.conmon_path = self.conmon().path.clone();
        cfg.conmon_env = v.conmon_env_vars.clone();
        for k in FORWARDED_ENV {
            if let Some(val) = std::env::var_os(k) {
                cfg.conmon_env
                    .push(format!("{k}={}", val.to_string_lossy()));
            }
        }
        cfg.cgroup_manager = match v.cgroup_manager {
            rpod_config::CgroupManager::Cgroupfs => rpod_oci::CgroupManager::Cgroupfs,
            rpod_config::CgroupManager::Systemd => rpod_oci::CgroupManager::Systemd,
        };
        cfg.no_pivot = v.no_pivot_root;
        cfg.max_log_size = v.max_log_size;
        cfg.conmon_log_level = "error".to_owned();
        let oci = OciRuntime::new(cfg).map_err(oci_err)?;
        Ok(self.oci.get_or_init(|| oci))
    }

    /// `<run_root>/containers/<id>`: per-boot files (pid files).
    pub fn container_run_dir(&self, id: &str) -> PathBuf {
        self.config.values.run_root.join("containers").join(id)
    }

    /// The exit file conmon writes for `id`.
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.config.values.tmp_dir.join("exits").join(id)
    }

    /// Brings `rec.state` up to date from the exit file (without the runtime binary): a running
    /// or paused container whose exit file exists is stopped, with exit code, finished time and
    /// OOM flag. Returns whether anything changed.
    fn sync_exit(&self, rec: &mut ContainerRecord) -> Result<bool, RuntimeError> {
        if !matches!(
            rec.state.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
        ) {
            return Ok(false);
        }
        let bundle = self.container_dir(&rec.config.id);
        let exits = self.config.values.tmp_dir.join("exits");
        match rpod_oci::read_exit_file(&exits, &rec.config.id, Some(&bundle)).map_err(oci_err)? {
            Some(info) => {
                rec.state.status = ContainerStatus::Stopped;
                rec.state.exit_code = info.code;
                rec.state.finished = Some(info.finished);
                rec.state.oom_killed = info.oom_killed;
                rec.state.pid = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Re-reads a container (caller holds its lock) and syncs it with its exit file, saving
    /// what changed.
    fn sync(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        let mut rec = self.state.container(id)?;
        if self.sync_exit(&mut rec)? {
            self.state.save_container(id, &rec.state)?;
        }
        Ok(rec)
    }

    /// A container's record with its status brought up to date from the exit file, without
    /// taking its lock or saving (for listing).
    pub fn container_view(&self, rec: &mut ContainerRecord) -> Result<(), RuntimeError> {
        self.sync_exit(rec).map(|_| ())
    }

    /// Runs `f` with the container's lock held and its freshly synced record. Callers that need
    /// the pod lock take it first (see `start_impl` and `with_infra_pod_lock`).
    pub(crate) fn with_container<T>(
        &self,
        id_or_name: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let lock = self.locks.retrieve(rec.config.lock_id)?;
        let _guard = lock.lock()?;
        let mut rec = self.sync(&rec.config.id)?;
        f(&mut rec)
    }

    /// The exit command conmon runs after the container exits: `rpod … container cleanup
    /// [--rm] <id>` with this runtime's paths, so cleanup happens even if the process that
    /// started the container is gone.
    fn exit_command(&self, id: &str, auto_remove: bool) -> Vec<String> {
        let Some(bin) = self.cleanup_binary() else {
            return Vec::new();
        };
        let mut a = vec![bin.display().to_string()];
        let lock_name = crate::locks::segment_name(&self.config);
        a.extend(self.config.cleanup_args(&rpod_config::Resolved {
            runtime: &self.oci_runtime().path,
            conmon: &self.conmon().path,
            lock_name: &lock_name,
        }));
        a.push("--log-level".to_owned());
        a.push("error".to_owned());
        a.push("container".to_owned());
        a.push("cleanup".to_owned());
        if auto_remove {
            a.push("--rm".to_owned());
        }
        a.push(id.to_owned());
        a
    }

    /// Namespaces for a container: new ones, except those it shares with another container
    /// (pod members join the infra container's), which must be running.
    fn namespaces_for(&self, rec: &ContainerRecord) -> Result<rpod_oci::Namespaces, RuntimeError> {
        let mut ns = rpod_oci::Namespaces::default();
        let c = &rec.config;
        let joins: [(&Option<String>, &str, &mut NsMode); 5] = [
            (&c.net_ns_ctr, "net", &mut ns.net),
            (&c.ipc_ns_ctr, "ipc", &mut ns.ipc),
            (&c.uts_ns_ctr, "uts", &mut ns.uts),
            (&c.pid_ns_ctr, "pid", &mut ns.pid),
            (&c.cgroup_ns_ctr, "cgroup", &mut ns.cgroup),
        ];
        for (other, kind, slot) in joins {
            let Some(other) = other else { continue };
            let mut dep = self.state.container(other)?;
            self.sync_exit(&mut dep)?;
            if dep.state.status != ContainerStatus::Running || dep.state.pid <= 0 {
                return Err(RuntimeError::DependencyNotRunning {
                    id: c.id.clone(),
                    dependency: other.clone(),
                });
            }
            *slot = NsMode::Join(PathBuf::from(format!("/proc/{}/ns/{kind}", dep.state.pid)));
        }
        Ok(ns)
    }

    /// Writes the OCI spec and runs conmon + `runtime create` (the container is then created).
    fn init(
        &self,
        rec: &mut ContainerRecord,
        auto_remove: bool,
        attach: AttachOptions,
    ) -> Result<(), RuntimeError> {
        let stdin = attach.stdin;
        let c = &rec.config;
        let id = c.id.clone();
        let bundle = self.container_dir(&id);
        let run_dir = self.container_run_dir(&id);
        for d in [&bundle, &run_dir] {
            std::fs::create_dir_all(d).map_err(|source| RuntimeError::CreateDir {
                path: d.clone(),
                source,
            })?;
        }
        // An infra container may start before its pod ever did (`run --pod`, `start` of a
        // member, which start it as a dependency): build its root filesystem here.
        if c.is_infra {
            self.ensure_infra_rootfs()?;
        }
        if !Path::new(&c.rootfs).is_dir() {
            return Err(RuntimeError::Rootfs {
                path: PathBuf::from(&c.rootfs),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let mut input = SpecInput::new(&id, &c.rootfs, c.command.clone());
        input.env = c.env.clone();
        input.cwd = if c.working_dir.is_empty() {
            "/".to_owned()
        } else {
            c.working_dir.clone()
        };
        input.user = c.user.clone();
        input.terminal = c.terminal;
        input.console_size = attach.console_size;
        // A container that joins another's UTS namespace must not change its host name.
        input.hostname =
            Some(c.hostname.clone()).filter(|h| !h.is_empty() && c.uts_ns_ctr.is_none());
        input.namespaces = self.namespaces_for(rec)?;
        input.cgroup_manager = self.oci()?.config().cgroup_manager;
        input.cgroup_parent = self.cgroup_parent_for(rec)?;
        input.rlimits = rec
            .config
            .rlimits
            .iter()
            .map(|r| rpod_oci::Rlimit {
                name: r.kind.clone(),
                soft: r.soft,
                hard: r.hard,
            })
            .chain(input.rlimits.clone())
            .collect();
        rpod_oci::write_spec_for(&bundle, &input).map_err(oci_err)?;
        let mut opts = CreateOptions::new(&id, &bundle);
        opts.name = rec.config.name.clone();
        opts.pid_file = Some(run_dir.join("pidfile"));
        opts.conmon_pid_file = Some(run_dir.join("conmon.pid"));
        opts.log_path = Some(PathBuf::from(&rec.config.log_path));
        opts.exit_command = self.exit_command(&id, auto_remove);
        opts.stdin = stdin;
        opts.terminal = rec.config.terminal;
        let oci = self.oci()?;
        match oci.create(&opts) {
            Ok(created) => {
                rec.state.status = ContainerStatus::Created;
                rec.state.pid = created.pid;
                rec.state.conmon_pid = created.conmon_pid.unwrap_or(0);
                rec.state.exit_code = 0;
                rec.state.oom_killed = false;
                rec.state.finished = None;
                self.state.save_container(&id, &rec.state)?;
                Ok(())
            }
            Err(e) => {
                // Nothing may stay behind in the runtime.
                let _ = oci.delete(&id, true);
                Err(oci_err(e))
            }
        }
    }

    /// The cgroup parent of a container: its pod's cgroup, else the configured default.
    fn cgroup_parent_for(&self, rec: &ContainerRecord) -> Result<Option<String>, RuntimeError> {
        if let Some(pod_id) = &rec.config.pod {
            let pod = self.state.pod(pod_id)?;
            let parent = if pod.config.cgroup_parent.is_empty() {
                crate::cgroups::default_parent(&self.config)
            } else {
                pod.config.cgroup_parent.clone()
            };
            return Ok(Some(crate::cgroups::pod_cgroup(
                self.config.values.cgroup_manager,
                &parent,
                pod_id,
            )));
        }
        Ok(Some(crate::cgroups::default_parent(&self.config)))
    }

    /// Starts a container: creates it in the OCI runtime if needed (from configured, stopped or
    /// exited), then starts it. Starting a running container does nothing. Dependencies (the
    /// pod's infra container) are started first.
    pub fn start_container(&self, id_or_name: &str) -> Result<ContainerRecord, RuntimeError> {
        self.start_container_with(id_or_name, false)
    }

    /// Like [`Runtime::start_container`]; with `auto_remove` the container removes itself
    /// (through conmon's exit command) once it exits.
    pub fn start_container_with(
        &self,
        id_or_name: &str,
        auto_remove: bool,
    ) -> Result<ContainerRecord, RuntimeError> {
        self.start_impl(id_or_name, auto_remove, None, false)
            .map(|(rec, _, _)| rec)
    }

    /// Connects to a running container's output, and its input if it was started with stdin kept
    /// open (podman attach). The connection ends when the container exits.
    pub fn attach_container(&self, id_or_name: &str) -> Result<Attached, RuntimeError> {
        self.check_valid()?;
        let mut record = self.state.lookup_container(id_or_name)?;
        self.container_view(&mut record)?;
        if record.state.status != ContainerStatus::Running {
            return Err(RuntimeError::InvalidState {
                id: record.config.id,
                status: record.state.status.to_string(),
                action: "attach to",
            });
        }
        let conn = AttachConn::connect(&self.container_dir(&record.config.id)).map_err(oci_err)?;
        Ok(Attached {
            record,
            conn,
            log: None,
        })
    }

    /// Sets the terminal size of a running container that has one (`-t`), through conmon.
    pub fn resize_container(
        &self,
        id_or_name: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        if !rec.config.terminal {
            return Err(RuntimeError::InvalidState {
                id: rec.config.id,
                status: "created without a terminal (-t)".to_owned(),
                action: "resize the terminal of",
            });
        }
        rpod_oci::resize_terminal(&self.container_dir(&rec.config.id), rows, cols).map_err(oci_err)
    }

    /// Starts a container with its output (and, with `stdin`, its input) connected to the
    /// returned attach connection, which is made before the container starts so nothing is
    /// lost. `stdin` only takes effect when the container is created by this call.
    pub fn start_attached(
        &self,
        id_or_name: &str,
        auto_remove: bool,
        attach: AttachOptions,
    ) -> Result<Attached, RuntimeError> {
        let (record, conn, log) = self.start_impl(id_or_name, auto_remove, Some(attach), false)?;
        match conn {
            Some(conn) => Ok(Attached { record, conn, log }),
            None => Err(RuntimeError::InvalidState {
                id: record.config.id,
                status: record.state.status.to_string(),
                action: "attach to (it was already running)",
            }),
        }
    }

    /// The start, with the pod lock taken first for pod members unless the caller holds it
    /// (`pod_held`): a member joins the infra container's namespaces by its PID, and whoever
    /// stops the infra container holds the pod lock, so the PID cannot go away meanwhile.
    #[allow(clippy::type_complexity)]
    pub(crate) fn start_impl(
        &self,
        id_or_name: &str,
        auto_remove: bool,
        attach: Option<AttachOptions>,
        pod_held: bool,
    ) -> Result<(ContainerRecord, Option<AttachConn>, Option<std::fs::File>), RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let pod_lock = if pod_held {
            None
        } else {
            self.pod_lock_of(&rec)?
        };
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        self.start_dependencies(&rec)?;
        self.with_container(&rec.config.id, |rec| {
            self.start_locked(rec, auto_remove, attach)
        })
    }

    /// The lock of the pod `rec` belongs to, if any (pod lock before container lock).
    pub(crate) fn pod_lock_of(
        &self,
        rec: &ContainerRecord,
    ) -> Result<Option<rpod_lock::Lock>, RuntimeError> {
        let Some(pod_id) = &rec.config.pod else {
            return Ok(None);
        };
        match self.state.pod(pod_id) {
            Ok(p) => Ok(Some(self.locks.retrieve(p.config.lock_id)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts every container `rec` shares namespaces with that is not running (the pod's
    /// infra container), each under its own lock. The caller holds the pod lock.
    fn start_dependencies(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        for dep in rec.config.dependencies() {
            let mut d = self.state.container(&dep)?;
            self.sync_exit(&mut d)?;
            if d.state.status != ContainerStatus::Running {
                self.start_impl(&dep, false, None, true)?;
            }
        }
        Ok(())
    }

    /// Runs `f` on a container; for a pod's infra container, under the pod lock first (its
    /// PID is what members join).
    fn with_infra_pod_lock<T>(
        &self,
        id_or_name: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let pod_lock = if rec.config.is_infra {
            self.pod_lock_of(&rec)?
        } else {
            None
        };
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        self.with_container(&rec.config.id, f)
    }

    /// The start itself (caller holds the container's lock and has synced it).
    #[allow(clippy::type_complexity)]
    fn start_locked(
        &self,
        rec: &mut ContainerRecord,
        auto_remove: bool,
        attach: Option<AttachOptions>,
    ) -> Result<(ContainerRecord, Option<AttachConn>, Option<std::fs::File>), RuntimeError> {
        let opts = attach.unwrap_or_default();
        let auto_remove = auto_remove || rec.config.auto_remove;
        let id = rec.config.id.clone();
        match rec.state.status {
            ContainerStatus::Running => return Ok((rec.clone(), None, None)),
            ContainerStatus::Paused | ContainerStatus::Unknown => {
                return Err(RuntimeError::InvalidState {
                    id,
                    status: rec.state.status.to_string(),
                    action: "start",
                })
            }
            ContainerStatus::Stopped => {
                self.cleanup_locked(rec, true)?;
                self.init(rec, auto_remove, opts)?;
            }
            ContainerStatus::Configured | ContainerStatus::Exited => {
                self.init(rec, auto_remove, opts)?;
            }
            ContainerStatus::Created => {}
        }
        let oci = self.oci()?;
        let conn = match attach {
            Some(_) => match AttachConn::connect(&self.container_dir(&id)) {
                Ok(c) => Some(c),
                Err(e) => {
                    let _ = oci.delete(&id, true);
                    rec.state.status = ContainerStatus::Exited;
                    rec.state.exit_code = -1;
                    self.state.save_container(&id, &rec.state)?;
                    return Err(oci_err(e));
                }
            },
            None => None,
        };
        // Keep the log open: if the container exits at once and is removed (--rm) before
        // its output is read, the open file still has it.
        let log = conn
            .as_ref()
            .and_then(|_| std::fs::File::open(&rec.config.log_path).ok());
        if let Err(e) = oci.start(&id) {
            let _ = oci.delete(&id, true);
            rec.state.status = ContainerStatus::Exited;
            rec.state.exit_code = -1;
            self.state.save_container(&id, &rec.state)?;
            return Err(oci_err(e));
        }
        rec.state.status = ContainerStatus::Running;
        rec.state.started = Some(SystemTime::now());
        self.state.save_container(&id, &rec.state)?;
        Ok((rec.clone(), conn, log))
    }

    /// Cleanup of a container that is no longer running (caller holds its lock): `runtime
    /// delete` if the runtime still knows it, per-boot files removed, exit file kept as
    /// `<id>-old`; the container ends up exited.
    fn cleanup_locked(&self, rec: &mut ContainerRecord, save: bool) -> Result<(), RuntimeError> {
        let id = rec.config.id.clone();
        match rec.state.status {
            ContainerStatus::Running | ContainerStatus::Paused => {
                return Err(RuntimeError::InvalidState {
                    id,
                    status: rec.state.status.to_string(),
                    action: "clean up",
                })
            }
            ContainerStatus::Stopped | ContainerStatus::Created => {
                let oci = self.oci()?;
                match oci.delete(&id, true) {
                    Ok(()) | Err(OciError::NotFound { .. }) => {}
                    Err(e) => return Err(oci_err(e)),
                }
                let bundle = self.container_dir(&id);
                if let Err(e) = oci.remove_conmon_files(&id, &bundle) {
                    tracing::warn!(container = %id, error = %e, "removing conmon files");
                }
                // A Created record must not outlive its runtime container (a start would then
                // skip the create), so it is saved even before a removal.
                let save = save || rec.state.status == ContainerStatus::Created;
                if rec.state.status == ContainerStatus::Created && rec.state.finished.is_none() {
                    rec.state.finished = Some(SystemTime::now());
                }
                rec.state.status = ContainerStatus::Exited;
                rec.state.pid = 0;
                rec.state.conmon_pid = 0;
                // Exec'd processes died with the container's PID namespace.
                rec.state.exec_sessions.clear();
                if save {
                    self.state.save_container(&id, &rec.state)?;
                }
            }
            ContainerStatus::Configured | ContainerStatus::Exited | ContainerStatus::Unknown => {}
        }
        let run_dir = self.container_run_dir(&id);
        let _ = std::fs::remove_dir_all(run_dir);
        Ok(())
    }

    /// Cleanup before removal (caller holds the lock). The cleaned-up state is not saved: the
    /// record is deleted next, and if that fails, a `Stopped` record whose runtime container
    /// is gone is cleaned up again harmlessly by the next operation.
    pub(crate) fn cleanup_for_removal(
        &self,
        rec: &mut ContainerRecord,
    ) -> Result<(), RuntimeError> {
        self.cleanup_locked(rec, false)
    }

    /// `rpod container cleanup`: after a container exited, release what it held in the runtime
    /// and, with `remove`, remove it. A container that is already gone is not an error.
    pub fn cleanup_container(&self, id_or_name: &str, remove: bool) -> Result<(), RuntimeError> {
        let clean = || {
            self.with_container(id_or_name, |rec| {
                if !matches!(
                    rec.state.status,
                    ContainerStatus::Running | ContainerStatus::Paused
                ) {
                    self.cleanup_locked(rec, true)?;
                }
                Ok(())
            })
        };
        let res = if remove {
            // One lock hold for both (removal cleans up first): `run --rm` and conmon's exit
            // command race here, and handing the lock over between the two steps only made
            // the loser wait for the winner's half-done work.
            match self.remove_container(id_or_name, false) {
                Ok(_) => Ok(()),
                // Refused before it cleaned up: still release what the exited container holds
                // in the runtime, then report why it stays.
                Err(
                    e @ (RuntimeError::HasDependants { .. }
                    | RuntimeError::InfraContainer { .. }
                    | RuntimeError::ExecSessions { .. }),
                ) => clean().and(Err(e)),
                Err(e) => Err(e),
            }
        } else {
            clean()
        };
        match res {
            Ok(()) => Ok(()),
            // Not exited (yet): nothing to clean; or cleaned and removed by someone else.
            Err(RuntimeError::ContainerRunning { .. }) => Ok(()),
            Err(RuntimeError::State(e)) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops a running (or created) container: its stop signal, up to `timeout` (default: its
    /// stop timeout), then SIGKILL to all its processes; then cleans up. Returns the exit code.
    pub fn stop_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<i32, RuntimeError> {
        self.with_infra_pod_lock(id_or_name, |rec| self.stop_locked(rec, timeout))
    }

    pub(crate) fn stop_locked(
        &self,
        rec: &mut ContainerRecord,
        timeout: Option<Duration>,
    ) -> Result<i32, RuntimeError> {
        let id = rec.config.id.clone();
        match rec.state.status {
            ContainerStatus::Running | ContainerStatus::Created => {}
            ContainerStatus::Paused => {
                // A frozen process cannot act on SIGTERM: thaw it first (and record that, in
                // case the stop itself fails).
                self.oci()?.resume(&id).map_err(oci_err)?;
                rec.state.status = ContainerStatus::Running;
                self.state.save_container(&id, &rec.state)?;
            }
            ContainerStatus::Stopped | ContainerStatus::Exited => {
                return Err(RuntimeError::AlreadyStopped {
                    id,
                    status: rec.state.status.to_string(),
                })
            }
            ContainerStatus::Configured | ContainerStatus::Unknown => {
                return Err(RuntimeError::InvalidState {
                    id,
                    status: rec.state.status.to_string(),
                    action: "stop",
                })
            }
        }
        let timeout = timeout.unwrap_or(Duration::from_secs(rec.config.stop_timeout.into()));
        let sig = i32::try_from(rec.config.stop_signal)
            .ok()
            .filter(|s| *s > 0);
        let code = match self.oci()?.stop(&id, timeout, sig) {
            Ok(code) => code,
            // No exit file after SIGKILL: conmon is gone (killed, or its cgroup was torn down).
            // If the container's process is gone too, record the exit as unknown (-1), as
            // libpod's waitForExitFileAndSync does, so the container can be cleaned up and
            // removed instead of being stuck "running" forever.
            Err(OciError::StopTimeout { .. })
                if rec.state.pid <= 0 || !rpod_oci::process_alive(rec.state.pid) =>
            {
                tracing::warn!(container = %id, "no exit file from conmon; recording exit code -1");
                rec.state.status = ContainerStatus::Stopped;
                rec.state.exit_code = -1;
                rec.state.finished = Some(SystemTime::now());
                -1
            }
            Err(e) => return Err(oci_err(e)),
        };
        self.sync_exit(rec)?;
        if rec.state.status != ContainerStatus::Stopped {
            rec.state.status = ContainerStatus::Stopped;
            rec.state.exit_code = code;
            rec.state.finished = Some(SystemTime::now());
        }
        self.state.save_container(&id, &rec.state)?;
        self.cleanup_locked(rec, true)?;
        Ok(rec.state.exit_code)
    }

    /// Sends `signal` to a running container's main process (with `all`, to every process).
    pub fn kill_container(
        &self,
        id_or_name: &str,
        signal: i32,
        all: bool,
    ) -> Result<(), RuntimeError> {
        self.with_infra_pod_lock(id_or_name, |rec| {
            if rec.state.status != ContainerStatus::Running {
                return Err(RuntimeError::InvalidState {
                    id: rec.config.id.clone(),
                    status: rec.state.status.to_string(),
                    action: "kill (it is not running)",
                });
            }
            self.oci()?
                .kill(&rec.config.id, signal, all)
                .map_err(oci_err)
        })
    }

    /// Freezes a running container.
    pub fn pause_container(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.with_container(id_or_name, |rec| {
            if rec.state.status != ContainerStatus::Running {
                return Err(RuntimeError::InvalidState {
                    id: rec.config.id.clone(),
                    status: rec.state.status.to_string(),
                    action: "pause (it is not running)",
                });
            }
            self.oci()?.pause(&rec.config.id).map_err(oci_err)?;
            rec.state.status = ContainerStatus::Paused;
            Ok(self.state.save_container(&rec.config.id, &rec.state)?)
        })
    }

    /// Thaws a paused container.
    pub fn unpause_container(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.with_container(id_or_name, |rec| {
            if rec.state.status != ContainerStatus::Paused {
                return Err(RuntimeError::InvalidState {
                    id: rec.config.id.clone(),
                    status: rec.state.status.to_string(),
                    action: "unpause (it is not paused)",
                });
            }
            self.oci()?.resume(&rec.config.id).map_err(oci_err)?;
            rec.state.status = ContainerStatus::Running;
            Ok(self.state.save_container(&rec.config.id, &rec.state)?)
        })
    }

    /// Stops the container if it runs, then starts it again, under one hold of its lock (so
    /// the old conmon's cleanup cannot remove an auto-removing container in between).
    pub fn restart_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<ContainerRecord, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let pod_lock = self.pod_lock_of(&rec)?;
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        self.start_dependencies(&rec)?;
        self.with_container(&rec.config.id, |rec| {
            match rec.state.status {
                ContainerStatus::Running | ContainerStatus::Created => {
                    self.stop_locked(rec, timeout)?;
                }
                ContainerStatus::Paused | ContainerStatus::Unknown => {
                    return Err(RuntimeError::InvalidState {
                        id: rec.config.id.clone(),
                        status: rec.state.status.to_string(),
                        action: "restart",
                    })
                }
                _ => {}
            }
            self.start_locked(rec, false, None).map(|(rec, _, _)| rec)
        })
    }

    /// Waits until the container has exited and returns its exit code. Does not hold the
    /// container's lock while waiting (it watches the exit file).
    pub fn wait_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<i32>, RuntimeError> {
        self.check_valid()?;
        let rec = match self.state.lookup_container(id_or_name) {
            Ok(rec) => rec,
            // Already removed (`run --rm` racing conmon's `cleanup --rm`): a full ID's exit
            // file still has the code.
            Err(e) if e.is_not_found() => {
                return match self.removed_exit_code(id_or_name) {
                    Some(code) => Ok(Some(code)),
                    None => Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let id = rec.config.id.clone();
        let live = |status: ContainerStatus| {
            matches!(
                status,
                ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
            )
        };
        let mut waited = None;
        if live(rec.state.status) {
            // The exit file may be retired (cleanup) or the record removed (`--rm`) by another
            // process between our read and the wait: re-check the record now and then instead
            // of waiting for a file that will not come.
            let deadline = timeout.map(|t| std::time::Instant::now() + t);
            loop {
                let mut slice = Duration::from_millis(500);
                if let Some(d) = deadline {
                    slice = slice.min(d.saturating_duration_since(std::time::Instant::now()));
                }
                if let Some(code) = self.oci()?.wait_exit(&id, Some(slice)).map_err(oci_err)? {
                    waited = Some(code);
                    break;
                }
                match self.state.container(&id) {
                    Ok(mut r) => {
                        self.sync_exit(&mut r)?;
                        if !live(r.state.status) {
                            break;
                        }
                    }
                    Err(e) if e.is_not_found() => break,
                    Err(e) => return Err(e.into()),
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Ok(None);
                }
            }
        }
        match self.with_container(&id, |rec| Ok(rec.state.exit_code)) {
            Ok(code) => Ok(Some(code)),
            // Removed in the meantime (--rm): the exit file still has the code.
            Err(RuntimeError::State(e)) if e.is_not_found() => {
                Ok(waited.or_else(|| self.removed_exit_code(&id)))
            }
            Err(e) => Err(e),
        }
    }

    /// The exit code of a removed container from its exit file (kept, as by libpod, until the
    /// tmp dir is wiped at reboot), current or retired.
    fn removed_exit_code(&self, id: &str) -> Option<i32> {
        // Only a full container ID names an exit file (never a path a user typed).
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let exits = self.config.values.tmp_dir.join("exits");
        [id.to_owned(), format!("{id}-old")].iter().find_map(|f| {
            rpod_oci::read_exit_file(&exits, f, None)
                .ok()
                .flatten()
                .map(|i| i.code)
        })
    }

    /// Runs a process in a running container and returns its exit code (and output when not
    /// inherited).
    pub fn exec(&self, id_or_name: &str, spec: &ExecSpec) -> Result<ExecResult, RuntimeError> {
        // The session is recorded while it runs (libpod's exec sessions): removing the
        // container without force is refused meanwhile. Its pid is this process's, so a session
        // whose rpod died is recognised as stale.
        let session = crate::names::generate_id()?;
        let rec = self.with_container(id_or_name, |rec| {
            if rec.state.status != ContainerStatus::Running {
                return Err(RuntimeError::InvalidState {
                    id: rec.config.id.clone(),
                    status: rec.state.status.to_string(),
                    action: "exec in (it is not running)",
                });
            }
            rec.state.exec_sessions.insert(
                session.clone(),
                rpod_state::ExecSession {
                    command: spec.command.clone(),
                    pid: i32::try_from(std::process::id()).unwrap_or(0),
                },
            );
            self.state.save_container(&rec.config.id, &rec.state)?;
            Ok(rec.clone())
        })?;
        let result = self.exec_in(&rec, spec);
        let ended = self.with_container(&rec.config.id, |rec| {
            if rec.state.exec_sessions.remove(&session).is_some() {
                self.state.save_container(&rec.config.id, &rec.state)?;
            }
            Ok(())
        });
        match ended {
            Ok(()) => {}
            // Removed (forcibly) while the session ran.
            Err(RuntimeError::State(e)) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(container = %rec.config.id, error = %e, "ending the exec session")
            }
        }
        result
    }

    fn exec_in(&self, rec: &ContainerRecord, spec: &ExecSpec) -> Result<ExecResult, RuntimeError> {
        let user = match spec
            .user
            .as_deref()
            .or(Some(rec.config.user.as_str()).filter(|u| !u.is_empty()))
        {
            Some(u) => {
                let r =
                    rpod_oci::resolve_user(Path::new(&rec.config.rootfs), u).map_err(oci_err)?;
                Some(format!("{}:{}", r.uid, r.gid))
            }
            None => None,
        };
        let mut env = rec.config.env.clone();
        env.extend(spec.env.iter().cloned());
        let opts = ExecOptions {
            args: spec.command.clone(),
            env,
            cwd: spec
                .workdir
                .clone()
                .or_else(|| Some(rec.config.working_dir.clone()).filter(|w| !w.is_empty())),
            user,
            stdio: if spec.inherit_stdio {
                ExecStdio::Inherit
            } else {
                ExecStdio::Piped
            },
            no_new_privs: false,
            pid_file: None,
            tty: spec.tty,
        };
        let out = self.oci()?.exec(&rec.config.id, &opts).map_err(oci_err)?;
        Ok(ExecResult {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// The container's log entries (k8s-file), optionally only the last `tail`.
    pub fn logs(
        &self,
        id_or_name: &str,
        tail: Option<usize>,
    ) -> Result<Vec<LogEntry>, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let opts = LogOptions {
            tail,
            ..Default::default()
        };
        match rpod_oci::read_log(Path::new(&rec.config.log_path), &opts) {
            Ok(v) => Ok(v),
            Err(OciError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Vec::new())
            }
            Err(e) => Err(oci_err(e)),
        }
    }

    /// Follows the container's log: existing entries (the last `tail`), then new ones until the
    /// container exits or `sink` returns false.
    pub fn follow_logs(
        &self,
        id_or_name: &str,
        tail: Option<usize>,
        sink: impl FnMut(LogEntry) -> bool,
    ) -> Result<(), RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let mut view = rec.clone();
        self.sync_exit(&mut view)?;
        let opts = LogOptions {
            tail,
            ..Default::default()
        };
        let log = PathBuf::from(&rec.config.log_path);
        if !matches!(
            view.state.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
        ) {
            let mut sink = sink;
            for e in self.logs(&rec.config.id, tail)? {
                if !sink(e) {
                    break;
                }
            }
            return Ok(());
        }
        let exits = self.config.values.tmp_dir.join("exits");
        rpod_oci::follow_log(&log, &opts, &exits, &rec.config.id, sink).map_err(oci_err)
    }
}
