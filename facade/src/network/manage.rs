//! `rpod network create|ls|inspect|rm`: CNI configuration files in `cni_config_dir`, and which
//! of this runtime's containers use each network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rpod_net::{NetworkConfigList, NetworkCreate};
use rpod_state::ContainerRecord;
use serde::Serialize;

use super::cni::CniNetwork;
use crate::error::RuntimeError;
use crate::Runtime;

/// One line of `rpod network ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSummary {
    /// Name.
    pub name: String,
    /// CNI version of the configuration.
    pub version: String,
    /// Plugin types, in order.
    pub plugins: Vec<String>,
    /// The configuration file.
    pub config_file: PathBuf,
}

/// A subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSubnet {
    /// The subnet (CIDR).
    pub subnet: String,
    /// Its gateway (empty: none).
    pub gateway: String,
}

/// A container attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkMember {
    /// Its name.
    pub name: String,
    /// Its address on the network (empty while it is not running).
    pub ip_address: String,
    /// Its MAC address on the network.
    pub mac_address: String,
}

/// What `rpod network inspect` shows of a network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkInspect {
    /// Name.
    pub name: String,
    /// Driver: the first plugin's type (`bridge`, `macvlan`, …).
    pub driver: String,
    /// The bridge (or macvlan master) on the host.
    pub network_interface: String,
    /// Subnets and gateways.
    pub subnets: Vec<NetworkSubnet>,
    /// Whether containers are cut off from outside the network (no IP masquerading).
    pub internal: bool,
    /// The configuration file.
    pub config_file: PathBuf,
    /// The containers of this runtime attached to it, by ID.
    pub containers: BTreeMap<String, NetworkMember>,
    /// The CNI configuration list, as in the file.
    pub cni_config: serde_json::Value,
}

fn summary(n: &NetworkConfigList) -> NetworkSummary {
    NetworkSummary {
        name: n.name.clone(),
        version: n.cni_version.clone(),
        plugins: n.plugin_types(),
        config_file: n.path.clone(),
    }
}

/// Whether `c` is attached to network `name` (`default` is the default network's name).
fn uses(c: &ContainerRecord, name: &str, default: &str) -> bool {
    c.config.network_mode == "bridge"
        && (c.config.networks.iter().any(|n| n == name)
            || (c.config.networks.is_empty() && name == default))
}

impl Runtime {
    /// The CNI backend this runtime's configuration describes (also when another backend was
    /// injected: network files are managed the same way).
    fn cni(&self) -> Result<CniNetwork, RuntimeError> {
        CniNetwork::from_config(&self.config)
    }

    /// `rpod network create`: writes the network's configuration list.
    pub fn create_network(&self, mut req: NetworkCreate) -> Result<NetworkSummary, RuntimeError> {
        let cni = self.cni()?;
        let dir = cni.load()?;
        if req.ipam_data_dir.is_none() {
            req.ipam_data_dir = Some(PathBuf::from(&self.config.values.ipam_data_dir));
        }
        let list = rpod_net::create_network(cni.config_dir(), &dir, &req)?;
        Ok(summary(&list))
    }

    /// `rpod network ls`: every network in the CNI configuration directory (the default
    /// network's configuration is written first if missing), and the files that failed to
    /// load, as errors.
    pub fn networks(&self) -> Result<(Vec<NetworkSummary>, Vec<String>), RuntimeError> {
        let cni = self.cni()?;
        let mut dir = cni.load()?;
        if let Err(e) = cni.ensure_default(&mut dir) {
            tracing::warn!(error = %e, "writing the default network's configuration");
        }
        Ok((
            dir.networks.iter().map(summary).collect(),
            dir.invalid.iter().map(ToString::to_string).collect(),
        ))
    }

    /// `rpod network inspect NAME`.
    pub fn inspect_network(&self, name: &str) -> Result<NetworkInspect, RuntimeError> {
        let cni = self.cni()?;
        let mut dir = cni.load()?;
        if name == cni.default_network() {
            cni.ensure_default(&mut dir)?;
        }
        let n = dir.get(name)?;
        let internal = n
            .plugins
            .first()
            .and_then(|p| p.get("ipMasq"))
            .and_then(serde_json::Value::as_bool)
            .map(|m| !m && n.driver() == "bridge")
            .unwrap_or(false);
        let master = n
            .plugins
            .first()
            .and_then(|p| p.get("master"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let gateways = n.gateways();
        let subnets = n
            .subnets()
            .into_iter()
            .enumerate()
            .map(|(i, subnet)| NetworkSubnet {
                subnet,
                gateway: gateways.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let mut containers = BTreeMap::new();
        for c in self.containers()? {
            if !uses(&c, name, cni.default_network()) {
                continue;
            }
            let result = c
                .state
                .network_results
                .iter()
                .filter_map(rpod_net::CniResult::from_value)
                .find(|r| r.network == name);
            containers.insert(
                c.config.id.clone(),
                NetworkMember {
                    name: c.config.name.clone(),
                    ip_address: result
                        .as_ref()
                        .and_then(|r| r.ips().into_iter().next())
                        .map(|i| i.address.to_string())
                        .unwrap_or_default(),
                    mac_address: result.and_then(|r| r.mac()).unwrap_or_default(),
                },
            );
        }
        Ok(NetworkInspect {
            name: n.name.clone(),
            driver: n.driver(),
            network_interface: n.bridge_name().or(master).unwrap_or_default(),
            subnets,
            internal,
            config_file: n.path.clone(),
            containers,
            cni_config: n.raw.clone(),
        })
    }

    /// `rpod network rm [-f] NAME`: removes the network's configuration. Refused while
    /// containers use it, unless `force`, which removes them first. Returns the containers
    /// removed.
    pub fn remove_network(&self, name: &str, force: bool) -> Result<Vec<String>, RuntimeError> {
        let cni = self.cni()?;
        let dir = cni.load()?;
        let n = dir.get(name)?.clone();
        let users: Vec<ContainerRecord> = self
            .containers()?
            .into_iter()
            .filter(|c| uses(c, name, cni.default_network()))
            .collect();
        if !users.is_empty() && !force {
            return Err(RuntimeError::NetworkInUse {
                name: name.to_owned(),
                containers: users.iter().map(|c| c.config.name.clone()).collect(),
            });
        }
        let mut removed = Vec::new();
        for c in users {
            // An infra container goes with its pod.
            if c.config.is_infra {
                if let Some(pod) = &c.config.pod {
                    self.remove_pod(pod, true)?;
                    removed.push(c.config.name.clone());
                    continue;
                }
            }
            match self.remove_container(&c.config.id, true) {
                Ok(_) => removed.push(c.config.name.clone()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        rpod_net::remove_network_config(&n)?;
        if let Some(bridge) = n.bridge_name() {
            if let Err(e) = rpod_net::remove_bridge(&bridge) {
                tracing::warn!(network = %name, bridge = %bridge, error = %e, "removing the bridge");
            }
        }
        Ok(removed)
    }
}
