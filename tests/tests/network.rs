//! CNI networking end to end, against the real plugins (`/usr/lib/cni`), runc and conmon:
//! containers on a network reach each other, published ports reach the host, pods share one
//! address, nothing leaks (firewall rules, veths, netns mounts, leases, the CNI result cache)
//! after hundreds of cycles, crashes or a reboot, and bad input is refused cleanly.
//!
//! Every test runs in a [`NetSandbox`]: its own CNI config dir, bridges, subnets (10.79.K.0/24
//! and 10.80.K.0/24) and IPAM dir; it talks only to loopback and its own containers, and its
//! `Drop` removes everything (also when the test fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::net::{add_page, free_port, http_get_soon, net_sandbox, stdout_of, NetSandbox};
use common::{eventually, expect_code, expect_ok, text};

const PAGE: &str = "hello over the rpod network\n";
/// busybox httpd on port 80, in the foreground, serving `/www` (see [`add_page`]).
const HTTPD: &[&str] = &["httpd", "-f", "-p", "80", "-h", "/www"];

/// Asserts exit code 125 and an `Error:` message mentioning every one of `needles`.
fn expect_refused(out: &std::process::Output, needles: &[&str]) {
    expect_code(out, 125);
    let err = text(&out.stderr);
    assert!(err.starts_with("Error:"), "{err}");
    for n in needles {
        assert!(err.contains(n), "no {n:?} in {err}");
    }
}

