#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use std::os::unix::fs::PermissionsExt;

fn req(name: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ..NetworkCreate::default()
    }
}

fn load(dir: &Path) -> ConfigDir {
    ConfigDir::load(dir).unwrap()
}

#[test]
fn names() {
    for ok in ["a", "net1", "my_net.v2-x", "9"] {
        validate_network_name(ok).unwrap();
    }
    for bad in ["", "-a", ".a", "_a", "a/b", "a b", "a:b", "é"] {
        let e = validate_network_name(bad).unwrap_err();
        assert!(e.to_string().contains("invalid network name"), "{bad}");
    }
}

#[test]
fn pickers() {
    let used: Vec<Cidr> = ["10.78.0.0/24", "10.78.1.0/25", "10.78.2.128/25"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(pick_subnet(&used).unwrap().to_string(), "10.78.3.0/24");
    let used: Vec<Cidr> = vec!["10.78.0.0/16".parse().unwrap()];
    assert_eq!(pick_subnet(&used).unwrap().to_string(), "10.79.0.0/24");
    let used: Vec<Cidr> = vec![
        "10.78.0.0/15".parse().unwrap(),
        "10.80.0.0/12".parse().unwrap(),
    ];
    // 10.80-10.95 taken; 10.88 is never used anyway.
    assert_eq!(pick_subnet(&used).unwrap().to_string(), "10.96.0.0/24");
    let used: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
    assert!(pick_subnet(&used).is_none());

    let taken = |n: &str| n == "rpod1" || n == "rpod2";
    assert_eq!(pick_bridge(&taken).unwrap(), "rpod3");

    let routes =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
br0\t00004E0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
    let r: Vec<String> = parse_routes(routes)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(r, ["10.0.2.0/24", "10.78.0.0/16"]);
}

#[test]
fn create_bridge_defaults() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("net.d");
    let n = create_network(&dir, &load(&dir), &req("one")).unwrap();
    assert_eq!(n.path, dir.join("one.conflist"));
    assert_eq!(n.cni_version, "0.4.0");
    assert_eq!(
        n.plugin_types(),
        ["bridge", "portmap", "firewall", "tuning"]
    );
    let mode = fs_mode(&n.path);
    assert_eq!(mode, 0o644);
    let b = &n.plugins[0];
    assert_eq!(b["isGateway"], true);
    assert_eq!(b["ipMasq"], true);
    assert_eq!(b["hairpinMode"], true);
    assert_eq!(b["ipam"]["type"], "host-local");
    assert_eq!(b["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
    assert!(b["ipam"].get("dataDir").is_none());
    let bridge = n.bridge_name().unwrap();
    assert!(bridge.starts_with("rpod") && bridge != "rpod0");
    let subnet: Cidr = n.subnets()[0].parse().unwrap();
    assert_eq!(subnet.prefix_len, 24);
    assert!(!"10.88.0.0/16".parse::<Cidr>().unwrap().overlaps(&subnet));
    assert_eq!(n.gateways()[0], subnet.first_host().to_string());
    assert_eq!(n.plugins[1]["capabilities"]["portMappings"], true);

    // A second network gets another subnet and bridge; the same name is refused.
    let cd = load(&dir);
    let two = create_network(&dir, &cd, &req("two")).unwrap();
    assert_ne!(two.subnets(), n.subnets());
    assert_ne!(two.bridge_name(), n.bridge_name());
    let e = create_network(&dir, &load(&dir), &req("one")).unwrap_err();
    assert!(matches!(e, NetError::NetworkExists { .. }), "{e:?}");
    assert!(e.to_string().contains("network \"one\" already exists"));

    remove_network_config(&n).unwrap();
    remove_network_config(&n).unwrap();
    assert!(!n.path.exists());
}

fn fs_mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_with_options() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().to_path_buf();
    let r = NetworkCreate {
        name: "opt".into(),
        driver: "bridge".into(),
        subnet: Some("10.99.7.9/24".into()),
        gateway: Some("10.99.7.254".into()),
        ip_range: Some("10.99.7.0/25".into()),
        internal: true,
        interface_name: Some("rpodtest9".into()),
        ipam_data_dir: Some(td.path().join("ipam")),
        labels: vec![("a".into(), "b".into())],
    };
    let n = create_network(&dir, &load(&dir), &r).unwrap();
    assert_eq!(n.plugin_types(), ["bridge", "firewall", "tuning"]);
    let b = &n.plugins[0];
    assert_eq!(b["bridge"], "rpodtest9");
    assert_eq!(b["ipMasq"], false);
    assert_eq!(b["isGateway"], true);
    assert!(b["ipam"].get("routes").is_none());
    let range = &b["ipam"]["ranges"][0][0];
    assert_eq!(range["subnet"], "10.99.7.0/24");
    assert_eq!(range["gateway"], "10.99.7.254");
    assert_eq!(range["rangeStart"], "10.99.7.1");
    assert_eq!(range["rangeEnd"], "10.99.7.127");
    assert_eq!(n.raw["args"]["podman_labels"]["a"], "b");
    assert_eq!(
        n.ipam_data_dir().unwrap(),
        td.path().join("ipam").join("opt")
    );

    // Conflicts with the network just written.
    let cd = load(&dir);
    let mut dup_subnet = req("x");
    dup_subnet.subnet = Some("10.99.0.0/16".into());
    let e = create_network(&dir, &cd, &dup_subnet).unwrap_err();
    assert!(
        e.to_string()
            .contains("overlaps a subnet of network \"opt\""),
        "{e}"
    );
    let mut dup_bridge = req("y");
    dup_bridge.interface_name = Some("rpodtest9".into());
    let e = create_network(&dir, &cd, &dup_bridge).unwrap_err();
    assert!(
        e.to_string().contains("already used by network \"opt\""),
        "{e}"
    );
}

#[test]
fn create_validation() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().to_path_buf();
    let cd = load(&dir);
    let with = |f: &dyn Fn(&mut NetworkCreate)| {
        let mut r = req("v");
        f(&mut r);
        create_network(&dir, &cd, &r).unwrap_err().to_string()
    };
    assert!(with(&|r| r.name = "-bad".into()).contains("invalid network name"));
    assert!(with(&|r| r.driver = "ipvlan".into()).contains("unsupported network driver"));
    assert!(with(&|r| r.subnet = Some("10.1.0.0/33".into())).contains("invalid CIDR"));
    assert!(with(&|r| r.subnet = Some("10.1.0.0".into())).contains("invalid CIDR"));
    assert!(with(&|r| {
        r.subnet = Some("10.1.0.0/24".into());
        r.gateway = Some("10.2.0.1".into());
    })
    .contains("is not in subnet"));
    assert!(with(&|r| r.gateway = Some("nope".into())).contains("invalid gateway"));
    assert!(with(&|r| {
        r.subnet = Some("10.1.0.0/24".into());
        r.ip_range = Some("10.1.1.0/25".into());
    })
    .contains("not inside subnet"));
    assert!(with(&|r| {
        r.subnet = Some("10.1.0.0/24".into());
        r.ip_range = Some("10.1.0.0/16".into());
    })
    .contains("not inside subnet"));
    assert!(
        with(&|r| r.interface_name = Some("waytoolonginterfacename".into()))
            .contains("invalid interface name")
    );
    assert!(with(&|r| r.driver = "macvlan".into()).contains("needs a master"));
    assert!(with(&|r| {
        r.driver = "macvlan".into();
        r.interface_name = Some("nosuchif0".into());
    })
    .contains("does not exist"));
    // Nothing was written.
    assert!(load(&dir).networks.is_empty());
}

