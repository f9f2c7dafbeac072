//! The CNI network of a `--network` round, what it leaves on the host and
//! its removal.
//!
//! A `--network` round owns one bridge, `rpodflt<pid>`, and one subnet,
//! `10.83.<k>.0/24` (the first `k` from `pid % 200` on that no address,
//! route or iptables rule of the host mentions); trials run one after the
//! other, so they share both. Each sandbox has a network of its own name,
//! `rpodflt<pid>-<tag>` (so the ID comments of its iptables rules are told
//! from every other sandbox's), set in its `etc/libpod.conf`
//! (`cni_default_network`, `default_bridge`, `default_subnet`,
//! `ipam_data_dir = <dir>/ipam`) and written by rpod into the sandbox's
//! CNI config dir on first use; trials whose plan says so publish a free
//! loopback port (`-p 127.0.0.1:<port>:80`).
//!
//! [`observe`] collects what the network leaves on the host (namespace
//! files and mounts under `<tmp>/netns`, host-local leases, cached CNI
//! results, iptables and ip6tables rules that mention the sandbox's network
//! or the round's subnet, the bridge's ports); [`SandboxNet::clean_up`] removes it:
//! namespace mounts (`umount -l`), rules and the per-container `CNI-…`
//! chains they use or live in (`iptables-restore --noflush`), and the
//! bridge. Nothing is selected but by these names, paths and the subnet,
//! so nothing outside the round is ever touched (never 10.88.0.0/16,
//! `cni-podman0`, `/etc/cni/net.d` or `/var/lib/cni`).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::invariants::NetSnapshot;

/// The first two octets of every subnet a round uses.
const SUBNET_BASE: &str = "10.83";
/// The prefix of a round's bridge and network names.
const NAME_PREFIX: &str = "rpodflt";
/// Chains the CNI plugins share between all their networks: rules in them
/// are removed one by one, the chains never.
const SHARED_CHAINS: &[&str] = &[
    "CNI-FORWARD",
    "CNI-ADMIN",
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
    "CNI-HOSTPORT-SNAT",
];
/// The iptables front ends looked at (IPv4 and IPv6).
const FAMILIES: &[&str] = &["iptables", "ip6tables"];

/// A round's bridge and subnet.
#[derive(Debug, Clone)]
pub struct RoundNet {
    /// `rpodflt<pid>` (at most 14 characters).
    pub bridge: String,
    /// The third octet of the subnet.
    pub k: u8,
}

impl RoundNet {
    /// Picks the round's bridge name and a subnet nothing on the host uses.
    pub fn new() -> Result<RoundNet> {
        let pid = std::process::id();
        let bridge = format!("{NAME_PREFIX}{pid}");
        if Path::new("/sys/class/net").join(&bridge).exists() {
            bail!(
                "a network interface {bridge} already exists (left by a killed round with our \
                 PID? `ip link del {bridge}`)"
            );
        }
        let used = host_network_text()?;
        let start = pid % 200;
        for i in 0..254u32 {
            let k = u8::try_from((start + i) % 254 + 1).unwrap_or(1);
            if !mentions_prefix(&used, &prefix_of(k)) {
                return Ok(RoundNet { bridge, k });
            }
        }
        bail!("every subnet {SUBNET_BASE}.1-254.0/24 is in use on this host")
    }

    /// `10.83.<k>.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}0/24", prefix_of(self.k))
    }

    /// `10.83.<k>.`: what every address of the subnet starts with.
    pub fn prefix(&self) -> String {
        prefix_of(self.k)
    }

    /// The start of every sandbox network name of the round, as iptables
    /// comments quote it: `\"rpodflt<pid>-`.
    fn name_needle(&self) -> String {
        format!("\\\"{}-", self.bridge)
    }

    /// Removes what the round's sandboxes may have left (their own clean-up
    /// runs first; this is the last resort): rules mentioning the subnet or
    /// a network of the round, and the bridge.
    pub fn clean_up(&self) {
        for w in remove_rules(&self.name_needle(), &self.prefix()) {
            eprintln!("xtask faults: warning: {w}");
        }
        if let Err(e) = delete_bridge(&self.bridge) {
            eprintln!("xtask faults: warning: {e:#}");
        }
    }
}

/// `10.83.<k>.`.
fn prefix_of(k: u8) -> String {
    format!("{SUBNET_BASE}.{k}.")
}

/// Addresses, routes and iptables rules of the host, as text.
fn host_network_text() -> Result<String> {
    let mut text = String::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"],
    ] {
        text.push_str(&crate::util::output(Command::new("ip").args(args))?);
    }
    for family in FAMILIES {
        text.push_str(&save(family)?);
    }
    Ok(text)
}

