//! The network cases' own CNI networks, so that `cargo xtask bench` never uses or touches a
//! network it did not make:
//!
//! - rpod: a `libpod.conf` (passed with `--config`) whose default network is `rpodbench0`
//!   (bridge `rpodbench0`, 10.82.0.0/24, IPAM leases under the bench dir); rpod writes the
//!   conflist into the case's own CNI config dir on first use (in the warm-up);
//! - podman (CNI backend): `--network-backend cni --network-config-dir $BENCH_DIR/net/podman`
//!   holding `rpod-bench-net.conflist` (bridge `rpodbenchp0`, 10.82.1.0/24, the same plugin
//!   chain as rpod's: bridge + host-local, portmap, firewall, tuning; leases under the bench
//!   dir);
//! - podman (netavark backend): `--network-backend netavark --network-config-dir
//!   $BENCH_DIR/net/netavark` holding `rpod-bench-netavark.json` (bridge `rpodbenchn0`,
//!   10.82.3.0/24, no DNS: aardvark-dns is not started, as the CNI chain has no DNS plugin
//!   either). The file is written by the bench because podman 4.3's `network create` cannot
//!   name the bridge. Rootful podman keeps netavark's IPAM database in
//!   `/run/containers/networks/ipam.db` whatever `--runroot` says: when that directory did not
//!   exist before the case, it is removed after it.
//!
//! Both podman cases name the backend, so they measure the same backend whatever the host's
//! default is, and never change it (podman caches its default in the store's
//! `defaultNetworkBackend` file only when no backend is given).
//!
//! A [`BenchNetworks`] guard deletes the bridges after the case (CNI's bridge plugin leaves
//! them behind on purpose; netavark deletes its own with the last container) and any iptables
//! rule of the three networks that an engine left (with a warning: per-container rules, veths
//! and leases are the engines' to remove; the shared chains stay, as with podman).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use firewall::Scope;

pub(super) mod firewall;

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
/// podman's netavark bench network.
pub(super) const NETAVARK_NET: &str = "rpod-bench-netavark";
/// Its bridge.
pub(super) const NETAVARK_BRIDGE: &str = "rpodbenchn0";
/// Its subnet.
pub(super) const NETAVARK_SUBNET: &str = "10.82.3.0/24";
/// Stands for podman's CNI network config dir (`$BENCH_DIR/net/podman`) in argv tables.
pub(crate) const PODMAN_NET_DIR: &str = "{podman_net_dir}";
/// Stands for podman's netavark network config dir (`$BENCH_DIR/net/netavark`) in argv tables.
pub(crate) const NETAVARK_NET_DIR: &str = "{netavark_net_dir}";

/// The bridges of the engines' bench networks.
const BRIDGES: [&str; 3] = [RPOD_NET, PODMAN_BRIDGE, NETAVARK_BRIDGE];
/// The engines' bench networks' iptables rules (their names or an address of their subnets).
const FIREWALL: Scope = Scope {
    names: &[RPOD_NET, PODMAN_NET, NETAVARK_NET],
    prefixes: &["10.82.0.", "10.82.1.", "10.82.3."],
};
/// Where rootful podman's netavark backend keeps its IPAM database (`ipam.db`).
const NETAVARK_RUN_DIR: &str = "/run/containers/networks";

/// podman's CNI network config dir under the bench dir.
pub(super) fn podman_net_dir(bench_dir: &Path) -> PathBuf {
    bench_dir.join("net/podman")
}

/// podman's netavark network config dir under the bench dir.
pub(super) fn netavark_net_dir(bench_dir: &Path) -> PathBuf {
    bench_dir.join("net/netavark")
}

/// `word` of an argv table with the network config dirs' placeholders replaced.
pub(super) fn resolve_dir(word: String, bench_dir: &Path) -> String {
    match word.as_str() {
        PODMAN_NET_DIR => podman_net_dir(bench_dir).display().to_string(),
        NETAVARK_NET_DIR => netavark_net_dir(bench_dir).display().to_string(),
        _ => word,
    }
}

/// The networks of one network case; deletes their bridges and left-over rules when dropped.
pub(super) struct BenchNetworks {
    /// Whether [`NETAVARK_RUN_DIR`] existed before the case (then it is the host's: kept).
    netavark_run_dir_existed: bool,
}

