//! `rm`: removing a container and freeing its lock (reference §5.5).

use super::status::StatusRules;
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Removes a container and frees its lock. Refused while other containers depend on it,
    /// while it is a pod's infra container, and (without `force`) while it runs.
    /// Returns the removed container's ID.
    pub fn remove_container(&self, id_or_name: &str, force: bool) -> Result<String, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let id = rec.config.id.clone();
        // Pod lock before container lock.
        let pod = match &rec.config.pod {
            Some(pod_id) => match self.state.pod(pod_id) {
                Ok(p) => Some(p),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let pod_lock = pod
            .as_ref()
            .map(|p| self.locks.retrieve(p.config.lock_id))
            .transpose()?;
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        let lock = self.locks.retrieve(rec.config.lock_id)?;
        let _guard = lock.lock()?;
        // Re-read under the lock: another process may have changed or removed it.
        let rec = self.state.container(&id)?;
        if let Some(p) = &pod {
            if rec.config.is_infra || p.state.infra_container_id == id {
                return Err(RuntimeError::InfraContainer {
                    id,
                    pod: p.config.name.clone(),
                });
            }
        }
        let mut rec = rec;
        self.container_view(&mut rec)?;
        if rec.state.status.is_running_or_paused() && !force {
            return Err(RuntimeError::ContainerRunning {
                id,
                status: rec.state.status.to_string(),
            });
        }
        let dependants = self.state.container_in_use(&id)?;
        if !dependants.is_empty() {
            return Err(RuntimeError::HasDependants { id, dependants });
        }
        let sessions = rec
            .state
            .exec_sessions
            .values()
            .filter(|s| s.pid > 0 && rpod_oci::process_alive(s.pid))
            .count();
        if sessions > 0 && !force {
            return Err(RuntimeError::ExecSessions { id, sessions });
        }
        self.finish_for_removal(&mut rec)?;
        self.remove_container_layer(&rec)?;
        // The exit code is kept before the record goes: a removal killed in between must not
        // leave an exit file that nothing owns any more.
        self.keep_removed_exit_code(&id);
        match &rec.config.pod {
            Some(pod_id) => self.state.remove_container_from_pod(pod_id, &id)?,
            None => self.state.remove_container(&id)?,
        }
        // The record is gone; everything after this only logs, so the first error is not lost
        // behind a half-removed container (libpod's order, §5.5).
        self.teardown_container_files(&id);
        if let Err(e) = lock.free() {
            tracing::warn!(container = %id, lock = lock.id(), error = %e, "freeing the container's lock");
        }
        Ok(id)
    }

    /// Brings a container to rest before its record is removed (caller holds its lock): a
    /// running or paused one is stopped (which cleans up), a created or stopped one cleaned up.
    pub(crate) fn finish_for_removal(
        &self,
        rec: &mut rpod_state::ContainerRecord,
    ) -> Result<(), RuntimeError> {
        if rec.state.status.is_running_or_paused() {
            self.stop_locked(rec, None).map(|_| ())
        } else {
            self.cleanup_for_removal(rec)
        }
    }
}
