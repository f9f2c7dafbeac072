//! Network configuration files: `network create` / `rm` semantics (podman 1.x–3.x CNI style)
//! and rpod's default network.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::cidr::Cidr;
use crate::config::{ConfigDir, NetworkConfigList};
use crate::fsutil::{mkdir_p, remove_if_exists, write_atomic};
use crate::NetError;

/// A `network create` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkCreate {
    /// Network name (see [`validate_network_name`]).
    pub name: String,
    /// "bridge" (the default when empty) or "macvlan".
    pub driver: String,
    /// Subnet in CIDR form; picked automatically when absent.
    pub subnet: Option<String>,
    /// Gateway; the subnet's first host when absent.
    pub gateway: Option<String>,
    /// A CIDR inside the subnet to allocate from.
    pub ip_range: Option<String>,
    /// No outbound route, no masquerading, no port publishing.
    pub internal: bool,
    /// Bridge name (bridge driver) or master interface (macvlan, required).
    pub interface_name: Option<String>,
    /// host-local `dataDir` (leases are kept in `<dataDir>/<name>`).
    pub ipam_data_dir: Option<PathBuf>,
    /// Labels, stored in the list's `args.podman_labels` as podman does.
    pub labels: Vec<(String, String)>,
}

fn invalid(msg: impl Into<String>) -> NetError {
    NetError::InvalidNetwork { msg: msg.into() }
}

/// Check a network name against podman's rule `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`.
pub fn validate_network_name(name: &str) -> Result<(), NetError> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid network name \"{name}\": names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )))
    }
}

fn validate_ifname(name: &str) -> Result<(), NetError> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(invalid(format!(
            "invalid interface name \"{name}\": 1-15 characters, no '/', ':' or whitespace"
        )));
    }
    Ok(())
}

fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// IPv4 routes of the host (from /proc/net/route), default route excluded.
pub(crate) fn host_routes() -> Vec<Cidr> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

/// Parse the text of /proc/net/route (default routes excluded).
pub(crate) fn parse_routes(text: &str) -> Vec<Cidr> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        if mask == 0 {
            continue;
        }
        // The file prints the in-memory (little-endian) u32 of network-order bytes.
        let addr = Ipv4Addr::from(dest.to_le_bytes());
        let prefix_len = mask.count_ones() as u8;
        out.push(Cidr {
            addr: IpAddr::V4(addr),
            prefix_len,
        });
    }
    out
}

/// The first /24 from 10.78.0.0 upwards (skipping podman's 10.88.0.0/16) that overlaps none of `used`.
pub(crate) fn pick_subnet(used: &[Cidr]) -> Option<Cidr> {
    for second in 78u8..=255 {
        if second == 88 {
            continue;
        }
        for third in 0u8..=255 {
            let c = Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(10, second, third, 0)),
                prefix_len: 24,
            };
            if !used.iter().any(|u| u.overlaps(&c)) {
                return Some(c);
            }
        }
    }
    None
}

/// The first `rpodN` (N ≥ 1; `rpod0` is the default network's) that `taken` rejects not.
pub(crate) fn pick_bridge(taken: &dyn Fn(&str) -> bool) -> Option<String> {
    (1..100_000)
        .map(|n| format!("rpod{n}"))
        .find(|name| !taken(name))
}

fn used_subnets(existing: &ConfigDir) -> Vec<(Cidr, String)> {
    existing
        .networks
        .iter()
        .flat_map(|n| {
            n.subnets()
                .into_iter()
                .filter_map(|s| s.parse::<Cidr>().ok())
                .map(|c| (c, n.name.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn step(ip: IpAddr, delta: i64) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
            (i64::from(u32::from(v4)) + delta).clamp(0, i64::from(u32::MAX)) as u32,
        )),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            IpAddr::V6(
                if delta >= 0 {
                    n.saturating_add(delta.unsigned_abs().into())
                } else {
                    n.saturating_sub(delta.unsigned_abs().into())
                }
                .into(),
            )
        }
    }
}

