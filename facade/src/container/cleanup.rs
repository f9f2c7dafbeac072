//! `cleanup`: after a container's process is gone, release what it held: the OCI runtime's
//! container (`runtime delete`), conmon's files, the network (through the network seam), the
//! root filesystem (through the rootfs seam) and per-boot files. Run by conmon's exit command
//! (`rpod container cleanup`), by `stop`, before a restart and before removal.

use std::time::SystemTime;

use rpod_state::{ContainerRecord, ContainerStatus};

use super::status::StatusRules;
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Cleanup of a container that is no longer running (caller holds its lock): `runtime
    /// delete` if the runtime still knows it, the network torn down and the root filesystem
    /// released, per-boot files removed; the container ends up exited. With `save`, the
    /// cleaned-up state is written.
    pub(crate) fn cleanup_locked(
        &self,
        rec: &mut ContainerRecord,
        save: bool,
    ) -> Result<(), RuntimeError> {
        let id = rec.config.id.clone();
        super::status::require(rec, !rec.state.status.is_running_or_paused(), "clean up")?;
        if self.interrupted_init(rec) {
            self.reap_interrupted(rec)?;
        }
        let initialised = rec.state.status.runtime_knows();
        if initialised {
            let oci = self.oci()?;
            match oci.delete(&id, true) {
                Ok(()) | Err(rpod_oci::OciError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let bundle = self.container_dir(&id);
            if let Err(e) = oci.remove_conmon_files(&id, &bundle) {
                tracing::warn!(container = %id, error = %e, "removing conmon files");
            }
        }
        // Whatever init set up is released, also after a crash left it recorded.
        let recorded_network =
            !rec.state.netns_path.is_empty() || !rec.state.network_results.is_empty();
        let mut released = Vec::new();
        if initialised || recorded_network {
            if let Err(e) = self.network.teardown(&Self::network_teardown(rec)) {
                released.push(format!("tearing down the network: {e}"));
            }
            if let Err(e) = self.rootfs.release(&Self::rootfs_request(rec)) {
                released.push(format!("releasing the root filesystem: {e}"));
            }
        }
        // A Created record must not outlive its runtime container (a start would then skip
        // the create), so it is saved even before a removal.
        let save = save || rec.state.status == ContainerStatus::Created;
        if initialised {
            if rec.state.status == ContainerStatus::Created && rec.state.finished.is_none() {
                rec.state.finished = Some(SystemTime::now());
            }
            rec.state.status = ContainerStatus::Exited;
            rec.state.pid = 0;
            rec.state.conmon_pid = 0;
            // Exec'd processes died with the container's PID namespace.
            rec.state.exec_sessions.clear();
        }
        if released.is_empty() {
            rec.state.netns_path.clear();
            rec.state.network_results.clear();
        }
        if save && (initialised || recorded_network) {
            self.state.save_container(&id, &rec.state)?;
        }
        let _ = std::fs::remove_dir_all(self.container_run_dir(&id));
        if released.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Cleanup {
                id,
                failures: released,
            })
        }
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
                if !rec.state.status.is_running_or_paused() {
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
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
