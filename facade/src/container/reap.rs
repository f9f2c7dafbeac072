//! Recovery of a container whose init was interrupted (rpod killed between writing the run
//! directory and saving the created state): conmon, an in-flight `runtime create` and the
//! runtime's container may exist while the record still says `configured`. Before such a
//! container is initialised again, cleaned up or removed, whatever the runtime has of it is
//! killed and deleted.
//!
//! The marker is the per-boot run directory `<run_root>/containers/<id>`: init creates it
//! before conmon starts, and every cleanup removes it, so a container at rest with a run
//! directory was interrupted. Without one, nothing here costs more than a `stat`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rpod_state::ContainerRecord;

use crate::error::RuntimeError;
use crate::Runtime;

/// PIDs of conmon and runtime processes whose command line names `id` (conmon,
/// `runtime create`), except this process.
fn processes_naming(id: &str) -> Vec<i32> {
    crate::orphans::init_processes(|arg| contains(arg, id.as_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// SIGKILL to every process in the cgroup directories of `cgroup` (every hierarchy), until
/// they are empty or `patience` has passed (a killed process leaves its cgroup only once it
/// is gone). Returns whether they are empty.
fn kill_cgroup(cgroup: &str, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        let mut any = false;
        for dir in crate::cgroups::hierarchy_dirs(cgroup) {
            let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
                continue;
            };
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                any = true;
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if !any {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Runtime {
    /// Whether `rec` is at rest but an init of it was interrupted (see the module docs).
    pub(crate) fn interrupted_init(&self, rec: &ContainerRecord) -> bool {
        use super::status::StatusRules;
        !rec.state.status.runtime_knows()
            && !rec.state.status.is_running_or_paused()
            && self.container_run_dir(&rec.config.id).exists()
    }

    /// Kills and deletes what an interrupted init left in the runtime (caller holds the
    /// container's lock): conmon and `runtime create` (found by the container ID on their
    /// command lines), the runtime's container, processes left in its cgroup, and conmon's
    /// files. Goes on after errors; returns them all.
    pub(crate) fn reap_interrupted(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        let id = &rec.config.id;
        tracing::warn!(container = %id, "an earlier start of this container was interrupted; deleting what the runtime has of it");
        let mut failures = Vec::new();
        // conmon first (it would run the exit command and restart nothing), then an in-flight
        // create, which may still be making the runtime's container.
        // Until they are gone: a create that is still running could otherwise write the
        // runtime's state after the delete below.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = processes_naming(id);
            if pids.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                failures.push(format!("processes naming the container are left: {pids:?}"));
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let cgroup = self.container_cgroup(rec);
        // What the runtime did not know of (a `runc init` whose create was cut short) dies
        // before the delete, which then finds the container stopped or absent.
        if let Some(cg) = &cgroup {
            kill_cgroup(cg, Duration::from_secs(5));
        }
        match self.oci().map(|oci| oci.delete(id, true)) {
            Ok(Ok(()) | Err(rpod_oci::OciError::NotFound { .. })) => {}
            Ok(Err(e)) => failures.push(format!("deleting it from the OCI runtime: {e}")),
            Err(e) => failures.push(e.to_string()),
        }
        if let Ok(oci) = self.oci() {
            if let Err(e) = oci.remove_conmon_files(id, &self.container_dir(id)) {
                failures.push(format!("removing conmon's files: {e}"));
            }
        }
        if let Some(cg) = &cgroup {
            if !kill_cgroup(cg, Duration::from_secs(5)) {
                failures.push(format!("processes are left in cgroup {cg}"));
            } else if self.config.values.cgroup_manager == rpod_config::CgroupManager::Cgroupfs {
                // An emptied cgroup can stay busy for a moment while its last tasks are
                // released.
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut errors = crate::cgroups::remove_cgroupfs(cg);
                while !errors.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    errors = crate::cgroups::remove_cgroupfs(cg);
                }
                failures.extend(errors);
            }
        }
        // The network an interrupted setup made (its namespace is named by the container and
        // its CNI results are cached, so nothing recorded is needed).
        if let Err(e) = self.network.teardown(&Self::network_teardown(rec)) {
            failures.push(format!("tearing down the network: {e}"));
        }
        let run_dir = self.container_run_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                failures.push(format!("removing {}: {e}", run_dir.display()));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Cleanup {
                id: id.clone(),
                failures,
            })
        }
    }

    /// Whether the container's cgroup is frozen, read from the freezer (cgroup v1
    /// `freezer.state`, v2 `cgroup.freeze`) without running the OCI runtime; `None` when
    /// neither can be read (the caller then asks the runtime).
    pub(crate) fn cgroup_frozen(&self, rec: &ContainerRecord) -> Option<bool> {
        let cg = self.container_cgroup(rec)?;
        let rel = cg.trim_start_matches('/');
        let v1 = Path::new("/sys/fs/cgroup/freezer")
            .join(rel)
            .join("freezer.state");
        if let Ok(s) = std::fs::read_to_string(v1) {
            return Some(s.trim() != "THAWED");
        }
        let v2 = Path::new("/sys/fs/cgroup").join(rel).join("cgroup.freeze");
        std::fs::read_to_string(v2).ok().map(|s| s.trim() == "1")
    }

    /// The container's own cgroup (as the OCI spec names it), if it can be computed.
    fn container_cgroup(&self, rec: &ContainerRecord) -> Option<String> {
        let parent = self.cgroup_parent_for(rec).ok().flatten();
        let manager = crate::convert::cgroup_manager(self.config.values.cgroup_manager);
        rpod_oci::cgroup_path(manager, parent.as_deref(), &rec.config.id).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_conmon_and_runtime_processes() {
        // A shell naming the marker is not a container's init: it is left alone.
        let marker = format!("rpod-reap-test-{}", std::process::id());
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 5", &marker])
            .spawn();
        let Ok(mut child) = child else { return };
        let found = processes_naming(&marker);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.is_empty(), "{found:?}");
        assert!(!contains(b"abc", b""));
        assert!(contains(b"--bundle=/x/abc/y", b"abc"));
    }
}