fn host_local_ipam(range: Value, internal: bool, data_dir: Option<&Path>) -> Value {
    let mut ipam = Map::new();
    ipam.insert("type".into(), json!("host-local"));
    if !internal {
        ipam.insert("routes".into(), json!([{"dst": "0.0.0.0/0"}]));
    }
    ipam.insert("ranges".into(), json!([[range]]));
    if let Some(d) = data_dir {
        ipam.insert("dataDir".into(), json!(d.display().to_string()));
    }
    Value::Object(ipam)
}

fn bridge_plugins(bridge: &str, internal: bool, ipam: Value) -> Vec<Value> {
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": !internal,
        "hairpinMode": true,
        "ipam": ipam,
    })];
    if !internal {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    plugins.push(json!({"type": "firewall"}));
    plugins.push(json!({"type": "tuning"}));
    plugins
}

/// Create a network configuration file `<dir>/<name>.conflist` (cniVersion 0.4.0).
///
/// Bridge: bridge (isGateway, ipMasq unless internal, hairpinMode) with host-local IPAM,
/// then portmap (not for internal networks), firewall and tuning. Internal networks keep
/// `isGateway: true` so the bridge has an address and containers on it reach each other
/// and the host, but get no default route and no masquerading, so nothing leaves the host.
/// Macvlan: macvlan on the `interface_name` master with host-local IPAM.
///
/// Without a subnet, the first /24 from 10.78.0.0 up (never 10.88.0.0/16) that no existing
/// network and no host route uses is taken. Without a bridge name, the first free `rpodN`
/// (N ≥ 1) that no network and no host link uses.
pub fn create_network(
    dir: &Path,
    existing: &ConfigDir,
    req: &NetworkCreate,
) -> Result<NetworkConfigList, NetError> {
    validate_network_name(&req.name)?;
    let file = dir.join(format!("{}.conflist", req.name));
    if let Some(n) = existing.default_network(&req.name) {
        return Err(NetError::NetworkExists {
            name: req.name.clone(),
            path: n.path.clone(),
        });
    }
    if file.exists() {
        return Err(NetError::NetworkExists {
            name: req.name.clone(),
            path: file,
        });
    }
    let driver = if req.driver.is_empty() {
        "bridge"
    } else {
        req.driver.as_str()
    };
    if !matches!(driver, "bridge" | "macvlan") {
        return Err(invalid(format!(
            "unsupported network driver \"{driver}\" (use bridge or macvlan)"
        )));
    }
    let used = used_subnets(existing);
    let subnet = match &req.subnet {
        Some(s) => {
            let c: Cidr = s.parse().map_err(|e: String| invalid(e))?;
            let c = c.canonical();
            if let Some((_, other)) = used.iter().find(|(u, _)| u.overlaps(&c)) {
                return Err(invalid(format!(
                    "subnet {c} overlaps a subnet of network \"{other}\""
                )));
            }
            c
        }
        None => {
            let mut all: Vec<Cidr> = used.iter().map(|(c, _)| *c).collect();
            all.extend(host_routes());
            pick_subnet(&all)
                .ok_or_else(|| invalid("no free subnet left in 10.78.0.0-10.255.255.0"))?
        }
    };
    let gateway: IpAddr = match &req.gateway {
        Some(g) => {
            let ip: IpAddr = g
                .parse()
                .map_err(|_| invalid(format!("invalid gateway \"{g}\": not an IP address")))?;
            if !subnet.contains(&ip) {
                return Err(invalid(format!("gateway {ip} is not in subnet {subnet}")));
            }
            ip
        }
        None => subnet.first_host(),
    };
    let mut range = Map::new();
    range.insert("subnet".into(), json!(subnet.to_string()));
    range.insert("gateway".into(), json!(gateway.to_string()));
    if let Some(r) = &req.ip_range {
        let rc: Cidr = r
            .parse()
            .map_err(|e: String| invalid(format!("invalid --ip-range: {e}")))?;
        if !subnet.contains(&rc.network()) || rc.prefix_len < subnet.prefix_len {
            return Err(invalid(format!(
                "ip range {r} is not inside subnet {subnet}"
            )));
        }
        let mut start = rc.network();
        if start == subnet.network() {
            start = step(start, 1);
        }
        let mut end = rc.last();
        if end == subnet.last() && subnet.addr.is_ipv4() {
            end = step(end, -1);
        }
        range.insert("rangeStart".into(), json!(start.to_string()));
        range.insert("rangeEnd".into(), json!(end.to_string()));
    }
    let ipam = host_local_ipam(
        Value::Object(range),
        req.internal,
        req.ipam_data_dir.as_deref(),
    );
    let plugins = if driver == "bridge" {
        let bridge = match &req.interface_name {
            Some(b) => {
                validate_ifname(b)?;
                if let Some(n) = existing
                    .networks
                    .iter()
                    .find(|n| n.bridge_name().as_deref() == Some(b.as_str()))
                {
                    return Err(invalid(format!(
                        "bridge name {b} is already used by network \"{}\"",
                        n.name
                    )));
                }
                b.clone()
            }
            None => {
                let taken = |name: &str| {
                    host_link_exists(name)
                        || existing
                            .networks
                            .iter()
                            .any(|n| n.bridge_name().as_deref() == Some(name))
                };
                pick_bridge(&taken).ok_or_else(|| invalid("no free bridge name left"))?
            }
        };
        bridge_plugins(&bridge, req.internal, ipam)
    } else {
        let master = req
            .interface_name
            .as_deref()
            .ok_or_else(|| invalid("the macvlan driver needs a master interface (-o parent=…)"))?;
        validate_ifname(master)?;
        if !host_link_exists(master) {
            return Err(invalid(format!(
                "macvlan master interface {master} does not exist"
            )));
        }
        vec![json!({"type": "macvlan", "master": master, "ipam": ipam})]
    };
    let mut list = Map::new();
    list.insert("cniVersion".into(), json!("0.4.0"));
    list.insert("name".into(), json!(req.name));
    list.insert("plugins".into(), Value::Array(plugins));
    if !req.labels.is_empty() {
        let labels: Map<String, Value> = req
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        list.insert("args".into(), json!({"podman_labels": labels}));
    }
    write_network_config(dir, &req.name, &Value::Object(list))
}

