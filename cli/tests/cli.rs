//! End-to-end tests of the `rpod` binary for configuration and information commands. Every
//! test runs in a sandbox: its own config dirs, HOME, root, run root and tmp dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

mod common;

use common::{expect_ok, json, Sandbox};

#[test]
fn info_json_has_real_values() {
    let sb = Sandbox::new();
    sb.etc_file(
        "registries.conf",
        "unqualified-search-registries = ['registry.example']\n[[registry]]\nlocation = 'insecure.example'\ninsecure = true\n",
    );
    let out = sb.run(["info", "--format", "json"]);
    expect_ok(&out);
    let v = json(&out.stdout);
    let host = &v["host"];
    assert_eq!(host["os"], "linux");
    assert_eq!(host["arch"], std::env::consts::ARCH);
    assert!(host["cpus"].as_u64().unwrap() >= 1);
    assert!(host["memTotal"].as_u64().unwrap() > 0);
    assert!(host["memFree"].as_u64().is_some());
    assert!(host["swapTotal"].as_u64().is_some());
    assert!(host["swapFree"].as_u64().is_some());
    assert!(!host["kernel"].as_str().unwrap().is_empty());
    assert!(!host["hostname"].as_str().unwrap().is_empty());
    assert!(host["uptimeSeconds"].as_f64().unwrap() > 0.0);
    assert!(!host["distribution"]["distribution"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(host["cgroupVersion"].as_str().unwrap().starts_with('v'));
    assert_eq!(host["cgroupManager"], "cgroupfs");
    assert_eq!(host["rootless"], false);
    let conmon = Path::new(host["conmon"]["path"].as_str().unwrap());
    assert!(conmon.is_file());
    assert!(host["conmon"]["version"]
        .as_str()
        .unwrap()
        .contains("conmon"));
    assert_eq!(host["ociRuntime"]["name"], "runc");
    assert!(Path::new(host["ociRuntime"]["path"].as_str().unwrap()).is_file());
    assert!(host["ociRuntime"]["version"]
        .as_str()
        .unwrap()
        .contains("runc"));
    let store = &v["store"];
    assert_eq!(store["graphRoot"], sb.path("root").display().to_string());
    assert_eq!(store["runRoot"], sb.path("runroot").display().to_string());
    assert_eq!(store["tmpDir"], sb.path("tmp").display().to_string());
    assert_eq!(
        store["staticDir"],
        sb.path("root/libpod").display().to_string()
    );
    assert_eq!(
        store["volumePath"],
        sb.path("root/volumes").display().to_string()
    );
    assert_eq!(v["registries"]["search"][0], "registry.example");
    assert_eq!(v["registries"]["insecure"][0], "insecure.example");
    // The runtime created its directories with libpod's modes.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(sb.path("root/libpod")), 0o700);
    assert_eq!(mode(sb.path("tmp")), 0o751);
}

#[test]
fn info_text_output() {
    let sb = Sandbox::new();
    let out = sb.run(["info"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("host:\n"));
    assert!(text.contains("  ociRuntime:\n"));
}

#[test]
fn config_show_explain_names_sources() {
    let sb = Sandbox::new();
    let file = sb.etc_file(
        "libpod.conf",
        "num_locks = 64\npause_image = \"example/pause\"\n",
    );
    let out = sb.run_bare([
        "--tmpdir",
        "/tmp/rpod-explain-test",
        "config",
        "show",
        "--explain",
    ]);
    expect_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no line for {key} in {text}"))
            .to_owned()
    };
    assert_eq!(
        line("num_locks"),
        format!("num_locks = 64  # file:{}", file.display())
    );
    assert_eq!(
        line("infra_image"),
        format!("infra_image = \"example/pause\"  # file:{}", file.display())
    );
    assert_eq!(
        line("tmp_dir"),
        "tmp_dir = \"/tmp/rpod-explain-test\"  # flag:--tmpdir"
    );
    assert_eq!(line("max_log_size"), "max_log_size = -1  # default");
    // config show touches nothing.
    assert!(!Path::new("/tmp/rpod-explain-test").exists());
}

/// `rpod --config FILE config show`.
fn config_show_of(sb: &Sandbox, file: &Path) -> std::process::Output {
    let args = [
        Path::new("--config"),
        file,
        Path::new("config"),
        Path::new("show"),
    ];
    sb.run_bare(args)
}

#[test]
fn config_show_toml_round_trips_and_json_parses() {
    let sb = Sandbox::new();
    let out = sb.run(["config", "show"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // What `config show` prints is a valid libpod.conf giving the same configuration.
    let file = sb.path("shown.conf");
    std::fs::write(&file, &text).unwrap();
    let again = config_show_of(&sb, &file);
    expect_ok(&again);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
    let out = sb.run(["config", "show", "--format", "json"]);
    let v = json(&out.stdout);
    assert_eq!(v["num_locks"], 2048);
}

/// Writes `conf` as the sandbox's libpod.conf and runs `info`, which must exit 125; returns
/// the file and the error output.
fn info_fails_with(sb: &Sandbox, conf: &str) -> (PathBuf, String) {
    let file = sb.etc_file("libpod.conf", conf);
    let out = sb.run(["info"]);
    assert_eq!(out.status.code(), Some(125));
    (file, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn broken_toml_fails_with_position_and_creates_nothing() {
    let sb = Sandbox::new();
    let (file, err) = info_fails_with(&sb, "runtime = \"runc\"\nnum_locks = 64\ntmp_dir = [\n");
    assert!(
        err.starts_with(&format!("Error: {}:4:1:", file.display())),
        "unexpected error: {err}"
    );
    for d in ["root", "runroot", "tmp"] {
        assert!(!sb.path(d).exists(), "{d} was created");
    }
    // The same through --config.
    let out = config_show_of(&sb, &file);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8(out.stderr).unwrap().contains(":4:1:"));
}

#[test]
fn invalid_values_are_rpod_errors() {
    let sb = Sandbox::new();
    let out = sb.run(["--cgroup-manager", "bogus", "info"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cgroup_manager"), "{err}");
    assert!(err.contains("flag:--cgroup-manager"), "{err}");
    let out = sb.run(["--config", "/nonexistent/libpod.conf", "info"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("/nonexistent/libpod.conf does not exist"));
    let out = sb.run(["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn missing_runtime_binary_is_named() {
    let sb = Sandbox::new();
    let (_, err) = info_fails_with(
        &sb,
        "runtime = \"ghost\"\n[runtimes]\nghost = [\"/nonexistent/ghost\"]\n",
    );
    assert!(
        err.contains("could not find a working OCI runtime \"ghost\" binary (configured options: [/nonexistent/ghost])"),
        "{err}"
    );
}

#[test]
fn unknown_keys_warn_on_stderr() {
    let sb = Sandbox::new();
    let file = sb.etc_file("libpod.conf", "no_such_key = 1\n");
    let out = sb.run(["config", "show"]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no_such_key"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    // --log-level error silences it.
    let out = sb.run(["--log-level", "error", "config", "show"]);
    assert!(String::from_utf8(out.stderr).unwrap().is_empty());
}

#[test]
fn version_prints() {
    let sb = Sandbox::new();
    let out = sb.run_bare(["version", "--format", "json"]);
    assert!(out.status.success());
    assert_eq!(json(&out.stdout)["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn system_locks_and_renumber() {
    let sb = Sandbox::new();
    let out = sb.run(["system", "locks", "--format", "json"]);
    expect_ok(&out);
    let v = json(&out.stdout);
    assert_eq!(v["segment"], sb.lock_name.as_str());
    assert_eq!(v["total"], 2048);
    assert_eq!(v["free"], 2048);
    assert_eq!(v["held"], 0);
    assert!(Path::new(&format!("/dev/shm{}", sb.lock_name)).exists());
    // Another count without renumbering: a clear error that says what to do.
    let out = sb.run(["--num-locks", "40", "system", "locks"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("holds 2048 locks but 64 are configured"),
        "{err}"
    );
    assert!(err.contains("rpod system renumber"), "{err}");
    let out = sb.run(["--num-locks", "40", "system", "renumber"]);
    expect_ok(&out);
    let out = sb.run(["--num-locks", "40", "system", "locks"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("total:   64\n"), "{text}");
}

#[test]
fn default_lock_segment_name_follows_the_tmp_dir() {
    // Without --lock-name, a non-default tmp dir gets its own segment.
    let sb = Sandbox::new();
    let out = sb
        .bare()
        .arg("--tmpdir")
        .arg(sb.path("tmp"))
        .arg("--root")
        .arg(sb.path("root"))
        .args(["system", "locks", "--format", "json"])
        .output()
        .unwrap();
    expect_ok(&out);
    let v = json(&out.stdout);
    let name = v["segment"].as_str().unwrap().to_owned();
    let _ = std::fs::remove_file(format!("/dev/shm{name}"));
    assert!(name.starts_with("/rpod_lock_"), "{name}");
    assert_ne!(name, "/rpod_lock");
}

#[test]
fn repeated_flags_take_the_last_value() {
    let sb = Sandbox::new();
    // A global flag, as pflag does: the last one wins, and is recorded as the source.
    let out = sb.run_bare([
        "--tmpdir",
        "/a",
        "--tmpdir",
        "/b",
        "config",
        "show",
        "--explain",
    ]);
    expect_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "tmp_dir = \"/b\"  # flag:--tmpdir"),
        "{text}"
    );
    // Before and after the subcommand alike.
    let out = sb.run_bare([
        "--tmpdir",
        "/a",
        "config",
        "show",
        "--explain",
        "--tmpdir",
        "/c",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "tmp_dir = \"/c\"  # flag:--tmpdir"),
        "{text}"
    );
    // A subcommand's single-value flag.
    let out = sb.run_bare(["config", "show", "--format", "toml", "--format", "json"]);
    expect_ok(&out);
    assert!(json(&out.stdout).is_object());
}

#[test]
fn global_options_have_their_own_heading_in_subcommand_help() {
    let sb = Sandbox::new();
    for args in [
        &["config", "show", "--help"][..],
        &["ps", "--help"][..],
        &["pod", "create", "--help"][..],
    ] {
        let out = sb.bare().args(args).output().unwrap();
        expect_ok(&out);
        let text = String::from_utf8(out.stdout).unwrap();
        let (own, global) = text
            .split_once("\nGlobal Options:\n")
            .unwrap_or_else(|| panic!("no Global Options heading in {args:?} help:\n{text}"));
        for flag in [
            "--config",
            "--tmpdir",
            "--root",
            "--cni-config-dir",
            "--log-level",
        ] {
            assert!(
                global.contains(flag),
                "{flag} not under Global Options:\n{text}"
            );
            assert!(
                !own.contains(flag),
                "{flag} among the command's own:\n{text}"
            );
        }
        assert!(own.contains("--help"), "{text}");
    }
    let out = sb.run_bare(["config", "show", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let own = text.split("\nGlobal Options:\n").next().unwrap_or("");
    assert!(own.contains("--explain"), "{text}");
}
