#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use proptest::prelude::*;

fn pm(h: u16, c: u16, p: &str, ip: &str) -> PortMapping {
    PortMapping {
        host_port: h,
        container_port: c,
        protocol: p.into(),
        host_ip: ip.into(),
    }
}

#[test]
fn good_specs() {
    let cases: Vec<(&str, Vec<PortMapping>)> = vec![
        ("80", vec![pm(0, 80, "tcp", "")]),
        ("8080:80", vec![pm(8080, 80, "tcp", "")]),
        ("8080:80/udp", vec![pm(8080, 80, "udp", "")]),
        ("127.0.0.1:8080:80", vec![pm(8080, 80, "tcp", "127.0.0.1")]),
        ("127.0.0.1::80", vec![pm(0, 80, "tcp", "127.0.0.1")]),
        ("[::1]:8080:80", vec![pm(8080, 80, "tcp", "::1")]),
        ("[fd00::2]::53/udp", vec![pm(0, 53, "udp", "fd00::2")]),
        (
            "8080-8082:80-82",
            vec![
                pm(8080, 80, "tcp", ""),
                pm(8081, 81, "tcp", ""),
                pm(8082, 82, "tcp", ""),
            ],
        ),
        ("80-81", vec![pm(0, 80, "tcp", ""), pm(0, 81, "tcp", "")]),
        (
            "53:53/tcp,udp",
            vec![pm(53, 53, "tcp", ""), pm(53, 53, "udp", "")],
        ),
        ("9000:9000/sctp", vec![pm(9000, 9000, "sctp", "")]),
        ("0:80", vec![pm(0, 80, "tcp", "")]),
        (":80", vec![pm(0, 80, "tcp", "")]),
        ("80/TCP", vec![pm(0, 80, "tcp", "")]),
    ];
    for (spec, want) in cases {
        assert_eq!(parse_publish(spec).unwrap(), want, "{spec}");
    }
}

#[test]
fn bad_specs() {
    let cases = [
        ("", "empty"),
        ("0", "must not be 0"),
        ("8080:0", "must not be 0"),
        ("abc", "not a number"),
        ("70000", "out of range"),
        ("80/icmp", "unknown protocol"),
        ("80/", "unknown protocol"),
        ("8080-8081:80", "different lengths"),
        ("82-80", "reversed"),
        ("1.2.3:8080:80", "not an IP address"),
        ("::1:8080:80", "brackets"),
        ("[::1:8080:80", "missing ']'"),
        ("[::1]8080:80", "expected ':'"),
        ("[::1]:80", "expected [hostIP]"),
        ("a:b:c:d", "too many"),
    ];
    for (spec, why) in cases {
        let e = parse_publish(spec).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, NetError::InvalidPort { .. }), "{spec}");
        assert!(msg.contains(why), "{spec}: {msg}");
        assert!(msg.contains(&format!("\"{spec}\"")), "{spec}: {msg}");
    }
}

#[test]
fn json_shape() {
    let v = serde_json::to_value(vec![pm(8080, 80, "tcp", "")]).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    );
    let v = serde_json::to_value(pm(1, 2, "udp", "10.0.0.1")).unwrap();
    assert_eq!(v["hostIP"], "10.0.0.1");
}

#[test]
fn reserve_and_conflict() {
    let mut maps = vec![
        pm(0, 80, "tcp", "127.0.0.1"),
        pm(0, 53, "udp", "127.0.0.1"),
        pm(0, 9, "sctp", ""),
    ];
    let fds = reserve_ports(&mut maps).unwrap();
    assert_eq!(fds.len(), 2);
    assert_ne!(maps[0].host_port, 0);
    assert_ne!(maps[1].host_port, 0);
    assert_eq!(maps[2].host_port, 0);
    // The same TCP port again is in use while we hold it.
    let mut again = vec![pm(maps[0].host_port, 80, "tcp", "127.0.0.1")];
    let e = reserve_ports(&mut again).unwrap_err();
    assert!(matches!(e, NetError::PortInUse { .. }));
    assert!(e.to_string().starts_with(&format!(
        "host port 127.0.0.1:{}/tcp is already in use",
        maps[0].host_port
    )));
    let port = maps[0].host_port;
    drop(fds);
    let mut again = vec![pm(port, 80, "tcp", "127.0.0.1")];
    let fds = reserve_ports(&mut again).unwrap();
    assert_eq!(fds.len(), 1);
    // Close-on-exec.
    use std::os::fd::AsRawFd;
    let flags = nix::fcntl::fcntl(fds[0].as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert!(flags & nix::libc::FD_CLOEXEC != 0);
}

#[test]
fn reserve_releases_on_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    let mut maps = vec![
        pm(0, 80, "tcp", "127.0.0.1"),
        pm(busy, 81, "tcp", "127.0.0.1"),
    ];
    assert!(reserve_ports(&mut maps).is_err());
    // The first socket was closed again: its port can be bound.
    let first = maps[0].host_port;
    assert_ne!(first, 0);
    std::net::TcpListener::bind(("127.0.0.1", first)).unwrap();
}

#[test]
fn assign_free() {
    let mut maps = vec![
        pm(0, 80, "tcp", "127.0.0.1"),
        pm(1234, 81, "tcp", ""),
        pm(0, 82, "sctp", "127.0.0.1"),
    ];
    assign_free_ports(&mut maps).unwrap();
    assert_ne!(maps[0].host_port, 0);
    assert_eq!(maps[1].host_port, 1234);
    assert_ne!(maps[2].host_port, 0);
}

fn format_spec(ip: &str, host: Option<(u16, u16)>, c: (u16, u16), protos: &[&str]) -> String {
    let range = |(a, b): (u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    let mut s = String::new();
    if !ip.is_empty() {
        if ip.contains(':') {
            s.push_str(&format!("[{ip}]:"));
        } else {
            s.push_str(&format!("{ip}:"));
        }
        if let Some(h) = host {
            s.push_str(&range(h));
        }
        s.push(':');
    } else if let Some(h) = host {
        s.push_str(&range(h));
        s.push(':');
    }
    s.push_str(&range(c));
    s.push('/');
    s.push_str(&protos.join(","));
    s
}

proptest! {
    #[test]
    fn publish_round_trip(
        ip in prop::sample::select(vec!["", "127.0.0.1", "0.0.0.0", "::1", "fd00::5"]),
        c_start in 1u16..60000, len in 0u16..4, h_start in prop::option::of(1u16..60000),
        protos in prop::sample::subsequence(vec!["tcp", "udp", "sctp"], 1..=3),
    ) {
        let c = (c_start, c_start + len);
        let host = h_start.map(|h| (h, h + len));
        let spec = format_spec(ip, host, c, &protos);
        let got = parse_publish(&spec).unwrap();
        prop_assert_eq!(got.len(), (usize::from(len) + 1) * protos.len());
        let mut i = 0;
        for p in &protos {
            for k in 0..=len {
                let m = &got[i];
                prop_assert_eq!(m.container_port, c.0 + k);
                prop_assert_eq!(m.host_port, host.map_or(0, |h| h.0 + k));
                prop_assert_eq!(&m.protocol, p);
                prop_assert_eq!(&m.host_ip, ip);
                i += 1;
            }
        }
    }
}
