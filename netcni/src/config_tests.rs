#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

const LIST: &str = r#"{
  "cniVersion": "0.4.0",
  "name": "podman",
  "plugins": [
    {"type": "bridge", "bridge": "cni-podman0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
              "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}],
                         [{"subnet": "fd00::/64"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"},
    {"type": "tuning"}
  ]
}"#;

fn write(dir: &Path, name: &str, body: &str) {
    fs::write(dir.join(name), body).unwrap();
}

#[test]
fn parses_conflist() {
    let n = NetworkConfigList::from_bytes(Path::new("/x/87.conflist"), LIST.as_bytes()).unwrap();
    assert_eq!(n.name, "podman");
    assert_eq!(n.cni_version, "0.4.0");
    assert_eq!(
        n.plugin_types(),
        ["bridge", "portmap", "firewall", "tuning"]
    );
    assert_eq!(n.bridge_name().as_deref(), Some("cni-podman0"));
    assert_eq!(n.subnets(), ["10.88.0.0/16", "fd00::/64"]);
    assert_eq!(n.gateways(), ["10.88.0.1"]);
    assert_eq!(n.driver(), "bridge");
    assert!(!n.disable_check);
    assert_eq!(
        n.ipam_data_dir().unwrap(),
        Path::new("/var/lib/cni/networks/podman")
    );
    assert_eq!(n.path, Path::new("/x/87.conflist"));
}

#[test]
fn parses_single_conf() {
    let body = r#"{"cniVersion":"0.3.1","name":"mv","type":"macvlan","master":"eth0",
      "ipam":{"type":"host-local","subnet":"192.168.5.0/24","gateway":"192.168.5.1","dataDir":"/tmp/d"}}"#;
    let n = NetworkConfigList::from_bytes(Path::new("a.conf"), body.as_bytes()).unwrap();
    assert_eq!(n.plugins.len(), 1);
    assert_eq!(n.driver(), "macvlan");
    assert_eq!(n.bridge_name(), None);
    assert_eq!(n.subnets(), ["192.168.5.0/24"]);
    assert_eq!(n.gateways(), ["192.168.5.1"]);
    assert_eq!(n.ipam_data_dir().unwrap(), Path::new("/tmp/d/mv"));
    assert_eq!(n.raw["plugins"][0]["master"], "eth0");
    assert_eq!(n.raw["name"], "mv");
    assert!(n.plugins[0].get("name").is_none());
}

#[test]
fn rejects_bad_configs() {
    let p = Path::new("/etc/x/bad.conflist");
    let e = NetworkConfigList::from_bytes(p, b"{\n  \"name\": \"x\",\n  oops\n}").unwrap_err();
    match &e {
        NetError::ConfigParse { line, path, .. } => {
            assert_eq!(*line, 3);
            assert_eq!(path, p);
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("invalid CNI configuration /etc/x/bad.conflist:3:"));

    let e = NetworkConfigList::from_bytes(
        p,
        br#"{"cniVersion":"0.4.0","name":"x","plugins":[{"bridge":"b"}]}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing \"type\""), "{e}");

    let e = NetworkConfigList::from_bytes(
        p,
        br#"{"cniVersion":"9.9.9","name":"x","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "unsupported cniVersion \"9.9.9\" (supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)"
        ),
        "{e}"
    );
    let e = NetworkConfigList::from_bytes(
        p,
        br#"{"cniVersion":"0.4.0","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing network name"), "{e}");
    let e = NetworkConfigList::from_bytes(p, br#"{"cniVersion":"0.4.0","name":"x","plugins":[]}"#)
        .unwrap_err();
    assert!(e.to_string().contains("no plugins"), "{e}");
    assert!(NetworkConfigList::from_bytes(p, b"[]").is_err());
}

#[test]
fn load_dir_order_duplicates_invalid() {
    let td = tempfile::tempdir().unwrap();
    let d = td.path();
    write(d, "20-b.conflist", &LIST.replace("podman", "b"));
    write(
        d,
        "10-a.conf",
        r#"{"cniVersion":"0.4.0","name":"a","type":"bridge"}"#,
    );
    write(
        d,
        "30-c.json",
        r#"{"cniVersion":"1.0.0","name":"c","type":"ptp"}"#,
    );
    write(d, "40-dup.conflist", &LIST.replace("podman", "a"));
    write(d, "broken.conflist", "{\"name\": \"broken\",\n,}");
    write(d, "50-ignored.txt", "not a config");
    let cd = ConfigDir::load(d).unwrap();
    let names: Vec<&str> = cd.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(cd.get("a").unwrap().driver(), "bridge");
    assert_eq!(cd.get("a").unwrap().path, d.join("10-a.conf"));
    assert_eq!(cd.invalid.len(), 1);
    assert!(cd.default_network("b").is_some());
    assert!(cd.default_network("zzz").is_none());

    let e = cd.get("zzz").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("network \"zzz\" not found in {}", d.display())),
        "{msg}"
    );
    assert!(msg.contains("broken.conflist"), "{msg}");

    // The invalid file is the one for that name: its own error comes back.
    let e = cd.get("broken").unwrap_err();
    assert!(matches!(e, NetError::ConfigParse { line: 2, .. }), "{e:?}");
}

#[test]
fn get_reports_invalid_file_by_name_key() {
    let td = tempfile::tempdir().unwrap();
    write(
        td.path(),
        "99-x.conflist",
        r#"{"cniVersion":"7.0.0","name":"mynet","plugins":[{"type":"bridge"}]}"#,
    );
    let cd = ConfigDir::load(td.path()).unwrap();
    let e = cd.get("mynet").unwrap_err();
    assert!(matches!(e, NetError::ConfigInvalid { .. }), "{e:?}");
    assert!(e.to_string().contains("7.0.0"));
}

#[test]
fn missing_dir_is_empty() {
    let td = tempfile::tempdir().unwrap();
    let cd = ConfigDir::load(&td.path().join("nope")).unwrap();
    assert!(cd.networks.is_empty() && cd.invalid.is_empty());
    assert!(matches!(cd.get("x"), Err(NetError::NetworkNotFound { .. })));
}

#[test]
fn versions() {
    assert_eq!(version_tuple("0.4.0"), Some((0, 4, 0)));
    assert!(version_tuple("1.0.0") > version_tuple("0.4.0"));
    assert_eq!(version_tuple("1.0"), None);
    assert_eq!(SUPPORTED_VERSIONS.len(), 7);
}
