//! Crash consistency (issue 11's findings): an rpod killed in the middle of `start` strands
//! nothing, huge timeouts do not panic, exit files of removed containers do not pile up,
//! nothing rpod creates is writable by others under umask 000, `-e NAME` copies the caller's
//! value and a missing working directory is created.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, expect_code, expect_ok, processes_mentioning, sandbox, text, Sandbox};

/// Delays at which `rpod start` is killed: across its whole run (conmon, runc create, save).
const KILL_DELAYS_MS: &[u64] = &[2, 8, 15, 25, 40, 70];

/// Creates a long-running container and kills `rpod start` of it after `delay`.
fn create_and_kill_start(sb: &Sandbox, name: &str, delay: Duration) -> String {
    let id = sb.create_ctr(&["--name", name], &["sleep", "1000"]);
    let mut child = sb
        .cmd()
        .args(["start", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    id
}

/// For each delay of [`KILL_DELAYS_MS`]: creates container `<prefix>-<i>`, kills `rpod start`
/// of it after the delay and calls `check` with its name, its ID and the delay.
fn each_killed_start(sb: &Sandbox, prefix: &str, mut check: impl FnMut(&str, &str, u64)) {
    for (i, ms) in KILL_DELAYS_MS.iter().enumerate() {
        let name = format!("{prefix}-{i}");
        let id = create_and_kill_start(sb, &name, Duration::from_millis(*ms));
        check(&name, &id, *ms);
    }
}

fn runc_knows(id: &str) -> bool {
    Path::new(&format!("/run/runc/{id}")).exists()
}

#[test]
fn start_after_a_killed_start_succeeds() {
    let Some(sb) = sandbox() else { return };
    each_killed_start(&sb, "killed-start", |name, id, ms| {
        let out = sb.run(&["start", name]);
        assert!(
            out.status.success(),
            "start after a start killed at {ms} ms: {}",
            text(&out.stderr)
        );
        assert_eq!(sb.inspect(name)["State"]["Status"], "running", "{ms} ms");
        sb.ok(&["rm", "-f", name]);
        sb.assert_container_gone(id);
    });
}

#[test]
fn rm_after_a_killed_start_leaves_nothing() {
    let Some(sb) = sandbox() else { return };
    each_killed_start(&sb, "killed-rm", |name, id, ms| {
        sb.ok(&["rm", "-f", name]);
        assert!(
            eventually(Duration::from_secs(5), || processes_mentioning(id)
                .is_empty()
                && !runc_knows(id)),
            "killed at {ms} ms, left: {:?}, runc state: {}",
            processes_mentioning(id),
            runc_knows(id)
        );
        sb.assert_container_gone(id);
        assert!(sb.cgroups_of(id).is_empty(), "cgroup left ({ms} ms)");
    });
    assert_eq!(sb.held_locks(), 0);
}

#[test]
fn huge_timeouts_do_not_panic() {
    let Some(sb) = sandbox() else { return };
    sb.run_detached(
        "slow",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    for args in [
        ["restart", "-t", "9223372036854775807", "slow"],
        ["stop", "-t", "18446744073709551615", "slow"],
    ] {
        let out = sb.run(&args);
        assert!(
            out.status.success() && !text(&out.stderr).contains("panicked"),
            "{args:?}: {:?} {}",
            out.status.code(),
            text(&out.stderr)
        );
    }
    let out = sb.run(&["stop", "-t", "18446744073709551616", "slow"]);
    expect_code(&out, 125);
    sb.ok(&["pod", "create", "--name", "p"]);
    sb.ok(&["pod", "start", "p"]);
    let out = sb.run(&["pod", "stop", "-t", "9223372036854775807", "p"]);
    assert!(
        out.status.success() && !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exit_files_of_removed_containers_do_not_pile_up() {
    let Some(sb) = sandbox() else { return };
    for _ in 0..5 {
        sb.run_ctr_ok(&["--rm"], &["true"]);
    }
    sb.run_ctr_ok(&["--name", "kept"], &["true"]);
    let kept = sb.inspect("kept")["Id"].as_str().unwrap().to_owned();
    let exits = sb.tmp.path().join("exits");
    let names: Vec<String> = std::fs::read_dir(&exits)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "removed")
        .collect();
    // Only the container that still exists has an exit file; removed ones wait in
    // `removed/` for late waiters and are pruned after a minute.
    assert!(
        names.iter().all(|n| n.starts_with(&kept)),
        "exit files of removed containers: {names:?}"
    );
    let removed = std::fs::read_dir(exits.join("removed")).unwrap().count();
    assert!(removed <= 5, "{removed}");
}

/// Every file and directory below `dir` that is group- or world-writable (symlinks and
/// sockets aside).
fn writable_by_others(dir: &Path, found: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        let ft = m.file_type();
        if ft.is_symlink() || std::os::unix::fs::FileTypeExt::is_socket(&ft) {
            continue;
        }
        if m.mode() & 0o022 != 0 && m.permissions().mode() & 0o1000 == 0 {
            found.push(format!("{:o} {}", m.mode() & 0o7777, e.path().display()));
        }
        if ft.is_dir() {
            writable_by_others(&e.path(), found);
        }
    }
}

#[test]
fn nothing_is_writable_by_others_under_umask_000() {
    let Some(sb) = sandbox() else { return };
    let rpod = sb.cmd();
    let args: Vec<String> = rpod
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let envs: Vec<String> = rpod
        .get_envs()
        .filter_map(|(k, v)| {
            Some(format!(
                "{}='{}'",
                k.to_string_lossy(),
                v?.to_string_lossy()
            ))
        })
        .collect();
    let script = format!(
        "umask 000; {envs} '{bin}' {args} run -d --name u --rootfs '{rootfs}' sleep 1000 && \
         {envs} '{bin}' {args} pod create --name up && {envs} '{bin}' {args} pod start up",
        envs = envs.join(" "),
        bin = rpod.get_program().to_string_lossy(),
        args = args.join(" "),
        rootfs = sb.rootfs.display(),
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    expect_ok(&out);
    let mut found = Vec::new();
    for d in [
        sb.path("root"),
        sb.path("runroot"),
        sb.tmp.path().to_owned(),
    ] {
        writable_by_others(&d, &mut found);
    }
    let config = sb
        .path("root/libpod/containers")
        .join(sb.inspect("u")["Id"].as_str().unwrap())
        .join("config.json");
    assert_eq!(
        config.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(found.is_empty(), "writable by others: {found:#?}");
}

#[test]
fn env_name_copies_the_callers_value_and_workdir_is_created() {
    let Some(sb) = sandbox() else { return };
    let out = sb
        .cmd()
        .env("RPOD_TEST_COPIED", "from-caller")
        .env_remove("RPOD_TEST_UNSET")
        .args([
            "run",
            "--rm",
            "-e",
            "RPOD_TEST_COPIED",
            "-e",
            "RPOD_TEST_UNSET",
        ])
        .args(["-w", "/no/such/dir", "--rootfs"])
        .arg(&sb.rootfs)
        .args([
            "sh",
            "-c",
            "echo \"$RPOD_TEST_COPIED:${RPOD_TEST_UNSET-unset}:$(pwd)\"",
        ])
        .output()
        .unwrap();
    expect_ok(&out);
    assert_eq!(text(&out.stdout).trim(), "from-caller:unset:/no/such/dir");
    for bad in ["=x", "", "A\0B=1"] {
        if bad.contains('\0') {
            continue; // argv cannot carry NUL
        }
        let out = sb.run(&["create", "-e", bad, "--rootfs", "/", "true"]);
        assert_eq!(out.status.code(), Some(125), "{bad:?}");
    }
}

#[test]
fn reset_of_a_damaged_database_stops_the_containers_it_cannot_read() {
    let Some(sb) = sandbox() else { return };
    let id = sb.run_detached("sleeper", &["sleep", "1000"]);
    let db = sb.path("root/libpod/rpod_state.mdb");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(1)
        .unwrap();
    expect_code(&sb.run(&["ps", "-a"]), 125);
    sb.ok(&["system", "reset", "--force"]);
    sb.assert_container_gone(&id);
    assert!(!runc_knows(&id));
}

#[test]
fn a_wiped_tmp_dir_does_not_strand_running_containers() {
    let Some(sb) = sandbox() else { return };
    let id = sb.run_detached("sleeper", &["sleep", "1000"]);
    for e in std::fs::read_dir(sb.tmp.path()).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    // The next command takes the wipe for a reboot; the container that still ran is deleted
    // rather than left running behind a record that says it is not.
    let ps = sb.ps_json();
    assert_eq!(ps.len(), 1);
    assert!(
        eventually(Duration::from_secs(5), || processes_mentioning(&id)
            .is_empty()
            && !runc_knows(&id)),
        "{:?}",
        processes_mentioning(&id)
    );
    // And it starts again.
    sb.ok(&["start", &id]);
    assert_eq!(sb.inspect(&id)["State"]["Status"], "running");
    sb.ok(&["rm", "-f", &id]);
    sb.assert_container_gone(&id);
}

/// Unmounts a tmpfs when dropped (also when the test fails).
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_gives_clear_errors_and_reset_still_works() {
    let Some(sb) = sandbox() else { return };
    let root = sb.path("root");
    std::fs::create_dir_all(&root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _guard = Mounted(root.clone());
    let label = format!("x={}", "a".repeat(3000));
    let mut last = None;
    for _ in 0..400 {
        let out = sb.run(&[
            "create",
            "--label",
            &label,
            "--rootfs",
            sb.rootfs.to_str().unwrap(),
            "sleep",
            "1000",
        ]);
        if !out.status.success() {
            last = Some(out);
            break;
        }
    }
    let out = last.expect("the 600 KiB static dir never filled up");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    // The kernel reports a full tmpfs to LMDB's commit as ENOSPC, or as EIO when the write went
    // through the map: either way the error says what failed and where.
    assert!(
        err.contains("No space left on device") || err.contains("Input/output error"),
        "{err}"
    );
    assert!(err.contains(&root.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Listing still works, and a start (a state write, a bundle, a spec) on the full disk fails
    // cleanly or succeeds, but never by a signal.
    let ids = sb.ok(&["ps", "-a", "-q", "--no-trunc"]);
    let first = ids.lines().next().unwrap().to_owned();
    let out = sb.run(&["start", &first]);
    assert!(out.status.code().is_some(), "{:?}", out.status);
    assert!(!text(&out.stderr).contains("panicked"));
    sb.ok(&["system", "reset", "--force"]);
    assert!(sb.run(&["ps", "-a"]).status.success());
}