/// rpod's default network: bridge + host-local (with `dataDir`) + portmap + firewall +
/// tuning, cniVersion 0.4.0, gateway = the subnet's first host.
pub fn default_network_config(
    name: &str,
    bridge: &str,
    subnet: &str,
    ipam_data_dir: &Path,
) -> Value {
    let mut range = Map::new();
    range.insert("subnet".into(), json!(subnet));
    if let Ok(c) = subnet.parse::<Cidr>() {
        range.insert("gateway".into(), json!(c.first_host().to_string()));
    }
    let ipam = host_local_ipam(Value::Object(range), false, Some(ipam_data_dir));
    json!({
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": bridge_plugins(bridge, false, ipam),
    })
}

/// Write `config` to `<dir>/<name>.conflist` atomically (0644; `dir` created 0755) and return it parsed.
pub fn write_network_config(
    dir: &Path,
    name: &str,
    config: &Value,
) -> Result<NetworkConfigList, NetError> {
    validate_network_name(name)?;
    mkdir_p(dir, 0o755)?;
    let path = dir.join(format!("{name}.conflist"));
    let mut bytes = serde_json::to_vec_pretty(config)
        .map_err(|e| NetError::io("encoding", &path, std::io::Error::other(e.to_string())))?;
    bytes.push(b'\n');
    // Validate before anything is written.
    let parsed = NetworkConfigList::from_bytes(&path, &bytes)?;
    write_atomic(&path, &bytes, 0o644)?;
    tracing::info!(network = name, path = %path.display(), "wrote network configuration");
    Ok(parsed)
}

/// Remove the network's configuration file (idempotent).
pub fn remove_network_config(net: &NetworkConfigList) -> Result<(), NetError> {
    remove_if_exists(&net.path)
}

#[cfg(test)]
#[path = "manage_tests.rs"]
mod tests;
