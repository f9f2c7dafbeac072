//! [`CniNetwork`]: the default backend. `bridge` and named networks get a network namespace
//! of their own (`<tmp_dir>/netns/rpod-<id>`, named by the container so that any later
//! teardown finds it, even one after a crash that lost the recorded status), `lo` up, and one
//! CNI ADD per network (`eth0`, `eth1`, …) plus the configured firewall backend; every other
//! mode is handled as [`NullNetwork`](super::NullNetwork) does.
//!
//! Teardown keeps going after a failed step and reports every error at the end. It runs DEL
//! only with the container's own namespace path (the bridge plugin's DEL is keyed on
//! netns + ifname, protocols.md §3.4), with the recorded result or rpod's cached one.

use std::path::{Path, PathBuf};

use rpod_net::{
    Attachment, CniResult, CniRunner, ConfigDir, FirewallBackend, NetError, NetworkConfigList,
};

use super::{
    NetNamespace, NetworkBackend, NetworkMode, NetworkRequest, NetworkStatus, NetworkTeardown,
    NullNetwork,
};
use crate::error::RuntimeError;

/// The CNI network backend (see the module docs).
#[derive(Debug)]
pub struct CniNetwork {
    config_dir: PathBuf,
    default_network: String,
    default_bridge: String,
    default_subnet: String,
    ipam_dir: PathBuf,
    netns_dir: PathBuf,
    runner: CniRunner,
    firewall: Box<dyn FirewallBackend>,
}

/// One attachment done (or to undo).
struct Attached {
    network: NetworkConfigList,
    attachment: Attachment,
    result: Option<CniResult>,
}

impl CniNetwork {
    /// The backend `config` describes: its CNI config dir, plugin dirs, default network and
    /// firewall driver; namespaces under `<tmp_dir>/netns`, results cached under
    /// `<static_dir>/cni/results`.
    pub fn from_config(config: &rpod_config::Config) -> Result<Self, RuntimeError> {
        let v = &config.values;
        Ok(CniNetwork {
            config_dir: PathBuf::from(&v.cni_config_dir),
            default_network: v.cni_default_network.clone(),
            default_bridge: v.default_bridge.clone(),
            default_subnet: v.default_subnet.clone(),
            ipam_dir: PathBuf::from(&v.ipam_data_dir),
            netns_dir: v.tmp_dir.join("netns"),
            runner: CniRunner::new(
                v.cni_plugin_dir.iter().map(PathBuf::from).collect(),
                v.static_dir.join("cni").join("results"),
            ),
            firewall: rpod_net::firewall_backend(&v.firewall_driver)?,
        })
    }

    /// The directory holding the CNI configuration.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The name of the default network.
    pub fn default_network(&self) -> &str {
        &self.default_network
    }

