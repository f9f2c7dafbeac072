//! `--network`, `-p`, `--ip`, `--dns…`, `--add-host` and `--no-hosts` (libpod 1.x meanings),
//! checked and turned into a container's record when it is created; and the record turned
//! back into a [`NetworkMode`] when it is initialised.

use std::net::IpAddr;

use rpod_state::{ContainerConfig, PortMapping};

use super::NetworkMode;
use crate::error::RuntimeError;

/// The network options of `rpod create`/`run`/`pod create`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    /// `--network`: `bridge`, `none`, `host`, `container:<name|id>`, `ns:<path>` or a comma
    /// list of CNI network names; `None` takes the configured default (`netns`).
    pub mode: Option<String>,
    /// `-p [ip:][hostPort:]containerPort[/protocol]` (ranges allowed).
    pub publish: Vec<String>,
    /// `--ip`: a static address on the (first) network.
    pub ip: Option<String>,
    /// `--dns` servers.
    pub dns: Vec<String>,
    /// `--dns-search` domains.
    pub dns_search: Vec<String>,
    /// `--dns-opt` options.
    pub dns_options: Vec<String>,
    /// `--add-host name:ip` entries.
    pub add_hosts: Vec<String>,
    /// `--no-hosts`: keep the root filesystem's `/etc/hosts`.
    pub no_hosts: bool,
    /// `-P`: publish every port the image exposes on a free host port.
    pub publish_all: bool,
}

impl NetworkSpec {
    /// Whether any option other than `--network` was given.
    fn has_settings(&self) -> bool {
        !self.publish.is_empty()
            || self.publish_all
            || self.ip.is_some()
            || !self.dns.is_empty()
            || !self.dns_search.is_empty()
            || !self.dns_options.is_empty()
            || !self.add_hosts.is_empty()
            || self.no_hosts
    }

    /// Whether nothing at all was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.mode.is_none() && !self.has_settings()
    }
}

/// The mode part of `--network`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModeChoice {
    /// CNI networks (empty: the default network).
    Cni(Vec<String>),
    /// `none`.
    None,
    /// `host`.
    Host,
    /// `ns:<path>`.
    Path(String),
    /// `container:<name|id>`.
    Container(String),
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidSpec(msg.into())
}

/// Parses a `--network` value (`default` is the configured `netns`).
pub(crate) fn parse_mode(value: Option<&str>, default: &str) -> Result<ModeChoice, RuntimeError> {
    let v = match value {
        Some(v) if v.trim().is_empty() => {
            return Err(invalid(
                "--network must not be empty: use bridge, none, host, \
                 container:<name>, ns:<path> or CNI network names",
            ))
        }
        Some(v) => v.trim(),
        None => {
            if !matches!(default, "bridge" | "private" | "none" | "host") {
                return Err(invalid(format!(
                    "invalid netns setting {default:?}: use bridge, none or host"
                )));
            }
            default
        }
    };
    Ok(match v {
        "bridge" | "default" | "private" => ModeChoice::Cni(Vec::new()),
        "none" => ModeChoice::None,
        "host" => ModeChoice::Host,
        "slirp4netns" | "pasta" => {
            return Err(invalid(format!(
                "network mode {v:?} is not supported by rpod: use bridge, none, host, \
                 container:<name>, ns:<path> or CNI network names"
            )))
        }
        _ => {
            if let Some(path) = v.strip_prefix("ns:") {
                if !path.starts_with('/') {
                    return Err(invalid(format!(
                        "invalid network mode {v:?}: ns: needs an absolute path"
                    )));
                }
                ModeChoice::Path(path.to_owned())
            } else if let Some(ctr) = v.strip_prefix("container:") {
                if ctr.is_empty() {
                    return Err(invalid(format!(
                        "invalid network mode {v:?}: container: needs a container name or ID"
                    )));
                }
                ModeChoice::Container(ctr.to_owned())
            } else {
                let mut names = Vec::new();
                for n in v.split(',') {
                    rpod_net::validate_network_name(n)?;
                    if matches!(n, "bridge" | "none" | "host") {
                        return Err(invalid(format!(
                            "invalid network list {v:?}: {n:?} is a mode, not a network name"
                        )));
                    }
                    if !names.iter().any(|x: &String| x == n) {
                        names.push(n.to_owned());
                    }
                }
                ModeChoice::Cni(names)
            }
        }
    })
}

