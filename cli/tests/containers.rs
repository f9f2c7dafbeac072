//! `rpod create / ps / inspect / rm / pod …` against the LMDB state, in a sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::process::Stdio;

use common::{json, rootfs, stdout_ok as stdout, Sandbox};

fn create(sb: &Sandbox, extra: &[&str]) -> String {
    sb.create_ctr(extra)
}

fn held_locks(sb: &Sandbox) -> u64 {
    let out = sb.run(["system", "locks", "--format", "json"]);
    json(stdout(&out).as_bytes())["held"].as_u64().unwrap()
}

#[test]
fn create_ps_inspect_rm() {
    let sb = Sandbox::new();
    let id = create(
        &sb,
        &[
            "--name",
            "web",
            "-e",
            "A=1",
            "--label",
            "tier=front",
            "-w",
            "/srv",
            "--hostname",
            "h1",
            "sh",
            "-c",
            "echo hi",
        ],
    );
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let other = create(&sb, &["true"]);
    assert_ne!(id, other);

    // Not running: plain ps shows nothing, -a shows both.
    let out = stdout(&sb.run(["ps", "-q"]));
    assert_eq!(out, "");
    let out = stdout(&sb.run(["ps", "-a"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("CONTAINER ID"));
    assert!(out.contains(&id[..12]) && out.contains("web") && out.contains("sh -c echo hi"));
    assert!(out.contains("Created"));
    let out = stdout(&sb.run(["ps", "-a", "--no-trunc", "-q"]));
    assert!(out.lines().any(|l| l == id));

    // Filters.
    let q = |f: &str| stdout(&sb.run(["ps", "-a", "-q", "--no-trunc", "--filter", f]));
    assert_eq!(q("name=web").trim(), id);
    assert_eq!(q(&format!("id={}", &id[..6])).trim(), id);
    assert_eq!(q("label=tier=front").trim(), id);
    assert_eq!(q("label=tier").trim(), id);
    assert_eq!(q("label=tier=back"), "");
    assert_eq!(q("status=created").lines().count(), 2);
    assert_eq!(q("status=running"), "");
    let out = sb.run(["ps", "-a", "--filter", "bogus=1"]);
    assert_eq!(out.status.code(), Some(125));

    // JSON and inspect.
    let v = json(stdout(&sb.run(["ps", "-a", "--format", "json"])).as_bytes());
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = json(
        stdout(
            &sb.cmd()
                .args(["inspect", "web", &other[..10]])
                .output()
                .unwrap(),
        )
        .as_bytes(),
    );
    let docs = v.as_array().unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["Id"], id.as_str());
    assert_eq!(docs[0]["Name"], "web");
    assert_eq!(docs[0]["State"]["Status"], "configured");
    assert_eq!(docs[0]["Path"], "sh");
    assert_eq!(docs[0]["Config"]["Env"][0], "A=1");
    assert_eq!(docs[0]["Config"]["WorkingDir"], "/srv");
    assert_eq!(docs[0]["Config"]["Hostname"], "h1");
    assert_eq!(docs[0]["Config"]["Labels"]["tier"], "front");
    assert_eq!(docs[1]["Id"], other.as_str());
    assert_eq!(docs[1]["Config"]["Hostname"], &other[..12]);
    let out = sb.run(["inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));

    // Names are unique; lock IDs are distinct.
    let out = sb.run_create(&["--name", "web", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web"));
    assert_eq!(held_locks(&sb), 2);

    // rm: podman's exit codes.
    assert_eq!(stdout(&sb.run(["rm", "web"])).trim(), id);
    let out = sb.run(["rm", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no container with name or ID \"web\" found")
    );
    assert_eq!(held_locks(&sb), 1);
    stdout(&sb.run(["rm", &other]));
    assert_eq!(held_locks(&sb), 0);
    assert_eq!(stdout(&sb.run(["ps", "-aq"])), "");
}

#[test]
fn ambiguous_prefix_has_its_own_error() {
    let sb = Sandbox::new();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(create(&sb, &["true"]));
    }
    // With 40 random IDs, some one-character prefix is shared by two of them.
    let prefix = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|i| i.starts_with(p.as_str())).count() >= 2)
        .unwrap();
    let out = sb.run(["inspect", &prefix]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("prefix") || err.contains("ambiguous") || err.contains("more than one"),
        "{err}"
    );
}

#[test]
fn invalid_names_are_rejected_before_anything_is_written() {
    let sb = Sandbox::new();
    let long = "a".repeat(254);
    for bad in ["../x", "", "a b", long.as_str(), "-x"] {
        let out = sb.run_create(&[&format!("--name={bad}"), "true"]);
        assert_eq!(out.status.code(), Some(125), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid name"),
            "{bad:?}"
        );
        assert!(!sb.path("root").exists(), "state written for {bad:?}");
        assert!(!sb.path("tmp").exists(), "tmp dir written for {bad:?}");
    }
    let out = sb.run(["pod", "create", "--name", "a b"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn missing_rootfs_leaves_no_record_or_lock() {
    let sb = Sandbox::new();
    let out = sb.run(["create", "--rootfs", "/nonexistent/rootfs", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rootfs"));
    assert_eq!(held_locks(&sb), 0);
    assert_eq!(stdout(&sb.run(["ps", "-aq"])), "");
}

#[test]
fn pods_with_and_without_infra() {
    let sb = Sandbox::new();
    let pod = stdout(&sb.run(["pod", "create", "--name", "p1", "--label", "a=b"]))
        .trim()
        .to_owned();
    assert_eq!(pod.len(), 64);
    let member = create(&sb, &["--pod", "p1", "--name", "m1", "sleep", "1"]);
    // Names are shared between pods and containers.
    let out = sb.run_create(&["--name", "p1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    // pod + infra + member.
    assert_eq!(held_locks(&sb), 3);
    let v = json(stdout(&sb.run(["pod", "inspect", "p1"])).as_bytes());
    assert_eq!(v["Id"], pod.as_str());
    assert_eq!(v["NumContainers"], 2);
    let infra = v["InfraContainerId"].as_str().unwrap().to_owned();
    assert_eq!(infra.len(), 64);
    let shared: Vec<&str> = v["SharedNamespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(shared, ["ipc", "net", "uts"]);
    // Members join the infra container's namespaces.
    let m = json(stdout(&sb.run(["inspect", "m1"])).as_bytes());
    assert_eq!(m[0]["Pod"], pod.as_str());
    assert!(m[0]["Dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == infra.as_str()));
    // ps shows members and the infra container; filter by pod name.
    let out = stdout(&sb.run(["ps", "-a", "-q", "--no-trunc", "--filter", "pod=p1"]));
    let listed: HashSet<&str> = out.lines().collect();
    assert_eq!(listed, HashSet::from([member.as_str(), infra.as_str()]));
    // The infra container cannot be removed alone.
    let out = sb.run(["rm", &infra]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("infra container"));
    // pod ps
    let out = stdout(&sb.run(["pod", "ps"]));
    assert!(out.contains("p1") && out.contains(&pod[..12]), "{out}");
    let v = json(stdout(&sb.run(["pod", "ps", "--format", "json"])).as_bytes());
    assert_eq!(v[0]["Containers"].as_array().unwrap().len(), 2);
    // A pod without infra cannot share namespaces and has no infra container.
    let out = sb.run(["pod", "create", "--infra=false", "--share", "net"]);
    assert_eq!(out.status.code(), Some(125));
    let bare = stdout(&sb.run(["pod", "create", "--infra=false", "--name", "bare"]))
        .trim()
        .to_owned();
    let v = json(stdout(&sb.run(["pod", "inspect", "bare"])).as_bytes());
    assert_eq!(v["InfraContainerId"], "");
    assert_eq!(v["NumContainers"], 0);
    assert_eq!(held_locks(&sb), 4);
    // pod rm removes the members and frees every lock.
    assert_eq!(stdout(&sb.run(["pod", "rm", "p1"])).trim(), pod);
    assert_eq!(
        stdout(&sb.cmd().args(["pod", "rm", &bare[..12]]).output().unwrap()).trim(),
        bare
    );
    assert_eq!(held_locks(&sb), 0);
    assert_eq!(stdout(&sb.run(["ps", "-aq"])), "");
    assert_eq!(stdout(&sb.run(["pod", "ps", "-q"])), "");
    let out = sb.run(["pod", "rm", "p1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn renumber_gives_every_object_a_fresh_lock() {
    let sb = Sandbox::new();
    stdout(&sb.run(["pod", "create", "--name", "p"]));
    for _ in 0..3 {
        create(&sb, &["true"]);
    }
    create(&sb, &["--pod", "p", "true"]);
    assert_eq!(held_locks(&sb), 6);
    stdout(&sb.run(["--num-locks", "64", "system", "renumber"]));
    let out = stdout(&sb.run(["--num-locks", "64", "system", "locks", "--format", "json"]));
    let v = json(out.as_bytes());
    assert_eq!(
        (v["total"].as_u64(), v["held"].as_u64()),
        (Some(64), Some(6))
    );
    let ids = stdout(&sb.run(["--num-locks", "64", "ps", "-a", "-q", "--no-trunc"]));
    let mut lock_ids = HashSet::new();
    for id in ids.lines() {
        let d = json(stdout(&sb.run(["--num-locks", "64", "inspect", id])).as_bytes());
        assert!(lock_ids.insert(d[0]["LockID"].as_u64().unwrap()));
    }
    assert_eq!(lock_ids.len(), 5);
}

#[test]
fn reset_removes_everything() {
    let sb = Sandbox::new();
    create(&sb, &["true"]);
    stdout(&sb.run(["pod", "create"]));
    let out = sb.run(["system", "reset"]);
    assert_eq!(out.status.code(), Some(125));
    stdout(&sb.run(["system", "reset", "--force"]));
    assert!(!std::path::Path::new(&format!("/dev/shm{}", sb.lock_name)).exists());
    assert!(!sb.path("root/libpod/rpod_state.mdb").exists());
    assert_eq!(stdout(&sb.run(["ps", "-aq"])), "");
    assert_eq!(held_locks(&sb), 0);
}

#[test]
fn garbage_db_is_a_clear_error() {
    let sb = Sandbox::new();
    create(&sb, &["true"]);
    let db = sb.path("root/libpod/rpod_state.mdb");
    assert!(db.is_file());
    std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    let out = sb.run(["ps", "-a"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The way out: system reset removes the damaged state without reading it.
    stdout(&sb.run(["system", "reset", "--force"]));
    assert!(!db.exists());
    assert_eq!(stdout(&sb.run(["ps", "-aq"])), "");
}

#[test]
fn concurrent_creates_from_eight_processes() {
    let sb = Sandbox::new();
    let rootfs = rootfs(&sb);
    // Make the state once so the children race on creates, not on first-time setup.
    stdout(&sb.run(["system", "locks"]));
    let per = 250;
    let script = format!("for i in $(seq {per}); do \"$0\" \"$@\" || exit 1; done",);
    let exe = assert_cmd::cargo::cargo_bin("rpod");
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(&script).arg(&exe);
            c.env("RPOD_CONFIG_ETC_DIR", sb.path("etc"))
                .env("RPOD_CONFIG_SHARE_DIR", sb.path("share"))
                .env("HOME", sb.path("home"))
                .args(["--root"])
                .arg(sb.path("root"))
                .args(["--runroot"])
                .arg(sb.path("runroot"))
                .args(["--tmpdir"])
                .arg(sb.path("tmp"))
                .args(["--lock-name", &sb.lock_name])
                .args(["--netns", "none", "--cni-config-dir"])
                .arg(sb.path("cni"))
                .args(["create", "--rootfs"])
                .arg(&rootfs)
                .arg("true")
                .stdout(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let mut ids = HashSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        for l in String::from_utf8(out.stdout).unwrap().lines() {
            assert!(ids.insert(l.to_owned()), "duplicate ID {l}");
        }
    }
    assert_eq!(ids.len(), 8 * per);
    let v = json(stdout(&sb.run(["ps", "-a", "--format", "json"])).as_bytes());
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 8 * per);
    let names: HashSet<&str> = list
        .iter()
        .map(|c| c["Names"][0].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 8 * per);
    assert_eq!(held_locks(&sb), 8 * per as u64);
    let ids_listed: HashSet<String> = list
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids_listed, ids);
    // 2000 distinct lock IDs.
    let all: Vec<&String> = ids.iter().collect();
    let v = json(stdout(&sb.cmd().arg("inspect").args(&all).output().unwrap()).as_bytes());
    let locks: HashSet<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["LockID"].as_u64().unwrap())
        .collect();
    assert_eq!(locks.len(), 8 * per);
}

#[test]
fn lost_lock_segment_keeps_lock_ids_unique() {
    let sb = Sandbox::new();
    let a = create(&sb, &["--name", "a", "true"]);
    let b = create(&sb, &["--name", "b", "true"]);
    // The segment disappears while the tmp dir survives (logind RemoveIPC, a manual rm, …).
    std::fs::remove_file(format!("/dev/shm{}", sb.lock_name)).unwrap();
    let c = create(&sb, &["--name", "c", "true"]);
    let ids: Vec<u64> = [a, b, c]
        .iter()
        .map(|id| {
            json(stdout(&sb.run(["inspect", id])).as_bytes())[0]["LockID"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 3, "{ids:?}");
    assert_eq!(held_locks(&sb), 3);
}

#[test]
fn wait_never_reads_paths_given_by_the_user() {
    let sb = Sandbox::new();
    create(&sb, &["true"]);
    let out = sb.run(["wait", "../../../../proc/sys/kernel/pid_max"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn rm_all_and_ignore() {
    let sb = Sandbox::new();
    let a = create(&sb, &["--name", "a", "true"]);
    let b = create(&sb, &["--name", "b", "--network", "none", "true"]);
    let pod = stdout(&sb.run(["pod", "create", "--name", "p"]));
    let c = create(&sb, &["--name", "c", "--pod", "p", "true"]);
    // Unknown networks are refused before anything is written.
    let out = sb.run_create(&["--network", "nosuchnet", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchnet"));
    // A missing name fails, unless ignored.
    let out = sb.run(["rm", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    let out = sb.run(["rm", "-i", "nosuch", "a"]);
    assert_eq!(stdout(&out).trim(), a);
    // --all removes every container but the pod's infra container (it goes with the pod).
    let out = sb.run(["rm", "--all"]);
    let removed: HashSet<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(removed, HashSet::from([b, c]));
    let left = stdout(&sb.run(["ps", "-a", "-q"]));
    assert_eq!(left.lines().count(), 1, "{left}");
    stdout(&sb.run(["pod", "rm", pod.trim()]));
    assert_eq!(stdout(&sb.run(["ps", "-a", "-q"])), "");
    assert_eq!(held_locks(&sb), 0);
}
