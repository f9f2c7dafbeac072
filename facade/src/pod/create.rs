//! `pod create`: a pod record and its infra container's record; lookup and listing
//! (reference §5.6).

use std::collections::BTreeMap;
use std::time::SystemTime;

use rpod_state::{ContainerConfig, ContainerRecord, PodConfig, PodRecord, PodState};

use crate::error::RuntimeError;
use crate::names::{add_named, generate_id, validate_name};
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
    /// The pod's network (its infra container's): `--network`, `-p`, `--ip`, `--dns…`.
    pub network: crate::NetworkSpec,
}

impl Default for PodSpec {
    fn default() -> Self {
        PodSpec {
            name: None,
            labels: BTreeMap::new(),
            infra: true,
            share: None,
            network: crate::NetworkSpec::default(),
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
        if !spec.network.is_empty() && !share.iter().any(|s| s == "net") {
            return Err(RuntimeError::InvalidSpec(
                "network options need a pod that shares its network namespace (an infra \
                 container and --share net)"
                    .into(),
            ));
        }
        // The infra container's network, checked before anything is written.
        let mut infra_net = ContainerConfig::default();
        if spec.infra {
            self.apply_network(&spec.network, &mut infra_net, None)?;
        }
        let id = generate_id()?;
        let mut config = PodConfig::new(id.clone(), String::new());
        config.namespace = self.config.values.namespace.clone();
        config.labels = spec.labels;
        config.created = SystemTime::now();
        config.infra = spec.infra;
        config.shared_namespaces = share;
        config.cgroup_parent = crate::cgroups::default_parent(&self.config);
        // The pod's and the infra container's locks are allocated and recorded (or freed) under
        // the allocation gate: a sweep of leaked locks never sees them unrecorded.
        let _gate = self.locks.hold_allocations()?;
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
        match self.add_infra_container(&rec, infra_net) {
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
        config: PodConfig,
        name: Option<String>,
    ) -> Result<PodRecord, RuntimeError> {
        let cgroup_path = crate::cgroups::pod_cgroup(
            self.config.values.cgroup_manager,
            &config.cgroup_parent,
            &config.id,
        );
        add_named(name.as_deref(), "pod", |name| {
            let rec = PodRecord {
                config: PodConfig {
                    name,
                    ..config.clone()
                },
                state: PodState {
                    cgroup_path: cgroup_path.clone(),
                    ..PodState::default()
                },
            };
            self.state.add_pod(&rec).map(|()| rec)
        })
    }

    /// Adds the infra container record of `pod` and records it in the pod's state (the caller
    /// holds the allocation gate).
    fn add_infra_container(
        &self,
        pod: &PodRecord,
        net: ContainerConfig,
    ) -> Result<PodRecord, RuntimeError> {
        let id = generate_id()?;
        let pod_id = &pod.config.id;
        let mut config = ContainerConfig::new(id.clone(), format!("{}-infra", &pod_id[..12]));
        config.network_mode = net.network_mode;
        config.networks = net.networks;
        config.net_ns_ctr = net.net_ns_ctr;
        config.port_mappings = net.port_mappings;
        config.static_ip = net.static_ip;
        config.dns_servers = net.dns_servers;
        config.dns_search = net.dns_search;
        config.dns_options = net.dns_options;
        config.add_hosts = net.add_hosts;
        config.no_hosts = net.no_hosts;
        config.namespace = pod.config.namespace.clone();
        config.pod = Some(pod_id.clone());
        config.is_infra = true;
        config.rootfs = self.infra_rootfs().display().to_string();
        config.command = self.infra_command();
        config.working_dir = "/".to_owned();
        config.hostname = pod.config.name.clone();
        config.stop_signal = 15;
        config.stop_timeout = 10;
        config.log_path = self.container_log_path(&id);
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
        self.read(|s| s.lookup_pod(id_or_name))
    }

    /// Every pod in the runtime's namespace, sorted by ID.
    pub fn pods(&self) -> Result<Vec<PodRecord>, RuntimeError> {
        self.read(|s| s.all_pods())
    }

    /// The members of a pod (infra container included), sorted by ID.
    pub fn pod_containers(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        self.check_valid()?;
        Ok(self.state.pod_containers(pod_id)?)
    }
}