    /// The namespace file of container `id`.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(format!("rpod-{id}"))
    }

    /// The CNI configuration directory, loaded.
    pub(crate) fn load(&self) -> Result<ConfigDir, RuntimeError> {
        Ok(ConfigDir::load(&self.config_dir)?)
    }

    /// Writes the default network's configuration when the directory has none (first use).
    pub(crate) fn ensure_default(&self, dir: &mut ConfigDir) -> Result<(), RuntimeError> {
        if dir.default_network(&self.default_network).is_some() {
            return Ok(());
        }
        // A file of that name that fails to load is reported, not overwritten.
        if let Err(e @ (NetError::ConfigParse { .. } | NetError::ConfigInvalid { .. })) =
            dir.get(&self.default_network)
        {
            return Err(e.into());
        }
        // Never overwrite a file that holds another network.
        let path = self
            .config_dir
            .join(format!("{}.conflist", self.default_network));
        if path.exists() {
            // Another process may have just written it (concurrent first uses): read again.
            let again = self.load()?;
            if let Some(n) = again.default_network(&self.default_network) {
                dir.networks.push(n.clone());
                return Ok(());
            }
            return Err(RuntimeError::InvalidSpec(format!(
                "{} does not define network {:?} (cni_default_network); fix or move the file",
                path.display(),
                self.default_network
            )));
        }
        let value = rpod_net::default_network_config(
            &self.default_network,
            &self.default_bridge,
            &self.default_subnet,
            &self.ipam_dir,
        );
        tracing::info!(network = %self.default_network, dir = %self.config_dir.display(), "writing the default network's configuration");
        let list = rpod_net::write_network_config(&self.config_dir, &self.default_network, &value)?;
        dir.networks.push(list);
        Ok(())
    }

    /// The configurations of `names` (empty: the default network), checked to exist.
    pub(crate) fn resolve(&self, names: &[String]) -> Result<Vec<NetworkConfigList>, RuntimeError> {
        let mut dir = self.load()?;
        let default = [self.default_network.clone()];
        let names = if names.is_empty() {
            &default[..]
        } else {
            names
        };
        if names.contains(&self.default_network) {
            self.ensure_default(&mut dir)?;
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.push(dir.get(n)?.clone());
        }
        Ok(out)
    }

    fn setup_cni(&self, req: &NetworkRequest) -> Result<NetworkStatus, RuntimeError> {
        let networks = self.resolve(&req.networks)?;
        let netns = self.netns_path(&req.container_id);
        // A namespace of this name can only be left by an interrupted earlier setup.
        rpod_net::remove_netns(&netns)?;
        rpod_net::create_netns_at(&netns)?;
        let mut done: Vec<Attached> = Vec::new();
        let ports: Vec<_> = req.ports.iter().map(crate::convert::port_to_net).collect();
        let mut attach = || -> Result<(), RuntimeError> {
            self.runner.loopback_up(&req.container_id, &netns)?;
            for (i, network) in networks.iter().enumerate() {
                let attachment = Attachment {
                    container_id: req.container_id.clone(),
                    container_name: req.container_name.clone(),
                    netns: netns.clone(),
                    ifname: format!("eth{i}"),
                    port_mappings: ports.clone(),
                    static_ip: if i == 0 { req.static_ip } else { None },
                    mac: None,
                };
                // A failed ADD undoes itself (DEL of the whole chain).
                let result = self.runner.add(network, &attachment)?;
                done.push(Attached {
                    network: network.clone(),
                    attachment,
                    result: Some(result.clone()),
                });
                self.firewall.add(&result)?;
            }
            Ok(())
        };
        match attach() {
            Ok(()) => Ok(NetworkStatus {
                namespace: NetNamespace::Path(netns.clone()),
                owned_netns: Some(netns),
                results: done
                    .iter()
                    .filter_map(|a| a.result.as_ref().map(CniResult::to_value))
                    .collect(),
            }),
            Err(e) => {
                let failures = self.detach(&req.container_id, &netns, done);
                Err(RuntimeError::with_failures(e, failures))
            }
        }
    }

    /// Undoes `attached` in reverse and removes the namespace; returns every failure.
    fn detach(&self, id: &str, netns: &Path, attached: Vec<Attached>) -> Vec<String> {
        let mut failures = Vec::new();
        for a in attached.into_iter().rev() {
            if let Some(r) = &a.result {
                if let Err(e) = self.firewall.del(r) {
                    failures.push(format!("firewall ({}): {e}", self.firewall.name()));
                }
            }
            let prev = a.result.as_ref().map(|r| r.raw.clone());
            if let Err(e) = self.runner.del(&a.network, &a.attachment, prev.as_ref()) {
                failures.push(e.to_string());
            }
        }
        if let Err(e) = rpod_net::remove_netns(netns) {
            failures.push(e.to_string());
        }
        if !failures.is_empty() {
            tracing::warn!(container = %id, failures = ?failures, "network teardown");
        }
        failures
    }
}

impl NetworkBackend for CniNetwork {
    fn name(&self) -> &str {
        "cni"
    }

