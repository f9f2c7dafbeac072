#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::plugin::plugin_failure;
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// A temp dir with fake plugins that log every call.
struct Fake {
    td: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let f = Fake {
            td: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(f.plugins()).unwrap();
        for name in ["rec1", "rec2", "rec3"] {
            f.recorder(name);
        }
        f.script(
            "fail",
            r#"echo '{"code":999,"msg":"boom","details":"x"}'; exit 1"#,
        );
        f.script("crash", "exit 2");
        f.script("killed", "kill -9 $$");
        f.script(
            "garbage",
            r#"[ "$CNI_COMMAND" = ADD ] && echo 'not json'; exit 0"#,
        );
        f.script(
            "gone",
            r#"echo '{"code":999,"msg":"failed to open netns \"/x\": no such file or directory"}'; exit 1"#,
        );
        f.script(
            "ver",
            r#"echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'"#,
        );
        f
    }

    fn plugins(&self) -> PathBuf {
        self.td.path().join("plugins")
    }

    fn log(&self) -> Vec<String> {
        fs::read_to_string(self.td.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin_of(&self, name: &str, cmd: &str) -> Value {
        let p = self.td.path().join(format!("stdin-{name}-{cmd}.json"));
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    }

    fn env_of(&self, name: &str, cmd: &str) -> String {
        fs::read_to_string(self.td.path().join(format!("env-{name}-{cmd}"))).unwrap()
    }

    /// Every script logs "<COMMAND> <name>", then runs `body`.
    fn script(&self, name: &str, body: &str) {
        let dir = self.td.path().display();
        let text = format!(
            "#!/bin/sh\nin=$(cat)\necho \"$CNI_COMMAND {name}\" >> {dir}/log\n\
             printf '%s' \"$in\" > {dir}/stdin-{name}-$CNI_COMMAND.json\n\
             env > {dir}/env-{name}-$CNI_COMMAND\n{body}\n"
        );
        let p = self.plugins().join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn recorder(&self, name: &str) {
        self.script(
            name,
            &format!(
                r#"[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion":"0.4.0","interfaces":[{{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/ns"}}],"ips":[{{"interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"}}],"step":"{name}"}}'
exit 0"#
            ),
        );
    }

    fn runner(&self) -> CniRunner {
        CniRunner::new(
            vec![self.td.path().join("empty"), self.plugins()],
            self.td.path().join("cache"),
        )
    }
}

fn net(version: &str, plugins: Value) -> NetworkConfigList {
    let v = json!({"cniVersion": version, "name": "fakenet", "plugins": plugins});
    NetworkConfigList::from_bytes(Path::new("/fake.conflist"), v.to_string().as_bytes()).unwrap()
}

fn attachment() -> Attachment {
    Attachment {
        container_id: "cid123".into(),
        container_name: "web".into(),
        netns: PathBuf::from("/run/netns/fake"),
        ifname: "eth0".into(),
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }],
        static_ip: Some("10.1.2.3".parse().unwrap()),
        mac: Some("aa:bb:cc:dd:ee:ff".into()),
    }
}

#[test]
fn add_runs_chain_and_caches() {
    let f = Fake::new();
    let r = f.runner();
    let n = net(
        "0.4.0",
        json!([
            {"type": "rec1", "capabilities": {"portMappings": true}},
            {"type": "rec2", "capabilities": {"portMappings": false, "bandwidth": true}},
        ]),
    );
    let a = attachment();
    let res = r.add(&n, &a).unwrap();
    assert_eq!(res.raw["step"], "rec2");
    assert_eq!(res.network, "fakenet");
    assert_eq!(f.log(), ["ADD rec1", "ADD rec2"]);
    // prevResult chaining and the list's name/version.
    let s1 = f.stdin_of("rec1", "ADD");
    assert!(s1.get("prevResult").is_none());
    assert_eq!(s1["name"], "fakenet");
    assert_eq!(s1["cniVersion"], "0.4.0");
    assert_eq!(
        s1["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    let s2 = f.stdin_of("rec2", "ADD");
    assert_eq!(s2["prevResult"]["step"], "rec1");
    assert!(s2.get("runtimeConfig").is_none(), "{s2}");
    // Environment: exactly the CNI variables and PATH.
    let env = f.env_of("rec1", "ADD");
    assert!(env.contains("CNI_COMMAND=ADD\n"));
    assert!(env.contains("CNI_CONTAINERID=cid123\n"));
    assert!(env.contains("CNI_NETNS=/run/netns/fake\n"));
    assert!(env.contains("CNI_IFNAME=eth0\n"));
    assert!(env.contains(&format!(
        "CNI_PATH={}:{}\n",
        f.td.path().join("empty").display(),
        f.plugins().display()
    )));
    assert!(env.contains(
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=cid123;IP=10.1.2.3;MAC=aa:bb:cc:dd:ee:ff\n"
    ));
    assert!(env.contains(&format!("PATH={}\n", crate::plugin::PLUGIN_PATH_ENV)));
    assert!(!env.contains("HOME="), "{env}");
    // Cached before returning.
    assert_eq!(r.cache.get("fakenet", "cid123", "eth0").unwrap(), res.raw);
}

#[test]
fn add_failure_runs_full_del() {
    let f = Fake::new();
    let r = f.runner();
    let n = net(
        "1.0.0",
        json!([{"type": "rec1"}, {"type": "rec2"}, {"type": "fail"}, {"type": "rec3"}]),
    );
    let e = r.add(&n, &attachment()).unwrap_err();
    assert!(matches!(e, NetError::Plugin { code: 999, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "network \"fakenet\": plugin \"fail\" (ADD) failed: boom (x) [code 999]"
    );
    assert_eq!(
        f.log(),
        ["ADD rec1", "ADD rec2", "ADD fail", "DEL rec3", "DEL fail", "DEL rec2", "DEL rec1"]
    );
    // DEL got the last good result.
    assert_eq!(f.stdin_of("rec1", "DEL")["prevResult"]["step"], "rec2");
    assert!(r.cache.get("fakenet", "cid123", "eth0").is_none());
    assert!(r.cache.entries().is_empty());
}

#[test]
fn del_keeps_going_and_reports_all() {
    let f = Fake::new();
    let r = f.runner();
    let a = attachment();
    r.cache
        .put("fakenet", "cid123", "eth0", &json!({"cached": true}))
        .unwrap();
    let n = net(
        "0.4.0",
        json!([{"type": "rec1"}, {"type": "fail"}, {"type": "crash"}]),
    );
    let e = r.del(&n, &a, None).unwrap_err();
    assert_eq!(f.log(), ["DEL crash", "DEL fail", "DEL rec1"]);
    match &e {
        NetError::Teardown {
            container_id,
            errors,
        } => {
            assert_eq!(container_id, "cid123");
            assert_eq!(errors.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("plugin \"crash\" (DEL) failed: exit status 2 with no output"),
        "{msg}"
    );
    assert!(
        msg.contains("; network \"fakenet\": plugin \"fail\" (DEL) failed: boom (x) [code 999]"),
        "{msg}"
    );
    assert_eq!(
        f.stdin_of("rec1", "DEL")["prevResult"],
        json!({"cached": true})
    );
    // A failed DEL keeps the cached result for the retry.
    assert!(r.cache.get("fakenet", "cid123", "eth0").is_some());

    // A single failure comes back as itself.
    let n1 = net("0.4.0", json!([{"type": "rec1"}, {"type": "fail"}]));
    let e = r.del(&n1, &a, Some(&json!({"explicit": 1}))).unwrap_err();
    assert!(matches!(e, NetError::Plugin { .. }), "{e:?}");
    assert_eq!(
        f.stdin_of("rec1", "DEL")["prevResult"],
        json!({"explicit": 1})
    );

    // Success removes the cache entry; a second DEL is harmless.
    let ok = net("0.4.0", json!([{"type": "rec1"}]));
    r.del(&ok, &a, None).unwrap();
    assert!(r.cache.get("fakenet", "cid123", "eth0").is_none());
    r.del(&ok, &a, None).unwrap();
    assert!(f.stdin_of("rec1", "DEL").get("prevResult").is_none());
}

#[test]
fn del_already_gone_is_success() {
    let f = Fake::new();
    let r = f.runner();
    let a = attachment();
    r.cache
        .put("fakenet", "cid123", "eth0", &json!({}))
        .unwrap();
    let n = net("0.4.0", json!([{"type": "rec1"}, {"type": "gone"}]));
    r.del(&n, &a, None).unwrap();
    assert!(r.cache.entries().is_empty());
}

#[test]
fn exec_failures() {
    let f = Fake::new();
    let r = f.runner();
    let a = attachment();
    let e = r
        .add(&net("0.4.0", json!([{"type": "killed"}])), &a)
        .unwrap_err();
    assert!(e.to_string().contains("killed by signal 9"), "{e}");
    let e = r
        .add(&net("0.4.0", json!([{"type": "garbage"}])), &a)
        .unwrap_err();
    assert!(matches!(e, NetError::PluginExec { .. }));
    assert!(e.to_string().contains("not JSON"), "{e}");
    assert!(e.to_string().contains("not json"), "{e}");
    let e = r
        .add(
            &net("0.4.0", json!([{"type": "rec1"}, {"type": "missing"}])),
            &a,
        )
        .unwrap_err();
    assert!(matches!(e, NetError::PluginNotFound { .. }));
    // The rollback DEL also ran rec1.
    assert_eq!(f.log().last().unwrap(), "DEL rec1");
}

#[test]
fn find_and_version() {
    let f = Fake::new();
    let r = f.runner();
    let e = r.exec.find("bridge").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "CNI plugin \"bridge\" not found in {}, {}",
            f.td.path().join("empty").display(),
            f.plugins().display()
        )
    );
    assert!(r.exec.find("../plugins/rec1").is_err());
    assert!(r.exec.find("").is_err());
    let noexec = f.plugins().join("noexec");
    fs::write(&noexec, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&noexec, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        r.exec.find("noexec"),
        Err(NetError::PluginNotFound { .. })
    ));
    assert_eq!(r.exec.find("rec1").unwrap(), f.plugins().join("rec1"));
    assert_eq!(r.exec.version("ver").unwrap(), ["0.4.0", "1.0.0"]);
    assert_eq!(f.stdin_of("ver", "VERSION"), json!({"cniVersion": "1.0.0"}));
}

#[test]
fn check_rules() {
    let f = Fake::new();
    let r = f.runner();
    let a = attachment();
    r.check(&net("0.3.1", json!([{"type": "rec1"}])), &a)
        .unwrap();
    let mut disabled = net("0.4.0", json!([{"type": "rec1"}]));
    disabled.disable_check = true;
    r.check(&disabled, &a).unwrap();
    assert!(f.log().is_empty());
    let n = net("0.4.0", json!([{"type": "rec1"}, {"type": "rec2"}]));
    let e = r.check(&n, &a).unwrap_err();
    assert!(matches!(e, NetError::NoCachedResult { .. }));
    r.cache
        .put("fakenet", "cid123", "eth0", &json!({"c": 1}))
        .unwrap();
    r.check(&n, &a).unwrap();
    assert_eq!(f.log(), ["CHECK rec1", "CHECK rec2"]);
    assert_eq!(f.stdin_of("rec2", "CHECK")["prevResult"], json!({"c": 1}));
}

#[test]
fn loopback_down_without_netns() {
    let f = Fake::new();
    let r = f.runner();
    r.loopback_down("cid", &f.td.path().join("no-such-ns"))
        .unwrap();
    assert!(f.log().is_empty());
}

#[test]
fn plugin_error_text() {
    let e = plugin_failure(
        "n",
        "bridge",
        "ADD",
        "exit status 1",
        br#"{"code":999,"msg":"container veth name provided (eth0) already exists"}"#,
        b"",
    );
    assert_eq!(
        e.to_string(),
        "network \"n\": plugin \"bridge\" (ADD) failed: container veth name provided (eth0) already exists [code 999]"
    );
    let e = plugin_failure(
        "n",
        "bridge",
        "ADD",
        "exit status 1",
        br#"{"code":1,"msg":"incompatible CNI versions","details":"config is \"9.9.9\", plugin supports [\"0.1.0\"]"}"#,
        b"",
    );
    match &e {
        NetError::Plugin { code, details, .. } => {
            assert_eq!(*code, 1);
            assert_eq!(details, "config is \"9.9.9\", plugin supports [\"0.1.0\"]");
        }
        other => panic!("{other:?}"),
    }
    let e = plugin_failure("n", "p", "DEL", "exit status 3", b"oops", b"panic: x\n");
    assert_eq!(
        e.to_string(),
        "network \"n\": plugin \"p\" (DEL) failed: exit status 3; stderr: panic: x; stdout: oops"
    );
}

const BRIDGE_040: &str = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"cni-podman0","mac":"11:11:11:11:11:11"},{"name":"vetha809fb12","mac":"22:22:22:22:22:22"},{"name":"eth0","mac":"33:33:33:33:33:33","sandbox":"/run/netns/test-cni"}],"ips":[{"version":"4","interface":2,"address":"10.88.0.2/16","gateway":"10.88.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
const BRIDGE_100: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"br","mac":"11:11:11:11:11:11"},{"name":"veth1","mac":"22:22:22:22:22:22"},{"name":"eth0","mac":"33:33:33:33:33:33","sandbox":"/run/netns/x"}],"ips":[{"interface":0,"address":"10.88.0.1/16"},{"interface":2,"address":"10.88.0.2/16","gateway":"10.88.0.1"},{"interface":2,"address":"fd00::2/64"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
const LOOPBACK: &str = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"lo","mac":"00:00:00:00:00:00","sandbox":"/run/netns/test-cni"}],"ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}],"dns":{}}"#;

fn result(s: &str) -> CniResult {
    CniResult {
        network: "n".into(),
        ifname: "eth0".into(),
        raw: serde_json::from_str(s).unwrap(),
    }
}

#[test]
fn result_shapes() {
    let r = result(BRIDGE_040);
    assert_eq!(
        r.ips(),
        [IpInfo {
            address: "10.88.0.2".parse().unwrap(),
            prefix_len: 16,
            gateway: Some("10.88.0.1".parse().unwrap()),
        }]
    );
    assert_eq!(r.mac().as_deref(), Some("33:33:33:33:33:33"));
    let r = result(BRIDGE_100);
    let ips = r.ips();
    assert_eq!(
        ips.len(),
        2,
        "the bridge's own address is not the container's"
    );
    assert_eq!(ips[0].address.to_string(), "10.88.0.2");
    assert_eq!(ips[1].address.to_string(), "fd00::2");
    assert_eq!(ips[1].prefix_len, 64);
    assert_eq!(ips[1].gateway, None);
    let mut lo = result(LOOPBACK);
    lo.ifname = "lo".into();
    assert_eq!(lo.ips().len(), 2);
    assert_eq!(lo.mac().as_deref(), Some("00:00:00:00:00:00"));
    let no_index = result(r#"{"ips":[{"address":"10.0.0.9/24"}]}"#);
    assert_eq!(no_index.ips().len(), 1);
    assert_eq!(no_index.mac(), None);
    let old = result(r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.5/24","gateway":"10.0.0.1"}}"#);
    assert_eq!(old.ips()[0].address.to_string(), "10.0.0.5");
    let v = r.to_value();
    assert_eq!(v["network"], "n");
    assert_eq!(v["ifname"], "eth0");
    assert_eq!(CniResult::from_value(&v).unwrap(), r);
    assert!(CniResult::from_value(&json!({"network": "n"})).is_none());
}

#[test]
fn cni_args_minimal() {
    let mut a = attachment();
    a.static_ip = None;
    a.mac = None;
    assert_eq!(
        a.cni_args(),
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=cid123"
    );
}
