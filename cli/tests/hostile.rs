//! Hostile input (issue 11): every argument that takes a number, duration, signal, path, name,
//! key=value or list, given overflowing, negative, empty, newline-carrying or 64 KiB values. rpod
//! must answer each with a clear `Error:` and exit code 125 (or succeed where the value is
//! legal), never panic (exit 101), never die by a signal, and leave nothing behind: the lock
//! table and the state stay as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{expect_ok, json, rootfs, Sandbox};

/// Values no argument accepts as they are (NUL cannot be passed in argv at all).
fn hostile() -> Vec<String> {
    vec![
        String::new(),
        "-1".into(),
        "18446744073709551616".into(),
        "9223372036854775808".into(),
        "-9223372036854775809".into(),
        "1e9".into(),
        "a\nb".into(),
        "x".repeat(64 * 1024),
        "../../etc".into(),
        "=".into(),
        ",".into(),
        "\u{7f}\u{1b}[31m".into(),
    ]
}

/// Runs `rpod ARGS` and checks it ended the way rpod ends: exit 0 or 125 (1/2 where podman
/// uses them for rm), with an `Error:` line on failure, no panic, no signal.
fn check(sb: &Sandbox, args: &[String]) -> i32 {
    let out = sb
        .cmd()
        .args(args)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown: Vec<String> = args.iter().map(|a| a.chars().take(40).collect()).collect();
    let code = out.status.code();
    assert!(
        code.is_some(),
        "{shown:?}: killed by a signal: {:?}",
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "{shown:?}: panicked: {stderr}"
    );
    let code = code.unwrap_or(-1);
    assert!(
        [0, 1, 2, 125].contains(&code),
        "{shown:?}: exit code {code}: {stderr}"
    );
    if code != 0 {
        assert!(
            stderr.contains("Error:") || stderr.contains("error:"),
            "{shown:?}: no error message: {stderr}"
        );
    }
    code
}

/// The words of `form` with `{}` replaced by `v` and `{root}` by `root`.
fn args(form: &str, v: &str, root: &str) -> Vec<String> {
    form.split_whitespace()
        .map(|w| match w {
            "{}" => v.to_owned(),
            "{root}" => root.to_owned(),
            w => w.to_owned(),
        })
        .collect()
}

#[test]
fn hostile_values_get_clear_errors_and_change_nothing() {
    let sb = Sandbox::new();
    let root = rootfs(&sb);
    let root = root.to_str().unwrap();
    // One container record and one pod to aim at.
    let out = sb.run(["create", "--name", "target", "--rootfs", root, "true"]);
    expect_ok(&out);
    let out = sb.run(["pod", "create", "--name", "tpod", "--infra=false"]);
    expect_ok(&out);
    let locks = |sb: &Sandbox| {
        json(&sb.run(["system", "locks", "--format", "json"]).stdout)["held"].as_u64()
    };
    let held = locks(&sb);
    assert_eq!(held, Some(2));

    // Forms that must never create anything (the value is always invalid there).
    let invalid = [
        "create --name {} --rootfs {root} true",
        "create --rootfs {} true",
        "create --pod {} --rootfs {root} true",
        "create --label {} --name {} --rootfs {root} true",
        "create --stop-timeout {} --rootfs {root} --name {} true",
        "create --network {} --rootfs {root} --name {} true",
        "pod create --name {}",
        "pod create --share {} --name {}",
        "pod create --label {} --name {}",
        "kill -s {} target",
        "pod kill -s {} tpod",
        "stop -t {} {}",
        "restart -t {} {}",
        "pod stop -t {} {}",
        "logs --tail {} target",
        "ps --filter {}",
        "run --detach-keys {} --rootfs {root} --name {} true",
        "attach --detach-keys {} target",
        "--num-locks {} ps",
        "--cgroup-manager {} ps",
        "--state-backend {} ps",
        "--log-level {} ps",
        "--namespace {} create --rootfs {root} --name {} true",
        "--runtime {} run --rootfs {root} --name {} true",
    ];
    // Forms whose value names an object: a hostile value names none.
    let lookups = [
        "start {}",
        "stop {}",
        "kill {}",
        "pause {}",
        "unpause {}",
        "restart {}",
        "wait {}",
        "logs {}",
        "inspect {}",
        "rm {}",
        "rm -f {}",
        "exec {} true",
        "container cleanup {}",
        "pod start {}",
        "pod stop {}",
        "pod rm -f {}",
        "pod inspect {}",
    ];
    for v in hostile() {
        for form in invalid.iter().chain(&lookups) {
            let a = args(form, &v, root);
            // A few values are legal for a few forms (an empty filter list, say): those may
            // succeed, but nothing may be created by them.
            check(&sb, &a);
        }
    }
    assert_eq!(locks(&sb), held, "a hostile input left a lock held");
    let ps = json(&sb.run(["ps", "-a", "--format", "json"]).stdout);
    assert_eq!(ps.as_array().map(Vec::len), Some(1), "{ps}");
    let pods = json(&sb.run(["pod", "ps", "--format", "json"]).stdout);
    assert_eq!(pods.as_array().map(Vec::len), Some(1), "{pods}");
    let _ = sb.cmd().args(["system", "reset", "--force"]).output();
}
