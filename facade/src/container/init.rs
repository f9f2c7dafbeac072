//! `init`: everything between a container record and a container created in the OCI runtime:
//! the root filesystem (through the [`RootfsProvider`](crate::RootfsProvider) seam), the
//! network namespace (through the [`NetworkBackend`](crate::NetworkBackend) seam), the OCI spec,
//! and conmon + `runtime create`. A failed step undoes every step before it, in reverse, and
//! every undo that fails is reported with the original error.

use std::path::PathBuf;

use rpod_oci::{CreateOptions, NsMode, SpecInput};
use rpod_state::{ContainerRecord, ContainerStatus};

use super::attach::AttachOptions;
use crate::error::RuntimeError;
use crate::network::{NetNamespace, NetworkMode, NetworkRequest, NetworkTeardown};
use crate::rootfs::RootfsRequest;
use crate::Runtime;

/// How to undo one step.
type Undo<'a> = Box<dyn FnOnce() -> Result<(), RuntimeError> + 'a>;

/// Undo actions of the steps done so far, run in reverse when a later step fails.
struct Rollback<'a> {
    undo: Vec<(&'static str, Undo<'a>)>,
}

impl<'a> Rollback<'a> {
    fn new() -> Self {
        Rollback { undo: Vec::new() }
    }

    /// Registers how to undo the step just done.
    fn push(&mut self, what: &'static str, f: impl FnOnce() -> Result<(), RuntimeError> + 'a) {
        self.undo.push((what, Box::new(f)));
    }

    /// The steps succeeded: nothing is undone.
    fn commit(mut self) {
        self.undo.clear();
    }

    /// Undoes every step in reverse; `error` comes back with every undo that failed.
    fn run(mut self, error: RuntimeError) -> RuntimeError {
        let mut failures = Vec::new();
        while let Some((what, f)) = self.undo.pop() {
            if let Err(e) = f() {
                failures.push(format!("{what}: {e}"));
            }
        }
        RuntimeError::with_failures(error, failures)
    }
}

impl Runtime {
    /// The exit command conmon runs after the container exits: `rpod … container cleanup
    /// [--rm] <id>` with this runtime's paths, so cleanup happens even if the process that
    /// started the container is gone.
    fn exit_command(&self, id: &str, auto_remove: bool) -> Vec<String> {
        let Some(bin) = self.cleanup_binary() else {
            return Vec::new();
        };
        let mut a = vec![bin.display().to_string()];
        let lock_name = crate::locks::segment_name(&self.config);
        a.extend(self.config.cleanup_args(&rpod_config::Resolved {
            runtime: &self.oci_runtime().path,
            conmon: &self.conmon().path,
            lock_name: &lock_name,
        }));
        a.push("--log-level".to_owned());
        a.push("error".to_owned());
        a.push("container".to_owned());
        a.push("cleanup".to_owned());
        if auto_remove {
            a.push("--rm".to_owned());
        }
        a.push(id.to_owned());
        a
    }

    /// `/proc/<pid>/ns/<kind>` of the running container `other` that `rec` shares a namespace
    /// with.
    fn join_path(
        &self,
        rec: &ContainerRecord,
        other: &str,
        kind: &str,
    ) -> Result<PathBuf, RuntimeError> {
        let mut dep = self.state.container(other)?;
        self.sync_exit(&mut dep)?;
        if dep.state.status != ContainerStatus::Running || dep.state.pid <= 0 {
            return Err(RuntimeError::DependencyNotRunning {
                id: rec.config.id.clone(),
                dependency: other.to_owned(),
            });
        }
        Ok(PathBuf::from(format!("/proc/{}/ns/{kind}", dep.state.pid)))
    }

    /// Namespaces other than the network's: new ones, except those the container shares with
    /// another container (pod members join the infra container's), which must be running.
    fn namespaces_for(&self, rec: &ContainerRecord) -> Result<rpod_oci::Namespaces, RuntimeError> {
        let mut ns = rpod_oci::Namespaces::default();
        let c = &rec.config;
        let joins: [(&Option<String>, &str, &mut NsMode); 4] = [
            (&c.ipc_ns_ctr, "ipc", &mut ns.ipc),
            (&c.uts_ns_ctr, "uts", &mut ns.uts),
            (&c.pid_ns_ctr, "pid", &mut ns.pid),
            (&c.cgroup_ns_ctr, "cgroup", &mut ns.cgroup),
        ];
        for (other, kind, slot) in joins {
            if let Some(other) = other {
                *slot = NsMode::Join(self.join_path(rec, other, kind)?);
            }
        }
        Ok(ns)
    }

