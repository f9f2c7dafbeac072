//! [`NetSandbox`]: a [`Sandbox`] whose networking is the test's own, so that network tests are
//! safe on a shared host and against each other:
//!
//! - its own CNI config dir (the sandbox's `cni/`, which `Sandbox::cmd` already passes), IPAM
//!   data dir (`ipam/`) and default network, named like its bridge;
//! - its own bridges, `rp<pid%100000>x<n>` (10 characters, unique per process and test);
//! - its own subnets: the default network gets `10.79.K.0/24` and networks the test creates
//!   get `/26` pieces of `10.80.K.0/24` ([`NetSandbox::user_net`]), K unique per process and
//!   test (never 10.88.0.0/16, podman's, nor 10.77.0.0/16, rpod's default).
//!
//! Its [`Drop`] removes every container and pod, then what the network left behind if rpod
//! failed to (firewall rules and chains that mention its subnets, bridges or network names;
//! netns mounts under its directories), then its bridges. [`NetSandbox::leftovers`] lists what
//! is left, for the leak assertions.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{mounts_under, text, Sandbox};

/// The CNI plugin directory of this host (Debian's containernetworking-plugins).
pub const CNI_PLUGINS: &str = "/usr/lib/cni";

/// Per-process counter of sandboxes and bridges.
static SANDBOXES: AtomicU32 = AtomicU32::new(0);
static BRIDGES: AtomicU32 = AtomicU32::new(0);

/// A bridge name of this process: `rp<pid%100000>x<n>` (also the name of its network, or
/// the prefix of it).
fn new_bridge_name() -> String {
    let n = BRIDGES.fetch_add(1, Ordering::Relaxed);
    // Fixed width, so that no name is a prefix of another (rules are matched by substring).
    let name = format!("rp{:05}x{:02}", std::process::id() % 100_000, n % 100);
    assert!(name.len() <= 15, "{name}");
    name
}

/// A network the test created with `rpod network create`.
#[derive(Debug, Clone)]
pub struct UserNet {
    pub name: String,
    pub bridge: String,
    /// `10.80.K.M/26`.
    pub subnet: String,
    /// The first address of the subnet, `10.80.K.(M+1)`.
    pub gateway: String,
}

pub struct NetSandbox {
    pub sb: Sandbox,
    /// The default network's name (also its bridge's name).
    pub net: String,
    /// The default network's bridge.
    pub bridge: String,
    /// The default network's subnet, `10.79.K.0/24`.
    pub subnet: String,
    /// Its gateway, `10.79.K.1`.
    pub gateway: String,
    /// K.
    pub index: u32,
    /// The CNI config dir (`<sandbox>/cni`).
    pub cni_dir: PathBuf,
    /// The IPAM data dir (`<sandbox>/ipam`).
    pub ipam_dir: PathBuf,
    /// Networks made by [`NetSandbox::user_net`].
    user_nets: RefCell<Vec<UserNet>>,
    /// Network namespaces seen in `inspect` (`SandboxKey`).
    netns_seen: RefCell<Vec<PathBuf>>,
}

impl Deref for NetSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

/// Whether the CNI plugins are here (on top of [`super::available`]).
pub fn net_available() -> bool {
    if !super::available() {
        return false;
    }
    let ok = [
        "bridge",
        "host-local",
        "loopback",
        "portmap",
        "firewall",
        "tuning",
    ]
    .iter()
    .all(|p| Path::new(CNI_PLUGINS).join(p).exists())
        && Path::new("/usr/sbin/iptables-save").exists();
    if !ok {
        eprintln!("skipping: needs the CNI plugins in {CNI_PLUGINS} and iptables");
    }
    ok
}

/// A new network sandbox, or `None` (the test is then skipped) without the real components.
pub fn net_sandbox() -> Option<NetSandbox> {
    net_available().then(|| NetSandbox::with_conf(""))
}

