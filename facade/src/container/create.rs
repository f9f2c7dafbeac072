//! `create`: a container record in state `configured` with its own lock; lookup and listing
//! (reference §5.4).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use rpod_state::{ContainerConfig, ContainerRecord};

use crate::error::RuntimeError;
use crate::names::{add_named, generate_id, validate_name};
use crate::network::mode::{self as netmode, ModeChoice};
use crate::Runtime;

/// What a new container should be (the fields of `rpod create`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Name; generated (`adjective_surname`) when `None`.
    pub name: Option<String>,
    /// Pod to join, by name, ID or ID prefix.
    pub pod: Option<String>,
    /// Root filesystem directory, used as is (podman's `--rootfs`); ignored when
    /// [`image`](Self::image) is set.
    pub rootfs: PathBuf,
    /// The image to create the container from (name, short name or ID; it must be in the store:
    /// see [`Runtime::ensure_image`]). Its config gives the defaults of command, environment,
    /// working directory, user, stop signal and labels.
    pub image: Option<String>,
    /// `--entrypoint`: replaces the image's entrypoint (and drops its `Cmd`); `[""]` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Working directory inside the container (default `/`).
    pub working_dir: Option<String>,
    /// User (`uid[:gid]` or a name from the rootfs).
    pub user: Option<String>,
    /// Host name (default: the first 12 characters of the ID).
    pub hostname: Option<String>,
    /// Signal sent by `stop` (default SIGTERM = 15).
    pub stop_signal: Option<u32>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u32>,
    /// Remove the container once it has exited (`--rm`); kept across restarts.
    pub auto_remove: bool,
    /// Give the process a terminal (`-t`).
    pub terminal: bool,
    /// Network options (`--network`, `-p`, `--ip`, `--dns…`, `--add-host`, `--no-hosts`).
    pub network: crate::NetworkSpec,
}