    /// The network request for a container: join the container it shares the network with,
    /// else its recorded mode.
    fn network_request(&self, rec: &ContainerRecord) -> Result<NetworkRequest, RuntimeError> {
        let c = &rec.config;
        let mode = match &c.net_ns_ctr {
            Some(other) => NetworkMode::Join {
                container: other.clone(),
                path: self.join_path(rec, other, "net")?,
            },
            None => crate::network::mode::recorded_mode(c),
        };
        let static_ip = match c.static_ip.as_str() {
            "" => None,
            ip => Some(ip.parse().map_err(|_| {
                RuntimeError::InvalidSpec(format!("invalid static IP {ip:?} in the record"))
            })?),
        };
        Ok(NetworkRequest {
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            mode,
            networks: c.networks.clone(),
            ports: c.port_mappings.clone(),
            static_ip,
        })
    }

    /// Binds the container's published host ports (libpod's port reservation) so that a port
    /// in use fails before any network is set up; conmon holds the sockets while the container
    /// lives.
    fn reserve_ports(
        &self,
        request: &NetworkRequest,
    ) -> Result<Vec<std::sync::Arc<std::os::fd::OwnedFd>>, RuntimeError> {
        if request.mode != NetworkMode::Cni
            || request.ports.is_empty()
            || !self.config.values.enable_port_reservation
        {
            return Ok(Vec::new());
        }
        let mut ports: Vec<_> = request
            .ports
            .iter()
            .map(crate::convert::port_to_net)
            .collect();
        Ok(rpod_net::reserve_ports(&mut ports)?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect())
    }

    /// The generated `/etc` files of a container (see `network/files.rs`); a container in
    /// another's network gets that one's addresses and, unless it set its own, its DNS.
    fn etc_mounts(
        &self,
        rec: &ContainerRecord,
        bundle: &std::path::Path,
        results: &[serde_json::Value],
        host_network: bool,
    ) -> Result<Vec<rpod_oci::UserMount>, RuntimeError> {
        let mut config = rec.config.clone();
        let ips = match self.network_owner(rec)? {
            Some(owner) => {
                let o = &owner.config;
                if config.dns_servers.is_empty() {
                    config.dns_servers = o.dns_servers.clone();
                }
                if config.dns_search.is_empty() {
                    config.dns_search = o.dns_search.clone();
                }
                if config.dns_options.is_empty() {
                    config.dns_options = o.dns_options.clone();
                }
                config.add_hosts.extend(o.add_hosts.iter().cloned());
                crate::network::files::result_ips(&owner.state.network_results)
            }
            None => crate::network::files::result_ips(results),
        };
        crate::network::files::etc_files(bundle, &config, &ips, host_network)
    }

    /// What the rootfs seam is asked for, for this container.
    pub(crate) fn rootfs_request(rec: &ContainerRecord) -> RootfsRequest {
        RootfsRequest {
            container_id: rec.config.id.clone(),
            rootfs: PathBuf::from(&rec.config.rootfs),
            is_infra: rec.config.is_infra,
            layer: (!rec.config.rootfs_layer.is_empty()).then(|| rec.config.rootfs_layer.clone()),
        }
    }

    /// What the network seam releases for this container: what its state recorded.
    pub(crate) fn network_teardown(rec: &ContainerRecord) -> NetworkTeardown {
        NetworkTeardown {
            container_id: rec.config.id.clone(),
            container_name: rec.config.name.clone(),
            netns_path: rec.state.netns_path.clone(),
            results: rec.state.network_results.clone(),
            ports: rec.config.port_mappings.clone(),
        }
    }

    /// Prepares the root filesystem and the network, writes the OCI spec and runs conmon +
    /// `runtime create` (the container is then created). On failure every step done is undone.
    pub(crate) fn init(
        &self,
        rec: &mut ContainerRecord,
        auto_remove: bool,
        attach: AttachOptions,
    ) -> Result<(), RuntimeError> {
        let mut rollback = Rollback::new();
        match self.init_steps(rec, auto_remove, attach, &mut rollback) {
            Ok(()) => {
                rollback.commit();
                Ok(())
            }
            Err(e) => Err(rollback.run(e)),
        }
    }

