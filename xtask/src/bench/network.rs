//! The network cases' own CNI networks, so that `cargo xtask bench` never uses or touches a
//! network it did not make:
//!
//! - rpod: a `libpod.conf` (passed with `--config`) whose default network is `rpodbench0`
//!   (bridge `rpodbench0`, 10.82.0.0/24, IPAM leases under the bench dir); rpod writes the
//!   conflist into the case's own CNI config dir on first use (in the warm-up);
//! - podman (CNI backend): `--network-config-dir $BENCH_DIR/net/podman` holding
//!   `rpod-bench-net.conflist` (bridge `rpodbenchp0`, 10.82.1.0/24, the same plugin chain as
//!   rpod's: bridge + host-local, portmap, firewall, tuning; leases under the bench dir).
//!
//! A [`BenchNetworks`] guard deletes both bridges after the case (the bridge plugin leaves them
//! behind on purpose); per-container rules, veths and leases are the engines' to remove, and a
//! leftover is reported by the isolation check of the case's containers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// rpod's bench network (and bridge).
pub(super) const RPOD_NET: &str = "rpodbench0";
/// rpod's bench subnet.
pub(super) const RPOD_SUBNET: &str = "10.82.0.0/24";
/// podman's bench network.
pub(super) const PODMAN_NET: &str = "rpod-bench-net";
/// podman's bench bridge.
pub(super) const PODMAN_BRIDGE: &str = "rpodbenchp0";
/// podman's bench subnet.
pub(super) const PODMAN_SUBNET: &str = "10.82.1.0/24";
/// Stands for podman's network config dir (`$BENCH_DIR/net/podman`) in argv tables.
pub(crate) const PODMAN_NET_DIR: &str = "{podman_net_dir}";

/// podman's network config dir under the bench dir.
pub(super) fn podman_net_dir(bench_dir: &Path) -> PathBuf {
    bench_dir.join("net/podman")
}

/// The networks of one network case; deletes their bridges when dropped.
pub(super) struct BenchNetworks;

impl BenchNetworks {
    /// Lays out both networks' files under `bench_dir/net/` (idempotent); returns the guard
    /// and the `--config` file for rpod.
    pub(super) fn new(bench_dir: &Path) -> Result<(BenchNetworks, PathBuf)> {
        for bridge in [RPOD_NET, PODMAN_BRIDGE] {
            anyhow::ensure!(
                !Path::new("/sys/class/net").join(bridge).exists(),
                "a network interface {bridge} already exists (another benchmark running, or a \
                 leftover: `ip link del {bridge}`)"
            );
        }
        let net = bench_dir.join("net");
        let podman_dir = podman_net_dir(bench_dir);
        fs::create_dir_all(&podman_dir)
            .with_context(|| format!("creating {}", podman_dir.display()))?;
        let ipam = net.join("ipam");
        fs::create_dir_all(&ipam)?;
        let conf = net.join("libpod.conf");
        fs::write(
            &conf,
            format!(
                "cni_default_network = \"{RPOD_NET}\"\ndefault_bridge = \"{RPOD_NET}\"\n\
                 default_subnet = \"{RPOD_SUBNET}\"\nipam_data_dir = \"{}\"\n",
                ipam.display()
            ),
        )?;
        fs::write(
            podman_dir.join(format!("{PODMAN_NET}.conflist")),
            conflist(PODMAN_NET, PODMAN_BRIDGE, PODMAN_SUBNET, &ipam),
        )?;
        Ok((BenchNetworks, conf))
    }
}

impl Drop for BenchNetworks {
    fn drop(&mut self) {
        for bridge in [RPOD_NET, PODMAN_BRIDGE] {
            let _ = Command::new("ip")
                .args(["link", "del", bridge])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A bench conflist: podman 4's CNI default chain (bridge + host-local, portmap, firewall,
/// tuning) on the network `name`, bridge `bridge`, `subnet` (a /24, gateway `.1`) and leases
/// under `ipam`: podman's bench network; the CNI floor ([`super::cni_floor`]) uses its JSON.
fn conflist(name: &str, bridge: &str, subnet: &str, ipam: &Path) -> String {
    conflist_value(name, bridge, subnet, ipam).to_string()
}

/// [`conflist`] as JSON.
pub(super) fn conflist_value(
    name: &str,
    bridge: &str,
    subnet: &str,
    ipam: &Path,
) -> serde_json::Value {
    let gateway = format!(
        "{}.1",
        subnet.rsplit_once('.').map_or(subnet, |(net, _)| net)
    );
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                    "dataDir": ipam.display().to_string(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall", "backend": ""},
            {"type": "tuning"}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_conflist_is_ours() {
        let v: serde_json::Value = serde_json::from_str(&conflist(
            PODMAN_NET,
            PODMAN_BRIDGE,
            PODMAN_SUBNET,
            Path::new("/b/net/ipam"),
        ))
        .unwrap_or_default();
        assert_eq!(v["name"], PODMAN_NET);
        assert_eq!(v["plugins"][0]["bridge"], PODMAN_BRIDGE);
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/b/net/ipam");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            PODMAN_SUBNET
        );
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["gateway"],
            "10.82.1.1"
        );
    }
}
