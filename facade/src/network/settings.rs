//! What `inspect` (`NetworkSettings`) and `port` show of a container's network, from its
//! record: the CNI results setup recorded and the published ports. A container in another
//! container's network (a pod member) shows that container's.

use std::collections::BTreeMap;

use rpod_state::{ContainerRecord, PortMapping};
use serde::Serialize;

use crate::error::RuntimeError;
use crate::Runtime;

/// `NetworkSettings` in [`ContainerInspect`](crate::ContainerInspect) (podman's names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectNetwork {
    /// The network namespace rpod made for it (empty: none).
    pub sandbox_key: String,
    /// Address on the first network.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Gateway of the first network.
    pub gateway: String,
    /// Prefix length on the first network.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// MAC address on the first network.
    pub mac_address: String,
    /// Published ports: `"80/tcp"` → host bindings.
    pub ports: BTreeMap<String, Vec<InspectPort>>,
    /// Per network.
    pub networks: BTreeMap<String, InspectNetworkEntry>,
}

/// A host binding of a published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InspectPort {
    /// Host address (empty: all).
    #[serde(rename = "HostIp")]
    pub host_ip: String,
    /// Host port.
    #[serde(rename = "HostPort")]
    pub host_port: String,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectNetworkEntry {
    /// Interface in the container (`eth0`, …).
    pub interface: String,
    /// Address.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// Gateway.
    pub gateway: String,
    /// Prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// MAC address.
    pub mac_address: String,
}

impl InspectNetwork {
    /// The settings of `rec`, or of `owner` when `rec` is in `owner`'s network.
    pub(crate) fn from_record(rec: &ContainerRecord, owner: Option<&ContainerRecord>) -> Self {
        let src = owner.unwrap_or(rec);
        let mut out = InspectNetwork {
            sandbox_key: src.state.netns_path.clone(),
            ..Default::default()
        };
        for m in &src.config.port_mappings {
            out.ports
                .entry(format!("{}/{}", m.container_port, m.protocol))
                .or_default()
                .push(InspectPort {
                    host_ip: m.host_ip.clone(),
                    host_port: m.host_port.to_string(),
                });
        }
        for r in src
            .state
            .network_results
            .iter()
            .filter_map(rpod_net::CniResult::from_value)
        {
            let ip = r.ips().into_iter().next();
            let entry = InspectNetworkEntry {
                interface: r.ifname.clone(),
                ip_address: ip
                    .as_ref()
                    .map(|i| i.address.to_string())
                    .unwrap_or_default(),
                gateway: ip
                    .as_ref()
                    .and_then(|i| i.gateway)
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
                ip_prefix_len: ip.as_ref().map(|i| i.prefix_len).unwrap_or(0),
                mac_address: r.mac().unwrap_or_default(),
            };
            if out.ip_address.is_empty() {
                out.ip_address = entry.ip_address.clone();
                out.gateway = entry.gateway.clone();
                out.ip_prefix_len = entry.ip_prefix_len;
                out.mac_address = entry.mac_address.clone();
            }
            out.networks.insert(r.network.clone(), entry);
        }
        out
    }
}

/// `rpod port`'s line for a mapping: `80/tcp -> 127.0.0.1:8080`.
pub fn port_line(m: &PortMapping) -> String {
    let ip = if m.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        m.host_ip.as_str()
    };
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    format!(
        "{}/{} -> {host}:{}",
        m.container_port, m.protocol, m.host_port
    )
}

impl Runtime {
    /// The container whose network `rec` is in (its `container:` mode or its pod's infra
    /// container), if any.
    pub(crate) fn network_owner(
        &self,
        rec: &ContainerRecord,
    ) -> Result<Option<ContainerRecord>, RuntimeError> {
        match &rec.config.net_ns_ctr {
            Some(other) => match self.state.container(other) {
                Ok(o) => Ok(Some(o)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.into()),
            },
            None => Ok(None),
        }
    }

    /// The ports published to a container (`rpod port`): its own, or those of the container
    /// whose network it is in.
    pub fn container_ports(&self, id_or_name: &str) -> Result<Vec<PortMapping>, RuntimeError> {
        let rec = self.lookup_container(id_or_name)?;
        Ok(match self.network_owner(&rec)? {
            Some(owner) => owner.config.port_mappings,
            None => rec.config.port_mappings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lines() {
        let mut m = PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        };
        assert_eq!(port_line(&m), "80/tcp -> 127.0.0.1:8080");
        m.host_ip.clear();
        assert_eq!(port_line(&m), "80/tcp -> 0.0.0.0:8080");
        m.host_ip = "::1".into();
        assert_eq!(port_line(&m), "80/tcp -> [::1]:8080");
    }
}