/// `rpod exec NAME ARGS`, asserting success; stdout.
fn exec_ok(sb: &NetSandbox, name: &str, args: &[&str]) -> String {
    let out = sb.run(&[&["exec", name], args].concat());
    assert!(
        out.status.success(),
        "exec {name} {args:?}: {:?} {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `wget -q -O - http://ADDR/` from inside `name`, retried while httpd starts.
fn wget_from(sb: &NetSandbox, name: &str, addr: &str) -> String {
    let url = format!("http://{addr}/");
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(10), || {
        // No `-T`: busybox 1.35's static wget crashes (SIGSEGV) with a timeout set.
        let out = sb.run(&["exec", name, "wget", "-q", "-O", "-", &url]);
        last = format!(
            "{:?} {}{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        out.status.success() && text(&out.stdout) == PAGE
    });
    assert!(ok, "{name} never got {url}: {last}");
    PAGE.to_owned()
}

/// The IPv4 address of `eth0` as `ip -4 -o addr show eth0` prints it inside a container.
fn eth0_addr(listing: &str) -> String {
    listing
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet in {listing:?}"))
        .to_owned()
}

/// The number of containers `ps -a` lists.
fn count(sb: &NetSandbox) -> usize {
    sb.ps_json().len()
}

#[test]
fn two_containers_on_a_user_network_reach_each_other() {
    let Some(sb) = net_sandbox() else { return };
    add_page(&sb.rootfs, PAGE);
    let net = sb.user_net();
    let a = sb.run_ctr_ok(&["-d", "--name", "a", "--network", &net.name], HTTPD);
    let b = sb.run_ctr_ok(&["-d", "--name", "b", "--network", &net.name], HTTPD);
    let (ip_a, ip_b) = (sb.ip_of("a"), sb.ip_of("b"));
    assert_ne!(ip_a, ip_b);

    for (name, ip) in [("a", &ip_a), ("b", &ip_b)] {
        let s = sb.net_settings(name);
        assert_eq!(s["Gateway"], net.gateway.as_str(), "{s}");
        assert_eq!(s["IPPrefixLen"], 26, "{s}");
        assert!(
            s["MacAddress"].as_str().is_some_and(|m| m.len() == 17),
            "{s}"
        );
        let key = s["SandboxKey"].as_str().unwrap();
        assert!(std::path::Path::new(key).exists(), "{s}");
        let n = &s["Networks"][net.name.as_str()];
        assert_eq!(n["IPAddress"], ip.as_str(), "{s}");
        assert_eq!(n["Gateway"], net.gateway.as_str(), "{s}");
        assert_eq!(n["IPPrefixLen"], 26, "{s}");
        // Inside, eth0 has that address.
        let listing = exec_ok(&sb, name, &["ip", "-4", "-o", "addr", "show", "eth0"]);
        assert_eq!(eth0_addr(&listing), format!("{ip}/26"));
    }

    for (from, to) in [("a", &ip_b), ("b", &ip_a)] {
        exec_ok(&sb, from, &["ping", "-c", "1", "-W", "3", &net.gateway]);
        exec_ok(&sb, from, &["ping", "-c", "1", "-W", "3", to]);
        assert_eq!(wget_from(&sb, from, to), PAGE);
    }

    let v: serde_json::Value =
        serde_json::from_str(&sb.ok(&["network", "inspect", &net.name])).unwrap();
    let ctrs = &v[0]["containers"];
    assert_eq!(ctrs[a.as_str()]["name"], "a", "{v}");
    assert_eq!(ctrs[a.as_str()]["ip_address"], ip_a.as_str(), "{v}");
    assert_eq!(ctrs[b.as_str()]["name"], "b", "{v}");
    assert_eq!(ctrs[b.as_str()]["ip_address"], ip_b.as_str(), "{v}");
    assert!(ctrs[b.as_str()]["mac_address"].is_string(), "{v}");

    sb.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    sb.assert_no_leftovers(&[a, b]);
    let v: serde_json::Value =
        serde_json::from_str(&sb.ok(&["network", "inspect", &net.name])).unwrap();
    assert!(
        v[0]["containers"].as_object().is_none_or(|m| m.is_empty()),
        "{v}"
    );
}

#[test]
fn published_port_reaches_the_host_and_a_taken_port_is_refused() {
    let Some(sb) = net_sandbox() else { return };
    add_page(&sb.rootfs, PAGE);
    let port = free_port();
    let map = format!("127.0.0.1:{port}:80");
    let id = sb.run_ctr_ok(
        &["-d", "--name", "web", "--network", "bridge", "-p", &map],
        HTTPD,
    );
    assert_eq!(http_get_soon(port).unwrap(), PAGE);
    assert_eq!(
        sb.ok(&["port", "web"]).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    let s = sb.net_settings("web");
    let ports = &s["Ports"]["80/tcp"][0];
    assert_eq!(ports["HostIp"], "127.0.0.1", "{s}");
    assert_eq!(ports["HostPort"], port.to_string(), "{s}");
    let ip = sb.ip_of("web");
    assert!(ip.starts_with(&format!("10.79.{}.", sb.index)), "{ip}");
    // The host port is held (port reservation): nobody else can bind it.
    assert!(TcpListener::bind(("127.0.0.1", port)).is_err());

    // A second container asking for the same host port is refused, leaving nothing.
    let veths = || {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", sb.bridge))
            .map(|rd| rd.count())
            .unwrap_or(0)
    };
    assert_eq!(veths(), 1);
    let out = sb.run_ctr(
        &["-d", "--name", "web2", "--network", "bridge", "-p", &map],
        HTTPD,
    );
    expect_refused(&out, &[&port.to_string()]);
    let running: Vec<_> = sb
        .ps_json()
        .into_iter()
        .filter(|c| c["State"] == "running")
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(veths(), 1);
    assert_eq!(sb.leases().len(), 1, "{:?}", sb.leased());
    // The first one still serves.
    assert_eq!(http_get_soon(port).unwrap(), PAGE);

    sb.ok(&["rm", "-f", "-t", "0", "web"]);
    let _ = sb.run(&["rm", "-f", "web2"]);
    sb.assert_no_leftovers(&[id]);
    // conmon released the reserved port.
    assert!(eventually(Duration::from_secs(5), || TcpListener::bind((
        "127.0.0.1",
        port
    ))
    .is_ok()));
}

#[test]
fn pod_publishes_a_members_port_and_members_share_the_address() {
    let Some(sb) = net_sandbox() else { return };
    add_page(&sb.rootfs, PAGE);
    let port = free_port();
    let map = format!("127.0.0.1:{port}:80");
    sb.ok(&[
        "pod",
        "create",
        "--name",
        "p",
        "--network",
        "bridge",
        "-p",
        &map,
    ]);
    sb.run_ctr_ok(&["-d", "--pod", "p", "--name", "srv"], HTTPD);
    assert_eq!(http_get_soon(port).unwrap(), PAGE);

    // A member cannot publish ports of its own.
    let other = format!("127.0.0.1:{}:81", free_port());
    let out = sb.run_ctr(&["-d", "--pod", "p", "--name", "bad", "-p", &other], HTTPD);
    expect_refused(&out, &[]);

    let srv_addr = eth0_addr(&exec_ok(
        &sb,
        "srv",
        &["ip", "-4", "-o", "addr", "show", "eth0"],
    ));
    let out = sb.run_ctr(
        &["--rm", "--pod", "p"],
        &["ip", "-4", "-o", "addr", "show", "eth0"],
    );
    expect_ok(&out);
    assert_eq!(eth0_addr(&text(&out.stdout)), srv_addr);
    assert!(
        srv_addr.starts_with(&format!("10.79.{}.", sb.index)),
        "{srv_addr}"
    );
    // The second member reaches the first over the shared loopback.
    let out = sb.run_ctr(
        &["--rm", "--pod", "p"],
        &["wget", "-q", "-O", "-", "http://127.0.0.1:80/"],
    );
    expect_ok(&out);
    assert_eq!(text(&out.stdout), PAGE);

    let ids = sb.all_ids();
    sb.ok(&["pod", "rm", "-f", "p"]);
    sb.assert_no_leftovers(&ids);
}

#[test]
fn no_leaks_after_100_run_rm_and_20_killed_containers() {
    let Some(sb) = net_sandbox() else { return };
    let net = sb.user_net();
    for i in 0..100 {
        let out = sb.run_ctr(&["--rm", "--network", &net.name], &["true"]);
        assert!(
            out.status.success(),
            "run {i}: {:?} {}",
            out.status.code(),
            text(&out.stderr)
        );
    }
    assert_eq!(count(&sb), 0);
    sb.assert_no_leftovers(&[]);

    let mut ids = Vec::new();
    for i in 0..20 {
        let mut flags = vec![
            "-d".to_owned(),
            "--name".to_owned(),
            format!("k{i}"),
            "--network".to_owned(),
            net.name.clone(),
        ];
        if i % 2 == 0 {
            flags.extend(["-p".to_owned(), format!("127.0.0.1:{}:80", free_port())]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        ids.push(sb.run_ctr_ok(&flags, &["sleep", "1000"]));
        sb.ip_of(&format!("k{i}"));
    }
    // SIGKILL conmon and the container: no exit file, no exit command, no cleanup.
    for id in &ids {
        let st = &sb.inspect(id)["State"];
        for pid in [
            st["ConmonPid"].as_i64().unwrap(),
            st["Pid"].as_i64().unwrap(),
        ] {
            assert!(pid > 0, "{st}");
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .output();
        }
    }
    for (i, id) in ids.iter().enumerate() {
        if i < 10 {
            let out = sb.run(&["container", "cleanup", id]);
            eprintln!(
                "container cleanup {i}: {:?} {}",
                out.status.code(),
                text(&out.stderr)
            );
        }
        sb.ok(&["rm", "-f", id]);
    }
    assert_eq!(count(&sb), 0);
    sb.assert_no_leftovers(&ids);
}

#[test]
fn reboot_releases_leases_and_start_gives_addresses_again() {
    let Some(sb) = net_sandbox() else { return };
    let a = sb.run_ctr_ok(
        &["-d", "--name", "a", "--network", "bridge"],
        &["sleep", "1000"],
    );
    let b = sb.run_ctr_ok(
        &["-d", "--name", "b", "--network", "bridge"],
        &["sleep", "1000"],
    );
    sb.ip_of("a");
    sb.ip_of("b");
    assert_eq!(sb.leases().len(), 2, "{:?}", sb.leased());
    let ids = vec![a.clone(), b.clone()];

    sb.simulate_reboot(&ids);
    // The first command refreshes: the old leases go.
    let out = sb.run(&["ps", "-a"]);
    expect_ok(&out);
    assert!(sb.leases().is_empty(), "{:?}", sb.leased());
    assert!(
        sb.cni_cache_files().is_empty(),
        "{:?}",
        sb.cni_cache_files()
    );

    sb.ok(&["start", "a", "b"]);
    let (ip_a, ip_b) = (sb.ip_of("a"), sb.ip_of("b"));
    let prefix = format!("10.79.{}.", sb.index);
    assert!(ip_a.starts_with(&prefix) && ip_b.starts_with(&prefix));
    let mut owners: Vec<String> = sb.leased().into_iter().map(|(_, id)| id).collect();
    owners.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(owners, want);
    exec_ok(&sb, "a", &["ping", "-c", "1", "-W", "3", &ip_b]);

    sb.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    sb.assert_no_leftovers(&ids);
}

#[test]
fn unknown_network_is_refused_before_anything_is_made() {
    let Some(sb) = net_sandbox() else { return };
    for verb in ["run", "create"] {
        let out = sb
            .ctr_cmd(verb, &["--network", "nosuchnet"], &["true"])
            .output()
            .unwrap();
        expect_refused(&out, &["nosuchnet"]);
    }
    assert_eq!(count(&sb), 0);
    sb.assert_no_leftovers(&[]);
}

#[test]
fn malformed_conflist_is_named_with_its_line() {
    let Some(sb) = net_sandbox() else { return };
    let file = sb.cni_dir.join("broken.conflist");
    std::fs::write(
        &file,
        "{\n  \"cniVersion\": \"0.4.0\",\n  \"name\": \"broken\",,\n  \"plugins\": []\n}\n",
    )
    .unwrap();
    let out = sb.run_ctr(&["--rm", "--network", "broken"], &["true"]);
    expect_refused(&out, &["broken.conflist", "line 3"]);
    assert_eq!(count(&sb), 0);
    sb.assert_no_leftovers(&[]);
}

#[test]
fn missing_plugin_names_it_and_the_dirs_searched() {
    let Some(sb) = net_sandbox() else { return };
    let empty = sb.path("noplugins");
    std::fs::create_dir_all(&empty).unwrap();
    sb.write_conf(&format!("cni_plugin_dir = [\"{}\"]", empty.display()));
    let out = sb.run_ctr(&["--rm", "--network", "bridge"], &["true"]);
    expect_refused(&out, &[&empty.display().to_string()]);
    let err = text(&out.stderr);
    assert!(
        ["loopback", "bridge"].iter().any(|p| err.contains(p)),
        "no plugin named in {err}"
    );
    let running = sb
        .ps_json()
        .into_iter()
        .filter(|c| c["State"] == "running")
        .count();
    assert_eq!(running, 0);
    let ids = sb.all_ids();
    sb.assert_no_leftovers(&ids);
}

#[test]
fn invalid_port_mappings_are_refused() {
    let Some(sb) = net_sandbox() else { return };
    for spec in [
        "abc",
        "70000:80",
        "80:0",
        "1-3:1-2",
        "127.0.0.1:80:80/sctpx",
    ] {
        let out = sb.run_ctr(&["-d", "--network", "bridge", "-p", spec], &["true"]);
        expect_refused(&out, &[]);
        assert_eq!(count(&sb), 0, "after -p {spec}");
    }
    sb.assert_no_leftovers(&[]);
}

#[test]
fn host_port_in_use_is_refused() {
    let Some(sb) = net_sandbox() else { return };
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let map = format!("127.0.0.1:{port}:80");
    let out = sb.run_ctr(&["-d", "--network", "bridge", "-p", &map], HTTPD);
    expect_refused(&out, &[&port.to_string()]);
    let running = sb
        .ps_json()
        .into_iter()
        .filter(|c| c["State"] == "running")
        .count();
    assert_eq!(running, 0);
    let ids = sb.all_ids();
    sb.assert_no_leftovers(&ids);
    drop(taken);
}

#[test]
fn network_create_ls_inspect_rm() {
    let Some(sb) = net_sandbox() else { return };
    let net = sb.user_net();
    let internal = sb.next_user_net();
    sb.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &internal.subnet,
        "--interface-name",
        &internal.bridge,
        &internal.name,
    ]);

    let ls = sb.ok(&["network", "ls"]);
    assert!(ls.lines().next().unwrap().contains("NAME"), "{ls}");
    let row = ls.lines().find(|l| l.starts_with(&net.name)).unwrap();
    assert!(row.contains("bridge"), "{ls}");
    let q = sb.ok(&["network", "ls", "-q"]);
    assert!(q.lines().any(|l| l == net.name), "{q}");
    assert!(q.lines().any(|l| l == internal.name), "{q}");

    let v: serde_json::Value =
        serde_json::from_str(&sb.ok(&["network", "inspect", &net.name, &internal.name])).unwrap();
    let n = &v[0];
    assert_eq!(n["name"], net.name.as_str(), "{v}");
    assert_eq!(n["driver"], "bridge", "{v}");
    assert_eq!(n["network_interface"], net.bridge.as_str(), "{v}");
    assert_eq!(n["subnets"][0]["subnet"], net.subnet.as_str(), "{v}");
    assert_eq!(n["subnets"][0]["gateway"], net.gateway.as_str(), "{v}");
    assert_eq!(n["internal"], false, "{v}");
    let file = std::path::PathBuf::from(n["config_file"].as_str().unwrap());
    assert!(file.starts_with(&sb.cni_dir) && file.is_file(), "{v}");
    assert_eq!(v[1]["internal"], true, "{v}");

    // Creating it again, or with a subnet in use, is refused.
    let out = sb.run(&["network", "create", "--subnet", "10.80.1.0/24", &net.name]);
    expect_refused(&out, &[&net.name]);

    // In use: refused without -f; -f removes its containers.
    let id = sb.run_ctr_ok(
        &["-d", "--name", "user", "--network", &net.name],
        &["sleep", "1000"],
    );
    sb.ip_of("user");
    let out = sb.run(&["network", "rm", &net.name]);
    expect_refused(&out, &[&net.name]);
    assert!(file.is_file());
    sb.ok(&["network", "rm", "-f", &net.name, &internal.name]);
    assert!(!file.exists());
    assert_eq!(count(&sb), 0);
    let out = sb.run(&["network", "inspect", &net.name]);
    expect_refused(&out, &[&net.name]);
    sb.assert_no_leftovers(&[id]);
}

#[test]
fn resolv_conf_hosts_and_hostname_are_generated() {
    let Some(sb) = net_sandbox() else { return };
    let dns = format!("10.79.{}.53", sb.index);
    let extra = format!("10.79.{}.99", sb.index);
    let out = sb.run_ctr(
        &[
            "--rm",
            "--network",
            "bridge",
            "--hostname",
            "box1",
            "--dns",
            &dns,
            "--dns-search",
            "example.test",
            "--add-host",
            &format!("peer.test:{extra}"),
        ],
        &[
            "sh",
            "-c",
            "cat /etc/resolv.conf; echo ==; cat /etc/hosts; echo ==; cat /etc/hostname",
        ],
    );
    expect_ok(&out);
    let all = text(&out.stdout);
    let parts: Vec<&str> = all.split("==\n").collect();
    assert_eq!(parts.len(), 3, "{all}");
    assert!(
        parts[0]
            .lines()
            .any(|l| l.trim() == format!("nameserver {dns}")),
        "{all}"
    );
    assert!(parts[0].contains("search example.test"), "{all}");
    assert!(
        parts[1]
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [extra.as_str(), "peer.test"]),
        "{all}"
    );
    assert!(parts[1].contains("localhost"), "{all}");
    assert!(parts[1].contains("box1"), "{all}");
    assert_eq!(parts[2].trim(), "box1", "{all}");

    // --no-hosts: the rootfs's own /etc/hosts.
    std::fs::write(sb.rootfs.join("etc/hosts"), "# the rootfs's hosts\n").unwrap();
    let out = sb.run_ctr(
        &["--rm", "--network", "bridge", "--no-hosts"],
        &["cat", "/etc/hosts"],
    );
    expect_ok(&out);
    assert_eq!(text(&out.stdout), "# the rootfs's hosts\n");
    sb.assert_no_leftovers(&[]);
}

#[test]
fn none_host_and_container_network_modes() {
    let Some(sb) = net_sandbox() else { return };
    let ns_of = |out: std::process::Output| {
        expect_ok(&out);
        stdout_of(&out)
    };
    let host_ns = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let out = sb.run_ctr(
        &["--rm", "--network", "host"],
        &["readlink", "/proc/self/ns/net"],
    );
    assert_eq!(ns_of(out), host_ns);

    let out = sb.run_ctr(&["--rm", "--network", "none"], &["cat", "/proc/net/dev"]);
    let dev = ns_of(out);
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{dev}");

    sb.run_ctr_ok(
        &["-d", "--name", "owner", "--network", "bridge"],
        &["sleep", "1000"],
    );
    let owner_ns = exec_ok(&sb, "owner", &["readlink", "/proc/self/ns/net"]);
    let out = sb.run_ctr(
        &["--rm", "--network", "container:owner"],
        &["readlink", "/proc/self/ns/net"],
    );
    assert_eq!(ns_of(out), owner_ns.trim());
    assert_ne!(owner_ns.trim(), host_ns);
    // ns:<path> joins a namespace by its file: here the owner's, from inspect.
    let key = sb.net_settings("owner")["SandboxKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = sb.run_ctr(
        &["--rm", "--network", &format!("ns:{key}")],
        &["readlink", "/proc/self/ns/net"],
    );
    assert_eq!(ns_of(out), owner_ns.trim());
    let ids = sb.all_ids();
    sb.ok(&["rm", "-f", "-t", "0", "owner"]);
    sb.assert_no_leftovers(&ids);
}

#[test]
fn default_network_is_written_on_first_use_and_info_shows_the_backend() {
    let Some(sb) = net_sandbox() else { return };
    let conf = sb.cni_dir.join(format!("{}.conflist", sb.net));
    assert!(!conf.exists());
    // The base sandbox's `--netns none` is overridden: the default network.
    let out = sb
        .net_cmd()
        .args(["run", "--rm", "--rootfs"])
        .arg(&sb.rootfs)
        .args(["ip", "-4", "-o", "addr", "show", "eth0"])
        .output()
        .unwrap();
    expect_ok(&out);
    assert!(
        eth0_addr(&text(&out.stdout)).starts_with(&format!("10.79.{}.", sb.index)),
        "{}",
        text(&out.stdout)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
    assert_eq!(v["name"], sb.net.as_str(), "{v}");
    let types: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["bridge", "portmap", "firewall", "tuning"], "{v}");
    assert_eq!(v["plugins"][0]["bridge"], sb.bridge.as_str(), "{v}");
    assert_eq!(
        v["plugins"][0]["ipam"]["dataDir"],
        sb.ipam_dir.display().to_string(),
        "{v}"
    );

    let info = sb.ok(&["info"]);
    assert!(info.contains(&sb.cni_dir.display().to_string()), "{info}");
    assert!(info.contains(&sb.net), "{info}");
    assert!(info.contains("/usr/lib/cni"), "{info}");
    assert!(info.to_lowercase().contains("cni"), "{info}");
    sb.assert_no_leftovers(&[]);
}

#[test]
fn static_ip_is_given_and_released_for_the_next_container() {
    let Some(sb) = net_sandbox() else { return };
    let prefix = sb
        .gateway
        .rsplit_once('.')
        .map(|(p, _)| p.to_owned())
        .unwrap();
    let ip = format!("{prefix}.200");
    let first = sb.run_ctr_ok(
        &["-d", "--name", "fixed", "--network", "bridge", "--ip", &ip],
        &["sleep", "1000"],
    );
    assert_eq!(sb.ip_of("fixed"), ip);
    let listing = exec_ok(&sb, "fixed", &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert_eq!(eth0_addr(&listing), format!("{ip}/24"));
    // Taken while it runs: a second container cannot have it.
    let out = sb.run_ctr(
        &["-d", "--name", "clash", "--network", "bridge", "--ip", &ip],
        &["sleep", "1000"],
    );
    expect_refused(&out, &[ip.as_str()]);
    sb.ok(&["rm", "-f", "-t", "0", "fixed", "clash"]);
    // Released by the removal: the next container gets it again.
    let second = sb.run_ctr_ok(
        &["-d", "--name", "again", "--network", "bridge", "--ip", &ip],
        &["sleep", "1000"],
    );
    assert_eq!(sb.ip_of("again"), ip);
    sb.ok(&["rm", "-f", "-t", "0", "again"]);
    sb.assert_no_leftovers(&[first, second]);
    // Bad addresses are refused before anything is made.
    for bad in ["10.1.2", "not-an-ip"] {
        let out = sb.run_ctr(&["--rm", "--network", "bridge", "--ip", bad], &["true"]);
        expect_refused(&out, &[bad]);
    }
    assert_eq!(count(&sb), 0);
}

/// Eight first uses at once of a CNI dir without the default network: each writes or finds the
/// default configuration, none fails (a process that saw no file and then found one written by
/// another used to stop with "does not define network").
#[test]
fn concurrent_first_uses_write_the_default_network_once() {
    let Some(ns) = net_sandbox() else { return };
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut c = ns.net_cmd();
            c.args(["create", "--name", &format!("first{i}"), "--rootfs"])
                .arg(&ns.sb.rootfs)
                .arg("true")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let files: Vec<_> = std::fs::read_dir(&ns.cni_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        [format!("{}.conflist", ns.net)],
        "one config, no temp file"
    );
}
