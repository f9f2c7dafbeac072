//! Tests of the OCI spec generation (`spec.rs`).
use super::*;
use crate::user::tests::rootfs;

#[test]
fn namespaces_and_mounts() {
    let r = rootfs();
    let mut input = SpecInput::new("ctr1", r.path(), vec!["true".into()]);
    input.namespaces.net = NsMode::Join("/run/netns/pod1".into());
    input.namespaces.ipc = NsMode::Join("/proc/42/ns/ipc".into());
    input.namespaces.uts = NsMode::Host;
    input.hostname = Some("ignored".into());
    let spec = generate_spec(&input).unwrap_or_else(|e| panic!("{e}"));
    let v = serde_json::to_value(&spec).unwrap_or_else(|e| panic!("{e}"));
    let ns = v["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| ns.iter().find(|n| n["type"] == t).cloned();
    assert_eq!(
        find("network").map(|n| n["path"].clone()),
        Some("/run/netns/pod1".into())
    );
    assert_eq!(
        find("ipc").map(|n| n["path"].clone()),
        Some("/proc/42/ns/ipc".into())
    );
    assert!(find("uts").is_none());
    assert!(find("pid").is_some_and(|n| n.get("path").is_none()));
    assert!(find("mount").is_some());
    assert_eq!(v["hostname"], "");
    assert_eq!(v["linux"]["cgroupsPath"], "/rpod_parent/libpod-ctr1");
    let mounts = v["mounts"].as_array().cloned().unwrap_or_default();
    let sys = mounts.iter().find(|m| m["destination"] == "/sys").cloned();
    assert_eq!(sys.map(|m| m["type"].clone()), Some("sysfs".into()));
    let shm = mounts
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .cloned();
    assert!(shm.is_some_and(|m| m["options"].to_string().contains("size=65536k")));
    let caps = v["process"]["capabilities"]["bounding"]
        .as_array()
        .map(|a| a.len());
    assert_eq!(caps, Some(12));
    assert_eq!(
        v["linux"]["maskedPaths"].as_array().map(|a| a.len()),
        Some(11)
    );
    assert!(v["process"]["env"].to_string().contains("PATH="));

    // host network: /sys is a read-only rbind, no netns entry
    input.namespaces.net = NsMode::Host;
    input.shm_size = 1024 * 1024;
    let v = serde_json::to_value(generate_spec(&input).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let mounts = v["mounts"].as_array().cloned().unwrap_or_default();
    let sys = mounts
        .iter()
        .find(|m| m["destination"] == "/sys")
        .cloned()
        .unwrap_or_default();
    assert_eq!(sys["type"], "bind");
    assert!(sys["options"].to_string().contains("rbind"));
    assert!(sys["options"].to_string().contains("\"ro\""));
    assert!(!v["linux"]["namespaces"].to_string().contains("network"));
    assert!(v["mounts"].to_string().contains("size=1024k"));
}

#[test]
fn write_is_atomic_and_readable() {
    let r = rootfs();
    let bundle = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = SpecInput::new("w", r.path(), vec!["echo".into(), "hi".into()]);
    write_spec_for(bundle.path(), &input).unwrap_or_else(|e| panic!("{e}"));
    let back = Spec::load(bundle.path().join("config.json")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        back.process().as_ref().and_then(|p| p.args().clone()),
        Some(vec!["echo".to_string(), "hi".to_string()])
    );
    let names: Vec<_> = std::fs::read_dir(bundle.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
