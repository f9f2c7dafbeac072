//! Refresh after a (simulated) reboot on real runc + conmon: states reset, exit codes kept,
//! lock IDs reserved, and exactly one of many concurrent commands refreshing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use common::{expect_code, expect_ok, expect_stderr_has, sandbox, text, Sandbox};

/// Lock ID of every container (by ID) and pod (by `pod:<ID>`), from `inspect` / `pod inspect`.
fn lock_ids(sb: &Sandbox) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for id in sb.all_ids() {
        let v = sb.inspect(&id);
        m.insert(id, v["LockID"].as_u64().unwrap());
    }
    for p in sb.pod_ps_json() {
        let id = p["Id"].as_str().unwrap();
        let v = sb.pod_inspect(id);
        m.insert(format!("pod:{id}"), v["LockID"].as_u64().unwrap());
    }
    m
}

/// `(State, ExitCode)` of every container by name.
fn states(sb: &Sandbox) -> BTreeMap<String, (String, i64)> {
    sb.ps_json()
        .iter()
        .map(|c| {
            (
                c["Names"][0].as_str().unwrap().to_owned(),
                (
                    c["State"].as_str().unwrap().to_owned(),
                    c["ExitCode"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Checks the state right after a reboot: the first command refreshed (alive file written),
/// every container is configured (exited ones keep their exit code), every object kept its lock
/// ID and holds it, and a new container gets an unused ID.
fn check_after_reboot(sb: &Sandbox, before: &BTreeMap<String, u64>, exited: &[(&str, i64)]) {
    let out = sb
        .cmd()
        .args(["--log-level", "info", "ps", "-a"])
        .output()
        .unwrap();
    expect_ok(&out);
    expect_stderr_has(&out, "refreshing state after a reboot");
    assert!(sb.tmp.path().join("alive").is_file());
    for (name, (state, code)) in states(sb) {
        match exited.iter().find(|(n, _)| *n == name) {
            Some((_, want)) => {
                assert_eq!(state, "exited", "{name}");
                assert_eq!(code, *want, "{name}");
            }
            None => assert_eq!(state, "configured", "{name}"),
        }
    }
    let after = lock_ids(sb);
    assert_eq!(&after, before, "lock IDs changed across the reboot");
    let distinct: BTreeSet<u64> = after.values().copied().collect();
    assert_eq!(distinct.len(), after.len(), "shared lock IDs: {after:?}");
    assert_eq!(sb.held_locks(), after.len() as u64);
    // A new object must not get a lock ID already in use.
    let id = sb.create_ctr(&["--name", "fresh"], &["true"]);
    let lock = sb.inspect(&id)["LockID"].as_u64().unwrap();
    assert!(!distinct.contains(&lock), "new container got lock {lock}");
    assert_eq!(sb.held_locks(), after.len() as u64 + 1);
    sb.ok(&["rm", "fresh"]);
    assert_eq!(sb.held_locks(), after.len() as u64);
    // Nothing runs: the pods are not running either, and keep their cgroup paths.
    assert!(sb.ok(&["ps", "-q"]).is_empty());
    for p in sb.pod_ps_json() {
        let id = p["Id"].as_str().unwrap();
        assert_eq!(p["Status"], "Created", "{p}");
        assert_eq!(
            sb.pod_inspect(id)["CgroupPath"].as_str().unwrap(),
            format!("{}/{id}", sb.cgroup_parent()),
            "pod {id}"
        );
    }
}

#[test]
fn reboot_resets_state_and_keeps_locks() {
    let Some(sb) = sandbox() else { return };
    let out = sb.run_ctr(&["--name", "e3"], &["sh", "-c", "exit 3"]);
    expect_code(&out, 3);
    let out = sb.run_ctr(&["--name", "e0"], &["true"]);
    expect_code(&out, 0);
    sb.run_detached("r1", &["sleep", "100"]);
    sb.create_ctr(&["--name", "c1"], &["true"]);
    sb.ok(&["pod", "create", "--name", "pa"]);
    sb.create_ctr(&["--pod", "pa", "--name", "pm"], &["sleep", "100"]);
    sb.ok(&["pod", "start", "pa"]);
    sb.ok(&["pod", "create", "--name", "pb", "--share", "pid,net"]);
    sb.create_ctr(&["--pod", "pb", "--name", "pbm"], &["sleep", "100"]);
    let before = lock_ids(&sb);
    // 6 containers + 2 infra containers + 2 pods.
    assert_eq!(before.len(), 10, "{before:?}");
    assert_eq!(sb.held_locks(), 10);
    let ids = sb.all_ids();
    let exited = [("e3", 3), ("e0", 0)];

    sb.simulate_reboot(&ids);
    check_after_reboot(&sb, &before, &exited);

    // Everything works again: start, stop, restart.
    sb.ok(&["pod", "start", "pa", "pb"]);
    sb.ok(&["start", "r1", "c1"]);
    let out = sb.run(&["start", "-a", "e3"]);
    expect_code(&out, 3);
    let running = states(&sb);
    for n in ["r1", "pm", "pbm"] {
        assert_eq!(running[n].0, "running", "{n}: {running:?}");
    }
    assert_eq!(sb.ok(&["wait", "c1"]).trim(), "0");

    // c1 (`true`) has exited: wait for conmon's cleanup command to mark it exited.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while states(&sb)["c1"].0 != "exited" && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(states(&sb)["c1"], ("exited".to_owned(), 0));

    // A second reboot while things run; this time the lock segment survives with the old
    // allocations (only the tmp dir is wiped): refresh must not double-allocate.
    let ids = sb.all_ids();
    sb.simulate_reboot_with(&ids, false);
    check_after_reboot(&sb, &before, &[("e3", 3), ("e0", 0), ("c1", 0)]);

    // And once more the whole cycle, then remove everything.
    sb.ok(&["pod", "start", "pa", "pb"]);
    sb.ok(&["start", "r1"]);
    sb.ok(&["stop", "-t", "1", "r1"]);
    sb.ok(&["pod", "stop", "-t", "1", "pa", "pb"]);
    assert!(sb.ok(&["ps", "-q"]).is_empty());
    sb.ok(&["pod", "rm", "pa", "pb"]);
    sb.ok(&["rm", "e3", "e0", "r1", "c1"]);
    sb.assert_empty();
}

#[test]
fn concurrent_commands_after_reboot_refresh_once() {
    let Some(sb) = sandbox() else { return };
    let out = sb.run_ctr(&["--name", "e3"], &["sh", "-c", "exit 3"]);
    expect_code(&out, 3);
    sb.run_detached("r1", &["sleep", "100"]);
    sb.ok(&["pod", "create", "--name", "p"]);
    let before = lock_ids(&sb);
    let ids = sb.all_ids();
    sb.simulate_reboot(&ids);

    let children: Vec<_> = (0..8)
        .map(|_| {
            sb.cmd()
                .args(["--log-level", "info", "ps", "-a", "--no-trunc"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut refreshes = 0;
    let mut listings = BTreeSet::new();
    for out in &outputs {
        expect_ok(out);
        refreshes += text(&out.stderr)
            .lines()
            .filter(|l| l.contains("refreshing state after a reboot"))
            .count();
        let mut ids: Vec<String> = text(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect();
        ids.sort();
        listings.insert(ids);
    }
    assert_eq!(refreshes, 1, "refreshes: {refreshes}");
    assert_eq!(listings.len(), 1, "different listings: {listings:?}");
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listings.into_iter().next().unwrap(), want);
    assert_eq!(lock_ids(&sb), before);
    assert_eq!(sb.held_locks(), before.len() as u64);
    let st = states(&sb);
    assert_eq!(st["e3"], ("exited".to_owned(), 3));
    assert_eq!(st["r1"].0, "configured");
    sb.ok(&["pod", "rm", "p"]);
    sb.ok(&["rm", "e3", "r1"]);
    sb.assert_empty();
}

/// A container from an image across a reboot: the refresh forgets its mount (the reboot undid
/// it), it starts again on its layer, and removal leaves no layer and no mount.
#[test]
fn image_container_survives_a_reboot() {
    let Some(sb) = sandbox() else { return };
    sb.import_rootfs_image("rb");
    let id = sb
        .ok(&[
            "run",
            "-d",
            "--name",
            "img",
            "rb",
            "sh",
            "-c",
            "echo up >> /data; sleep 999",
        ])
        .trim()
        .to_owned();
    assert!(
        !sb.mounts_under(&sb.path("root")).is_empty(),
        "running: mounted"
    );
    sb.simulate_reboot(std::slice::from_ref(&id));
    assert!(sb.mounts_under(&sb.path("root")).is_empty());
    expect_ok(&sb.run(&["ps", "-a"]));
    expect_ok(&sb.run(&["start", "img"]));
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || { sb.ok(&["exec", "img", "cat", "/data"]) == "up\nup\n" }
    ));
    let mounts = std::fs::read_to_string(sb.path("runroot/overlay-layers/mounts.json")).unwrap();
    assert!(
        mounts.contains(": 1"),
        "one mount count after the restart: {mounts}"
    );
    expect_ok(&sb.run(&["rm", "-f", "img"]));
    assert!(
        sb.mounts_under(&sb.path("root")).is_empty(),
        "no mount left"
    );
    let layers = std::fs::read_to_string(sb.path("root/overlay-layers/layers.json")).unwrap();
    assert!(
        !layers.contains("\"rw\": true"),
        "no container layer left: {layers}"
    );
}
