//! Running a network's plugin chain (ADD, DEL, CHECK) for one container interface.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::cache::ResultCache;
use crate::config::{version_tuple, NetworkConfigList};
use crate::plugin::{plugin_stdin, Invocation, PluginExec};
use crate::ports::PortMapping;
use crate::NetError;

/// One container interface on one network: everything a plugin call needs besides the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// Container name (K8S_POD_NAME and K8S_POD_NAMESPACE, as ocicni did for libpod).
    pub container_name: String,
    /// CNI_NETNS: the persistent netns file.
    pub netns: PathBuf,
    /// CNI_IFNAME, e.g. `eth0`.
    pub ifname: String,
    /// Published ports, passed as the `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
    /// Static IP (CNI_ARGS `IP=`).
    pub static_ip: Option<IpAddr>,
    /// Static MAC (CNI_ARGS `MAC=`).
    pub mac: Option<String>,
}

impl Attachment {
    /// The CNI_ARGS string:
    /// `IgnoreUnknown=1;K8S_POD_NAMESPACE=<name>;K8S_POD_NAME=<name>;K8S_POD_INFRA_CONTAINER_ID=<id>[;IP=<ip>][;MAC=<mac>]`.
    pub fn cni_args(&self) -> String {
        let mut s = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={n};K8S_POD_NAME={n};K8S_POD_INFRA_CONTAINER_ID={id}",
            n = self.container_name,
            id = self.container_id
        );
        if let Some(ip) = self.static_ip {
            s.push_str(&format!(";IP={ip}"));
        }
        if let Some(mac) = &self.mac {
            s.push_str(&format!(";MAC={mac}"));
        }
        s
    }

    fn capability_args(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if !self.port_mappings.is_empty() {
            m.insert("portMappings".into(), json!(self.port_mappings));
        }
        m
    }

    fn invocation<'a>(&'a self, command: &'a str, args: &'a str) -> Invocation<'a> {
        Invocation {
            command,
            container_id: &self.container_id,
            netns: &self.netns,
            ifname: &self.ifname,
            args,
        }
    }
}

/// Runs plugin chains and keeps their results in a [`ResultCache`].
#[derive(Debug, Clone)]
pub struct CniRunner {
    /// Plugin lookup and execution.
    pub exec: PluginExec,
    /// Where final ADD results are kept for DEL and CHECK.
    pub cache: ResultCache,
}

/// The final ADD result of one network for one interface.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// Network name.
    pub network: String,
    /// Interface name inside the container.
    pub ifname: String,
    /// The result JSON as the last plugin printed it.
    pub raw: Value,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpInfo {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The gateway, if the result names one.
    pub gateway: Option<IpAddr>,
}

const LOOPBACK_NETWORK: &str = "cni-loopback";

fn loopback_config() -> Value {
    json!({"cniVersion": "0.4.0", "name": LOOPBACK_NETWORK, "type": "loopback"})
}

/// Whether a DEL failure only says the thing to delete is already gone.
fn is_already_gone(e: &NetError) -> bool {
    let msg = match e {
        NetError::Plugin { msg, details, .. } => format!("{msg} {details}"),
        _ => return false,
    }
    .to_ascii_lowercase();
    [
        "no such file or directory",
        "failed to open netns",
        "not found",
        "does not exist",
    ]
    .iter()
    .any(|p| msg.contains(p))
}