/// One sandbox's network.
#[derive(Debug, Clone)]
pub struct SandboxNet {
    /// The network's name: `rpodflt<pid>-<tag>`.
    pub name: String,
    /// The round's bridge.
    pub bridge: String,
    /// The round's subnet's address prefix (`10.83.<k>.`).
    pub prefix: String,
    /// `ipam_data_dir`: `<dir>/ipam`.
    pub ipam: PathBuf,
    /// The published loopback port, if this sandbox publishes one.
    pub port: Option<u16>,
}

impl SandboxNet {
    /// Writes the configuration of sandbox `tag` (directory `dir`) into its
    /// `etc/libpod.conf`; `publish`: pick a free loopback port too.
    pub fn new(round: &RoundNet, tag: &str, dir: &Path, publish: bool) -> Result<SandboxNet> {
        let ipam = dir.join("ipam");
        fs::create_dir(&ipam).with_context(|| format!("creating {}", ipam.display()))?;
        let net = SandboxNet {
            name: format!("{}-{tag}", round.bridge),
            bridge: round.bridge.clone(),
            prefix: round.prefix(),
            ipam,
            port: if publish { Some(free_port()?) } else { None },
        };
        let conf = dir.join("etc/libpod.conf");
        fs::write(
            &conf,
            format!(
                "cni_default_network = \"{}\"\ndefault_bridge = \"{}\"\n\
                 default_subnet = \"{}\"\nipam_data_dir = \"{}\"\n",
                net.name,
                net.bridge,
                round.subnet(),
                net.ipam.display()
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        Ok(net)
    }

    /// The network's name as iptables comments quote it: `\"<name>\"`.
    fn name_needle(&self) -> String {
        format!("\\\"{}\\\"", self.name)
    }

    /// Removes what the sandbox's containers left of the network: mounts of
    /// namespace files under `netns_dir`, rules (and per-container chains)
    /// of the network or the subnet, the bridge. Problems are warnings.
    pub fn clean_up(&self, netns_dir: &Path) {
        for _ in 0..4 {
            let mounts = netns_mounts(netns_dir);
            if mounts.is_empty() {
                break;
            }
            for m in mounts.iter().rev() {
                let status = Command::new("umount")
                    .arg("-l")
                    .arg(m)
                    .stderr(Stdio::null())
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    eprintln!("xtask faults: warning: `umount -l {m}` failed");
                }
            }
        }
        for w in remove_rules(&self.name_needle(), &self.prefix) {
            eprintln!("xtask faults: warning: {w}");
        }
        if let Err(e) = delete_bridge(&self.bridge) {
            eprintln!("xtask faults: warning: {e:#}");
        }
    }
}

/// A loopback TCP port nothing listens on (the kernel's pick).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Deletes `bridge` if it exists.
fn delete_bridge(bridge: &str) -> Result<()> {
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return Ok(());
    }
    let status = Command::new("ip")
        .args(["link", "del", bridge])
        .stderr(Stdio::null())
        .status()
        .context("running `ip link del`")?;
    if !status.success() {
        bail!("`ip link del {bridge}` failed");
    }
    Ok(())
}

/// Mount points under `dir` (`/proc/self/mountinfo`), in mount order.
fn netns_mounts(dir: &Path) -> Vec<String> {
    let under = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&under))
        .map(str::to_string)
        .collect()
}

/// `<family>-save` (every table), retried once (a concurrent change of the
/// rule set can make it fail).
fn save(family: &str) -> Result<String> {
    let mut cmd = Command::new(format!("{family}-save"));
    crate::util::output(&mut cmd).or_else(|_| crate::util::output(&mut cmd))
}

/// Whether `text` mentions an address starting with `prefix` (`10.83.7.`,
/// not `110.83.7.`).
pub fn mentions_prefix(text: &str, prefix: &str) -> bool {
    text.match_indices(prefix).any(|(at, _)| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// One rule of a `*-save` dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `iptables` or `ip6tables`.
    pub family: String,
    /// `filter`, `nat`, ...
    pub table: String,
    /// The chain it is in.
    pub chain: String,
    /// The chain it jumps or goes to, if any.
    pub target: Option<String>,
    /// The whole `-A CHAIN ...` line.
    pub line: String,
}

impl Rule {
    /// `iptables nat: -A ...`, for reports.
    pub fn shown(&self) -> String {
        format!("{} {}: {}", self.family, self.table, self.line)
    }
}

/// The rules of a `*-save` dump.
pub fn parse_save(family: &str, text: &str) -> Vec<Rule> {
    let mut table = String::new();
    let mut rules = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split(' ').next().unwrap_or_default().to_string();
            let words: Vec<&str> = rest.split(' ').collect();
            let target = words
                .windows(2)
                .find(|w| w[0] == "-j" || w[0] == "-g")
                .map(|w| w[1].to_string());
            rules.push(Rule {
                family: family.to_string(),
                table: table.clone(),
                chain,
                target,
                line: line.to_string(),
            });
        }
    }
    rules
}

