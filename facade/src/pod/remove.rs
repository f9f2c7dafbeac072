//! `pod rm`: a pod with all its containers, their locks and the pod's cgroup.

use rpod_state::ContainerRecord;

use crate::container::StatusRules;
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Removes a pod with all its containers and frees their locks and the pod's. Running members
    /// need `force`. Returns the pod's ID.
    pub fn remove_pod(&self, id_or_name: &str, force: bool) -> Result<String, RuntimeError> {
        self.check_valid()?;
        let pod = self.state.lookup_pod(id_or_name)?;
        let id = pod.config.id.clone();
        let pod_lock = self.locks.retrieve(pod.config.lock_id)?;
        let pod_guard = pod_lock.lock()?;
        // Re-read under the lock.
        let pod = self.state.pod(&id)?;
        let members = self.state.pod_containers(&id)?;
        let mut locks = Vec::with_capacity(members.len());
        for m in &members {
            locks.push(self.locks.retrieve(m.config.lock_id)?);
        }
        // The member locks stay held until they are freed: a lock whose record is gone but which is
        // still allocated and held is one a sweep of leaked locks leaves alone (see `locks.rs`).
        let mut guards = Vec::with_capacity(locks.len());
        {
            for l in &locks {
                guards.push(l.lock()?);
            }
            // Refuse before stopping anything if a container outside the pod depends on a member.
            let member_ids: std::collections::HashSet<&str> =
                members.iter().map(|m| m.config.id.as_str()).collect();
            for m in &members {
                let outside: Vec<String> = self
                    .state
                    .container_in_use(&m.config.id)?
                    .into_iter()
                    .filter(|d| !member_ids.contains(d.as_str()))
                    .collect();
                if !outside.is_empty() {
                    return Err(RuntimeError::HasDependants {
                        id: m.config.id.clone(),
                        dependants: outside,
                    });
                }
            }
            let mut current = Vec::with_capacity(members.len());
            for m in &members {
                let mut m = self.state.container(&m.config.id)?;
                self.container_view(&mut m)?;
                if m.state.status.is_running_or_paused() && !force {
                    return Err(RuntimeError::PodRunning {
                        pod: pod.config.name.clone(),
                        container: m.config.name.clone(),
                    });
                }
                current.push(m);
            }
            // Members first, in parallel (each with its own stop timeout), then the infra
            // container, whose namespaces they use. This thread holds every lock meanwhile.
            let (mut infra, mut others): (Vec<_>, Vec<_>) =
                current.into_iter().partition(|m| m.config.is_infra);
            let finish = |m: &mut ContainerRecord| self.finish_for_removal(m);
            let results: Vec<Result<(), RuntimeError>> = std::thread::scope(|s| {
                let handles: Vec<_> = others.iter_mut().map(|m| s.spawn(|| finish(m))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(RuntimeError::InvalidSpec("stop thread panicked".into()))
                        })
                    })
                    .collect()
            });
            for r in results {
                r?;
            }
            for m in &mut infra {
                finish(m)?;
            }
            // Exit codes kept first (see `remove_container`); then refuses atomically if a
            // member has a dependant outside the pod.
            for m in &members {
                self.keep_removed_exit_code(&m.config.id);
            }
            self.state.remove_pod_containers(&id)?;
        }
        let mut errors = Vec::new();
        for (m, l) in members.iter().zip(&locks) {
            self.teardown_container_files(&m.config.id);
            if let Err(e) = self.remove_container_layer(m) {
                errors.push(format!(
                    "removing the layer of container {}: {e}",
                    m.config.id
                ));
            }
            if let Err(e) = l.free() {
                errors.push(format!(
                    "freeing lock {} of container {}: {e}",
                    l.id(),
                    m.config.id
                ));
            }
        }
        self.state.remove_pod(&id)?;
        if self.config.values.cgroup_manager == rpod_config::CgroupManager::Cgroupfs {
            let cg = crate::cgroups::pod_cgroup(
                rpod_config::CgroupManager::Cgroupfs,
                &pod.config.cgroup_parent,
                &id,
            );
            errors.extend(crate::cgroups::remove_cgroupfs(&cg));
        }
        drop(guards);
        // Freed before it is unlocked, for the same reason as the members' locks.
        if let Err(e) = pod_lock.free() {
            errors.push(format!("freeing lock {} of pod {id}: {e}", pod_lock.id()));
        }
        drop(pod_guard);
        for e in errors {
            tracing::warn!(pod = %id, "{e}");
        }
        Ok(id)
    }
}
