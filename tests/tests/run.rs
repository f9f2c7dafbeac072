//! `rpod run / start / stop / kill / exec / logs / wait / rm` on real runc + conmon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{expect_code, expect_ok, expect_stderr_has, mounts_under, sandbox, text};

#[test]
fn run_rm_echo_prints_hello() {
    let Some(sb) = sandbox() else { return };
    let out = sb.run_ctr(&["--rm"], &["echo", "hello"]);
    expect_code(&out, 0);
    assert_eq!(text(&out.stdout), "hello\n");
    // Removed (by rpod run or by conmon's cleanup command, whichever came first).
    sb.assert_removed_soon();
}

#[test]
fn exit_code_streams_and_logs() {
    let Some(sb) = sandbox() else { return };
    let out = sb.run_ctr(
        &["--name", "s"],
        &["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 7"],
    );
    expect_code(&out, 7);
    assert_eq!(text(&out.stdout), "out1\nout2\n");
    assert_eq!(text(&out.stderr), "err1\n");
    let logs = sb.run(&["logs", "s"]);
    expect_ok(&logs);
    assert_eq!(text(&logs.stdout), "out1\nout2\n");
    assert_eq!(text(&logs.stderr), "err1\n");
    let tail = sb.ok(&["logs", "--tail", "1", "s"]);
    assert!(tail == "out2\n" || tail.is_empty(), "{tail:?}");
    let ts = sb.ok(&["logs", "--timestamps", "s"]);
    assert!(ts.lines().all(|l| l.len() > 30 && l.contains('T')), "{ts}");
    let ps = sb.ps_json();
    assert_eq!(ps[0]["State"], "exited");
    assert_eq!(ps[0]["ExitCode"], 7);
    assert!(sb.ok(&["ps", "-a"]).contains("Exited (7)"));
    assert_eq!(sb.ok(&["wait", "s"]).trim(), "7");
    // Run it again: start -a re-creates it.
    let again = sb.run(&["start", "-a", "s"]);
    expect_code(&again, 7);
    sb.ok(&["rm", "s"]);
}

#[test]
fn missing_command_is_127_with_runc_message() {
    let Some(sb) = sandbox() else { return };
    let out = sb.run_ctr(&["--rm"], &["/no/such/binary"]);
    expect_code(&out, 127);
    let err = text(&out.stderr);
    assert!(
        err.contains("/no/such/binary") && err.contains("no such file or directory"),
        "{err}"
    );
    let out = sb.run_ctr(&["--rm"], &["nosuchcommand"]);
    expect_code(&out, 127);
    assert!(text(&out.stderr).contains("executable file not found"));
    let out = sb.run_ctr(&["--rm"], &["/etc/passwd"]);
    expect_code(&out, 126);
    sb.assert_removed_soon();
}

#[test]
fn stop_with_timeout_kills_a_term_ignoring_container() {
    let Some(sb) = sandbox() else { return };
    let id = sb.run_detached(
        "stubborn",
        &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
    );
    assert!(sb.ok(&["ps"]).contains("stubborn"));
    let t = Instant::now();
    sb.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(4), "stop took {took:?}");
    assert!(took >= Duration::from_millis(900), "stop took {took:?}");
    assert_eq!(sb.ok(&["wait", "stubborn"]).trim(), "137");
    let v = sb.inspect("stubborn");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 137);
    assert!(!Path::new(&format!("/run/runc/{id}")).exists());
    sb.ok(&["rm", "stubborn"]);
}

