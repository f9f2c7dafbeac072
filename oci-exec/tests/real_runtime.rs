//! End-to-end tests against the real runc and conmon with a busybox rootfs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{can_run, TestCtr};
use rpod_oci::{ExecOptions, LogOptions, LogStream, OciError, RuntimeStatus};

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

#[test]
fn echo_hello_lifecycle() {
    let mut c = test_ctr!("echo");
    let t0 = Instant::now();
    let created = c.create(&["echo", "hello"]).unwrap();
    let t_create = t0.elapsed();
    assert!(created.pid > 0);
    assert!(created.conmon_pid.is_some());
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Created);
    c.rt.start(&c.id).unwrap();
    let t_start = t0.elapsed();
    let code = c.rt.wait_exit(&c.id, WAIT).unwrap();
    let t_exit = t0.elapsed();
    assert_eq!(code, Some(0));
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Stopped);
    c.rt.delete(&c.id, true).unwrap();
    let t_delete = t0.elapsed();
    eprintln!(
        "TIMING create {:?} start {:?} exit {:?} delete {:?} (cumulative)",
        t_create, t_start, t_exit, t_delete
    );
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    assert!(log.contains(" stdout F hello\n"), "log: {log:?}");
    let entries = rpod_oci::read_log(&c.log_path(), &LogOptions::default()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].text, "hello");
    assert_eq!(entries[0].stream, LogStream::Stdout);
    let info = c.rt.exit_info(&c.id, Some(&c.bundle)).unwrap().unwrap();
    assert_eq!(info.code, 0);
    assert!(!info.oom_killed);
    assert!(matches!(c.rt.state(&c.id), Err(OciError::NotFound { .. })));
    c.assert_clean();
}

