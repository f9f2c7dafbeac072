//! Refresh after a reboot (reference §5.2, with the fixes of §7–8): per-boot state reset,
//! every object's lock ID reserved in the fresh lock table, per-boot files removed.

use std::collections::HashMap;
use std::path::Path;

use rpod_lock::{LockError, LockManager};

use crate::error::RuntimeError;
use crate::Runtime;

/// The file whose absence tells the first rpod process after a reboot to refresh.
pub const ALIVE_FILE: &str = "alive";

/// The filesystem type of the mount holding `path` (longest mount point prefix), from
/// `/proc/self/mountinfo`.
pub(crate) fn fs_type_of(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let p = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mnt), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else {
            continue;
        };
        let Some(fstype) = fields.get(sep + 1) else {
            continue;
        };
        if p.starts_with(mnt) && best.as_ref().is_none_or(|(len, _)| mnt.len() >= *len) {
            best = Some((mnt.len(), (*fstype).to_owned()));
        }
    }
    best.map(|(_, t)| t)
}

impl Runtime {
    /// Runs the reboot refresh (caller holds `alive.lck`): resets per-boot state, reserves
    /// every container's and pod's lock ID (unless `reserve_locks` is false, for renumber),
    /// removes per-boot files. Lock IDs held by two objects are reported with a pointer to
    /// `rpod system renumber`.
    pub(crate) fn refresh(&self, reserve_locks: bool) -> Result<(), RuntimeError> {
        let tmp = &self.config.values.tmp_dir;
        tracing::info!(tmp_dir = %tmp.display(), "refreshing state after a reboot");
        match fs_type_of(tmp) {
            Some(t) if t == "tmpfs" => {}
            Some(t) => tracing::warn!(
                tmp_dir = %tmp.display(),
                "the tmp dir is on {t}, not tmpfs: reboots cannot be detected reliably; \
                 point tmp_dir at a tmpfs such as /run"
            ),
            None => {}
        }
        self.all_namespaces()?.refresh_all(reserve_locks)
    }

    fn refresh_all(&self, reserve_locks: bool) -> Result<(), RuntimeError> {
        // What a reboot does not release (IP leases, result caches, mounts that outlive the
        // boot) goes through the seams before the per-boot state is forgotten. The records are
        // read once: refresh changes their state, not their IDs or lock IDs.
        let containers = self.state.all_containers()?;
        for c in &containers {
            self.release_after_reboot(c);
        }
        // Then whatever of this runtime's containers is left in the networks' IP leases and
        // the CNI result cache (libpod #3759: stale leases made static IPs unusable).
        let ids: std::collections::HashSet<&str> =
            containers.iter().map(|c| c.config.id.as_str()).collect();
        if let Err(e) = self
            .network
            .release_after_reboot(&|id: &str| ids.contains(id))
        {
            tracing::warn!(error = %e, "releasing network leases after a reboot");
        }
        // Container layers whose container was never recorded (a create killed in between).
        if self.images.options.graph_root.join("images").is_dir() {
            if let Err(e) = self.remove_orphan_layers(&ids) {
                tracing::warn!(error = %e, "removing orphaned container layers after a reboot");
            }
        }
        self.state.refresh()?;
        // Lock allocations are per boot like everything in the tmp dir: whatever the table
        // holds now is stale (a segment that survived while the tmp dir was wiped).
        if reserve_locks {
            self.locks.free_all()?;
        }
        let mut reserver = Reserver::default();
        let mut reserve = |id: u32, what: String| -> Result<(), RuntimeError> {
            if reserve_locks {
                reserver.reserve(self.locks.as_ref(), id, what)?;
            }
            Ok(())
        };
        let exits = self.exits_dir();
        for c in &containers {
            let id = &c.config.id;
            reserve(c.config.lock_id, format!("container {id}"))?;
            // Per-boot files: conmon's, the pid files, the exit file (kept as <id>-old).
            let bundle = self.container_dir(id);
            for f in ["attach", "ctl", "winsz", "oom", "pidfile", "conmon.pid"] {
                let _ = std::fs::remove_file(bundle.join(f));
            }
            let _ = std::fs::remove_dir_all(self.container_run_dir(id));
            if let Err(e) = rpod_oci::retire_exit_file(&exits, id) {
                tracing::warn!(container = %id, error = %e, "keeping the exit file");
            }
        }
        for p in self.state.all_pods()? {
            reserve(p.config.lock_id, format!("pod {}", p.config.id))?;
            // The state refresh cleared the per-boot cgroup path; set it again as libpod's
            // `pod.refresh()` does (the directories are created when a member starts).
            let parent = if p.config.cgroup_parent.is_empty() {
                crate::cgroups::default_parent(&self.config)
            } else {
                p.config.cgroup_parent.clone()
            };
            let mut state = p.state;
            state.cgroup_path = crate::cgroups::pod_cgroup(
                self.config.values.cgroup_manager,
                &parent,
                &p.config.id,
            );
            if let Err(e) = self.state.save_pod(&p.config.id, &state) {
                tracing::warn!(pod = %p.config.id, error = %e, "saving the pod's cgroup path");
            }
        }
        reserver.finish()
    }

