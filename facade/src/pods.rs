//! Pods: creation with an infra container record, lookup, listing and removal (reference §5.6).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rpod_state::{
    ContainerConfig, ContainerRecord, ContainerStatus, ErrorKind, PodConfig, PodRecord, PodState,
};

use crate::error::RuntimeError;
use crate::names::{generate_id, random_name, validate_name};
use crate::Runtime;

/// Namespaces a pod's members share by default (podman's default `--share`).
pub const DEFAULT_POD_SHARE: &[&str] = &["ipc", "net", "uts"];

/// Namespaces a pod can share.
pub const SHAREABLE_NAMESPACES: &[&str] = &["cgroup", "ipc", "net", "pid", "uts"];

/// What a new pod should be (the fields of `rpod pod create`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Name; generated when `None`.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the pod gets an infra container (required to share namespaces).
    pub infra: bool,
    /// Namespaces the members share through the infra container (`None`: the default set).
    pub share: Option<Vec<String>>,
}

impl Default for PodSpec {
    fn default() -> Self {
        PodSpec {
            name: None,
            labels: BTreeMap::new(),
            infra: true,
            share: None,
        }
    }
}

impl Runtime {
    /// Creates a pod and, unless `spec.infra` is false, its infra container record.
    ///
    /// If any step fails, what was created is removed and the locks are freed.
    pub fn new_pod(&self, spec: PodSpec) -> Result<PodRecord, RuntimeError> {
        self.check_valid()?;
        if let Some(name) = &spec.name {
            validate_name(name)?;
        }
        let share: Vec<String> = match spec.share {
            Some(s) => s,
            None if spec.infra => DEFAULT_POD_SHARE.iter().map(|s| (*s).to_owned()).collect(),
            None => Vec::new(),
        };
        for ns in &share {
            if !SHAREABLE_NAMESPACES.contains(&ns.as_str()) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "cannot share namespace {ns:?}: use one of {}",
                    SHAREABLE_NAMESPACES.join(", ")
                )));
            }
        }
        if !spec.infra && !share.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "pods must have an infra container to share namespaces".into(),
            ));
        }
        let id = generate_id()?;
        let mut config = PodConfig::new(id.clone(), String::new());
        config.namespace = self.config.values.namespace.clone();
        config.labels = spec.labels;
        config.created = SystemTime::now();
        config.infra = spec.infra;
        config.shared_namespaces = share;
        config.cgroup_parent = crate::cgroups::default_parent(&self.config);
        let lock = self.locks.allocate()?;
        config.lock_id = lock.id();
        let rec = match self.add_pod_with_name(config, spec.name) {
            Ok(rec) => rec,
            Err(e) => {
                if let Err(fe) = lock.free() {
                    tracing::error!(lock = lock.id(), error = %fe, "freeing the lock of a pod that was not created");
                }
                return Err(e);
            }
        };
        if !spec.infra {
            return Ok(rec);
        }
        let _guard = lock.lock()?;
        match self.add_infra_container(&rec) {
            Ok(rec) => Ok(rec),
            Err(e) => {
                if let Err(re) = self.state.remove_pod(&id) {
                    tracing::error!(pod = %id, error = %re, "removing a pod whose infra container failed");
                }
                drop(_guard);
                if let Err(fe) = lock.free() {
                    tracing::error!(lock = lock.id(), error = %fe, "freeing the lock of a pod that was not created");
                }
                Err(e)
            }
        }
    }

    fn add_pod_with_name(
        &self,
        mut config: PodConfig,
        name: Option<String>,
    ) -> Result<PodRecord, RuntimeError> {
        for attempt in 0..64 {
            config.name = match &name {
                Some(n) => n.clone(),
                None => random_name(attempt)?,
            };
            let rec = PodRecord {
                config: config.clone(),
                state: PodState {
                    cgroup_path: crate::cgroups::pod_cgroup(
                        self.config.values.cgroup_manager,
                        &config.cgroup_parent,
                        &config.id,
                    ),
                    ..PodState::default()
                },
            };
            match self.state.add_pod(&rec) {
                Ok(()) => return Ok(rec),
                Err(e) if name.is_none() && e.kind() == ErrorKind::NameInUse => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RuntimeError::InvalidSpec(
            "could not find a free pod name in 64 attempts".into(),
        ))
    }

    /// Adds the infra container record of `pod` and records it in the pod's state.
    fn add_infra_container(&self, pod: &PodRecord) -> Result<PodRecord, RuntimeError> {
        let id = generate_id()?;
        let pod_id = &pod.config.id;
        let mut config = ContainerConfig::new(id.clone(), format!("{}-infra", &pod_id[..12]));
        config.namespace = pod.config.namespace.clone();
        config.pod = Some(pod_id.clone());
        config.is_infra = true;
        config.rootfs = self.infra_rootfs().display().to_string();
        config.command = self.infra_command();
        config.working_dir = "/".to_owned();
        config.hostname = pod.config.name.clone();
        config.stop_signal = 15;
        config.stop_timeout = 10;
        config.log_path = self
            .container_dir(&id)
            .join("ctr.log")
            .display()
            .to_string();
        config.created = SystemTime::now();
        let lock = self.locks.allocate()?;
        config.lock_id = lock.id();
        let rec = ContainerRecord::new(config);
        let result = self
            .state
            .add_container_to_pod(pod_id, &rec)
            .and_then(|()| {
                let state = PodState {
                    infra_container_id: id.clone(),
                    ..self.state.update_pod(pod_id)?
                };
                self.state.save_pod(pod_id, &state)?;
                Ok(state)
            });
        match result {
            Ok(state) => Ok(PodRecord {
                config: pod.config.clone(),
                state,
            }),
            Err(e) => {
                if let Err(re) = self.state.remove_container_from_pod(pod_id, &id) {
                    if !re.is_not_found() {
                        tracing::error!(container = %id, error = %re, "removing a half-created infra container");
                    }
                }
                if let Err(fe) = lock.free() {
                    tracing::error!(lock = lock.id(), error = %fe, "freeing the infra container's lock");
                }
                Err(e.into())
            }
        }
    }

    /// The pod with this full ID, name or unique ID prefix.
    pub fn lookup_pod(&self, id_or_name: &str) -> Result<PodRecord, RuntimeError> {
        self.check_valid()?;
        Ok(self.state.lookup_pod(id_or_name)?)
    }

    /// Every pod in the runtime's namespace, sorted by ID.
    pub fn pods(&self) -> Result<Vec<PodRecord>, RuntimeError> {
        self.check_valid()?;
        Ok(self.state.all_pods()?)
    }

    /// The members of a pod (infra container included), sorted by ID.
    pub fn pod_containers(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        self.check_valid()?;
        Ok(self.state.pod_containers(pod_id)?)
    }

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
        {
            let mut guards = Vec::with_capacity(locks.len());
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
                match m.state.status {
                    ContainerStatus::Running | ContainerStatus::Paused if !force => {
                        return Err(RuntimeError::PodRunning {
                            pod: pod.config.name.clone(),
                            container: m.config.name.clone(),
                        });
                    }
                    _ => {}
                }
                current.push(m);
            }
            // Members first, in parallel (each with its own stop timeout), then the infra
            // container, whose namespaces they use. This thread holds every lock meanwhile.
            let (mut infra, mut others): (Vec<_>, Vec<_>) =
                current.into_iter().partition(|m| m.config.is_infra);
            let finish = |m: &mut ContainerRecord| -> Result<(), RuntimeError> {
                match m.state.status {
                    ContainerStatus::Running | ContainerStatus::Paused => {
                        self.stop_locked(m, None).map(|_| ())
                    }
                    ContainerStatus::Created | ContainerStatus::Stopped => {
                        self.cleanup_for_removal(m)
                    }
                    _ => Ok(()),
                }
            };
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
            // Refuses atomically if a member has a dependant outside the pod.
            self.state.remove_pod_containers(&id)?;
        }
        let mut errors = Vec::new();
        for (m, l) in members.iter().zip(&locks) {
            self.teardown_container_files(&m.config.id);
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
        drop(pod_guard);
        if let Err(e) = pod_lock.free() {
            errors.push(format!("freeing lock {} of pod {id}: {e}", pod_lock.id()));
        }
        for e in errors {
            tracing::warn!(pod = %id, "{e}");
        }
        Ok(id)
    }
}

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

    /// Starts a pod: the infra container first (building its root filesystem if needed), then
    /// every member.
    pub fn start_pod(&self, id_or_name: &str) -> Result<PodRecord, RuntimeError> {
        self.check_valid()?;
        let pod = self.state.lookup_pod(id_or_name)?;
        let pod_lock = self.locks.retrieve(pod.config.lock_id)?;
        let _pod_guard = pod_lock.lock()?;
        if !pod.state.infra_container_id.is_empty() {
            self.ensure_infra_rootfs()?;
            self.start_impl(&pod.state.infra_container_id, false, None, true)?;
        }
        self.each_member(&pod, false, |m| {
            self.start_impl(&m.config.id, false, None, true).map(|_| ())
        })?;
        Ok(self.state.pod(&pod.config.id)?)
    }

    /// Stops every running member of a pod in parallel, then the infra container.
    pub fn stop_pod(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<PodRecord, RuntimeError> {
        self.check_valid()?;
        let pod = self.state.lookup_pod(id_or_name)?;
        let pod_lock = self.locks.retrieve(pod.config.lock_id)?;
        let _pod_guard = pod_lock.lock()?;
        self.each_member(&pod, true, |m| {
            self.with_container(&m.config.id, |rec| match rec.state.status {
                ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created => {
                    self.stop_locked(rec, timeout).map(|_| ())
                }
                _ => Ok(()),
            })
        })?;
        Ok(self.state.pod(&pod.config.id)?)
    }

    /// Sends `signal` to every running container of the pod, infra container included.
    pub fn kill_pod(&self, id_or_name: &str, signal: i32) -> Result<PodRecord, RuntimeError> {
        self.check_valid()?;
        let pod = self.state.lookup_pod(id_or_name)?;
        let pod_lock = self.locks.retrieve(pod.config.lock_id)?;
        let _pod_guard = pod_lock.lock()?;
        self.each_member(&pod, true, |m| {
            self.with_container(&m.config.id, |rec| {
                if rec.state.status == ContainerStatus::Running {
                    self.oci()?
                        .kill(&rec.config.id, signal, false)
                        .map_err(RuntimeError::Oci)
                } else {
                    Ok(())
                }
            })
        })?;
        Ok(self.state.pod(&pod.config.id)?)
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