impl NetSandbox {
    /// A sandbox whose `libpod.conf` points the network defaults at its own config dir,
    /// bridge, subnet and IPAM dir, plus `extra` (more `key = value` lines).
    pub fn with_conf(extra: &str) -> NetSandbox {
        let sb = Sandbox::new();
        let n = SANDBOXES.fetch_add(1, Ordering::Relaxed);
        let index = (std::process::id().wrapping_mul(16).wrapping_add(n)) % 256;
        let bridge = new_bridge_name();
        let cni_dir = sb.path("cni");
        let ipam_dir = sb.path("ipam");
        std::fs::create_dir_all(&cni_dir).unwrap();
        std::fs::create_dir_all(&ipam_dir).unwrap();
        // A stale bridge of the same name can only be an earlier run's of ours.
        delete_link(&bridge);
        let nsb = NetSandbox {
            net: bridge.clone(),
            subnet: format!("10.79.{index}.0/24"),
            gateway: format!("10.79.{index}.1"),
            bridge,
            index,
            cni_dir,
            ipam_dir,
            user_nets: RefCell::new(Vec::new()),
            netns_seen: RefCell::new(Vec::new()),
            sb,
        };
        nsb.write_conf(extra);
        nsb
    }

    /// (Re)writes `<sandbox>/etc/libpod.conf` with the network defaults and `extra`.
    pub fn write_conf(&self, extra: &str) {
        let conf = format!(
            "cni_default_network = \"{}\"\ndefault_subnet = \"{}\"\ndefault_bridge = \"{}\"\n\
             ipam_data_dir = \"{}\"\nfirewall_driver = \"none\"\n{extra}\n",
            self.net,
            self.subnet,
            self.bridge,
            self.ipam_dir.display()
        );
        std::fs::write(self.sb.path("etc/libpod.conf"), conf).unwrap();
    }

    /// `rpod` with this sandbox's configuration and `--netns bridge` (overriding the base
    /// sandbox's `--netns none`): containers get the default network unless told otherwise.
    pub fn net_cmd(&self) -> Command {
        let mut c = self.sb.cmd();
        c.args(["--netns", "bridge"]);
        c
    }

    /// A new network's name, bridge, subnet and gateway (not created yet).
    pub fn next_user_net(&self) -> UserNet {
        let n = u32::try_from(self.user_nets.borrow().len()).unwrap();
        assert!(n < 4, "at most 4 user networks per sandbox");
        let bridge = new_bridge_name();
        delete_link(&bridge);
        let net = UserNet {
            name: format!("{bridge}n"),
            subnet: format!("10.80.{}.{}/26", self.index, n * 64),
            gateway: format!("10.80.{}.{}", self.index, n * 64 + 1),
            bridge,
        };
        self.user_nets.borrow_mut().push(net.clone());
        net
    }

    /// `rpod network create --subnet S --gateway G --interface-name B NAME` of a new network
    /// of the test's own (see [`NetSandbox::next_user_net`]).
    pub fn user_net(&self) -> UserNet {
        let net = self.next_user_net();
        self.ok(&[
            "network",
            "create",
            "--subnet",
            &net.subnet,
            "--gateway",
            &net.gateway,
            "--interface-name",
            &net.bridge,
            &net.name,
        ]);
        net
    }

    /// Every bridge of this sandbox (the default network's and the user networks').
    pub fn bridges(&self) -> Vec<String> {
        let mut v = vec![self.bridge.clone()];
        v.extend(self.user_nets.borrow().iter().map(|n| n.bridge.clone()));
        v
    }

    /// Strings whose presence in a firewall rule makes it this sandbox's.
    fn needles(&self, ids: &[String]) -> Vec<String> {
        // Network names start with their bridge's name.
        let mut v = vec![
            format!("10.79.{}.", self.index),
            format!("10.80.{}.", self.index),
        ];
        v.extend(self.bridges());
        v.extend(ids.iter().cloned());
        v
    }

    /// `inspect NAME`'s `NetworkSettings`; records its `SandboxKey` for the leak checks.
    pub fn net_settings(&self, name: &str) -> serde_json::Value {
        let v = self.sb.inspect(name)["NetworkSettings"].clone();
        if let Some(key) = v["SandboxKey"].as_str().filter(|k| !k.is_empty()) {
            let key = PathBuf::from(key);
            if !self.netns_seen.borrow().contains(&key) {
                self.netns_seen.borrow_mut().push(key);
            }
        }
        v
    }

    /// The container's address on its first network (`NetworkSettings.IPAddress`).
    pub fn ip_of(&self, name: &str) -> String {
        let s = self.net_settings(name);
        let ip = s["IPAddress"].as_str().unwrap_or_default().to_owned();
        assert!(
            ip.parse::<Ipv4Addr>().is_ok(),
            "{name} has no IPv4 address: {s}"
        );
        ip
    }

