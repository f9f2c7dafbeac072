//! `start`: creates the container in the OCI runtime when needed (from configured, stopped or
//! exited), then starts it; dependencies (the pod's infra container) first. Also the attached
//! start of a foreground `run` / `start -a`, connected before the start so no output is lost.

use std::time::SystemTime;

use rpod_oci::{AttachConn, OciError, RuntimeStatus};
use rpod_state::{ContainerRecord, ContainerStatus};

use super::attach::{AttachOptions, Attached};
use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

/// Whether a start takes the pod lock itself or runs under the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodLock {
    /// Take the pod's lock (before the container's) for pod members.
    Take,
    /// The caller holds it already (pod start, dependencies of a member).
    HeldByCaller,
}

/// How to start a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartRequest {
    /// Remove the container once it exits (through conmon's exit command).
    pub auto_remove: bool,
    /// Connect to its output (and input) before starting it.
    pub attach: Option<AttachOptions>,
    /// Who takes the pod lock.
    pub pod_lock: PodLock,
}

impl StartRequest {
    /// A detached start that takes the pod lock itself.
    pub(crate) fn detached(auto_remove: bool) -> Self {
        StartRequest {
            auto_remove,
            attach: None,
            pod_lock: PodLock::Take,
        }
    }

    /// A detached start under a pod lock the caller holds.
    pub(crate) fn under_pod_lock() -> Self {
        StartRequest {
            pod_lock: PodLock::HeldByCaller,
            ..Self::detached(false)
        }
    }
}

/// A started container: its record, and for an attached start the connection and its log.
#[derive(Debug)]
pub(crate) struct Started {
    /// The record after the start.
    pub record: ContainerRecord,
    /// The attach connection (attached starts of a container that was not running).
    pub conn: Option<AttachConn>,
    /// The log, opened before the start.
    pub log: Option<std::fs::File>,
}