#[test]
fn create_macvlan() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().to_path_buf();
    let mut r = req("mv");
    r.driver = "macvlan".into();
    r.interface_name = Some("lo".into());
    r.subnet = Some("192.168.77.0/24".into());
    let n = create_network(&dir, &load(&dir), &r).unwrap();
    assert_eq!(n.driver(), "macvlan");
    assert_eq!(n.plugins[0]["master"], "lo");
    assert_eq!(n.gateways(), ["192.168.77.1"]);
    assert_eq!(n.bridge_name(), None);
}

#[test]
fn default_config() {
    let td = tempfile::tempdir().unwrap();
    let v = default_network_config(
        "rpod",
        "rpod0",
        "10.77.0.0/16",
        Path::new("/var/lib/rpod/ipam"),
    );
    let n = write_network_config(td.path(), "rpod", &v).unwrap();
    assert_eq!(n.name, "rpod");
    assert_eq!(n.bridge_name().as_deref(), Some("rpod0"));
    assert_eq!(n.gateways(), ["10.77.0.1"]);
    assert_eq!(
        n.plugin_types(),
        ["bridge", "portmap", "firewall", "tuning"]
    );
    assert_eq!(
        n.ipam_data_dir().unwrap(),
        Path::new("/var/lib/rpod/ipam/rpod")
    );
    let back = load(td.path());
    assert_eq!(back.get("rpod").unwrap(), &n);
    // An invalid config is refused before anything is written.
    let e =
        write_network_config(td.path(), "bad", &serde_json::json!({"name": "bad"})).unwrap_err();
    assert!(matches!(e, NetError::ConfigInvalid { .. }));
    assert!(!td.path().join("bad.conflist").exists());
}
