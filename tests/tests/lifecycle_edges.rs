//! Edge cases of the container life cycle found in review: a dead conmon, start -a, stopping
//! what is not running, --rm kept across restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    eventually, expect_code, expect_stderr_has, processes_mentioning, sandbox, text, Sandbox,
};

/// PIDs of conmon processes serving container `id`.
fn conmon_pids(id: &str) -> Vec<i32> {
    processes_mentioning(id)
        .into_iter()
        .filter(|p| p.contains("conmon"))
        .filter_map(|p| p.split(':').next().and_then(|n| n.parse().ok()))
        .collect()
}

#[test]
fn a_container_whose_conmon_died_can_be_stopped_and_removed() {
    let Some(sb) = sandbox() else { return };
    let id = sb.run_detached("orphan", &["sleep", "1000"]);
    let pids = conmon_pids(&id);
    assert!(!pids.is_empty(), "no conmon for {id}");
    for p in pids {
        std::process::Command::new("kill")
            .args(["-9", &p.to_string()])
            .status()
            .unwrap();
    }
    let t = Instant::now();
    sb.ok(&["stop", "-t", "1", "orphan"]);
    assert!(t.elapsed() < Duration::from_secs(15));
    let v = sb.inspect("orphan");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], -1);
    sb.ok(&["rm", "orphan"]);
    assert!(eventually(Duration::from_secs(5), || processes_mentioning(
        &id
    )
    .is_empty()));
}

#[test]
fn start_attach_shows_the_output_and_stop_of_an_exited_container_succeeds() {
    let Some(sb) = sandbox() else { return };
    sb.create_ctr(&["--name", "sa"], &["sh", "-c", "echo hello-start; exit 5"]);
    let out = sb.run(&["start", "-a", "sa"]);
    expect_code(&out, 5);
    assert_eq!(text(&out.stdout), "hello-start\n");
    // podman's stop of a container that is not running succeeds.
    let out = sb.run(&["stop", "sa"]);
    expect_code(&out, 0);
    sb.ok(&["rm", "sa"]);
}

#[test]
fn restart_keeps_auto_removal() {
    let Some(sb) = sandbox() else { return };
    sb.run_ctr_ok(&["-d", "--rm", "--name", "rr"], &["sh", "-c", "sleep 1"]);
    sb.ok(&["restart", "-t", "1", "rr"]);
    assert!(sb.ok(&["ps"]).contains("rr"));
    // After the restarted process exits, the container removes itself.
    assert!(
        eventually(Duration::from_secs(10), || sb.ps_json().is_empty()),
        "still listed: {:?}",
        sb.ps_json()
    );
}

#[test]
fn signals_to_a_foreground_run_reach_the_container() {
    let Some(sb) = sandbox() else { return };
    let script = "trap 'echo got-term; exit 42' TERM; while true; do sleep 0.1; done";
    let mut child = sb
        .ctr_cmd("run", &["--rm", "--name", "sig"], &["sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sb.assert_listed_soon("sig");
    std::thread::sleep(Duration::from_millis(300));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    let out = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break child.wait_with_output().unwrap();
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("rpod run did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    expect_code(&out, 42);
    assert_eq!(text(&out.stdout), "got-term\n");
    sb.assert_removed_soon();
}

#[test]
fn exec_sessions_are_recorded_while_they_run() {
    let Some(sb) = sandbox() else { return };
    sb.run_detached("ex", &["sleep", "100"]);
    let exec_ids = || sb.inspect("ex")["ExecIDs"].as_array().unwrap().len();
    assert_eq!(exec_ids(), 0);
    let mut session = sb.cmd().args(["exec", "ex", "sleep", "2"]).spawn().unwrap();
    assert!(eventually(Duration::from_secs(5), || exec_ids() == 1));
    assert!(session.wait().unwrap().success());
    assert_eq!(exec_ids(), 0);
    sb.ok(&["rm", "-f", "ex"]);
}

/// `container cleanup --rm` (conmon's exit command) on an exited container that cannot be
/// removed (here a pod's infra container) reports why it stays and leaves it exited and listed.
#[test]
fn cleanup_rm_of_a_container_that_must_stay_reports_why() {
    let Some(sb) = sandbox() else { return };
    sb.ok(&["pod", "create", "--name", "keep"]);
    sb.ok(&["pod", "start", "keep"]);
    let pod = sb.pod_inspect("keep");
    let infra = pod["InfraContainerId"]
        .as_str()
        .unwrap_or_else(|| panic!("no infra ID in {pod}"))
        .to_owned();
    let pid = sb.inspect(&infra)["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || sb.inspect(&infra)
        ["State"]["Status"]
        == "exited"));
    let out = sb.run(&["container", "cleanup", "--rm", &infra]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("infra"), "{}", text(&out.stderr));
    assert_eq!(sb.inspect(&infra)["State"]["Status"], "exited");
    // The runtime no longer knows it (cleaned up by conmon's exit command or by ours).
    let runc = std::process::Command::new(common::runc_bin())
        .args(["state", &infra])
        .output()
        .unwrap();
    assert!(!runc.status.success(), "{}", text(&runc.stdout));
    sb.ok(&["pod", "rm", "-f", "keep"]);
}

#[test]
fn attach_streams_a_running_container_and_returns_its_exit_code() {
    let Some(sb) = sandbox() else { return };
    sb.run_detached(
        "att",
        &[
            "sh",
            "-c",
            "sleep 1; echo late-out; echo late-err >&2; exit 3",
        ],
    );
    let out = sb.run(&["attach", "--no-stdin", "att"]);
    expect_code(&out, 3);
    assert_eq!(text(&out.stdout), "late-out\n");
    expect_stderr_has(&out, "late-err");
    // Not running any more: a clear error.
    let out = sb.run(&["attach", "att"]);
    expect_code(&out, 125);
    expect_stderr_has(&out, "attach to");
    sb.ok(&["rm", "att"]);
}

#[test]
fn all_flags_apply_to_every_container_in_the_right_state() {
    let Some(sb) = sandbox() else { return };
    for name in ["one", "two"] {
        sb.run_detached(name, &["sleep", "1000"]);
    }
    let status = |sb: &Sandbox| -> Vec<String> {
        let mut v: Vec<String> = sb
            .ps_json()
            .iter()
            .map(|c| c["State"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(sb.ok(&["pause", "--all"]).lines().count(), 2);
    assert_eq!(status(&sb), ["paused", "paused"]);
    // Nothing is running now: kill --all has nothing to do.
    assert_eq!(sb.ok(&["kill", "-a"]), "");
    assert_eq!(sb.ok(&["unpause", "-a"]).lines().count(), 2);
    assert_eq!(status(&sb), ["running", "running"]);
    assert_eq!(sb.ok(&["kill", "-a"]).lines().count(), 2);
    assert!(eventually(Duration::from_secs(10), || status(&sb)
        == ["exited", "exited"]));
    assert_eq!(sb.ok(&["restart", "-a"]).lines().count(), 2);
    assert_eq!(status(&sb), ["running", "running"]);
    // stop --all: sleep as PID 1 ignores SIGTERM, so one second each, then SIGKILL.
    assert_eq!(sb.ok(&["stop", "-a", "-t", "1"]).lines().count(), 2);
    assert_eq!(status(&sb), ["exited", "exited"]);
    sb.ok(&["rm", "-a"]);
    assert!(sb.ps_json().is_empty());
}