impl Runtime {
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
        self.start_impl(id_or_name, StartRequest::detached(auto_remove))
            .map(|s| s.record)
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
        let started = self.start_impl(
            id_or_name,
            StartRequest {
                auto_remove,
                attach: Some(attach),
                pod_lock: PodLock::Take,
            },
        )?;
        match started.conn {
            Some(conn) => Ok(Attached {
                record: started.record,
                conn: std::sync::Arc::new(conn),
                log: started.log,
            }),
            None => Err(RuntimeError::InvalidState {
                id: started.record.config.id,
                status: started.record.state.status.to_string(),
                action: "attach to (it was already running)",
            }),
        }
    }

    /// The start, with the pod lock taken first for pod members unless the caller holds it: a
    /// member joins the infra container's namespaces by its PID, and whoever stops the infra
    /// container holds the pod lock, so the PID cannot go away meanwhile.
    pub(crate) fn start_impl(
        &self,
        id_or_name: &str,
        request: StartRequest,
    ) -> Result<Started, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let pod_lock = match request.pod_lock {
            PodLock::HeldByCaller => None,
            PodLock::Take => self.pod_lock_of(&rec)?,
        };
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        self.start_dependencies(&rec)?;
        self.with_container(&rec.config.id, |rec| self.start_locked(rec, request))
    }

    /// Starts every container `rec` shares namespaces with that is not running (the pod's
    /// infra container), each under its own lock. The caller holds the pod lock.
    pub(crate) fn start_dependencies(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        for dep in rec.config.dependencies() {
            let mut d = self.state.container(&dep)?;
            self.sync_exit(&mut d)?;
            if !d.state.status.is_running() {
                self.start_impl(&dep, StartRequest::under_pod_lock())?;
            }
        }
        Ok(())
    }

    /// The start itself (caller holds the container's lock and has synced it).
    pub(crate) fn start_locked(
        &self,
        rec: &mut ContainerRecord,
        request: StartRequest,
    ) -> Result<Started, RuntimeError> {
        let status = rec.state.status;
        if status.is_running() {
            return Ok(Started {
                record: rec.clone(),
                conn: None,
                log: None,
            });
        }
        require(rec, status.can_start(), "start")?;
        let auto_remove = request.auto_remove || rec.config.auto_remove;
        let id = rec.config.id.clone();
        if status == ContainerStatus::Created {
            // Created by an earlier process, which may have been killed after `runtime start`
            // but before saving: ask the runtime what became of it.
            if let Some(started) = self.reconcile_created(rec)? {
                return Ok(started);
            }
        }
        let status = rec.state.status;
        if status.needs_init() {
            if status.runtime_knows() {
                self.cleanup_locked(rec, true)?;
            }
            self.init(rec, auto_remove, request.attach.unwrap_or_default())?;
        }
        let conn = match request.attach {
            Some(_) => match AttachConn::connect(&self.container_dir(&id)) {
                Ok(c) => Some(c),
                Err(e) => return Err(self.start_failed(rec, e.into())),
            },
            None => None,
        };
        // Keep the log open: if the container exits at once and is removed (--rm) before
        // its output is read, the open file still has it.
        let log = conn
            .as_ref()
            .and_then(|_| std::fs::File::open(&rec.config.log_path).ok());
        if let Err(e) = self.oci()?.start(&id) {
            return Err(self.start_failed(rec, e.into()));
        }
        rec.state.status = ContainerStatus::Running;
        rec.state.started = Some(SystemTime::now());
        self.state.save_container(&id, &rec.state)?;
        Ok(Started {
            record: rec.clone(),
            conn,
            log,
        })
    }

    /// Brings a `created` record in line with the runtime: a container the runtime already
    /// runs is adopted (returned as started), one that ran and exited is recorded as stopped,
    /// one the runtime does not know is taken back to configured; the caller then starts,
    /// or initialises and starts, as the new status says.
    fn reconcile_created(
        &self,
        rec: &mut ContainerRecord,
    ) -> Result<Option<Started>, RuntimeError> {
        let id = rec.config.id.clone();
        match self.oci()?.state(&id) {
            Ok(st) => match st.status {
                RuntimeStatus::Created | RuntimeStatus::Creating => return Ok(None),
                RuntimeStatus::Running | RuntimeStatus::Paused => {
                    tracing::warn!(container = %id, "an earlier start of this container was interrupted after it started; adopting it");
                    rec.state.status = if st.status == RuntimeStatus::Paused {
                        ContainerStatus::Paused
                    } else {
                        ContainerStatus::Running
                    };
                    rec.state.pid = st.pid;
                    rec.state.started.get_or_insert_with(SystemTime::now);
                    self.state.save_container(&id, &rec.state)?;
                    return Ok(Some(Started {
                        record: rec.clone(),
                        conn: None,
                        log: None,
                    }));
                }
                RuntimeStatus::Stopped => {
                    rec.state.status = ContainerStatus::Stopped;
                    self.sync_exit(rec)?;
                }
            },
            Err(OciError::NotFound { .. }) => {
                rec.state.status = ContainerStatus::Stopped;
            }
            Err(e) => return Err(e.into()),
        }
        self.state.save_container(&id, &rec.state)?;
        Ok(None)
    }

    /// A created container that could not be started: it is deleted from the runtime and
    /// cleaned up, and recorded as exited with code -1.
    fn start_failed(&self, rec: &mut ContainerRecord, error: RuntimeError) -> RuntimeError {
        let id = rec.config.id.clone();
        // Cleanup of a stopped container deletes it from the runtime.
        rec.state.status = ContainerStatus::Stopped;
        let mut failures = Vec::new();
        if let Err(e) = self.cleanup_locked(rec, false) {
            failures.push(format!("cleaning up: {e}"));
        }
        rec.state.status = ContainerStatus::Exited;
        rec.state.exit_code = -1;
        if let Err(e) = self.state.save_container(&id, &rec.state) {
            failures.push(format!("saving the container's state: {e}"));
        }
        RuntimeError::with_failures(error, failures)
    }
}
