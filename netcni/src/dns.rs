//! Per-container `/etc/resolv.conf` and `/etc/hosts` contents, and the options that feed them.

use std::net::IpAddr;

use crate::NetError;

/// The nameservers written when none is left (podman's fallback; never contacted by rpod).
pub const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

fn is_loopback_resolver(s: &str) -> bool {
    let addr = s.split('%').next().unwrap_or(s);
    addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The container's resolv.conf, podman-style: start from the host's; drop loopback
/// nameservers (127.0.0.0/8, ::1: they do not answer inside a netns); `dns_servers`,
/// `dns_search` (a single "." means none) and `dns_options` replace the host's when given;
/// with no nameserver left, write 8.8.8.8 and 8.8.4.4. Other lines (e.g. `sortlist`) are kept.
pub fn resolv_conf(
    host_resolv_conf: &str,
    dns_servers: &[String],
    dns_search: &[String],
    dns_options: &[String],
) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for line in host_resolv_conf.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let mut words = t.split_whitespace();
        let key = words.next().unwrap_or("");
        let rest: Vec<String> = words.map(str::to_string).collect();
        match key {
            "nameserver" => {
                if let Some(s) = rest.first() {
                    if !is_loopback_resolver(s) {
                        servers.push(s.clone());
                    }
                }
            }
            // The last search/domain line wins, as in the resolver.
            "search" | "domain" => search = rest,
            "options" => options.extend(rest),
            _ => other.push(t.to_string()),
        }
    }
    if !dns_servers.is_empty() {
        servers = dns_servers.to_vec();
    }
    if !dns_search.is_empty() {
        search = if dns_search.len() == 1 && dns_search[0] == "." {
            Vec::new()
        } else {
            dns_search.to_vec()
        };
    }
    if !dns_options.is_empty() {
        options = dns_options.to_vec();
    }
    if servers.is_empty() {
        servers = FALLBACK_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    for l in &other {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The container's hosts file: the localhost lines, then each `--add-host` entry
/// (`(name, ip)` as [`parse_add_host`] returns it) as "ip name", then each container address
/// as "ip hostname name".
pub fn hosts_file(
    host_entries: &[(String, String)],
    container_ips: &[IpAddr],
    hostname: &str,
    container_name: &str,
) -> String {
    let mut out = String::from(
        "127.0.0.1 localhost localhost.localdomain localhost4 localhost4.localdomain4\n\
         ::1 localhost localhost.localdomain localhost6 localhost6.localdomain6\n",
    );
    for (name, ip) in host_entries {
        out.push_str(&format!("{ip} {name}\n"));
    }
    let mut names: Vec<&str> = Vec::new();
    for n in [hostname, container_name] {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    if !names.is_empty() {
        for ip in container_ips {
            out.push_str(&format!("{ip} {}\n", names.join(" ")));
        }
    }
    out
}

/// Parse `--add-host name:ip` (split at the first ':', so `h:::1` is `h` → `::1`; a
/// bracketed `[::1]` is accepted). Returns `(name, ip)`.
pub fn parse_add_host(spec: &str) -> Result<(String, String), NetError> {
    let bad = |why: &str| NetError::InvalidNetwork {
        msg: format!("invalid --add-host \"{spec}\": {why}"),
    };
    let (name, ip) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected name:ip"))?;
    if name.is_empty() {
        return Err(bad("empty host name"));
    }
    if name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(bad("host name contains whitespace or '#'"));
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(ip);
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| bad(&format!("\"{ip}\" is not an IP address")))?;
    Ok((name.to_string(), addr.to_string()))
}

/// Parse a `--dns` server address.
pub fn parse_dns_server(s: &str) -> Result<IpAddr, NetError> {
    s.trim().parse().map_err(|_| NetError::InvalidNetwork {
        msg: format!("invalid --dns \"{s}\": not an IP address"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 127.0.0.53\nnameserver 192.168.1.1\nnameserver ::1\nsearch example.com corp\noptions edns0 trust-ad\nsortlist 10.0.0.0\n";

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn resolv_drops_loopback() {
        let r = resolv_conf(HOST, &[], &[], &[]);
        assert_eq!(
            r,
            "search example.com corp\nnameserver 192.168.1.1\noptions edns0 trust-ad\nsortlist 10.0.0.0\n"
        );
    }

    #[test]
    fn resolv_fallback_and_overrides() {
        let only_local = "nameserver 127.0.0.53\nnameserver 127.0.0.1\n";
        assert_eq!(
            resolv_conf(only_local, &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let r = resolv_conf(
            HOST,
            &v(&["1.1.1.1", "fd00::53"]),
            &v(&["."]),
            &v(&["ndots:2"]),
        );
        assert_eq!(
            r,
            "nameserver 1.1.1.1\nnameserver fd00::53\noptions ndots:2\nsortlist 10.0.0.0\n"
        );
        let r = resolv_conf(HOST, &[], &v(&["a.test", "b.test"]), &[]);
        assert!(r.starts_with("search a.test b.test\nnameserver 192.168.1.1\n"));
        assert_eq!(
            resolv_conf("", &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn hosts() {
        let h = hosts_file(
            &[
                ("db".into(), "10.0.0.5".into()),
                ("v6".into(), "::1".into()),
            ],
            &["10.78.0.2".parse().unwrap()],
            "abc123",
            "web",
        );
        assert_eq!(
            h,
            "127.0.0.1 localhost localhost.localdomain localhost4 localhost4.localdomain4\n\
             ::1 localhost localhost.localdomain localhost6 localhost6.localdomain6\n\
             10.0.0.5 db\n::1 v6\n10.78.0.2 abc123 web\n"
        );
        let h = hosts_file(&[], &["10.78.0.2".parse().unwrap()], "web", "web");
        assert!(h.ends_with("10.78.0.2 web\n"));
    }

    #[test]
    fn add_host() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), "10.0.0.5".to_string())
        );
        assert_eq!(parse_add_host("h:::1").unwrap(), ("h".into(), "::1".into()));
        assert_eq!(
            parse_add_host("h:[fd00::1]").unwrap(),
            ("h".into(), "fd00::1".into())
        );
        for bad in [
            "db",
            ":1.2.3.4",
            "db:",
            "db:1.2.3",
            "d b:1.2.3.4",
            "db:host",
        ] {
            let e = parse_add_host(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(parse_dns_server("9.9.9.9").unwrap().to_string(), "9.9.9.9");
        assert!(parse_dns_server("nine").is_err());
    }
}
