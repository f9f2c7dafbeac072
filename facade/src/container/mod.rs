//! Containers: one file per verb (youki's layout), with libpod's states and transitions
//! (reference §3, §5.3–5.5).
//!
//! Every verb takes the container's lock (after its pod's, where the pod matters), re-reads the
//! record, brings it up to date from the exit file, checks its status with the rules in
//! [`status`], acts, and saves. Waiting for an exit never holds the lock. Where a verb needs
//! the network or the root filesystem, it goes through the seams ([`crate::NetworkBackend`],
//! [`crate::RootfsProvider`]) and the OCI driver (`crate::oci`).

mod attach;
mod cleanup;
mod create;
mod exec;
mod init;
mod inspect;
mod kill;
mod logs;
mod pause;
mod reap;
mod remove;
mod restart;
mod start;
pub(crate) mod status;
mod stop;
mod wait;

#[cfg(test)]
mod tests;

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::SystemTime;

use rpod_state::{ContainerRecord, ContainerStatus};

pub use attach::{
    parse_detach_keys, AttachOptions, Attached, DetachFilter, Streamed, DEFAULT_DETACH_KEYS,
};
pub use create::ContainerSpec;
pub use exec::{ExecResult, ExecSpec};
pub use inspect::{
    status_text, ContainerFilter, ContainerInspect, ContainerListing, InspectConfig, InspectState,
};
pub(crate) use start::StartRequest;
pub use status::StatusRules;

use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// `<static_dir>/containers/<id>`: the container's persistent files (log, bundle).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.config.values.static_dir.join("containers").join(id)
    }

    /// `<static_dir>/containers/<id>/ctr.log`: the container's k8s-file log.
    pub(crate) fn container_log_path(&self, id: &str) -> String {
        self.container_dir(id).join("ctr.log").display().to_string()
    }

    /// `<run_root>/containers/<id>`: per-boot files (pid files).
    pub fn container_run_dir(&self, id: &str) -> PathBuf {
        self.config.values.run_root.join("containers").join(id)
    }

    /// `<tmp_dir>/exits`: where conmon writes exit files.
    pub(crate) fn exits_dir(&self) -> PathBuf {
        self.config.values.tmp_dir.join("exits")
    }

    /// The exit file conmon writes for `id`.
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.exits_dir().join(id)
    }

    /// Brings `rec.state` up to date from the exit file (without the runtime binary): a
    /// container that may have a process and whose exit file exists is stopped, with exit
    /// code, finished time and OOM flag. Returns whether anything changed.
    pub(crate) fn sync_exit(&self, rec: &mut ContainerRecord) -> Result<bool, RuntimeError> {
        if !rec.state.status.may_have_process() {
            return Ok(false);
        }
        let bundle = self.container_dir(&rec.config.id);
        match rpod_oci::read_exit_file(&self.exits_dir(), &rec.config.id, Some(&bundle))? {
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
    /// the pod lock take it first (see `start::PodLock` and `with_infra_pod_lock`).
    pub(crate) fn with_container<T>(
        &self,
        id_or_name: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        let rec = self.lookup_container(id_or_name)?;
        let lock = self.locks.retrieve(rec.config.lock_id)?;
        let _guard = lock.lock()?;
        let mut rec = self.sync(&rec.config.id)?;
        f(&mut rec)
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

    /// Runs `f` on a container; for a pod's infra container, under the pod lock first (its
    /// PID is what members join).
    pub(crate) fn with_infra_pod_lock<T>(
        &self,
        id_or_name: &str,
        f: impl FnOnce(&mut ContainerRecord) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        let rec = self.lookup_container(id_or_name)?;
        let pod_lock = if rec.config.is_infra {
            self.pod_lock_of(&rec)?
        } else {
            None
        };
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        self.with_container(&rec.config.id, f)
    }

    /// Removes a container's directories; errors are logged. Its exit code is kept for late
    /// waiters (`rpod run --rm` racing conmon's `container cleanup --rm`): the exit file moves
    /// to `<tmp_dir>/exits/removed/<id>`, where files older than [`REMOVED_EXIT_KEEP`] are
    /// pruned at every removal (podman keeps removed containers' exit codes for a while, too).
    pub(crate) fn teardown_container_files(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.container_run_dir(id));
        let dir = self.container_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(container = %id, path = %dir.display(), error = %e, "removing container files");
            }
        }
        self.keep_removed_exit_code(id);
    }

    /// `<tmp_dir>/exits/removed`: exit files of removed containers, kept for a while.
    pub(crate) fn removed_exits_dir(&self) -> PathBuf {
        self.exits_dir().join("removed")
    }

    /// Moves a removed container's exit file (current or retired) to the removed ones, and
    /// prunes those kept longer than [`REMOVED_EXIT_KEEP`].
    pub(crate) fn keep_removed_exit_code(&self, id: &str) {
        let exits = self.exits_dir();
        let removed = self.removed_exits_dir();
        let newest = [exits.join(id), exits.join(format!("{id}-old"))]
            .into_iter()
            .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
            .max_by_key(|(t, _)| *t);
        for p in [exits.join(id), exits.join(format!("{id}-old"))] {
            if newest.as_ref().is_some_and(|(_, n)| *n == p) {
                continue;
            }
            let _ = std::fs::remove_file(p);
        }
        if let Some((_, path)) = newest {
            let dest = removed.join(id);
            let kept = std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&removed)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .and_then(|()| std::fs::rename(&path, &dest))
                // The age counts from the removal.
                .and_then(|()| std::fs::File::open(&dest)?.set_modified(SystemTime::now()));
            if let Err(e) = kept {
                tracing::debug!(container = %id, error = %e, "keeping the exit code of a removed container");
                let _ = std::fs::remove_file(&path);
            }
        }
        let Ok(entries) = std::fs::read_dir(&removed) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > REMOVED_EXIT_KEEP)
                .unwrap_or(true);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// How long the exit code of a removed container is kept for late waiters.
pub(crate) const REMOVED_EXIT_KEEP: std::time::Duration = std::time::Duration::from_secs(60);