/// Whether `rule` is the round's: it quotes a network name starting with
/// `name_needle` or mentions an address with `prefix`.
fn ours(rule: &Rule, name_needle: &str, prefix: &str) -> bool {
    rule.line.contains(name_needle) || mentions_prefix(&rule.line, prefix)
}

/// Whether `chain` is a per-container chain of the CNI plugins
/// (`CNI-<hash>`, `CNI-DN-<hash>`), which can be flushed and deleted.
fn per_container_chain(chain: &str) -> bool {
    chain.starts_with("CNI-") && !SHARED_CHAINS.contains(&chain)
}

/// The `iptables-restore --noflush` script that removes `rules`' matches
/// of one family: per table, `-D` of every matching rule outside the
/// chains to drop and of every rule jumping into them, then `-F` and `-X`
/// of the per-container chains the matches live in or jump to.
pub fn removal_scripts(rules: &[Rule], name_needle: &str, prefix: &str) -> Vec<(String, String)> {
    let tables: BTreeSet<&str> = rules.iter().map(|r| r.table.as_str()).collect();
    let mut scripts = Vec::new();
    for table in tables {
        let in_table: Vec<&Rule> = rules.iter().filter(|r| r.table == table).collect();
        let matched: Vec<&Rule> = in_table
            .iter()
            .copied()
            .filter(|r| ours(r, name_needle, prefix))
            .collect();
        let mut drop: BTreeSet<&str> = BTreeSet::new();
        for r in &matched {
            if per_container_chain(&r.chain) {
                drop.insert(&r.chain);
            }
            if let Some(t) = r.target.as_deref().filter(|t| per_container_chain(t)) {
                drop.insert(t);
            }
        }
        let mut script = format!("*{table}\n");
        let mut lines = 0;
        for r in &in_table {
            let jumps_in = r.target.as_deref().is_some_and(|t| drop.contains(t));
            let matches = matched.iter().any(|m| m.line == r.line);
            if (matches || jumps_in) && !drop.contains(r.chain.as_str()) {
                if let Some(rest) = r.line.strip_prefix("-A ") {
                    script.push_str(&format!("-D {rest}\n"));
                    lines += 1;
                }
            }
        }
        for c in &drop {
            script.push_str(&format!("-F {c}\n"));
        }
        for c in &drop {
            script.push_str(&format!("-X {c}\n"));
            lines += 1;
        }
        script.push_str("COMMIT\n");
        if lines > 0 {
            scripts.push((table.to_string(), script));
        }
    }
    scripts
}

/// Feeds `script` to `<family>-restore --noflush`.
fn restore(family: &str, script: &str) -> Result<()> {
    let mut child = Command::new(format!("{family}-restore"))
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {family}-restore"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{family}-restore --noflush: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes, in every family, the rules that quote a network name starting
/// with `name_needle` or mention an address with `prefix`, and the
/// per-container chains they use; returns warnings. A table whose script
/// fails as a whole (a concurrent change) is retried command by command.
fn remove_rules(name_needle: &str, prefix: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    for family in FAMILIES {
        let text = match save(family) {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!("{e:#}"));
                continue;
            }
        };
        let rules = parse_save(family, &text);
        for (table, script) in removal_scripts(&rules, name_needle, prefix) {
            if restore(family, &script).is_ok() {
                continue;
            }
            for line in script
                .lines()
                .filter(|l| l.starts_with('-') && !l.starts_with("-F"))
            {
                let one = if line.starts_with("-X ") {
                    let chain = line.trim_start_matches("-X ");
                    format!("*{table}\n-F {chain}\n{line}\nCOMMIT\n")
                } else {
                    format!("*{table}\n{line}\nCOMMIT\n")
                };
                if let Err(e) = restore(family, &one) {
                    warnings.push(format!("removing `{line}` ({family} {table}): {e:#}"));
                }
            }
        }
    }
    warnings
}

