//! The CNI floor of `run --rm --network true`: what a container engine must do for a bridge
//! network, done by hand around the conmon+runc floor ([`super::floor`]) with no engine logic,
//! exactly as protocols.md §3.1 describes the protocol:
//!
//! 1. `ip netns add rpod-bench-floor-<xtask pid>-net` (the runc spec joins
//!    `/run/netns/<that>`: namespaces entry `{type: network, path: …}`);
//! 2. the CNI ADDs, each plugin a fresh exec of `/usr/lib/cni/<type>` with `CNI_COMMAND`,
//!    `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH=/usr/lib/cni`,
//!    `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<id>` and a `PATH`: loopback on `lo` (a network
//!    of its own, `cni-loopback`, as libcni runs it), then the chain bridge + host-local,
//!    portmap, firewall, tuning on `eth0`, each plugin's stdout the next one's `prevResult`.
//!    stdin = the plugin's object + `name` + `cniVersion` (+ `prevResult`) (+ `runtimeConfig`,
//!    only in the `-p` case and only to portmap, the one plugin declaring `portMappings`:
//!    `{hostPort: 28482, containerPort: 80, protocol: tcp, hostIP: 127.0.0.1}`);
//! 3. the conmon+runc floor;
//! 4. the DELs, last to first, with the final ADD result as `prevResult` (loopback's own
//!    result for loopback), then `ip netns del`. When a run fails, the script still runs the
//!    DELs and removes the netns (best effort).
//!
//! The network is the floor's own, third bench network ([`super::network::conflist_value`], the
//! chain of podman's bench network): `rpod-bench-floor-net`, bridge `rpodbenchf0`,
//! 10.82.2.0/24, leases under the floor's directory. The plugin configurations are written
//! into the script (so one run reads no file but the binaries); the bridge is made by the
//! first ADD, in the warm-up.
//!
//! The [`CniFloor`] guard removes what the runs left: the netns, the bridge, the per-container
//! iptables rules and chains of the network (a complete DEL removes them; the shared CNI
//! chains stay, as with podman) — the leases go with the floor's directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::network;
use super::network::firewall::{self, Scope};
use super::process::silenced;
use super::sweep;
use crate::util::shell_quote;

/// The floor's CNI network.
pub(super) const NET: &str = "rpod-bench-floor-net";
/// Its bridge.
pub(super) const BRIDGE: &str = "rpodbenchf0";
/// Its subnet.
pub(super) const SUBNET: &str = "10.82.2.0/24";
/// The floor network's iptables rules (its name or an address of its subnet).
const FIREWALL: Scope = Scope {
    names: &[NET],
    prefixes: &["10.82.2."],
};
/// The host port of the `-p` case (loopback only; nothing listens or connects).
pub(super) const HOST_PORT: u16 = 28482;
/// Where the plugins are (Debian's `containernetworking-plugins`).
const CNI_PATH: &str = "/usr/lib/cni";
/// The `PATH` the plugins get (bridge, portmap and firewall exec `iptables`).
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where `ip netns add` mounts the namespaces.
const NETNS_DIR: &str = "/run/netns";
/// The shell variables holding each plugin's stdin (less its closing `}`), in chain order.
const CHAIN: [&str; 4] = ["bridge", "portmap", "firewall", "tuning"];

