//! `stop`: the container's stop signal, up to a timeout, then SIGKILL to all its processes;
//! then cleanup. A paused container is thawed first.

use std::time::{Duration, SystemTime};

use rpod_oci::{OciError, RuntimeStatus};
use rpod_state::{ContainerRecord, ContainerStatus};

use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Stops a running (or created) container: its stop signal, up to `timeout` (default: its
    /// stop timeout), then SIGKILL to all its processes; then cleans up. Returns the exit code.
    pub fn stop_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<i32, RuntimeError> {
        self.with_infra_pod_lock(id_or_name, |rec| self.stop_locked(rec, timeout))
    }

    /// The stop itself (caller holds the container's lock, and the pod's for an infra
    /// container).
    pub(crate) fn stop_locked(
        &self,
        rec: &mut ContainerRecord,
        timeout: Option<Duration>,
    ) -> Result<i32, RuntimeError> {
        let id = rec.config.id.clone();
        let status = rec.state.status;
        if status.is_stopped() {
            return Err(RuntimeError::AlreadyStopped {
                id,
                status: status.to_string(),
            });
        }
        require(rec, status.can_stop(), "stop")?;
        // A frozen process cannot act on SIGTERM (nor die of SIGKILL): thaw it first, and
        // record that in case the stop itself fails. The runtime is asked, not the record: a
        // pause or unpause killed after the runtime acted left the record behind.
        let frozen = match status {
            ContainerStatus::Paused | ContainerStatus::Running => match self.cgroup_frozen(rec) {
                Some(frozen) => frozen,
                None if status.is_paused() => {
                    self.runtime_status(&id) != Some(RuntimeStatus::Running)
                }
                None => self.runtime_status(&id) == Some(RuntimeStatus::Paused),
            },
            _ => false,
        };
        if frozen {
            self.oci()?.resume(&id)?;
        }
        if status.is_paused() || frozen {
            rec.state.status = ContainerStatus::Running;
            self.state.save_container(&id, &rec.state)?;
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
            Err(e) => return Err(e.into()),
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
}
