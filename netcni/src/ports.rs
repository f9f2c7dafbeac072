//! Published ports: parsing `-p` specifications and reserving host ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;

use crate::NetError;

/// One published port, in the JSON shape of CNI's `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Host port; 0 means "assign a free one".
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// Port inside the container (never 0).
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Host address to bind; empty means all addresses.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

fn bad(spec: &str, reason: impl Into<String>) -> NetError {
    NetError::InvalidPort {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// Parse "N" or "N-M" into an inclusive range.
fn parse_range(spec: &str, s: &str, what: &str, allow_zero: bool) -> Result<(u16, u16), NetError> {
    let port = |p: &str| -> Result<u16, NetError> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(spec, format!("{what} \"{p}\" is not a number")));
        }
        let n: u16 = p
            .parse()
            .map_err(|_| bad(spec, format!("{what} {p} is out of range (1-65535)")))?;
        if n == 0 && !allow_zero {
            return Err(bad(spec, format!("{what} must not be 0")));
        }
        Ok(n)
    };
    match s.split_once('-') {
        None => {
            let n = port(s)?;
            Ok((n, n))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a == 0 || b == 0 {
                return Err(bad(spec, format!("{what} range must not contain 0")));
            }
            if b < a {
                return Err(bad(spec, format!("{what} range {a}-{b} is reversed")));
            }
            Ok((a, b))
        }
    }
}

/// Parse a podman `-p/--publish` specification: `[[ip:][hostPort]:]containerPort[/protocol]`.
///
/// Ranges (`8080-8082:80-82`) must have equal lengths; a container range without host ports
/// gives host port 0 ("assign") for each. IPv6 host addresses are bracketed (`[::1]:8080:80`).
/// The protocol is `tcp` (default), `udp` or `sctp`, or a comma list giving one mapping per protocol.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, NetError> {
    let s = spec.trim();
    if s.is_empty() {
        return Err(bad(spec, "empty specification"));
    }
    let (addr_part, protos) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    let mut protocols: Vec<String> = Vec::new();
    for p in protos.split(',') {
        let p = p.trim().to_ascii_lowercase();
        if !matches!(p.as_str(), "tcp" | "udp" | "sctp") {
            return Err(bad(
                spec,
                format!("unknown protocol \"{p}\" (use tcp, udp or sctp)"),
            ));
        }
        if !protocols.contains(&p) {
            protocols.push(p);
        }
    }
    // Split off a host IP: bracketed IPv6, or the first of three colon-separated fields.
    let (host_ip, rest): (String, &str) = if let Some(after) = addr_part.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or_else(|| bad(spec, "missing ']' after IPv6 address"))?;
        let tail = tail
            .strip_prefix(':')
            .ok_or_else(|| bad(spec, "expected ':' after the bracketed host IP"))?;
        if !tail.contains(':') {
            return Err(bad(spec, "expected [hostIP]:hostPort:containerPort"));
        }
        (ip.to_string(), tail)
    } else {
        let n = addr_part.matches(':').count();
        match n {
            0 | 1 => (String::new(), addr_part),
            2 => {
                let (ip, tail) = addr_part.split_once(':').unwrap_or(("", addr_part));
                (ip.to_string(), tail)
            }
            _ => {
                return Err(bad(
                    spec,
                    "too many ':' (IPv6 host addresses must be written in brackets, e.g. [::1]:8080:80)",
                ))
            }
        }
    };
    if !host_ip.is_empty() {
        host_ip
            .parse::<IpAddr>()
            .map_err(|_| bad(spec, format!("host IP \"{host_ip}\" is not an IP address")))?;
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    let (c_start, c_end) = parse_range(spec, container, "container port", false)?;
    let (h_start, h_end) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(spec, host, "host port", true)?
    };
    let c_len = c_end - c_start;
    if !host.is_empty() && h_end - h_start != c_len {
        return Err(bad(
            spec,
            format!(
                "host port range {h_start}-{h_end} and container port range {c_start}-{c_end} have different lengths"
            ),
        ));
    }
    let mut out = Vec::new();
    for protocol in &protocols {
        for i in 0..=c_len {
            out.push(PortMapping {
                host_port: if host.is_empty() { 0 } else { h_start + i },
                container_port: c_start + i,
                protocol: protocol.clone(),
                host_ip: host_ip.clone(),
            });
        }
    }
    Ok(out)
}

fn bind_addr(m: &PortMapping, port: u16) -> Result<SocketAddr, NetError> {
    let ip: IpAddr = if m.host_ip.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        m.host_ip.parse().map_err(|_| {
            bad(
                &m.host_ip,
                format!("host IP \"{}\" is not an IP address", m.host_ip),
            )
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

fn bind_error(m: &PortMapping, port: u16, e: std::io::Error) -> NetError {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        NetError::PortInUse {
            host_ip: m.host_ip.clone(),
            port,
            protocol: m.protocol.clone(),
            source: e,
        }
    } else {
        bad(
            &format!("{}:{}/{}", m.host_ip, port, m.protocol),
            format!("cannot bind the host port: {e}"),
        )
    }
}

/// Bind one mapping's host port; returns the socket and the port actually bound.
fn bind_one(m: &PortMapping, tcp_for_sctp: bool) -> Result<Option<(OwnedFd, u16)>, NetError> {
    let addr = bind_addr(m, m.host_port)?;
    match m.protocol.as_str() {
        "udp" => {
            let s = UdpSocket::bind(addr).map_err(|e| bind_error(m, m.host_port, e))?;
            let port = s
                .local_addr()
                .map_err(|e| bind_error(m, m.host_port, e))?
                .port();
            Ok(Some((OwnedFd::from(s), port)))
        }
        "sctp" if !tcp_for_sctp => Ok(None),
        _ => {
            let s = TcpListener::bind(addr).map_err(|e| bind_error(m, m.host_port, e))?;
            let port = s
                .local_addr()
                .map_err(|e| bind_error(m, m.host_port, e))?
                .port();
            Ok(Some((OwnedFd::from(s), port)))
        }
    }
}

/// Reserve host ports the way libpod's `bindPorts` does: bind (and for TCP listen on) each
/// mapping's host address and port, so nothing else can take it while the container runs.
///
/// Host port 0 binds port 0 and writes the kernel's choice back into the mapping. SCTP is
/// skipped with a warning. A port in use gives [`NetError::PortInUse`]; on any error the
/// sockets already bound are closed. The sockets are close-on-exec: the caller hands them
/// to a child explicitly.
pub fn reserve_ports(maps: &mut [PortMapping]) -> Result<Vec<OwnedFd>, NetError> {
    let mut fds = Vec::new();
    for m in maps.iter_mut() {
        match bind_one(m, false)? {
            Some((fd, port)) => {
                m.host_port = port;
                fds.push(fd);
            }
            None => tracing::warn!(
                host_port = m.host_port,
                container_port = m.container_port,
                "not reserving an sctp host port (unsupported)"
            ),
        }
    }
    Ok(fds)
}

/// Fill every host port 0 with a currently free port (bind, read the port, close), for
/// configurations that do not keep the reservation sockets open.
pub fn assign_free_ports(maps: &mut [PortMapping]) -> Result<(), NetError> {
    for m in maps.iter_mut().filter(|m| m.host_port == 0) {
        if let Some((_fd, port)) = bind_one(m, true)? {
            m.host_port = port;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "ports_tests.rs"]
mod tests;
