//! Integration tests against the real CNI plugins in /usr/lib/cni (root only).
//!
//! Network safety: every bridge, subnet (10.79.0.0/16, third octet from the pid), netns,
//! data dir and cache is this test's own; no traffic is sent anywhere. Everything created is
//! removed, also when a test fails (Drop guard).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rpod_net::{
    create_netns, firewall_backend, is_netns_mounted, leases, remove_netns, Attachment, CniResult,
    CniRunner, NetError, NetworkConfigList, PortMapping,
};
use serde_json::json;

const PLUGIN_DIR: &str = "/usr/lib/cni";

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping real-plugin test: not root");
        return false;
    }
    for p in [
        "bridge",
        "host-local",
        "portmap",
        "firewall",
        "tuning",
        "loopback",
    ] {
        if !Path::new(PLUGIN_DIR).join(p).exists() {
            eprintln!("skipping real-plugin test: {PLUGIN_DIR}/{p} missing");
            return false;
        }
    }
    true
}

/// Unique names per test (idx) and per process (pid).
struct Names {
    net: String,
    bridge: String,
    octet: u32,
    id: String,
}

fn names(idx: u32) -> Names {
    let pid = std::process::id();
    Names {
        net: format!("rpodtest-{pid}-{idx}"),
        bridge: format!("rpn{}x{idx}", pid % 1_000_000),
        octet: (pid % 80) * 3 + idx,
        id: format!("rpodtestctr{pid}x{idx}"),
    }
}

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Cleans up whatever a test left: DEL, netns, bridge.
struct Guard {
    runner: CniRunner,
    net: Option<NetworkConfigList>,
    att: Option<Attachment>,
    bridge: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(n), Some(a)) = (&self.net, &self.att) {
            let _ = self.runner.del(n, a, None);
            let _ = self.runner.loopback_down(&a.container_id, &a.netns);
            let _ = remove_netns(&a.netns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

struct Env {
    td: tempfile::TempDir,
    n: Names,
}

impl Env {
    fn new(idx: u32) -> Env {
        Env {
            td: tempfile::tempdir().unwrap(),
            n: names(idx),
        }
    }

    fn subnet(&self) -> String {
        format!("10.79.{}.0/24", self.n.octet)
    }

    fn prefix(&self) -> String {
        format!("10.79.{}.", self.n.octet)
    }

    fn config(
        &self,
        version: &str,
        ip_masq: bool,
        extra: &[serde_json::Value],
    ) -> NetworkConfigList {
        let mut plugins = vec![json!({
            "type": "bridge", "bridge": self.n.bridge, "isGateway": true, "ipMasq": ip_masq,
            "hairpinMode": true,
            "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                     "ranges": [[{"subnet": self.subnet(), "gateway": format!("{}1", self.prefix())}]],
                     "dataDir": self.td.path().join("ipam").display().to_string()}
        })];
        plugins.extend(extra.iter().cloned());
        let v = json!({"cniVersion": version, "name": self.n.net, "plugins": plugins});
        NetworkConfigList::from_bytes(
            &self.td.path().join("net.conflist"),
            v.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn standard(&self, ip_masq: bool) -> NetworkConfigList {
        self.config(
            "0.4.0",
            ip_masq,
            &[
                json!({"type": "portmap", "capabilities": {"portMappings": true}}),
                json!({"type": "firewall"}),
                json!({"type": "tuning"}),
            ],
        )
    }

    fn runner(&self) -> CniRunner {
        CniRunner::new(
            vec![PathBuf::from(PLUGIN_DIR)],
            self.td.path().join("cache"),
        )
    }

    fn guard(&self) -> Guard {
        Guard {
            runner: self.runner(),
            net: None,
            att: None,
            bridge: self.n.bridge.clone(),
        }
    }

    fn attachment(&self, netns: PathBuf, ports: Vec<PortMapping>) -> Attachment {
        Attachment {
            container_id: self.n.id.clone(),
            container_name: format!("{}-name", self.n.id),
            netns,
            ifname: "eth0".into(),
            port_mappings: ports,
            static_ip: None,
            mac: None,
        }
    }

    fn assert_clean(&self, net: &NetworkConfigList, runner: &CniRunner) {
        assert!(leases(net).is_empty(), "lease left: {:?}", leases(net));
        assert!(runner.cache.entries().is_empty());
        let (_, veths) = sh("ip", &["-o", "link", "show", "master", &self.n.bridge]);
        assert!(!veths.contains("veth"), "veth left: {veths}");
        let (_, rules) = sh("iptables-save", &[]);
        for line in rules.lines() {
            assert!(
                !line.contains(&self.prefix()) && !line.contains(&self.n.id),
                "iptables rule left: {line}"
            );
        }
        let (_, rules6) = sh("ip6tables-save", &[]);
        assert!(!rules6.contains(&self.n.id), "ip6tables rule left");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mounted_anywhere(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&p.display().to_string())
}

#[test]
fn full_cycle_with_port() {
    if !can_run() {
        return;
    }
    let env = Env::new(0);
    let mut guard = env.guard();
    let runner = env.runner();
    let net = env.standard(true);
    let ns = create_netns(&env.td.path().join("netns")).unwrap();
    assert!(is_netns_mounted(&ns));
    let port = free_port();
    let a = env.attachment(
        ns.clone(),
        vec![PortMapping {
            host_port: port,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
        }],
    );
    guard.net = Some(net.clone());
    guard.att = Some(a.clone());

    runner.loopback_up(&a.container_id, &ns).unwrap();
    let res = runner.add(&net, &a).unwrap();
    let ips = res.ips();
    assert_eq!(ips.len(), 1, "{}", res.raw);
    assert!(ips[0].address.to_string().starts_with(&env.prefix()));
    assert_eq!(ips[0].prefix_len, 24);
    assert_eq!(
        ips[0].gateway.unwrap().to_string(),
        format!("{}1", env.prefix())
    );
    assert!(res.mac().is_some());
    assert_eq!(CniResult::from_value(&res.to_value()).unwrap(), res);
    let l = leases(&net);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].container_id, a.container_id);
    assert_eq!(l[0].ifname, "eth0");
    assert_eq!(l[0].ip, ips[0].address.to_string());
    assert_eq!(runner.cache.entries().len(), 1);
    let (_, veths) = sh("ip", &["-o", "link", "show", "master", &env.n.bridge]);
    assert!(veths.contains("veth"), "{veths}");
    let (_, nat) = sh("iptables-save", &["-t", "nat"]);
    assert!(
        nat.contains(&format!("--dport {port}")),
        "no DNAT for {port}"
    );

    runner.del(&net, &a, None).unwrap();
    env.assert_clean(&net, &runner);
    // A second DEL is harmless.
    runner.del(&net, &a, None).unwrap();
    runner.loopback_down(&a.container_id, &ns).unwrap();
    remove_netns(&ns).unwrap();
    assert!(!is_netns_mounted(&ns));
    assert!(!ns.exists());
    assert!(!mounted_anywhere(&ns));
    remove_netns(&ns).unwrap();
    env.assert_clean(&net, &runner);
}

#[test]
fn del_after_netns_gone() {
    if !can_run() {
        return;
    }
    let env = Env::new(1);
    let mut guard = env.guard();
    let runner = env.runner();
    // ipMasq off: with the netns gone, the bridge plugin cannot learn the addresses and so
    // cannot remove its masquerade chain (see the crate docs); everything else is cleaned.
    let net = env.standard(false);
    let ns = create_netns(&env.td.path().join("netns")).unwrap();
    let a = env.attachment(ns.clone(), vec![]);
    guard.net = Some(net.clone());
    guard.att = Some(a.clone());
    runner.add(&net, &a).unwrap();
    assert_eq!(leases(&net).len(), 1);
    remove_netns(&ns).unwrap();
    runner.del(&net, &a, None).unwrap();
    runner.loopback_down(&a.container_id, &ns).unwrap();
    env.assert_clean(&net, &runner);
}

#[test]
fn add_with_missing_plugin_rolls_back() {
    if !can_run() {
        return;
    }
    let env = Env::new(2);
    let mut guard = env.guard();
    let runner = env.runner();
    let net = env.config(
        "1.0.0",
        true,
        &[
            json!({"type": "firewall"}),
            json!({"type": "rpod-no-such-plugin"}),
        ],
    );
    let ns = create_netns(&env.td.path().join("netns")).unwrap();
    let a = env.attachment(ns.clone(), vec![]);
    guard.net = Some(net.clone());
    guard.att = Some(a.clone());
    let e = runner.add(&net, &a).unwrap_err();
    assert!(matches!(e, NetError::PluginNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("/usr/lib/cni"));
    env.assert_clean(&net, &runner);
    remove_netns(&ns).unwrap();
}

#[test]
fn iptables_backend_rules() {
    if !can_run() {
        return;
    }
    let env = Env::new(3);
    let fw = firewall_backend("iptables").unwrap();
    let ip = format!("{}200", env.prefix());
    let res = CniResult {
        network: env.n.net.clone(),
        ifname: "eth0".into(),
        raw: json!({"cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/nonexistent"}],
            "ips": [{"interface": 0, "address": format!("{ip}/24")}]}),
    };
    fw.add(&res).unwrap();
    fw.add(&res).unwrap();
    let (_, rules) = sh("iptables-save", &["-t", "filter"]);
    let want_s = format!("-A CNI-FORWARD -s {ip}/32 -j ACCEPT");
    let want_d =
        format!("-A CNI-FORWARD -d {ip}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    assert_eq!(rules.lines().filter(|l| *l == want_s).count(), 1, "{rules}");
    assert_eq!(rules.lines().filter(|l| *l == want_d).count(), 1, "{rules}");
    assert!(rules
        .contains("-A FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD"));
    fw.del(&res).unwrap();
    fw.del(&res).unwrap();
    let (_, rules) = sh("iptables-save", &[]);
    assert!(!rules.contains(&ip), "{rules}");
    assert_eq!(firewall_backend("none").unwrap().name(), "none");
    assert!(firewall_backend("firewalld").is_err());
}