#[test]
fn exec_returns_output_and_exit_code() {
    let Some(sb) = sandbox() else { return };
    sb.run_ctr_ok(
        &["-d", "--name", "box", "-e", "GREETING=hi"],
        &["sleep", "100"],
    );
    let out = sb.run(&["exec", "box", "sh", "-c", "echo $GREETING there; exit 3"]);
    expect_code(&out, 3);
    assert_eq!(text(&out.stdout), "hi there\n");
    let out = sb.run(&[
        "exec",
        "-w",
        "/etc",
        "-e",
        "X=1",
        "box",
        "sh",
        "-c",
        "echo $PWD $X",
    ]);
    assert_eq!(text(&out.stdout), "/etc 1\n");
    let out = sb.run(&["exec", "box", "nosuchcmd"]);
    expect_code(&out, 127);
    // Pause and unpause.
    sb.ok(&["pause", "box"]);
    assert!(sb.ok(&["ps"]).contains("Paused"));
    let out = sb.run(&["exec", "box", "true"]);
    expect_code(&out, 125);
    sb.ok(&["unpause", "box"]);
    // rm without -f refuses a running container (podman's exit code 2), with -f stops it.
    let out = sb.run(&["rm", "box"]);
    expect_code(&out, 2);
    // PID 1 ignores SIGTERM without a handler: KILL it.
    sb.ok(&["kill", "-s", "KILL", "box"]);
    assert_eq!(sb.ok(&["wait", "box"]).trim(), "137");
    sb.ok(&["restart", "-t", "1", "box"]);
    assert!(sb.ok(&["ps"]).contains("box"));
    sb.ok(&["rm", "-f", "box"]);
    assert!(sb.ps_json().is_empty());
}

#[test]
fn twenty_parallel_containers_leave_nothing_behind() {
    let Some(sb) = sandbox() else { return };
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let sb = &sb;
                s.spawn(move || sb.run_detached(&format!("p{i}"), &["sleep", "100"]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let running = sb.ok(&["ps", "-q", "--no-trunc"]);
    assert_eq!(running.lines().count(), 20);
    std::thread::scope(|s| {
        for i in 0..20 {
            let sb = &sb;
            s.spawn(move || sb.ok(&["stop", "-t", "1", &format!("p{i}")]));
        }
    });
    let mut all: Vec<&str> = vec!["rm"];
    all.extend(ids.iter().map(String::as_str));
    sb.ok(&all);
    assert!(sb.ps_json().is_empty());
    assert_eq!(sb.held_locks(), 0);
    for id in &ids {
        sb.assert_container_gone(id);
        assert!(
            sb.cgroups_of(id).is_empty(),
            "cgroups left: {:?}",
            sb.cgroups_of(id)
        );
    }
    assert!(
        mounts_under(sb.dir.path()).is_empty(),
        "{:?}",
        mounts_under(sb.dir.path())
    );
}

#[test]
fn container_survives_a_killed_rpod_run() {
    let Some(sb) = sandbox() else { return };
    let mut child = sb
        .ctr_cmd("run", &["--name", "survivor"], &["sleep", "100"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sb.assert_listed_soon("survivor");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let ps = sb.ps_json();
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["State"], "running");
    let pid = ps[0]["Pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    sb.ok(&["stop", "-t", "1", "survivor"]);
    sb.ok(&["rm", "survivor"]);
    assert!(sb.ps_json().is_empty());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(" Z "))
                .unwrap_or(true)
    );
}

#[test]
fn nonexistent_rootfs_leaves_nothing() {
    let Some(sb) = sandbox() else { return };
    let out = sb.run(&["run", "--rm", "--rootfs", "/nonexistent/rootfs", "true"]);
    expect_code(&out, 125);
    expect_stderr_has(&out, "/nonexistent/rootfs");
    assert!(sb.ps_json().is_empty());
    assert_eq!(sb.held_locks(), 0);
    let containers = sb.path("root/libpod/containers");
    assert!(!containers.exists() || std::fs::read_dir(&containers).unwrap().next().is_none());
}

#[test]
fn run_interactive_forwards_stdin() {
    let Some(sb) = sandbox() else { return };
    let mut child = sb
        .ctr_cmd(
            "run",
            &["--rm", "-i"],
            &["sh", "-c", "tr a-z A-Z; echo done >&2; exit 4"],
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\nworld\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 4);
    assert_eq!(text(&out.stdout), "HELLO\nWORLD\n");
    assert_eq!(text(&out.stderr), "done\n");
    sb.assert_removed_soon();
}