/// Parses every `-p` value; host port 0 means "any free port" (assigned by the caller).
pub(crate) fn parse_ports(publish: &[String]) -> Result<Vec<PortMapping>, RuntimeError> {
    let mut out: Vec<PortMapping> = Vec::new();
    for spec in publish {
        for m in rpod_net::parse_publish(spec)? {
            let m = crate::convert::port_from_net(&m);
            if m.host_port != 0
                && out.iter().any(|o| {
                    o.host_port == m.host_port && o.protocol == m.protocol && o.host_ip == m.host_ip
                })
            {
                return Err(invalid(format!(
                    "host port {}/{} is published twice",
                    m.host_port, m.protocol
                )));
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// Checks the options that do not depend on the mode and stores them in `config`.
pub(crate) fn apply_settings(
    spec: &NetworkSpec,
    config: &mut ContainerConfig,
) -> Result<(), RuntimeError> {
    for d in &spec.dns {
        rpod_net::parse_dns_server(d)?;
    }
    for h in &spec.add_hosts {
        rpod_net::parse_add_host(h)?;
    }
    for d in &spec.dns_search {
        if d.is_empty() || d.chars().any(char::is_whitespace) {
            return Err(invalid(format!("invalid --dns-search domain {d:?}")));
        }
    }
    if let Some(ip) = &spec.ip {
        ip.parse::<IpAddr>()
            .map_err(|_| invalid(format!("invalid --ip address {ip:?}")))?;
        config.static_ip = ip.clone();
    }
    config.dns_servers = spec.dns.clone();
    config.dns_search = spec.dns_search.clone();
    config.dns_options = spec.dns_options.clone();
    config.add_hosts = spec.add_hosts.clone();
    config.no_hosts = spec.no_hosts;
    config.port_mappings = parse_ports(&spec.publish)?;
    Ok(())
}

/// Refuses options that make no sense with `mode`.
pub(crate) fn check_mode_settings(
    spec: &NetworkSpec,
    mode: &ModeChoice,
) -> Result<(), RuntimeError> {
    let name = match mode {
        ModeChoice::Cni(nets) => {
            if spec.ip.is_some() && nets.len() > 1 {
                return Err(invalid(
                    "--ip can only be used with a single network".to_owned(),
                ));
            }
            return Ok(());
        }
        ModeChoice::None => "none",
        ModeChoice::Host => "host",
        ModeChoice::Path(_) => "ns:<path>",
        ModeChoice::Container(_) => "container:<name>",
    };
    if !spec.publish.is_empty() {
        return Err(invalid(format!(
            "cannot publish ports with network mode {name}: ports need a bridge or CNI network"
        )));
    }
    if spec.ip.is_some() {
        return Err(invalid(format!(
            "cannot set a static IP with network mode {name}"
        )));
    }
    if matches!(mode, ModeChoice::Container(_))
        && (!spec.dns.is_empty()
            || !spec.dns_search.is_empty()
            || !spec.dns_options.is_empty()
            || !spec.add_hosts.is_empty())
    {
        return Err(invalid(
            "conflicting options: DNS and host entries cannot be set when joining another \
             container's network",
        ));
    }
    Ok(())
}

/// What a pod member may not set: its network is the pod's.
pub(crate) fn check_pod_member(spec: &NetworkSpec, pod: &str) -> Result<(), RuntimeError> {
    if spec.mode.is_some() || !spec.publish.is_empty() || spec.ip.is_some() {
        return Err(invalid(format!(
            "container joins the network of pod {pod}: --network, -p and --ip must be given \
             to `pod create`, not to its members"
        )));
    }
    Ok(())
}

/// The recorded mode of a container, as the life cycle needs it (`Join` is resolved by the
/// caller, which knows the other container's process).
pub(crate) fn recorded_mode(c: &ContainerConfig) -> NetworkMode {
    match c.network_mode.as_str() {
        "bridge" => NetworkMode::Cni,
        "host" => NetworkMode::Host,
        m => match m.strip_prefix("ns:") {
            Some(p) => NetworkMode::Path(p.into()),
            None => NetworkMode::None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(
            parse_mode(None, "bridge").ok(),
            Some(ModeChoice::Cni(vec![]))
        );
        assert_eq!(parse_mode(None, "none").ok(), Some(ModeChoice::None));
        assert_eq!(
            parse_mode(Some("host"), "none").ok(),
            Some(ModeChoice::Host)
        );
        assert_eq!(
            parse_mode(Some("a,b,a"), "none").ok(),
            Some(ModeChoice::Cni(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_mode(Some("container:web"), "none").ok(),
            Some(ModeChoice::Container("web".into()))
        );
        assert_eq!(
            parse_mode(Some("ns:/run/netns/x"), "none").ok(),
            Some(ModeChoice::Path("/run/netns/x".into()))
        );
        for bad in [
            "ns:rel",
            "container:",
            "slirp4netns",
            "a,,b",
            "a,host",
            "bad name",
            "",
        ] {
            assert!(parse_mode(Some(bad), "none").is_err(), "{bad}");
        }
        assert!(parse_mode(None, "nonsense").is_err());
    }

    #[test]
    fn settings_checked_against_mode() {
        let spec = NetworkSpec {
            publish: vec!["8080:80".into()],
            ..Default::default()
        };
        assert!(check_mode_settings(&spec, &ModeChoice::None).is_err());
        assert!(check_mode_settings(&spec, &ModeChoice::Cni(vec![])).is_ok());
        let dup = NetworkSpec {
            publish: vec!["8080:80".into(), "8080:81".into()],
            ..Default::default()
        };
        let mut c = ContainerConfig::default();
        assert!(apply_settings(&dup, &mut c).is_err());
        let bad_ip = NetworkSpec {
            ip: Some("10.1.1".into()),
            ..Default::default()
        };
        assert!(apply_settings(&bad_ip, &mut c).is_err());
    }
}