    /// What is left of this sandbox's networking (`ids`: its containers, also mentioned in
    /// firewall rules); empty when nothing is.
    pub fn leftovers(&self, ids: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        let needles = self.needles(ids);
        for (tool, line) in firewall_lines() {
            if needles.iter().any(|n| line.contains(n.as_str())) {
                left.push(format!("{tool}: {line}"));
            }
        }
        for b in self.bridges() {
            if let Ok(rd) = std::fs::read_dir(format!("/sys/class/net/{b}/brif")) {
                for e in rd.flatten() {
                    left.push(format!(
                        "veth {} on bridge {b}",
                        e.file_name().to_string_lossy()
                    ));
                }
            }
        }
        for dir in [self.sb.dir.path(), self.sb.tmp.path()] {
            for m in mounts_under(dir) {
                left.push(format!("mount: {m}"));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for ns in self.netns_seen.borrow().iter() {
            let p = ns.display().to_string();
            if mounts
                .lines()
                .any(|l| l.split_whitespace().nth(4) == Some(p.as_str()))
            {
                left.push(format!("netns still mounted: {p}"));
            }
            if p.starts_with(&self.sb.tmp.path().display().to_string()) && ns.exists() {
                left.push(format!("netns file: {p}"));
            }
        }
        for lease in self.leases() {
            left.push(format!("lease: {}", lease.display()));
        }
        for f in self.cni_cache_files() {
            left.push(format!("CNI cache: {}", f.display()));
        }
        left
    }

    /// Asserts that [`NetSandbox::leftovers`] is empty.
    pub fn assert_no_leftovers(&self, ids: &[String]) {
        let left = self.leftovers(ids);
        assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    }

    /// host-local lease files (named by address) in the IPAM dir.
    pub fn leases(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for net in std::fs::read_dir(&self.ipam_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().into_owned();
                if name != "lock" && !name.starts_with("last_reserved_ip") {
                    v.push(f.path());
                }
            }
        }
        v
    }

    /// The addresses leased in the IPAM dir, with the container ID each lease names.
    pub fn leased(&self) -> Vec<(String, String)> {
        self.leases()
            .iter()
            .map(|p| {
                let owner = std::fs::read_to_string(p).unwrap_or_default();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    owner.lines().next().unwrap_or_default().trim().to_owned(),
                )
            })
            .collect()
    }

    /// `*.json` files below a directory whose name starts with `cni` under the sandbox's root
    /// or run root: rpod's cache of CNI results.
    pub fn cni_cache_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for base in [self.sb.path("root"), self.sb.path("runroot")] {
            walk(&base, false, &mut v);
        }
        v
    }

    /// What a reboot does to this sandbox's network, before [`Sandbox::simulate_reboot`]
    /// (which kills conmon and the containers and wipes the tmp dir): namespace mounts are
    /// gone, and so are the firewall rules and bridges (the IPAM dir and rpod's static dir
    /// survive, on disk).
    pub fn simulate_reboot(&self, ids: &[String]) {
        let tmp = self.sb.tmp.path().display().to_string();
        for (pid, cmdline) in super::pids_mentioning(&tmp) {
            if cmdline.contains("conmon") {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
        for id in ids {
            let _ = Command::new(super::runc_bin())
                .args(["kill", id, "KILL"])
                .output();
        }
        self.unmount_all();
        remove_firewall_lines(&self.needles(ids));
        for b in self.bridges() {
            delete_link(&b);
        }
        self.sb.simulate_reboot(ids);
    }

    /// Lazily unmounts every mount under the sandbox's directories and every namespace seen.
    fn unmount_all(&self) {
        let mut targets: Vec<String> = Vec::new();
        for dir in [self.sb.dir.path(), self.sb.tmp.path()] {
            for m in mounts_under(dir) {
                if let Some(t) = m.split_whitespace().nth(4) {
                    targets.push(t.to_owned());
                }
            }
        }
        targets.extend(
            self.netns_seen
                .borrow()
                .iter()
                .map(|p| p.display().to_string()),
        );
        // Deepest first.
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = Command::new("umount")
                .args(["-l", &t])
                .stderr(Stdio::null())
                .output();
        }
        for ns in self.netns_seen.borrow().iter() {
            if ns.starts_with(self.sb.tmp.path()) || ns.starts_with("/run/netns") {
                let _ = std::fs::remove_file(ns);
            }
        }
    }

    /// IDs of every pod.
    pub fn pod_ids(&self) -> Vec<String> {
        self.run(&["pod", "ps", "-q", "--no-trunc"])
            .stdout
            .split(|b| *b == b'\n')
            .map(|l| String::from_utf8_lossy(l).trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for NetSandbox {
    fn drop(&mut self) {
        // Containers and pods first, through rpod (which tears their networks down).
        if let Ok(out) = self.sb.cmd().args(["ps", "-aq", "--no-trunc"]).output() {
            let ids: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
            if !ids.is_empty() {
                let _ = self.sb.cmd().args(["rm", "-f"]).args(&ids).output();
            }
        }
        let pods = self.pod_ids();
        if !pods.is_empty() {
            let _ = self.sb.cmd().args(["pod", "rm", "-f"]).args(&pods).output();
        }
        // Then whatever rpod left (a failing test must not leave the host dirty).
        let _ = self.sb.cmd().args(["system", "reset", "--force"]).output();
        self.unmount_all();
        remove_firewall_lines(&self.needles(&[]));
        for b in self.bridges() {
            delete_link(&b);
        }
    }
}

/// Collects `*.json` files below directories named `cni*` under `dir`.
fn walk(dir: &Path, in_cni: bool, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            let cni = in_cni || e.file_name().to_string_lossy().starts_with("cni");
            walk(&p, cni, out);
        } else if in_cni && p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

/// `ip link del NAME`, ignoring "does not exist".
pub fn delete_link(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "del", name])
        .stderr(Stdio::null())
        .output();
}

/// Every line of `iptables-save` and `ip6tables-save`, with the tool's name.
pub fn firewall_lines() -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = Command::new(tool).output() {
            for l in text(&out.stdout).lines() {
                v.push((tool, l.to_owned()));
            }
        }
    }
    v
}

