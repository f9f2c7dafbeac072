//! Rootless first-run write of `~/.config/containers/libpod.conf`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{load, load_with, rootless_env, write, Sandbox};
use rpod_config::{Config, FileKind, RuntimeOptions, Source};

/// Set in the environment of a re-executed test binary: the sandbox base directory.
const CHILD_VAR: &str = "RPOD_CONFIG_TEST_WRITE_CHILD";
const CHILDREN: usize = 8;
const SYSTEM_FILE: &str = "conmon_path = [\"/opt/conmon\"]\nnamespace = \"not-inherited\"\n";

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The child's side: announce readiness, wait for the start file, load and write.
fn child(base: &Path) {
    let env = rootless_env(base);
    std::fs::write(base.join(format!("ready-{}", std::process::id())), b"").unwrap();
    let start = base.join("start");
    wait_for("the start file", Duration::from_secs(60), || start.exists());
    let result =
        Config::load(&env, &RuntimeOptions::new()).and_then(|cfg| cfg.write_rootless_default());
    match result {
        Ok(Some(path)) => println!("CHILD-RESULT wrote {}", path.display()),
        Ok(None) => println!("CHILD-RESULT skipped"),
        Err(e) => println!("CHILD-RESULT error {e}"),
    }
}

#[test]
fn concurrent_first_run_write_creates_exactly_one_file() {
    if let Some(base) = std::env::var_os(CHILD_VAR) {
        child(Path::new(&base));
        return;
    }
    let sb = Sandbox::new();
    let base = sb.base().to_owned();
    write(&sb.etc("libpod.conf"), SYSTEM_FILE);
    let exe = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "concurrent_first_run_write_creates_exactly_one_file",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_VAR, &base)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ready = |b: &Path| {
        entries(b)
            .iter()
            .filter(|n| n.starts_with("ready-"))
            .count()
    };
    wait_for("children to be ready", Duration::from_secs(60), || {
        ready(&base) == CHILDREN
    });
    std::fs::write(base.join("start"), b"").unwrap();

    let mut wrote = Vec::new();
    let mut skipped = 0;
    for kid in kids {
        let out = kid.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints "test <name> ... " without a newline before the child's output.
        let line = stdout
            .lines()
            .find_map(|l| l.find("CHILD-RESULT ").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no result from child: {stdout}"));
        if let Some(p) = line.strip_prefix("CHILD-RESULT wrote ") {
            wrote.push(PathBuf::from(p));
        } else if line == "CHILD-RESULT skipped" {
            skipped += 1;
        } else {
            panic!("child: {line}");
        }
    }
    let user_file = sb.user("libpod.conf");
    assert_eq!(wrote, vec![user_file.clone()], "exactly one writer");
    assert_eq!(skipped, CHILDREN - 1);

    // Exactly one file, no temporary leftovers.
    assert_eq!(entries(user_file.parent().unwrap()), vec!["libpod.conf"]);
    let mode = std::fs::metadata(&user_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");

    // Valid TOML that loads back to the values the writers computed.
    let text = std::fs::read_to_string(&user_file).unwrap();
    let parsed: rpod_config::RuntimeConfig = toml::from_str(&text).unwrap();
    let env = rootless_env(&base);
    // What a child computed: no user file, partial system file.
    std::fs::rename(&user_file, sb.path("written")).unwrap();
    let fresh = load(&env);
    assert_eq!(fresh.files[0].kind, FileKind::LibpodConfPartial);
    std::fs::rename(sb.path("written"), &user_file).unwrap();
    assert_eq!(parsed, fresh.values);
    assert_eq!(fresh.values.conmon_path, vec!["/opt/conmon"]);
    assert_eq!(fresh.values.namespace, "");

    let back = load(&env);
    assert_eq!(back.values, fresh.values);
    assert_eq!(back.files[0].path, user_file);
    assert_eq!(back.files[0].kind, FileKind::LibpodConf);
    assert_eq!(
        *back.sources.get("tmp_dir"),
        Source::File(user_file.clone())
    );
    // A second run writes nothing.
    assert_eq!(back.write_rootless_default().unwrap(), None);
}

#[test]
fn single_write_then_load_back() {
    let sb = Sandbox::new();
    let env = sb.rootless_env();
    let cfg = load_with(
        &env,
        &RuntimeOptions::new().tmp_dir(sb.path("t")).num_locks(40u32),
    )
    .unwrap();
    let path = cfg.write_rootless_default().unwrap().unwrap();
    assert_eq!(path, sb.user("libpod.conf"));
    let back = load(&env);
    assert_eq!(back.values, cfg.values);
    assert_eq!(back.values.num_locks, 64);
    assert_eq!(back.values.tmp_dir, sb.path("t"));
    assert_eq!(*back.sources.get("tmp_dir"), Source::File(path.clone()));
    assert_eq!(entries(path.parent().unwrap()), vec!["libpod.conf"]);
}

#[test]
fn deprecated_runtime_path_survives_the_write() {
    let sb = Sandbox::new();
    write(
        &sb.etc("libpod.conf"),
        "runtime_path = [\"/opt/bin/myrunc\"]\n",
    );
    let env = sb.rootless_env();
    let cfg = load(&env);
    assert_eq!(cfg.values.runtime, "myrunc");
    cfg.write_rootless_default().unwrap().unwrap();
    let back = load(&env);
    assert_eq!(back.values, cfg.values);
}

#[test]
fn existing_file_is_never_overwritten() {
    let sb = Sandbox::new();
    let env = sb.rootless_env();
    let user_file = sb.user("libpod.conf");
    write(&user_file, "namespace = \"mine\"\n");
    let cfg = load(&env);
    assert_eq!(cfg.write_rootless_default().unwrap(), None);
    assert_eq!(
        std::fs::read_to_string(&user_file).unwrap(),
        "namespace = \"mine\"\n"
    );

    // The file appears between load and write.
    std::fs::remove_file(&user_file).unwrap();
    let cfg = load(&env);
    write(&user_file, "namespace = \"raced\"\n");
    assert_eq!(cfg.write_rootless_default().unwrap(), None);
    assert_eq!(
        std::fs::read_to_string(&user_file).unwrap(),
        "namespace = \"raced\"\n"
    );
    assert_eq!(entries(user_file.parent().unwrap()), vec!["libpod.conf"]);
}

#[test]
fn root_never_writes() {
    let sb = Sandbox::new();
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.write_rootless_default().unwrap(), None);
    assert!(!sb.path("home").exists());
}

#[test]
fn explicit_config_never_writes() {
    let sb = Sandbox::new();
    let custom = sb.path("custom.conf");
    write(&custom, "namespace = \"c\"\n");
    let cfg = load_with(
        &sb.rootless_env(),
        &RuntimeOptions::new().config_path(custom),
    )
    .unwrap();
    assert_eq!(cfg.write_rootless_default().unwrap(), None);
    assert!(!sb.user("libpod.conf").exists());
}

#[test]
fn write_file_atomic_replaces_without_no_clobber() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    rpod_config::write_file_atomic(&p, b"one", 0o644, true).unwrap();
    let e = rpod_config::write_file_atomic(&p, b"two", 0o644, true).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&p).unwrap(), b"one");
    rpod_config::write_file_atomic(&p, b"three", 0o644, false).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"three");
    assert_eq!(entries(dir.path()), vec!["f"]);
}
