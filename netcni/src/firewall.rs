//! Firewall backends (netavark-style driver trait): `none`, and `iptables` as libpod v1's
//! `pkg/firewall` did it (libpod-v1.md §4.3). NAT and port DNAT are the CNI bridge and
//! portmap plugins' business, not this module's.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cni::CniResult;
use crate::NetError;

/// A firewall driver: opens forwarding for a container's addresses after ADD, closes it before DEL.
pub trait FirewallBackend: Send + Sync + std::fmt::Debug {
    /// The backend's name ("none", "iptables").
    fn name(&self) -> &str;
    /// Allow traffic of the result's container addresses.
    fn add(&self, result: &CniResult) -> Result<(), NetError>;
    /// Remove what [`FirewallBackend::add`] added; rules that are not present are ignored.
    fn del(&self, result: &CniResult) -> Result<(), NetError>;
}

/// The backend that does nothing (rootless, or when the CNI `firewall` plugin does the job).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFirewall;

impl FirewallBackend for NoFirewall {
    fn name(&self) -> &str {
        "none"
    }
    fn add(&self, _result: &CniResult) -> Result<(), NetError> {
        Ok(())
    }
    fn del(&self, _result: &CniResult) -> Result<(), NetError> {
        Ok(())
    }
}

/// libpod v1's iptables backend: filter table, chains `CNI-FORWARD` and `CNI-ADMIN`, two
/// ACCEPT rules per container address. The shared chains and jumps are left in place on
/// `del` (as the CNI firewall plugin leaves them).
#[derive(Debug, Clone)]
pub struct IptablesFirewall {
    iptables: PathBuf,
    ip6tables: Option<PathBuf>,
}

const COMMENT: &str = "CNI firewall plugin rules";
/// The comment the CNI firewall plugin puts on the CNI-FORWARD → CNI-ADMIN jump; using the
/// same one lets this backend and the plugin share the jump instead of duplicating it.
const ADMIN_COMMENT: &str = "CNI firewall plugin admin overrides";
const FORWARD_CHAIN: &str = "CNI-FORWARD";
const ADMIN_CHAIN: &str = "CNI-ADMIN";

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn fw_err(msg: String) -> NetError {
    NetError::Firewall {
        backend: "iptables".into(),
        msg,
    }
}

/// Run `tool -w -t filter <args>`; Ok(true) on exit 0, Ok(false) on exit 1 (rule or chain
/// absent), Err otherwise.
fn ipt(tool: &Path, args: &[&str]) -> Result<bool, NetError> {
    let out = Command::new(tool)
        .args(["-w", "-t", "filter"])
        .args(args)
        .output()
        .map_err(|e| fw_err(format!("cannot run {}: {e}", tool.display())))?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(fw_err(format!(
            "{} {} failed ({}): {}",
            tool.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

fn must(tool: &Path, args: &[&str]) -> Result<(), NetError> {
    let out = Command::new(tool)
        .args(["-w", "-t", "filter"])
        .args(args)
        .output()
        .map_err(|e| fw_err(format!("cannot run {}: {e}", tool.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fw_err(format!(
            "{} {} failed ({}): {}",
            tool.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn container_rules(ip: &IpAddr) -> [Vec<String>; 2] {
    let host = match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    };
    [
        [
            "-d",
            &host,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]
        .map(str::to_string)
        .to_vec(),
        ["-s", &host, "-j", "ACCEPT"].map(str::to_string).to_vec(),
    ]
}

impl IptablesFirewall {
    /// Find `iptables` (required) and `ip6tables` (needed only for IPv6 addresses).
    pub fn new() -> Result<Self, NetError> {
        let iptables = find_on_path("iptables")
            .ok_or_else(|| fw_err("iptables not found on PATH or in /usr/sbin, /sbin".into()))?;
        Ok(IptablesFirewall {
            iptables,
            ip6tables: find_on_path("ip6tables"),
        })
    }

    fn tool(&self, ip: &IpAddr) -> Result<&Path, NetError> {
        match ip {
            IpAddr::V4(_) => Ok(&self.iptables),
            IpAddr::V6(_) => self
                .ip6tables
                .as_deref()
                .ok_or_else(|| fw_err("ip6tables not found (needed for an IPv6 address)".into())),
        }
    }

    fn ensure_chains(tool: &Path) -> Result<(), NetError> {
        for chain in [FORWARD_CHAIN, ADMIN_CHAIN] {
            if !ipt(tool, &["-S", chain])? {
                // Another process may create it at the same time: re-check on failure.
                if let Err(e) = must(tool, &["-N", chain]) {
                    if !ipt(tool, &["-S", chain])? {
                        return Err(e);
                    }
                }
            }
        }
        for (from, to, comment) in [
            ("FORWARD", FORWARD_CHAIN, COMMENT),
            (FORWARD_CHAIN, ADMIN_CHAIN, ADMIN_COMMENT),
        ] {
            let rule = ["-m", "comment", "--comment", comment, "-j", to];
            let mut check = vec!["-C", from];
            check.extend(rule);
            if !ipt(tool, &check)? {
                let mut insert = vec!["-I", from, "1"];
                insert.extend(rule);
                must(tool, &insert)?;
            }
        }
        Ok(())
    }
}

impl FirewallBackend for IptablesFirewall {
    fn name(&self) -> &str {
        "iptables"
    }

    fn add(&self, result: &CniResult) -> Result<(), NetError> {
        for info in result.ips() {
            let tool = self.tool(&info.address)?;
            Self::ensure_chains(tool)?;
            for rule in container_rules(&info.address) {
                let r: Vec<&str> = rule.iter().map(String::as_str).collect();
                let mut check = vec!["-C", FORWARD_CHAIN];
                check.extend(&r);
                if !ipt(tool, &check)? {
                    let mut append = vec!["-A", FORWARD_CHAIN];
                    append.extend(&r);
                    must(tool, &append)?;
                }
            }
        }
        Ok(())
    }

    fn del(&self, result: &CniResult) -> Result<(), NetError> {
        for info in result.ips() {
            let Ok(tool) = self.tool(&info.address) else {
                continue;
            };
            for rule in container_rules(&info.address) {
                let mut del = vec!["-D", FORWARD_CHAIN];
                del.extend(rule.iter().map(String::as_str));
                // Loop in case the rule was added twice; stop when it is absent.
                for _ in 0..8 {
                    match ipt(tool, &del) {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "ignoring firewall rule removal failure");
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The backend called `name`: "none" or "iptables".
pub fn firewall_backend(name: &str) -> Result<Box<dyn FirewallBackend>, NetError> {
    match name {
        "none" => Ok(Box::new(NoFirewall)),
        "iptables" => Ok(Box::new(IptablesFirewall::new()?)),
        other => Err(NetError::InvalidNetwork {
            msg: format!("unknown firewall driver \"{other}\" (use \"none\" or \"iptables\")"),
        }),
    }
}