impl BenchNetworks {
    /// Lays out the networks' files under `bench_dir/net/` (idempotent); returns the guard
    /// and the `--config` file for rpod.
    pub(super) fn new(bench_dir: &Path) -> Result<(BenchNetworks, PathBuf)> {
        for bridge in BRIDGES {
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
        let netavark_dir = netavark_net_dir(bench_dir);
        fs::create_dir_all(&netavark_dir)
            .with_context(|| format!("creating {}", netavark_dir.display()))?;
        fs::write(
            netavark_dir.join(format!("{NETAVARK_NET}.json")),
            netavark_network(NETAVARK_NET, NETAVARK_BRIDGE, NETAVARK_SUBNET).to_string(),
        )?;
        let guard = BenchNetworks {
            netavark_run_dir_existed: Path::new(NETAVARK_RUN_DIR).exists(),
        };
        Ok((guard, conf))
    }
}

impl Drop for BenchNetworks {
    fn drop(&mut self) {
        for bridge in BRIDGES {
            if Path::new("/sys/class/net").join(bridge).exists() {
                let _ = Command::new("ip")
                    .args(["link", "del", bridge])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        firewall::remove(&FIREWALL, "the engines' bench networks");
        let run_dir = Path::new(NETAVARK_RUN_DIR);
        if !self.netavark_run_dir_existed && run_dir.exists() {
            // Made by the netavark case's podman: its IPAM database, all leases released.
            let _ = fs::remove_file(run_dir.join("ipam.db"));
            if let Err(e) = fs::remove_dir(run_dir) {
                eprintln!(
                    "xtask bench: warning: removing {NETAVARK_RUN_DIR} (made during the case): {e}"
                );
            }
        }
    }
}

/// What of the engines' bench networks is left on the host: bridges and iptables rules. For
/// the final check.
pub(super) fn leftovers() -> Vec<String> {
    let mut left: Vec<String> = BRIDGES
        .iter()
        .filter(|b| Path::new("/sys/class/net").join(b).exists())
        .map(|b| format!("bridge {b}"))
        .collect();
    for (table, input) in firewall::leftovers(&FIREWALL) {
        left.push(format!("iptables rules ({table}): {input}"));
    }
    left
}

/// A netavark network file as podman 4.3 writes it (`<config dir>/<name>.json`), for a bridge
/// network with one IPv4 subnet (gateway `.1`), host-local IPAM and no DNS. The ID is fixed
/// (podman only needs it unique among the networks of the config dir).
fn netavark_network(name: &str, bridge: &str, subnet: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "id": NETAVARK_ID,
        "driver": "bridge",
        "network_interface": bridge,
        "created": "2026-12-03T00:00:00Z",
        "subnets": [{"subnet": subnet, "gateway": gateway(subnet)}],
        "ipv6_enabled": false,
        "internal": false,
        "dns_enabled": false,
        "ipam_options": {"driver": "host-local"}
    })
}

/// The netavark network's ID: 64 hex digits (`rpod-bench-netavark` in ASCII, zero-padded).
const NETAVARK_ID: &str = "72706f642d62656e63682d6e6574617661726b00000000000000000000000000";

/// The gateway (`.1`) of a /24 `subnet`.
fn gateway(subnet: &str) -> String {
    format!(
        "{}.1",
        subnet.rsplit_once('.').map_or(subnet, |(net, _)| net)
    )
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
    let gateway = gateway(subnet);
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

    #[test]
    fn netavark_network_is_ours() {
        let v = netavark_network(NETAVARK_NET, NETAVARK_BRIDGE, NETAVARK_SUBNET);
        assert_eq!(v["name"], NETAVARK_NET);
        assert_eq!(v["network_interface"], NETAVARK_BRIDGE);
        assert_eq!(v["dns_enabled"], false);
        assert_eq!(v["subnets"][0]["subnet"], NETAVARK_SUBNET);
        assert_eq!(v["subnets"][0]["gateway"], "10.82.3.1");
        assert_eq!(NETAVARK_ID.len(), 64);
        assert!(NETAVARK_ID.bytes().all(|b| b.is_ascii_hexdigit()));
        // Never podman's default network, bridge or subnet.
        for word in [NETAVARK_NET, NETAVARK_BRIDGE, NETAVARK_SUBNET] {
            assert!(!["podman", "podman0", "cni-podman0"].contains(&word));
            assert!(!word.starts_with("10.88."));
        }
    }
}
