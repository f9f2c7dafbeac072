//! `pod start`, `pod stop`, `pod kill`, `pod restart`: the verb on every member in parallel,
//! with the infra container first (start) or last (stop, kill), under the pod's lock.

use std::time::Duration;

use rpod_state::{ContainerRecord, PodRecord};

use crate::container::{StartRequest, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Runs `f` on every member of the pod (looked up by name, ID or prefix), members in
    /// parallel, then the infra container if `infra_last`; collects the errors.
    fn each_member(
        &self,
        pod: &PodRecord,
        include_infra: bool,
        f: impl Fn(&ContainerRecord) -> Result<(), RuntimeError> + Sync,
    ) -> Result<(), RuntimeError> {
        let members = self.state.pod_containers(&pod.config.id)?;
        let (infra, others): (Vec<_>, Vec<_>) =
            members.into_iter().partition(|m| m.config.is_infra);
        let mut errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = others
                .iter()
                .map(|m| s.spawn(|| f(m).map_err(|e| format!("{}: {e}", m.config.name))))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("worker thread panicked".to_owned()))
                        .err()
                })
                .collect()
        });
        if include_infra {
            for m in &infra {
                if let Err(e) = f(m) {
                    errors.push(format!("{}: {e}", m.config.name));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Pod {
                pod: pod.config.name.clone(),
                errors,
            })
        }
    }

    /// Runs `f` on the pod under its lock; returns the pod as it is afterwards.
    fn with_pod_locked(
        &self,
        id_or_name: &str,
        f: impl FnOnce(&PodRecord) -> Result<(), RuntimeError>,
    ) -> Result<PodRecord, RuntimeError> {
        self.check_valid()?;
        let pod = self.state.lookup_pod(id_or_name)?;
        let pod_lock = self.locks.retrieve(pod.config.lock_id)?;
        let _pod_guard = pod_lock.lock()?;
        f(&pod)?;
        Ok(self.state.pod(&pod.config.id)?)
    }

    /// Runs `f` under the pod's lock on every member (in parallel, then the infra container),
    /// each under its own lock with its record synced.
    fn each_member_locked(
        &self,
        id_or_name: &str,
        f: impl Fn(&mut ContainerRecord) -> Result<(), RuntimeError> + Sync,
    ) -> Result<PodRecord, RuntimeError> {
        self.with_pod_locked(id_or_name, |pod| {
            self.each_member(pod, true, |m| self.with_container(&m.config.id, &f))
        })
    }

    /// Starts a pod: the infra container first (building its root filesystem if needed), then
    /// every member.
    pub fn start_pod(&self, id_or_name: &str) -> Result<PodRecord, RuntimeError> {
        self.with_pod_locked(id_or_name, |pod| {
            if !pod.state.infra_container_id.is_empty() {
                self.start_impl(
                    &pod.state.infra_container_id,
                    StartRequest::under_pod_lock(),
                )?;
            }
            self.each_member(pod, false, |m| {
                self.start_impl(&m.config.id, StartRequest::under_pod_lock())
                    .map(|_| ())
            })
        })
    }

    /// Stops every running member of a pod in parallel, then the infra container.
    pub fn stop_pod(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<PodRecord, RuntimeError> {
        self.each_member_locked(id_or_name, |rec| {
            if rec.state.status.can_stop() {
                self.stop_locked(rec, timeout).map(|_| ())
            } else {
                Ok(())
            }
        })
    }

    /// Sends `signal` to every running container of the pod, infra container included.
    pub fn kill_pod(&self, id_or_name: &str, signal: i32) -> Result<PodRecord, RuntimeError> {
        self.each_member_locked(id_or_name, |rec| {
            if rec.state.status.is_running() {
                Ok(self.oci()?.kill(&rec.config.id, signal, false)?)
            } else {
                Ok(())
            }
        })
    }

    /// Stops the pod, then starts it again.
    pub fn restart_pod(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<PodRecord, RuntimeError> {
        let pod = self.stop_pod(id_or_name, timeout)?;
        self.start_pod(&pod.config.id)
    }
}