    /// The lock segment was created by this process although the tmp dir says no reboot
    /// happened (the segment was removed: by hand, by logind's RemoveIPC, …). Its allocations
    /// are gone, so every object's lock ID is reserved again before anything can hand one out
    /// twice.
    pub(crate) fn reserve_after_segment_loss(&self) -> Result<(), RuntimeError> {
        let all = self.state.view("")?;
        let mut reserver = Reserver::default();
        let containers = all
            .all_containers()?
            .into_iter()
            .map(|c| (c.config.lock_id, format!("container {}", c.config.id)));
        let pods = all
            .all_pods()?
            .into_iter()
            .map(|p| (p.config.lock_id, format!("pod {}", p.config.id)));
        for (lock_id, what) in containers.chain(pods) {
            reserver.reserve(self.locks.as_ref(), lock_id, what)?;
        }
        if reserver.count > 0 {
            tracing::warn!(
                "the lock table was missing and has been recreated; the lock IDs of {} \
                 containers and pods were reserved again",
                reserver.count
            );
        }
        reserver.finish()
    }
}

/// Reserves recorded lock IDs one by one, collecting IDs held twice (or beyond the table).
#[derive(Default)]
struct Reserver {
    owners: HashMap<u32, String>,
    conflicts: Vec<String>,
    count: usize,
}

impl Reserver {
    fn reserve(
        &mut self,
        locks: &dyn LockManager,
        id: u32,
        what: String,
    ) -> Result<(), RuntimeError> {
        self.count += 1;
        match locks.allocate_given(id) {
            Ok(_) => {
                self.owners.insert(id, what);
                Ok(())
            }
            Err(LockError::AlreadyAllocated { .. }) => {
                let other = self
                    .owners
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "another object".into());
                self.conflicts
                    .push(format!("{what} and {other} share lock ID {id}"));
                Ok(())
            }
            Err(LockError::OutOfRange { .. }) => {
                self.conflicts
                    .push(format!("{what} has lock ID {id}, beyond num_locks"));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn finish(self) -> Result<(), RuntimeError> {
        if self.conflicts.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::LockConflicts(self.conflicts))
        }
    }
}

impl Runtime {
    /// Deletes writable layers that no container record names (each is named after the
    /// container it was made for). Only run when no create is under way: at refresh, or while
    /// holding the allocation gate exclusively (`sweep_leaked_locks`).
    pub(crate) fn remove_orphan_layers(
        &self,
        ids: &std::collections::HashSet<&str>,
    ) -> Result<(), RuntimeError> {
        let store = self.image_store()?;
        let recorded: std::collections::HashSet<String> = self
            .state
            .view("")?
            .all_containers()?
            .into_iter()
            .map(|c| c.config.rootfs_layer)
            .collect();
        for layer in store.layers().layers().map_err(crate::image::layer_err)? {
            let owned = recorded.contains(&layer.id)
                || layer.names.iter().any(|n| ids.contains(n.as_str()));
            if layer.rw && !owned {
                tracing::info!(
                    layer = layer.id,
                    "removing a container layer no container owns"
                );
                store
                    .delete_container_layer(&layer.id)
                    .map_err(crate::image::image_err)?;
                for name in &layer.names {
                    let _ = std::fs::remove_file(
                        self.images.options.run_root.join("rpod-mounted").join(name),
                    );
                }
            }
        }
        Ok(())
    }

    /// Network teardown and root filesystem release for a container that may have held them
    /// when the machine went down; failures are logged (the boot already released most of it).
    fn release_after_reboot(&self, c: &rpod_state::ContainerRecord) {
        use crate::container::StatusRules;
        let st = c.state.status;
        let recorded = !c.state.netns_path.is_empty() || !c.state.network_results.is_empty();
        if !(recorded || st.runtime_knows() || st.is_running_or_paused()) {
            return;
        }
        // The tmp dir was wiped without a reboot (by hand, by a cleaner): the container may
        // still run, and its record is about to forget it. It is killed and deleted.
        if crate::orphans::runtime_has_state(&c.config.id) {
            tracing::warn!(container = %c.config.id, "the tmp dir was wiped but the container still exists; deleting it");
            crate::orphans::kill_if_names(c.state.conmon_pid, &c.config.id);
            if let Ok(oci) = self.oci() {
                if let Err(e) = oci.delete(&c.config.id, true) {
                    tracing::warn!(container = %c.config.id, error = %e, "deleting the container");
                }
            }
        }
        if let Err(e) = self.network.teardown(&Self::network_teardown(c)) {
            tracing::warn!(container = %c.config.id, error = %e, "tearing down the network after a reboot");
        }
        if let Err(e) = self.rootfs.release(&Self::rootfs_request(c)) {
            tracing::warn!(container = %c.config.id, error = %e, "releasing the root filesystem after a reboot");
        }
    }
}