impl CniRunner {
    /// A runner using `plugin_dirs` (CNI_PATH) and a result cache in `cache_dir`.
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        CniRunner {
            exec: PluginExec::new(plugin_dirs),
            cache: ResultCache::new(cache_dir),
        }
    }

    /// ADD the interface: plugins first→last, each one's output the next one's `prevResult`.
    /// The final result is cached before this returns. If a plugin fails, the whole DEL chain
    /// runs (last→first, with the last good result) to undo what was done, the cache entry is
    /// removed, and the ADD error is returned (DEL errors are logged).
    pub fn add(&self, net: &NetworkConfigList, a: &Attachment) -> Result<CniResult, NetError> {
        let args = a.cni_args();
        let caps = a.capability_args();
        let inv = a.invocation("ADD", &args);
        let mut prev: Option<Value> = None;
        let mut failure: Option<NetError> = None;
        // A marker first: if this process dies mid-chain, a later teardown still finds the
        // attachment (by container ID) and runs DEL without a result.
        self.cache
            .put(&net.name, &a.container_id, &a.ifname, &pending_marker(None))?;
        for plugin in &net.plugins {
            let ty = plugin.get("type").and_then(Value::as_str).unwrap_or("");
            let stdin = plugin_stdin(plugin, &net.name, &net.cni_version, prev.as_ref(), &caps);
            match self.exec.exec(&net.name, ty, &stdin, &inv) {
                Ok(Some(v)) => {
                    // The result so far, for a DEL after this process is killed mid-chain
                    // (the firewall plugin's rules are keyed on the IPs in it).
                    if let Err(e) = self.cache.put_progress(
                        &net.name,
                        &a.container_id,
                        &a.ifname,
                        &pending_marker(Some(&v)),
                    ) {
                        tracing::warn!(error = %e, "recording the progress of a CNI ADD");
                    }
                    prev = Some(v);
                }
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            let result = prev.unwrap_or_else(|| json!({"cniVersion": net.cni_version}));
            match self
                .cache
                .put(&net.name, &a.container_id, &a.ifname, &result)
            {
                Ok(()) => {
                    return Ok(CniResult {
                        network: net.name.clone(),
                        ifname: a.ifname.clone(),
                        raw: result,
                    })
                }
                Err(e) => {
                    prev = Some(result);
                    failure = Some(e);
                }
            }
        }
        let err = failure.unwrap_or_else(|| NetError::InvalidNetwork {
            msg: "internal error: ADD failed without an error".into(),
        });
        tracing::debug!(network = %net.name, container = %a.container_id, error = %err, "CNI ADD failed; undoing it with DEL");
        if let Err(del_err) = self.del_chain(net, a, prev.as_ref()) {
            for e in del_err {
                tracing::warn!(network = %net.name, container = %a.container_id, error = %e, "DEL after a failed ADD failed");
            }
        }
        if let Err(e) = self.cache.remove(&net.name, &a.container_id, &a.ifname) {
            tracing::warn!(error = %e, "cannot remove CNI cache entry");
        }
        Err(err)
    }

    fn del_chain(
        &self,
        net: &NetworkConfigList,
        a: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(), Vec<NetError>> {
        let args = a.cni_args();
        let caps = a.capability_args();
        let inv = a.invocation("DEL", &args);
        let mut errors = Vec::new();
        for plugin in net.plugins.iter().rev() {
            let ty = plugin.get("type").and_then(Value::as_str).unwrap_or("");
            let stdin = plugin_stdin(plugin, &net.name, &net.cni_version, prev, &caps);
            if let Err(e) = self.exec.exec(&net.name, ty, &stdin, &inv) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// DEL the interface: plugins last→first with `prevResult` = `prev`, else the cached
    /// result, else none. Every plugin runs even if an earlier one failed; all errors are
    /// reported at the end (a single one as itself, several as [`NetError::Teardown`]).
    /// The cache entry is removed on success, and also when every failure only says the
    /// thing is already gone (then this returns `Ok`). A second DEL succeeds.
    ///
    /// **Hazard (protocols.md §3.4):** the bridge plugin's DEL is keyed on (netns, ifname),
    /// not on the container ID. Never call this with another container's netns: it would
    /// delete that container's veth and leak its ipMasq chain and POSTROUTING rule.
    ///
    /// **Order:** call this *before* removing the netns. The bridge plugin learns the
    /// addresses whose masquerade rules it removes from the interface inside the netns; with
    /// the netns gone its DEL still exits 0 but leaves the `CNI-<hash>` nat chain and its
    /// POSTROUTING jump behind (observed with containernetworking-plugins 1.1.1).
    pub fn del(
        &self,
        net: &NetworkConfigList,
        a: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(), NetError> {
        let entry = self.cache.get(&net.name, &a.container_id, &a.ifname);
        // An ADD or DEL of this attachment was cut short (rpod killed): plugins may have left
        // rules that a DEL cannot find any more; they are swept after this DEL.
        let interrupted = entry
            .as_ref()
            .is_some_and(|v| is_pending(v) || is_deleting(v));
        let cached = entry.and_then(|v| {
            if is_pending(&v) || is_deleting(&v) {
                v.get("result").cloned()
            } else {
                Some(v)
            }
        });
        let prev = prev.or(cached.as_ref());
        if let Err(e) = self.cache.put_progress(
            &net.name,
            &a.container_id,
            &a.ifname,
            &json!({ "rpodDeleting": true, "result": prev }),
        ) {
            tracing::warn!(error = %e, "recording a CNI DEL in progress");
        }
        let sweep = || {
            if interrupted {
                let ipv6 = prev.is_some_and(|p| p.to_string().contains(':'));
                if let Err(e) =
                    crate::residue::sweep_container_rules(&net.name, &a.container_id, ipv6)
                {
                    tracing::warn!(container = %a.container_id, error = %e, "sweeping rules left by an interrupted CNI run");
                }
            }
        };
        match self.del_chain(net, a, prev) {
            Ok(()) => {
                sweep();
                self.cache.remove(&net.name, &a.container_id, &a.ifname)
            }
            Err(errors) if errors.iter().all(is_already_gone) => {
                for e in &errors {
                    tracing::warn!(error = %e, "CNI DEL: already gone");
                }
                sweep();
                self.cache.remove(&net.name, &a.container_id, &a.ifname)
            }
            Err(mut errors) => {
                if errors.len() == 1 {
                    if let Some(e) = errors.pop() {
                        return Err(e);
                    }
                }
                Err(NetError::Teardown {
                    container_id: a.container_id.clone(),
                    errors: errors.iter().map(ToString::to_string).collect(),
                })
            }
        }
    }

    /// CHECK the interface: plugins first→last with the cached result. Skipped when the
    /// list sets `disableCheck` or its version is older than 0.4.0.
    pub fn check(&self, net: &NetworkConfigList, a: &Attachment) -> Result<(), NetError> {
        if net.disable_check {
            return Ok(());
        }
        match version_tuple(&net.cni_version) {
            Some(v) if v >= (0, 4, 0) => {}
            _ => return Ok(()),
        }
        let prev = self
            .cache
            .get(&net.name, &a.container_id, &a.ifname)
            .filter(|v| !is_pending(v) && !is_deleting(v))
            .ok_or_else(|| NetError::NoCachedResult {
                network: net.name.clone(),
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            })?;
        let args = a.cni_args();
        let caps = a.capability_args();
        let inv = a.invocation("CHECK", &args);
        for plugin in &net.plugins {
            let ty = plugin.get("type").and_then(Value::as_str).unwrap_or("");
            let stdin = plugin_stdin(plugin, &net.name, &net.cni_version, Some(&prev), &caps);
            self.exec.exec(&net.name, ty, &stdin, &inv)?;
        }
        Ok(())
    }

    fn loopback(&self, command: &str, container_id: &str, netns: &Path) -> Result<(), NetError> {
        let inv = Invocation {
            command,
            container_id,
            netns,
            ifname: "lo",
            args: "IgnoreUnknown=1",
        };
        self.exec
            .exec(LOOPBACK_NETWORK, "loopback", &loopback_config(), &inv)
            .map(|_| ())
    }

    /// Bring `lo` up in the netns (loopback plugin ADD; not cached).
    pub fn loopback_up(&self, container_id: &str, netns: &Path) -> Result<(), NetError> {
        self.loopback("ADD", container_id, netns)
    }

    /// Loopback plugin DEL; nothing to do (and `Ok`) if the netns is already gone.
    pub fn loopback_down(&self, container_id: &str, netns: &Path) -> Result<(), NetError> {
        if !netns.exists() {
            return Ok(());
        }
        match self.loopback("DEL", container_id, netns) {
            Err(e) if is_already_gone(&e) => Ok(()),
            other => other,
        }
    }
}

fn parse_addr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

impl CniResult {
    fn interfaces(&self) -> &[Value] {
        self.raw
            .get("interfaces")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn in_sandbox(iface: &Value) -> bool {
        iface
            .get("sandbox")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    }

    /// The container's addresses: `ips[]` entries whose `interface` index points to an
    /// interface with a `sandbox`, or all of them when they carry no index (0.1/0.2
    /// `ip4`/`ip6` results are read too).
    pub fn ips(&self) -> Vec<IpInfo> {
        let ifaces = self.interfaces();
        let mut out = Vec::new();
        let gw = |v: &Value| {
            v.get("gateway")
                .and_then(Value::as_str)
                .and_then(|g| g.parse().ok())
        };
        for ip in self
            .raw
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(idx) = ip.get("interface").and_then(Value::as_u64) {
                let ok = usize::try_from(idx)
                    .ok()
                    .and_then(|i| ifaces.get(i))
                    .is_some_and(Self::in_sandbox);
                if !ok {
                    continue;
                }
            }
            if let Some((address, prefix_len)) = ip
                .get("address")
                .and_then(Value::as_str)
                .and_then(parse_addr)
            {
                out.push(IpInfo {
                    address,
                    prefix_len,
                    gateway: gw(ip),
                });
            }
        }
        for key in ["ip4", "ip6"] {
            if let Some(v) = self.raw.get(key) {
                if let Some((address, prefix_len)) =
                    v.get("ip").and_then(Value::as_str).and_then(parse_addr)
                {
                    out.push(IpInfo {
                        address,
                        prefix_len,
                        gateway: gw(v),
                    });
                }
            }
        }
        out
    }

    /// The MAC of the sandbox interface named `ifname` (else of the first sandbox interface).
    pub fn mac(&self) -> Option<String> {
        let ifaces = self.interfaces();
        let mac = |i: &Value| i.get("mac").and_then(Value::as_str).map(str::to_string);
        ifaces
            .iter()
            .find(|i| {
                Self::in_sandbox(i) && i.get("name").and_then(Value::as_str) == Some(&self.ifname)
            })
            .or_else(|| ifaces.iter().find(|i| Self::in_sandbox(i)))
            .and_then(mac)
    }

    /// `{"network":…,"ifname":…,"result":raw}`, the form the facade stores in its state.
    pub fn to_value(&self) -> Value {
        json!({"network": self.network, "ifname": self.ifname, "result": self.raw})
    }

    /// The inverse of [`CniResult::to_value`].
    pub fn from_value(v: &Value) -> Option<CniResult> {
        Some(CniResult {
            network: v.get("network")?.as_str()?.to_string(),
            ifname: v.get("ifname")?.as_str()?.to_string(),
            raw: v.get("result")?.clone(),
        })
    }
}

/// The cache entry of an ADD chain in progress: written before it runs, updated with each
/// plugin's result, replaced by the final result when it ends.
fn pending_marker(result: Option<&Value>) -> Value {
    match result {
        Some(r) => json!({ "rpodPending": true, "result": r }),
        None => json!({ "rpodPending": true }),
    }
}

/// Whether a cached value is [`pending_marker`]: an ADD that never finished.
fn is_pending(v: &Value) -> bool {
    v.get("rpodPending").and_then(Value::as_bool) == Some(true)
}

/// Whether a cached value marks a DEL in progress (one that never finished, when read at the
/// start of another).
fn is_deleting(v: &Value) -> bool {
    v.get("rpodDeleting").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
#[path = "cni_tests.rs"]
mod tests;