impl Runtime {
    /// Creates a container record in state `configured`, with its own lock.
    ///
    /// Everything the user can get wrong (name, rootfs, command, pod) is checked before anything is
    /// written; if a later step fails, the lock is freed again and nothing is left behind.
    pub fn new_container(&self, spec: ContainerSpec) -> Result<ContainerRecord, RuntimeError> {
        self.check_valid()?;
        if let Some(name) = &spec.name {
            validate_name(name)?;
        }
        let mut spec = spec;
        let from_image = match spec.image.clone() {
            Some(name) => Some(self.image_defaults(&name, &mut spec)?),
            None => None,
        };
        if spec.command.is_empty() {
            return Err(RuntimeError::InvalidSpec(match &spec.image {
                Some(i) => format!(
                    "no command given and image {i} has neither Entrypoint nor Cmd: give a command"
                ),
                None => "no command given: a container needs a command to run".into(),
            }));
        }
        let rootfs = if from_image.is_some() {
            PathBuf::new()
        } else {
            let rootfs =
                std::fs::canonicalize(&spec.rootfs).map_err(|source| RuntimeError::Rootfs {
                    path: spec.rootfs.clone(),
                    source,
                })?;
            if !rootfs.is_dir() {
                return Err(RuntimeError::Rootfs {
                    path: spec.rootfs.clone(),
                    source: std::io::Error::other("not a directory"),
                });
            }
            rootfs
        };
        let pod = match &spec.pod {
            Some(p) => Some(self.state.lookup_pod(p)?),
            None => None,
        };
        let id = generate_id()?;
        let mut config = ContainerConfig::new(id.clone(), spec.name.clone().unwrap_or_default());
        config.namespace = self.config.values.namespace.clone();
        config.pod = pod.as_ref().map(|p| p.config.id.clone());
        config.rootfs = rootfs.display().to_string();
        if let Some((image_id, image_name)) = &from_image {
            config.image_id = image_id.clone();
            config.image_name = image_name.clone();
        }
        config.command = spec.command;
        config.env = spec.env;
        config.labels = spec.labels;
        config.working_dir = spec.working_dir.unwrap_or_else(|| "/".to_owned());
        config.user = spec.user.unwrap_or_default();
        let explicit_hostname = spec.hostname.is_some();
        config.hostname = spec.hostname.unwrap_or_else(|| id[..12].to_owned());
        config.stop_signal = spec.stop_signal.unwrap_or(15);
        config.stop_timeout = spec.stop_timeout.unwrap_or(10);
        config.auto_remove = spec.auto_remove;
        config.terminal = spec.terminal;
        config.log_path = self.container_log_path(&id);
        config.created = SystemTime::now();
        if let Some(p) = &pod {
            // Members share the infra container's namespaces, as the pod was created to.
            if !p.state.infra_container_id.is_empty() {
                let infra = Some(p.state.infra_container_id.clone());
                for ns in &p.config.shared_namespaces {
                    match ns.as_str() {
                        "net" => config.net_ns_ctr = infra.clone(),
                        "ipc" => config.ipc_ns_ctr = infra.clone(),
                        "uts" => {
                            // The shared UTS namespace has the pod's host name: a member must
                            // not set its own (it would rename every member).
                            if explicit_hostname {
                                return Err(RuntimeError::InvalidSpec(
                                    "cannot set the host name of a container that joins its \
                                     pod's UTS namespace"
                                        .into(),
                                ));
                            }
                            config.hostname = self
                                .state
                                .container(&p.state.infra_container_id)?
                                .config
                                .hostname;
                            config.uts_ns_ctr = infra.clone();
                        }
                        "pid" => config.pid_ns_ctr = infra.clone(),
                        "cgroup" => config.cgroup_ns_ctr = infra.clone(),
                        _ => {}
                    }
                }
            }
        }
        self.apply_network(&spec.network, &mut config, pod.as_ref())?;
        // Pod lock before container lock.
        let pod_lock = match &pod {
            Some(p) => Some(self.locks.retrieve(p.config.lock_id)?),
            None => None,
        };
        let _pod_guard = match &pod_lock {
            Some(l) => Some(l.lock()?),
            None => None,
        };
        // Allocated to recorded (or freed) under the allocation gate: a sweep of leaked locks
        // never sees this lock unrecorded.
        let _gate = self.locks.hold_allocations()?;
        let lock = self.locks.allocate()?;
        config.lock_id = lock.id();
        let result = self
            .create_container_layer(&mut config)
            .and_then(|()| {
                let added = self.add_with_name(config.clone(), spec.name.is_none());
                if added.is_err() {
                    if let Err(e) = self.remove_container_layer(&ContainerRecord::new(config)) {
                        tracing::error!(error = %e, "removing the layer of a container that was not created");
                    }
                }
                added
            });
        if result.is_err() {
            if let Err(e) = lock.free() {
                tracing::error!(lock = lock.id(), error = %e, "freeing the lock of a container that was not created");
            }
        }
        result
    }

    /// Fills the spec's unset fields from the image's config (podman's rules, see
    /// `image/apply.rs`) and returns the image's ID and the name to record.
    fn image_defaults(
        &self,
        name: &str,
        spec: &mut ContainerSpec,
    ) -> Result<(String, String), RuntimeError> {
        use crate::image::apply;
        let store = self.image_store()?;
        let image = store.lookup(name).map_err(crate::image::image_err)?;
        let cfg = store
            .config(&image)
            .map_err(crate::image::image_err)?
            .config
            .unwrap_or_default();
        spec.command = apply::command(&cfg, spec.entrypoint.as_deref(), &spec.command);
        spec.env = apply::env(&cfg, &spec.env);
        spec.labels = apply::labels(&cfg, &spec.labels);
        if spec.working_dir.is_none() {
            spec.working_dir = cfg.working_dir.clone().filter(|w| !w.is_empty());
        }
        if spec.user.is_none() {
            spec.user = cfg.user.clone().filter(|u| !u.is_empty());
        }
        if spec.stop_signal.is_none() {
            spec.stop_signal = apply::stop_signal(&cfg)?;
        }
        if spec.network.publish_all {
            spec.network
                .publish
                .extend(apply::exposed_ports(&cfg, &spec.network.publish));
        }
        // The name as asked for when it names the image, else its first name, else the ID.
        let recorded = image
            .names
            .iter()
            .find(|n| **n == name || n.ends_with(&format!("/{name}")))
            .or(image.names.first())
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        Ok((image.id, recorded))
    }

