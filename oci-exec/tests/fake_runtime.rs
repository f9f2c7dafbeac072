//! Error paths exercised with shell scripts standing in for runc or conmon.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{can_run, TestCtr, CONMON, RUNC};
use rpod_oci::OciError;

/// Write an executable script from a child process, so that no writable fd
/// of it ever lives in this (multi-threaded, forking) test process, which
/// would risk ETXTBSY when it is executed.
fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "printf '%s\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"",
            "sh",
            &format!("#!/bin/sh\n{body}"),
            path.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    path
}

fn scripts_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rpod-oci-fake.")
        .tempdir()
        .unwrap()
}

#[test]
fn fake_runtime_stderr_message_propagates_verbatim() {
    if !can_run() {
        return;
    }
    let d = scripts_dir();
    let msg = "fake runtime: cannot create container: quota \"x\" exceeded (code 42)";
    let rt = write_script(d.path(), "fake-runc", &format!("echo '{msg}' >&2\nexit 1"));
    let mut c = TestCtr::with_runtime("fakestderr", rt.to_str().unwrap(), CONMON);
    let err = c.create(&["true"]).unwrap_err();
    match &err {
        OciError::CreateFailed {
            message,
            runtime,
            id,
        } => {
            assert_eq!(message, msg);
            assert_eq!(runtime, &rt);
            assert_eq!(id, &c.id);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.create_exit_code(), 125);
    c.assert_clean();
}

#[test]
fn fake_runtime_oci_log_message_preferred() {
    if !can_run() {
        return;
    }
    let d = scripts_dir();
    let body = r#"log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --log) log="$2"; shift 2;;
    --log=*) log="${1#--log=}"; shift;;
    *) shift;;
  esac
done
echo '{"level":"warning","msg":"just a warning","time":"t"}' >> "$log"
echo '{"level":"error","msg":"unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH","time":"t"}' >> "$log"
echo "garbled stderr" >&2
exit 1"#;
    let rt = write_script(d.path(), "fake-runc-log", body);
    let mut c = TestCtr::with_runtime("fakelog", rt.to_str().unwrap(), CONMON);
    let err = c.create(&["true"]).unwrap_err();
    assert_eq!(
        err.runtime_message(),
        Some("unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH")
    );
    assert_eq!(err.create_exit_code(), 127);
}

#[test]
fn fake_runtime_state_does_not_exist() {
    if !can_run() {
        return;
    }
    let d = scripts_dir();
    let rt = write_script(
        d.path(),
        "fake-runc-state",
        "echo 'time=\"2026-01-01T00:00:00Z\" level=error msg=\"container does not exist\"' >&2\nexit 1",
    );
    let c = TestCtr::with_runtime("fakestate", rt.to_str().unwrap(), CONMON);
    assert!(matches!(c.rt.state(&c.id), Err(OciError::NotFound { .. })));
    // Other failures keep the runtime's message and status.
    let rt2 = write_script(
        d.path(),
        "fake-runc-kill",
        "echo 'permission denied by fake' >&2\nexit 3",
    );
    let c2 = TestCtr::with_runtime("fakekill", rt2.to_str().unwrap(), CONMON);
    match c2.rt.kill(&c2.id, 15, false) {
        Err(OciError::RuntimeCommand {
            op,
            status,
            message,
            ..
        }) => {
            assert_eq!(op, "kill");
            assert_eq!(status, "exit status 3");
            assert_eq!(message, "permission denied by fake");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn conmon_dying_is_reported() {
    if !can_run() {
        return;
    }
    let d = scripts_dir();
    let conmon = write_script(
        d.path(),
        "fake-conmon",
        "echo 'conmon: fatal: cannot frobnicate' >&2\nexit 1",
    );
    let mut c = TestCtr::with_runtime("fakeconmon", RUNC, conmon.to_str().unwrap());
    let err = c.create(&["true"]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OciError::ConmonNoReport { .. }), "{err:?}");
    assert!(
        text.starts_with("conmon exited without reporting"),
        "{text}"
    );
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("cannot frobnicate"), "{text}");
    assert!(!text.contains("json message"), "{text}");
    c.assert_clean();
}

#[test]
fn create_timeout_kills_conmon() {
    if !can_run() {
        return;
    }
    let d = scripts_dir();
    let rt = write_script(
        d.path(),
        "slow-runc",
        "case \"$*\" in *\" create \"*) exec sleep 3;; esac\nexit 0",
    );
    let mut c = TestCtr::with_runtime("faketimeout", rt.to_str().unwrap(), CONMON);
    let mut cfg = c.rt.config().clone();
    cfg.create_timeout = Duration::from_millis(500);
    c.rt = rpod_oci::OciRuntime::new(cfg).unwrap();
    let t0 = Instant::now();
    let err = c.create(&["true"]).unwrap_err();
    assert!(matches!(err, OciError::CreateTimeout { .. }), "{err:?}");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2500), "{took:?}");
    c.assert_clean();
}

#[test]
fn extra_fds_reach_conmon_at_5_and_up() {
    if !can_run() {
        return;
    }
    let d = scripts_dir();
    let report = d.path().join("fds");
    // The fake conmon records what it inherited at 3..=6 (5 and 6 are not close-on-exec, or
    // they would not have survived its exec).
    let body = format!(
        "for n in 3 4 5 6; do echo \"$n $(readlink /proc/$$/fd/$n)\"; done > {}\nexit 1",
        report.display()
    );
    let conmon = write_script(d.path(), "fake-conmon-fds", &body);
    let mut c = TestCtr::with_runtime("fakefds", RUNC, conmon.to_str().unwrap());
    let a = std::sync::Arc::new(std::os::fd::OwnedFd::from(
        std::fs::File::create(d.path().join("extra-a")).unwrap(),
    ));
    let b = std::sync::Arc::new(std::os::fd::OwnedFd::from(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ));
    let mut opts = c.opts();
    opts.extra_fds = vec![a.clone(), b.clone()];
    assert_eq!(opts, opts.clone());
    rpod_oci::write_spec_for(&c.bundle, &c.spec(&["true"])).unwrap();
    let err = c.rt.create(&opts).unwrap_err();
    assert!(matches!(err, OciError::ConmonNoReport { .. }), "{err:?}");
    c.conmon_pid = None;
    let text = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("3 pipe:"), "{text}");
    assert!(lines[1].starts_with("4 pipe:"), "{text}");
    assert_eq!(
        lines[2],
        format!("5 {}", d.path().join("extra-a").display()),
        "{text}"
    );
    assert!(lines[3].starts_with("6 socket:"), "{text}");
    // The options only hold references; the caller's stay valid.
    drop(opts);
    assert_eq!(std::sync::Arc::strong_count(&a), 1);
    assert_eq!(std::sync::Arc::strong_count(&b), 1);
}