/// Deletes every rule that mentions one of `needles`, and the per-container `CNI-*` chains
/// (all but the shared `CNI-FORWARD`, `CNI-ADMIN` and `CNI-HOSTPORT-*`) those rules were in or
/// jumped to.
pub fn remove_firewall_lines(needles: &[String]) {
    for (save, restore) in [
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ] {
        let Ok(out) = Command::new(save).output() else {
            continue;
        };
        let mut script = String::new();
        let mut table_rules = String::new();
        let mut chains: Vec<String> = Vec::new();
        let mut table = String::new();
        let flush = |table: &str, rules: &mut String, chains: &mut Vec<String>, s: &mut String| {
            if rules.is_empty() && chains.is_empty() {
                return;
            }
            s.push_str(&format!("*{table}\n{rules}"));
            for c in chains.iter() {
                s.push_str(&format!("-F {c}\n-X {c}\n"));
            }
            s.push_str("COMMIT\n");
            rules.clear();
            chains.clear();
        };
        for line in text(&out.stdout).lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_owned();
                continue;
            }
            if line == "COMMIT" {
                flush(&table, &mut table_rules, &mut chains, &mut script);
                continue;
            }
            let Some(rule) = line.strip_prefix("-A ") else {
                continue;
            };
            if !needles.iter().any(|n| line.contains(n.as_str())) {
                continue;
            }
            table_rules.push_str(&format!("-D {rule}\n"));
            let chain = rule.split_whitespace().next().unwrap_or_default();
            let target = rule
                .split_whitespace()
                .skip_while(|w| *w != "-j")
                .nth(1)
                .unwrap_or_default();
            for c in [chain, target] {
                let per_ctr = c.starts_with("CNI-")
                    && !matches!(c, "CNI-FORWARD" | "CNI-ADMIN")
                    && !c.starts_with("CNI-HOSTPORT-");
                if per_ctr && !chains.iter().any(|x| x == c) {
                    chains.push(c.to_owned());
                }
            }
        }
        if script.is_empty() {
            continue;
        }
        if let Ok(mut child) = Command::new(restore)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(script.as_bytes());
            }
            let _ = child.wait();
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` on `127.0.0.1:port` from the host; the body on a 200 answer.
pub fn http_get(port: u16) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let resp = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {resp:?}"))?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200") {
        return Err(format!("not 200: {head}"));
    }
    Ok(body.to_owned())
}

/// Retries [`http_get`] for up to 10 s; the body, or the last error.
pub fn http_get_soon(port: u16) -> Result<String, String> {
    let mut last = Err("never tried".to_owned());
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        last = http_get(port);
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// Puts `page` at `/www/index.html` in the rootfs (for `httpd -h /www`).
pub fn add_page(rootfs: &Path, page: &str) {
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(rootfs.join("www/index.html"), page).unwrap();
}

/// The output's stdout, trimmed.
pub fn stdout_of(out: &Output) -> String {
    text(&out.stdout).trim().to_owned()
}