/// Set-up part of the script, after `cd "$bundle"`; `@…@` are replaced (shell-quoted).
const UP: &str = r#"# The network (protocols.md §3.1): a new netns; CNI ADD of loopback on lo (a network of
# its own, as libcni runs it), then of the chain bridge, portmap, firewall, tuning on eth0,
# each plugin's result the next one's prevResult; after the container, DEL last to first
# with the final ADD result, and the netns is removed (best effort too if the run fails).
ns=@NETNS@
loopback=@LOOPBACK@
bridge=@BRIDGE@
portmap=@PORTMAP@
firewall=@FIREWALL@
tuning=@TUNING@
cni() { # COMMAND IFNAME PLUGIN STDIN: one plugin exec, its stdout in $out
    out=$(CNI_COMMAND=$1 CNI_CONTAINERID=$id CNI_NETNS=/run/netns/$ns CNI_IFNAME=$2 \
        CNI_PATH=@CNI_PATH@ CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=$id" PATH=@PATH@ \
        @CNI_PATH@/$3 <<<"$4") || { echo "floor: CNI $1 $3 failed: $out" >&2; return 1; }
}
down() { # DEL last to first with the final ADD result, then the netns
    local rc=0 prev=${res:+,\"prevResult\":$res}
    cni DEL eth0 tuning "$tuning$prev}" || rc=1
    cni DEL eth0 firewall "$firewall$prev}" || rc=1
    cni DEL eth0 portmap "$portmap$prev}" || rc=1
    cni DEL eth0 bridge "$bridge$prev}" || rc=1
    cni DEL lo loopback "$loopback${lo:+,\"prevResult\":$lo}}" || rc=1
    ip netns del "$ns" || rc=1
    return $rc
}
res= lo=
ip netns add "$ns"
trap '[ $? = 0 ] || down' EXIT
cni ADD lo loopback "$loopback}"; lo=$out
cni ADD eth0 bridge "$bridge}"; res=$out
cni ADD eth0 portmap "$portmap,\"prevResult\":$res}"; res=$out
cni ADD eth0 firewall "$firewall,\"prevResult\":$res}"; res=$out
cni ADD eth0 tuning "$tuning,\"prevResult\":$res}"; res=$out
"#;

/// Tear-down part of the script, after `runc delete`.
pub(super) const DOWN: &str = "trap - EXIT\ndown\n";

/// The netns of the floor runs of the benchmark whose container IDs start with `id_prefix`
/// (`rpod-bench-floor-<xtask pid>-`).
pub(super) fn netns_name(id_prefix: &str) -> String {
    format!("{id_prefix}net")
}

/// Its path, for the runc spec.
pub(super) fn netns_path(id_prefix: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns_name(id_prefix))
}

/// The network part of the script of a floor in `dir` (leases in `dir/ipam`).
pub(super) fn script_up(dir: &Path, id_prefix: &str, publish: bool) -> String {
    let stdins = plugin_stdins(&dir.join("ipam"), publish);
    let mut text = UP
        .replace("@NETNS@", &shell_quote(&netns_name(id_prefix)))
        .replace("@CNI_PATH@", CNI_PATH)
        .replace("@PATH@", PLUGIN_PATH)
        .replace("@LOOPBACK@", &shell_quote(&loopback_stdin()));
    for (var, stdin) in CHAIN.iter().zip(&stdins) {
        text = text.replace(&format!("@{}@", var.to_uppercase()), &shell_quote(stdin));
    }
    text
}

/// The loopback network's stdin, less its closing `}`.
fn loopback_stdin() -> String {
    open(serde_json::json!({"cniVersion": "0.4.0", "name": "cni-loopback", "type": "loopback"}))
}

/// The stdin of each plugin of the chain (the plugin's object + `name` + `cniVersion`, +
/// `runtimeConfig` with one port mapping for the plugins declaring `portMappings` when
/// `publish`), less the closing `}`, to which the script adds `prevResult`.
fn plugin_stdins(ipam: &Path, publish: bool) -> Vec<String> {
    let list = network::conflist_value(NET, BRIDGE, SUBNET, ipam);
    let version = list["cniVersion"].clone();
    let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
    plugins
        .into_iter()
        .map(|plugin| {
            let ports = plugin["capabilities"]["portMappings"] == Value::Bool(true);
            let Value::Object(mut object) = plugin else {
                return String::new();
            };
            object.insert("name".into(), NET.into());
            object.insert("cniVersion".into(), version.clone());
            if publish && ports {
                object.insert(
                    "runtimeConfig".into(),
                    serde_json::json!({"portMappings": [{
                        "hostPort": HOST_PORT,
                        "containerPort": 80,
                        "protocol": "tcp",
                        "hostIP": "127.0.0.1",
                    }]}),
                );
            }
            open(Value::Object(object))
        })
        .collect()
}

/// The JSON text of `object` without its closing `}`.
fn open(object: Value) -> String {
    let mut text = object.to_string();
    text.pop();
    text
}

/// The CNI part of a floor: checks the host before the case and removes what its runs left.
pub(super) struct CniFloor {
    netns: String,
}

impl CniFloor {
    /// Checks that the plugins exist and that the floor's bridge, netns and (`publish`) host
    /// port are free; makes the lease directory `dir/ipam`.
    pub(super) fn new(dir: &Path, id_prefix: &str, publish: bool) -> Result<CniFloor> {
        for plugin in ["loopback", "host-local"].iter().chain(&CHAIN) {
            let path = Path::new(CNI_PATH).join(plugin);
            anyhow::ensure!(
                path.exists(),
                "{} not found (install containernetworking-plugins)",
                path.display()
            );
        }
        anyhow::ensure!(
            !Path::new("/sys/class/net").join(BRIDGE).exists(),
            "a network interface {BRIDGE} already exists (another benchmark running, or a \
             leftover: `ip link del {BRIDGE}`)"
        );
        let netns = netns_name(id_prefix);
        anyhow::ensure!(
            !Path::new(NETNS_DIR).join(&netns).exists(),
            "the netns {netns} already exists"
        );
        if publish {
            // Binding on loopback sends nothing; the listener is closed at once.
            TcpListener::bind(("127.0.0.1", HOST_PORT))
                .with_context(|| format!("host port 127.0.0.1:{HOST_PORT} is not free"))?;
        }
        fs::create_dir(dir.join("ipam"))?;
        Ok(CniFloor { netns })
    }

    /// Removes the netns, the bridge and the network's per-container iptables rules and
    /// chains; errors are only reported. Runs before the floor's directory (holding the
    /// leases) is removed, and after its containers are gone.
    pub(super) fn clean_up(&self) {
        if Path::new(NETNS_DIR).join(&self.netns).exists() {
            eprintln!(
                "xtask bench: warning: removing left-over netns {}",
                self.netns
            );
            ip(&["netns", "del", &self.netns]);
        }
        // The bridge plugin leaves the bridge behind on purpose (as with podman).
        if Path::new("/sys/class/net").join(BRIDGE).exists() {
            ip(&["link", "del", BRIDGE]);
        }
        firewall::remove(&FIREWALL, NET);
    }
}

impl Drop for CniFloor {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// `ip args…`; a failure is a warning.
fn ip(args: &[&str]) {
    let status = silenced(Command::new("ip").args(args)).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("xtask bench: warning: `ip {}` failed", args.join(" "));
    }
}

/// What of the CNI floor is left on the host: a netns of this benchmark (`id_prefix`), the
/// bridge, iptables rules of the network. For the final check.
pub(super) fn leftovers(id_prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    let netns = Path::new(NETNS_DIR).join(netns_name(id_prefix));
    if netns.exists() {
        left.push(format!("netns {}", netns.display()));
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        left.push(format!("bridge {BRIDGE}"));
    }
    for (table, input) in firewall::leftovers(&FIREWALL) {
        left.push(format!("iptables rules ({table}): {input}"));
    }
    left
}

/// Removes the netns of floor runs of killed benchmarks (see [`sweep::is_stale`]).
pub(super) fn remove_stale_netns(id_prefix_base: &str) {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("-net") && sweep::is_stale(&name, id_prefix_base) {
            eprintln!("xtask bench: removing netns {name} (left by a killed run)");
            ip(&["netns", "del", &name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(open: &str) -> Value {
        serde_json::from_str(&format!("{open}}}")).unwrap_or_default()
    }

    #[test]
    fn stdins_follow_libcni() {
        let plain = plugin_stdins(Path::new("/b/floor-cni/ipam"), false);
        assert_eq!(plain.len(), CHAIN.len());
        for (stdin, kind) in plain.iter().zip(CHAIN) {
            let v = parse(stdin);
            assert_eq!(v["type"], kind);
            assert_eq!(v["name"], NET);
            assert_eq!(v["cniVersion"], "0.4.0");
            assert!(v.get("runtimeConfig").is_none(), "{stdin}");
        }
        assert_eq!(parse(&plain[0])["bridge"], BRIDGE);
        assert_eq!(parse(&plain[0])["ipam"]["dataDir"], "/b/floor-cni/ipam");
        let published = plugin_stdins(Path::new("/b/ipam"), true);
        for (stdin, kind) in published.iter().zip(CHAIN) {
            let v = parse(stdin);
            assert_eq!(
                v.get("runtimeConfig").is_some(),
                kind == "portmap",
                "{stdin}"
            );
        }
        let mapping = &parse(&published[1])["runtimeConfig"]["portMappings"][0];
        assert_eq!(mapping["hostPort"], HOST_PORT);
        assert_eq!(mapping["containerPort"], 80);
        assert_eq!(mapping["hostIP"], "127.0.0.1");
        assert_eq!(parse(&loopback_stdin())["type"], "loopback");
    }

    #[test]
    fn script_part_has_no_placeholder_left() {
        let text = script_up(
            Path::new("/tmp/rpod-bench-x/floor-cni"),
            "rpod-bench-floor-1-",
            true,
        );
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("ns=rpod-bench-floor-1-net\n"));
        assert!(text.contains("portMappings"));
        assert!(text.contains("\"dataDir\":\"/tmp/rpod-bench-x/floor-cni/ipam\""));
    }
}