/// The host side of one sandbox's network, for the invariants (the
/// addresses of running containers are added by the caller, from
/// `inspect`).
pub fn observe(net: &SandboxNet, netns_dir: &Path, results_dir: &Path) -> NetSnapshot {
    let mut snap = NetSnapshot {
        prefix: net.prefix.clone(),
        ..NetSnapshot::default()
    };
    snap.netns_files = file_names(netns_dir);
    snap.netns_mounts = netns_mounts(netns_dir)
        .iter()
        .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
        .collect();
    let lease_dir = net.ipam.join(&net.name);
    for name in file_names(&lease_dir) {
        if name.parse::<std::net::IpAddr>().is_err() {
            continue;
        }
        let owner = fs::read_to_string(lease_dir.join(&name))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        snap.leases.push((name, owner));
    }
    snap.cache_files = file_names(results_dir);
    let needle = net.name_needle();
    for family in FAMILIES {
        match save(family) {
            Ok(text) => snap.rules.extend(
                parse_save(family, &text)
                    .into_iter()
                    .filter(|r| ours(r, &needle, &net.prefix))
                    .map(|r| r.shown()),
            ),
            Err(e) => snap.errors.push(format!("{e:#}")),
        }
    }
    snap.bridge_ports = file_names(&Path::new("/sys/class/net").join(&net.bridge).join("brif"));
    snap
}

/// The names of the entries of `dir`, sorted (none when it is absent).
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-save
*filter
:CNI-FORWARD - [0:0]
-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
-A CNI-FORWARD -d 10.83.7.3/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A CNI-FORWARD -s 10.83.7.3/32 -j ACCEPT
-A CNI-FORWARD -s 110.83.7.3/32 -j ACCEPT
COMMIT
*nat
-A POSTROUTING -s 10.83.7.3/32 -m comment --comment "name: \"rpodflt9-t1\" id: \"aaa\"" -j CNI-f469
-A POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \"podman\" id: \"bbb\"" -j CNI-0001
-A CNI-DN-f46 -s 10.83.7.0/24 -d 127.0.0.1/32 -p tcp -m tcp --dport 18123 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-f46 -d 127.0.0.1/32 -p tcp -m tcp --dport 18123 -j DNAT --to-destination 10.83.7.3:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"rpodflt9-t1\" id: \"aaa\"" -m multiport --dports 18123 -j CNI-DN-f46
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"rpodflt9-t12\" id: \"ccc\"" -m multiport --dports 18124 -j CNI-DN-0c0
-A CNI-f469 -d 10.83.7.0/24 -m comment --comment "name: \"rpodflt9-t1\" id: \"aaa\"" -j ACCEPT
-A CNI-0001 -d 10.88.0.0/16 -j ACCEPT
COMMIT
"#;

    #[test]
    fn prefixes() {
        assert!(mentions_prefix("-s 10.83.7.3/32", "10.83.7."));
        assert!(!mentions_prefix("-s 110.83.7.3/32", "10.83.7."));
        assert!(!mentions_prefix("-s 10.83.77.3/32", "10.83.7."));
        assert!(!mentions_prefix("1.10.83.7.3", "10.83.7."));
    }

    #[test]
    fn parses_rules() {
        let rules = parse_save("iptables", SAVE);
        assert_eq!(rules.len(), 12);
        assert_eq!(rules[0].table, "filter");
        assert_eq!(rules[0].target.as_deref(), Some("CNI-FORWARD"));
        assert_eq!(rules[4].chain, "POSTROUTING");
        assert_eq!(rules[4].table, "nat");
    }

    #[test]
    fn removes_only_the_sandbox_rules() {
        let rules = parse_save("iptables", SAVE);
        let scripts = removal_scripts(&rules, "\\\"rpodflt9-t1\\\"", "10.83.7.");
        assert_eq!(scripts.len(), 2);
        let filter = &scripts[0].1;
        assert!(
            filter.contains("-D CNI-FORWARD -d 10.83.7.3/32"),
            "{filter}"
        );
        assert!(
            filter.contains("-D CNI-FORWARD -s 10.83.7.3/32"),
            "{filter}"
        );
        assert!(!filter.contains("110.83"), "{filter}");
        assert!(!filter.contains("-X"), "{filter}");
        let nat = &scripts[1].1;
        assert!(nat.contains("-D POSTROUTING -s 10.83.7.3/32"), "{nat}");
        assert!(
            nat.contains(
                "-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"rpodflt9-t1\\\""
            ),
            "{nat}"
        );
        assert!(!nat.contains("t12"), "{nat}");
        assert!(!nat.contains("10.88"), "{nat}");
        // Rules inside the chains to drop go with the flush.
        assert!(!nat.contains("-D CNI-DN-f46"), "{nat}");
        assert!(nat.contains("-F CNI-DN-f46\n") && nat.contains("-X CNI-DN-f46\n"));
        assert!(nat.contains("-X CNI-f469\n"));
        assert!(!nat.contains("CNI-0001") && !nat.contains("-X CNI-HOSTPORT"));
        assert!(nat.ends_with("COMMIT\n"));
        // The round's clean-up takes every sandbox's.
        let all = removal_scripts(&rules, "\\\"rpodflt9-", "10.83.7.");
        assert!(all[1].1.contains("-X CNI-DN-0c0"));
    }
}