    fn init_steps<'a>(
        &'a self,
        rec: &mut ContainerRecord,
        auto_remove: bool,
        attach: AttachOptions,
        rollback: &mut Rollback<'a>,
    ) -> Result<(), RuntimeError> {
        let id = rec.config.id.clone();
        let bundle = self.container_dir(&id);
        let run_dir = self.container_run_dir(&id);
        if self.interrupted_init(rec) {
            self.reap_interrupted(rec)?;
        }
        for d in [&bundle, &run_dir] {
            crate::runtime::create_dir(d, 0o700)?;
        }
        // The run directory marks an init in progress (see `reap`): gone when it is undone.
        let marker = run_dir.clone();
        rollback.push(
            "removing the run directory",
            move || match std::fs::remove_dir_all(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::Remove {
                    path: marker,
                    source: e,
                }),
                _ => Ok(()),
            },
        );
        let namespaces = self.namespaces_for(rec)?;
        let net_request = self.network_request(rec)?;

        let rootfs_request = Self::rootfs_request(rec);
        let rootfs = self.rootfs.prepare(&rootfs_request)?;
        rollback.push("releasing the root filesystem", move || {
            self.rootfs.release(&rootfs_request)
        });

        let port_fds = self.reserve_ports(&net_request)?;
        let net = self.network.setup(&net_request)?;
        let teardown = NetworkTeardown {
            container_id: id.clone(),
            container_name: rec.config.name.clone(),
            netns_path: net
                .owned_netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            results: net.results.clone(),
            ports: rec.config.port_mappings.clone(),
        };
        rec.state.netns_path = teardown.netns_path.clone();
        rec.state.network_results = net.results.clone();
        rollback.push("tearing down the network", move || {
            self.network.teardown(&teardown)
        });

        let host_network = net.namespace == NetNamespace::Host;
        let etc_mounts = self.etc_mounts(rec, &bundle, &net.results, host_network)?;

        let c = &rec.config;
        let mut input = SpecInput::new(&id, &rootfs, c.command.clone());
        input.mounts.extend(etc_mounts);
        input.env = c.env.clone();
        input.cwd = if c.working_dir.is_empty() {
            "/".to_owned()
        } else {
            c.working_dir.clone()
        };
        input.user = c.user.clone();
        input.terminal = c.terminal;
        input.console_size = attach.console_size;
        // A container that joins another's UTS namespace must not change its host name.
        input.hostname =
            Some(c.hostname.clone()).filter(|h| !h.is_empty() && c.uts_ns_ctr.is_none());
        input.namespaces = namespaces;
        // podman's default sysctl: unprivileged ICMP echo sockets (busybox `ping`) in a
        // network namespace of the container's own.
        if matches!(net.namespace, NetNamespace::New)
            || (net.owned_netns.is_some() && matches!(net.namespace, NetNamespace::Path(_)))
        {
            input
                .sysctls
                .push(("net.ipv4.ping_group_range".to_owned(), "0 0".to_owned()));
        }
        input.namespaces.net = match net.namespace {
            NetNamespace::New => NsMode::New,
            NetNamespace::Host => NsMode::Host,
            NetNamespace::Path(p) => NsMode::Join(p),
        };
        input.cgroup_manager = crate::convert::cgroup_manager(self.config.values.cgroup_manager);
        input.cgroup_parent = self.cgroup_parent_for(rec)?;
        input.rlimits = c
            .rlimits
            .iter()
            .map(crate::convert::rlimit)
            .chain(input.rlimits.clone())
            .collect();
        // The user named by the container is looked up in the prepared root.
        rpod_oci::write_spec_for(&bundle, &input)?;

        let mut opts = CreateOptions::new(&id, &bundle);
        opts.name = c.name.clone();
        opts.pid_file = Some(run_dir.join("pidfile"));
        opts.conmon_pid_file = Some(run_dir.join("conmon.pid"));
        opts.log_path = Some(PathBuf::from(&c.log_path));
        opts.exit_command = self.exit_command(&id, auto_remove);
        opts.stdin = attach.stdin;
        opts.terminal = c.terminal;
        opts.extra_fds = port_fds;
        let oci = self.oci()?;
        let delete_id = id.clone();
        // Nothing may stay behind in the runtime, even after a half-done create.
        rollback.push(
            "deleting the container from the OCI runtime",
            move || match oci.delete(&delete_id, true) {
                Ok(()) | Err(rpod_oci::OciError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        );
        let created = oci.create(&opts)?;
        rec.state.status = ContainerStatus::Created;
        rec.state.pid = created.pid;
        rec.state.conmon_pid = created.conmon_pid.unwrap_or(0);
        rec.state.exit_code = 0;
        rec.state.oom_killed = false;
        rec.state.finished = None;
        self.state.save_container(&id, &rec.state)?;
        Ok(())
    }

    /// The cgroup parent of a container: its pod's cgroup, else the configured default.
    pub(crate) fn cgroup_parent_for(
        &self,
        rec: &ContainerRecord,
    ) -> Result<Option<String>, RuntimeError> {
        if let Some(pod_id) = &rec.config.pod {
            let pod = self.state.pod(pod_id)?;
            let parent = if pod.config.cgroup_parent.is_empty() {
                crate::cgroups::default_parent(&self.config)
            } else {
                pod.config.cgroup_parent.clone()
            };
            return Ok(Some(crate::cgroups::pod_cgroup(
                self.config.values.cgroup_manager,
                &parent,
                pod_id,
            )));
        }
        Ok(Some(crate::cgroups::default_parent(&self.config)))
    }
}