    /// Creates the writable layer of a container from an image (named after the container).
    fn create_container_layer(&self, config: &mut ContainerConfig) -> Result<(), RuntimeError> {
        if config.image_id.is_empty() {
            return Ok(());
        }
        let store = self.image_store()?;
        let image = store
            .lookup(&config.image_id)
            .map_err(crate::image::image_err)?;
        let layer = store
            .create_named_container_layer(&image, &config.id)
            .map_err(crate::image::image_err)?;
        config.rootfs_layer = layer.id;
        Ok(())
    }

    /// Checks the network options and records them in `config` (pod members are in their
    /// pod's network: `net_ns_ctr` is already set).
    pub(crate) fn apply_network(
        &self,
        spec: &crate::NetworkSpec,
        config: &mut ContainerConfig,
        pod: Option<&rpod_state::PodRecord>,
    ) -> Result<(), RuntimeError> {
        if config.net_ns_ctr.is_some() {
            if let Some(p) = pod {
                netmode::check_pod_member(spec, &p.config.name)?;
            }
            netmode::check_mode_settings(spec, &ModeChoice::Container(String::new()))?;
            netmode::apply_settings(spec, config)?;
            config.network_mode = "container".to_owned();
            return Ok(());
        }
        let mode = netmode::parse_mode(spec.mode.as_deref(), &self.config.values.netns)?;
        netmode::check_mode_settings(spec, &mode)?;
        netmode::apply_settings(spec, config)?;
        match mode {
            ModeChoice::Cni(networks) => {
                if self.network.name() == "cni" {
                    // Unknown networks are refused now, not at the first start.
                    crate::network::CniNetwork::from_config(&self.config)?.resolve(&networks)?;
                }
                config.network_mode = "bridge".to_owned();
                config.networks = networks;
                let mut ports: Vec<_> = config
                    .port_mappings
                    .iter()
                    .map(crate::convert::port_to_net)
                    .collect();
                if ports.iter().any(|p| p.host_port == 0) {
                    rpod_net::assign_free_ports(&mut ports)?;
                    config.port_mappings =
                        ports.iter().map(crate::convert::port_from_net).collect();
                }
            }
            ModeChoice::None => config.network_mode = "none".to_owned(),
            ModeChoice::Host => config.network_mode = "host".to_owned(),
            ModeChoice::Path(p) => config.network_mode = format!("ns:{p}"),
            ModeChoice::Container(other) => {
                let other = self.state.lookup_container(&other)?;
                config.net_ns_ctr = Some(other.config.id);
                config.network_mode = "container".to_owned();
            }
        }
        Ok(())
    }

    /// Adds the record; a generated name is re-drawn while it collides.
    fn add_with_name(
        &self,
        config: ContainerConfig,
        generated: bool,
    ) -> Result<ContainerRecord, RuntimeError> {
        let given = (!generated).then(|| config.name.clone());
        add_named(given.as_deref(), "container", |name| {
            let rec = ContainerRecord::new(ContainerConfig {
                name,
                ..config.clone()
            });
            match &rec.config.pod {
                Some(pod_id) => self.state.add_container_to_pod(pod_id, &rec),
                None => self.state.add_container(&rec),
            }
            .map(|()| rec)
        })
    }

    /// The container with this full ID, name or unique ID prefix.
    pub fn lookup_container(&self, id_or_name: &str) -> Result<ContainerRecord, RuntimeError> {
        self.read(|s| s.lookup_container(id_or_name))
    }

    /// Every container in the runtime's namespace, sorted by ID.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, RuntimeError> {
        self.read(|s| s.all_containers())
    }

    /// Every container in the runtime's namespace, in ID order, one at a time with its status
    /// brought up to date from its exit file (as [`Runtime::container_view`]), without holding
    /// them all in memory; stops when `f` returns false.
    pub fn for_each_container(
        &self,
        mut f: impl FnMut(ContainerRecord) -> bool,
    ) -> Result<(), RuntimeError> {
        self.check_valid()?;
        let mut failure = None;
        self.state.for_each_container(&mut |mut rec| {
            if let Err(e) = self.container_view(&mut rec) {
                failure = Some(e);
                return false;
            }
            f(rec)
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