    fn setup(&self, request: &NetworkRequest) -> Result<NetworkStatus, RuntimeError> {
        match request.mode {
            NetworkMode::Cni => self.setup_cni(request),
            _ => NullNetwork.setup(request),
        }
    }

    fn teardown(&self, t: &NetworkTeardown) -> Result<(), RuntimeError> {
        let id = &t.container_id;
        let netns = if t.netns_path.is_empty() {
            self.netns_path(id)
        } else {
            PathBuf::from(&t.netns_path)
        };
        // What to DEL: the recorded results, plus any cached one the record lost (a crash
        // between ADD and saving the status).
        let mut entries: Vec<(String, String, Option<CniResult>)> = t
            .results
            .iter()
            .filter_map(CniResult::from_value)
            .map(|r| (r.network.clone(), r.ifname.clone(), Some(r)))
            .collect();
        for e in self.runner.cache.entries() {
            if &e.container_id == id
                && !entries
                    .iter()
                    .any(|(n, i, _)| *n == e.network && *i == e.ifname)
            {
                entries.push((e.network, e.ifname, None));
            }
        }
        let netns_exists = netns.exists();
        if entries.is_empty() && !netns_exists {
            return Ok(());
        }
        let mut failures = Vec::new();
        let dir = if entries.is_empty() {
            ConfigDir::default()
        } else {
            match self.load() {
                Ok(d) => d,
                Err(e) => {
                    failures.push(e.to_string());
                    ConfigDir::default()
                }
            }
        };
        let ports: Vec<_> = t.ports.iter().map(crate::convert::port_to_net).collect();
        let mut attached = Vec::new();
        for (network, ifname, result) in entries {
            match dir.get(&network) {
                Ok(conf) => attached.push(Attached {
                    network: conf.clone(),
                    attachment: Attachment {
                        container_id: id.clone(),
                        container_name: t.container_name.clone(),
                        netns: netns.clone(),
                        ifname,
                        port_mappings: ports.clone(),
                        static_ip: None,
                        mac: None,
                    },
                    result,
                }),
                Err(e) => {
                    // Without its configuration nothing can run DEL; the cache entry goes so
                    // that every later teardown does not fail on it again.
                    failures.push(format!("network {network}: {e}"));
                    if let Err(e) = self.runner.cache.remove(&network, id, &ifname) {
                        failures.push(e.to_string());
                    }
                }
            }
        }
        let networks: Vec<String> = attached.iter().map(|a| a.network.name.clone()).collect();
        failures.extend(self.detach(id, &netns, attached));
        // Without its namespace (a reboot, a wiped tmp dir) the bridge plugin's DEL finds no
        // interface, so no addresses, and leaves its ipMasq rules: swept by the container ID.
        if !netns_exists {
            for network in &networks {
                if let Err(e) = rpod_net::sweep_container_rules(network, id, false) {
                    failures.push(e.to_string());
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetError::Teardown {
                container_id: id.clone(),
                errors: failures,
            }
            .into())
        }
    }

    fn release_after_reboot(&self, owned: &dyn Fn(&str) -> bool) -> Result<(), RuntimeError> {
        let mut failures = Vec::new();
        match self.load() {
            Ok(dir) => {
                for net in &dir.networks {
                    match rpod_net::release_leases(net, owned) {
                        Ok(released) => {
                            for l in released {
                                tracing::info!(network = %l.network, ip = %l.ip, container = %l.container_id, "released an IP lease left by a reboot");
                            }
                        }
                        Err(e) => failures.push(e.to_string()),
                    }
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
        for e in self.runner.cache.entries() {
            if owned(&e.container_id) {
                if let Err(err) = self
                    .runner
                    .cache
                    .remove(&e.network, &e.container_id, &e.ifname)
                {
                    failures.push(err.to_string());
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetError::Teardown {
                container_id: String::new(),
                errors: failures,
            }
            .into())
        }
    }
}