#[test]
fn both_streams_and_exit_code() {
    let mut c = test_ctr!("streams");
    c.run(&["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(c.rt.wait_exit(&c.id, WAIT).unwrap(), Some(7));
    c.rt.delete(&c.id, true).unwrap();
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    assert!(log.contains(" stdout F out\n"), "{log}");
    assert!(log.contains(" stderr F err\n"), "{log}");
    let entries = rpod_oci::read_log(
        &c.log_path(),
        &LogOptions {
            tail: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(entries.len(), 1);
    c.assert_clean();
}

#[test]
fn missing_command_is_127() {
    let mut c = test_ctr!("missing");
    let err = c.create(&["/no/such/binary"]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OciError::CreateFailed { .. }), "{err:?}");
    assert!(msg.contains("/no/such/binary"), "{msg}");
    assert!(!msg.contains("json message"), "{msg}");
    assert_eq!(err.create_exit_code(), 127);
    assert!(matches!(c.rt.state(&c.id), Err(OciError::NotFound { .. })));
    c.assert_clean();
}

#[test]
fn nonexistent_rootfs() {
    let mut c = test_ctr!("norootfs");
    let mut spec = c.spec(&["true"]);
    spec.rootfs = c.dir.path().join("no-such-rootfs");
    let err = c.create_with(&spec).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no-such-rootfs"), "{msg}");
    assert_eq!(err.create_exit_code(), 125);
    assert!(matches!(c.rt.state(&c.id), Err(OciError::NotFound { .. })));
    assert!(!std::path::Path::new("/run/runc").join(&c.id).exists());
    c.assert_clean();
}

#[test]
fn stop_escalates_to_kill() {
    let mut c = test_ctr!("stop");
    c.run(&["sh", "-c", "trap \"\" TERM; sleep 100"]);
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Running);
    let t0 = Instant::now();
    let code = c.rt.stop(&c.id, Duration::from_secs(1), None).unwrap();
    let took = t0.elapsed();
    eprintln!("TIMING stop(1s) of TERM-ignoring container took {took:?}");
    assert_eq!(code, 137);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    c.rt.delete(&c.id, true).unwrap();
    c.assert_clean();
}

#[test]
fn stop_honours_term() {
    let mut c = test_ctr!("stopterm");
    // A shell with a TERM trap exits promptly on SIGTERM.
    c.run(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.05; done",
    ]);
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let code = c.rt.stop(&c.id, Duration::from_secs(10), None).unwrap();
    assert_eq!(code, 42);
    assert!(t0.elapsed() < Duration::from_secs(3));
    // stopping again is a no-op that returns the recorded code
    assert_eq!(c.rt.stop(&c.id, Duration::from_secs(1), None).unwrap(), 42);
    c.rt.delete(&c.id, true).unwrap();
    c.assert_clean();
}

#[test]
fn exec_output_and_code() {
    let mut c = test_ctr!("exec");
    c.run(&["sleep", "100"]);
    let out =
        c.rt.exec(
            &c.id,
            &ExecOptions {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hi; echo \"$FOO\" >&2; exit 3".into(),
                ],
                env: vec!["FOO=bar".into()],
                cwd: Some("/tmp".into()),
                user: Some("65534:65534".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "bar\n");

    let who =
        c.rt.exec(
            &c.id,
            &ExecOptions {
                args: vec!["sh".into(), "-c".into(), "id -u; pwd".into()],
                cwd: Some("/tmp".into()),
                user: Some("65534:65534".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&who.stdout), "65534\n/tmp\n");

    let err =
        c.rt.exec(
            &c.id,
            &ExecOptions {
                args: vec!["/no/such/cmd".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/cmd"), "{err}");
    assert_eq!(err.create_exit_code(), 127);

    let code = c.rt.stop(&c.id, Duration::from_secs(1), None).unwrap();
    assert_eq!(code, 137);
    c.rt.delete(&c.id, true).unwrap();
    c.assert_clean();
}

#[test]
fn pause_and_resume() {
    let mut c = test_ctr!("pause");
    c.run(&["sleep", "100"]);
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Running);
    c.rt.pause(&c.id).unwrap();
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Paused);
    c.rt.resume(&c.id).unwrap();
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Running);
    c.rt.kill(&c.id, 9, false).unwrap();
    assert_eq!(c.rt.wait_exit(&c.id, WAIT).unwrap(), Some(137));
    c.rt.delete(&c.id, true).unwrap();
    c.assert_clean();
}

#[test]
fn follow_logs_until_exit() {
    let mut c = test_ctr!("follow");
    c.run(&[
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.1; done; printf tail",
    ]);
    let mut got = Vec::new();
    rpod_oci::follow_log(
        &c.log_path(),
        &LogOptions::default(),
        &c.exits,
        &c.id,
        |e| {
            got.push((e.stream, e.text, e.partial));
            true
        },
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            (LogStream::Stdout, "line1".to_string(), false),
            (LogStream::Stdout, "line2".to_string(), false),
            (LogStream::Stdout, "line3".to_string(), false),
            (LogStream::Stdout, "tail".to_string(), true),
        ]
    );
    assert_eq!(c.rt.wait_exit(&c.id, WAIT).unwrap(), Some(0));
    c.rt.delete(&c.id, true).unwrap();
    c.assert_clean();
}

#[test]
fn ten_parallel_waiters() {
    if !can_run() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("rpod-oci-par.")
        .tempdir()
        .unwrap();
    let exits = dir.path().join("exits");
    let mut ctrs = Vec::new();
    for i in 0..10 {
        let mut c = TestCtr::new(&format!("par{i}"));
        // all ten share one exit dir, hence one inotify watch
        let mut cfg = c.rt.config().clone();
        cfg.exit_dir = exits.clone();
        c.rt = rpod_oci::OciRuntime::new(cfg).unwrap();
        c.exits = exits.clone();
        ctrs.push(c);
    }
    for (i, c) in ctrs.iter_mut().enumerate() {
        let script = format!("sleep 0.{}; exit {}", 2 + i % 3, 10 + i);
        c.run(&["sh", "-c", &script]);
    }
    let t0 = Instant::now();
    let codes: Vec<Option<i32>> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .map(|c| s.spawn(move || c.rt.wait_exit(&c.id, WAIT).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("TIMING 10 parallel waits done after {:?}", t0.elapsed());
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(*code, Some(10 + i as i32));
    }
    for c in &ctrs {
        c.rt.delete(&c.id, true).unwrap();
    }
    for c in &ctrs {
        c.assert_clean();
    }
}

fn log_texts(c: &TestCtr) -> Vec<String> {
    rpod_oci::read_log(&c.log_path(), &LogOptions::default())
        .unwrap()
        .into_iter()
        .map(|e| e.text)
        .collect()
}

#[test]
fn spec_features_in_real_container() {
    let mut c = test_ctr!("features");
    let mut spec = c.spec(&[
        "sh",
        "-c",
        "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '; ulimit -n; ulimit -Hn; id -u; id -g; hostname; \
         touch /x 2>/dev/null && echo rw || echo ro; echo \"$HOME\"; df -k /dev/shm | tail -n 1 | awk '{print $2}'",
    ]);
    spec.user = "nobody".into();
    spec.rootfs_readonly = true;
    spec.shm_size = 8 * 1024 * 1024;
    spec.no_new_privileges = true;
    c.create_with(&spec).unwrap();
    c.rt.start(&c.id).unwrap();
    assert_eq!(c.rt.wait_exit(&c.id, WAIT).unwrap(), Some(0));
    c.rt.delete(&c.id, true).unwrap();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let hard = hard.to_string();
    assert_eq!(
        log_texts(&c),
        vec![
            "lo",
            &hard,
            &hard,
            "65534",
            "65534",
            "rpodtest",
            "ro",
            "/nonexistent",
            "8192"
        ]
    );
    c.assert_clean();
}

#[test]
fn join_network_namespace() {
    let mut infra = test_ctr!("infra");
    let created = infra.run(&["sleep", "100"]);
    let ns = format!("/proc/{}/ns/net", created.pid);
    let want = std::fs::read_link(&ns)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut member = TestCtr::new("member");
    let mut spec = member.spec(&["readlink", "/proc/self/ns/net"]);
    spec.namespaces.net = rpod_oci::NsMode::Join(ns.into());
    member.create_with(&spec).unwrap();
    member.rt.start(&member.id).unwrap();
    assert_eq!(member.rt.wait_exit(&member.id, WAIT).unwrap(), Some(0));
    member.rt.delete(&member.id, true).unwrap();
    assert_eq!(log_texts(&member), vec![want]);
    assert_eq!(
        infra
            .rt
            .stop(&infra.id, Duration::from_secs(0), None)
            .unwrap(),
        137
    );
    infra.rt.delete(&infra.id, true).unwrap();
    member.assert_clean();
    infra.assert_clean();
}

#[test]
fn stop_created_container_and_recreate_same_id() {
    let mut c = test_ctr!("created");
    c.create(&["sleep", "100"]).unwrap();
    assert_eq!(c.rt.state(&c.id).unwrap().status, RuntimeStatus::Created);
    // `runc init` (Go) dies from SIGTERM with status 2 before exec.
    let code = c.rt.stop(&c.id, Duration::from_millis(200), None).unwrap();
    assert_ne!(code, 0);
    c.rt.delete(&c.id, true).unwrap();
    c.rt.remove_conmon_files(&c.id, &c.bundle).unwrap();
    assert!(c.exits.join(format!("{}-old", c.id)).exists());
    // Same ID again: the stale exit file must not be mistaken for the new run.
    c.run(&["sh", "-c", "exit 5"]);
    assert_eq!(c.rt.wait_exit(&c.id, WAIT).unwrap(), Some(5));
    c.rt.delete(&c.id, true).unwrap();
    c.assert_clean();
}
