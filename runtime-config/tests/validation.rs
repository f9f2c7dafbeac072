//! Validation of values and parse errors with positions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{capture_logs, load_with, warnings, write, Sandbox};
use rpod_config::{Config, ConfigError, RuntimeOptions, Source};

/// Loads with `contents` as /etc/containers/libpod.conf and `opts`.
fn load_file(sb: &Sandbox, contents: &str, opts: &RuntimeOptions) -> Result<Config, ConfigError> {
    write(&sb.etc("libpod.conf"), contents);
    load_with(&sb.root_env(), opts)
}

/// Loads with `contents` as /etc/containers/libpod.conf and no options.
fn load_text(sb: &Sandbox, contents: &str) -> Result<Config, ConfigError> {
    load_file(sb, contents, &RuntimeOptions::new())
}

/// The value and origin of the `ConfigError::Invalid` for `key` that loading `contents` gives.
#[track_caller]
fn invalid_text(sb: &Sandbox, contents: &str, key: &str) -> (String, Source) {
    expect_invalid(load_text(sb, contents), key)
}

/// The value and origin of the `ConfigError::Invalid` for `key` that `opts` give (no file).
#[track_caller]
fn invalid_opts(sb: &Sandbox, opts: RuntimeOptions, key: &str) -> (String, Source) {
    expect_invalid(load_file(sb, "", &opts), key)
}

/// The fields of the `ConfigError::Parse` that `r` must be: path, line, column, message.
#[track_caller]
fn expect_parse(r: Result<Config, ConfigError>) -> (PathBuf, usize, usize, String) {
    match r {
        Err(ConfigError::Parse {
            path,
            line,
            column,
            message,
        }) => (path, line, column, message),
        Err(other) => panic!("expected Parse, got {other:?}"),
        Ok(cfg) => panic!("expected Parse, got {:?}", cfg.values),
    }
}

#[track_caller]
fn expect_invalid(r: Result<Config, ConfigError>, want_key: &str) -> (String, Source) {
    match r {
        Err(ConfigError::Invalid {
            key, value, origin, ..
        }) => {
            assert_eq!(key, want_key);
            (value, origin)
        }
        Err(other) => panic!("expected Invalid {want_key}, got {other:?}"),
        Ok(cfg) => panic!("expected Invalid {want_key}, got {:?}", cfg.values),
    }
}

#[test]
fn bad_cgroup_manager_in_file() {
    let sb = Sandbox::new();
    let want = ("cgroupv2".to_string(), Source::File(sb.etc("libpod.conf")));
    assert_eq!(
        invalid_text(&sb, "cgroup_manager = \"cgroupv2\"\n", "cgroup_manager"),
        want
    );
}

#[test]
fn bad_cgroup_manager_flag() {
    let sb = Sandbox::new();
    let want = (
        "Systemd".to_string(),
        Source::Flag("--cgroup-manager".into()),
    );
    assert_eq!(
        invalid_opts(
            &sb,
            RuntimeOptions::new().cgroup_manager("Systemd"),
            "cgroup_manager",
        ),
        want
    );
}

#[test]
fn bad_state_backend() {
    let sb = Sandbox::new();
    invalid_text(&sb, "state_backend = \"bolt\"\n", "state_backend");
    invalid_opts(
        &sb,
        RuntimeOptions::new().state_backend("sqlite"),
        "state_backend",
    );
}

#[test]
fn relative_directories_are_rejected() {
    let sb = Sandbox::new();
    for key in [
        "static_dir",
        "tmp_dir",
        "volume_path",
        "graph_root",
        "run_root",
        "cni_config_dir",
    ] {
        let want = (
            "relative/dir".to_string(),
            Source::File(sb.etc("libpod.conf")),
        );
        assert_eq!(
            invalid_text(&sb, &format!("{key} = \"relative/dir\"\n"), key),
            want
        );
    }
    // Also from a flag.
    let (_, origin) = invalid_opts(&sb, RuntimeOptions::new().tmp_dir("tmp"), "tmp_dir");
    assert_eq!(origin, Source::Flag("--tmpdir".into()));
    // A relative --root makes the derived static dir and volume path relative too: the error
    // names the key the user set, not a derived one.
    let want = ("rel".to_string(), Source::Flag("--root".into()));
    assert_eq!(
        invalid_opts(&sb, RuntimeOptions::new().graph_root("rel"), "graph_root"),
        want
    );
}

#[test]
fn num_locks_zero_rejected() {
    let sb = Sandbox::new();
    invalid_text(&sb, "num_locks = 0\n", "num_locks");
    let (_, origin) = invalid_opts(&sb, RuntimeOptions::new().num_locks(0u32), "num_locks");
    assert_eq!(origin, Source::Flag("--num-locks".into()));
}

#[test]
fn num_locks_rounded_up_to_multiple_of_32() {
    let sb = Sandbox::new();
    for (given, want) in [
        (1u32, 32u32),
        (32, 32),
        (33, 64),
        (64, 64),
        (2047, 2048),
        (2048, 2048),
    ] {
        let cfg = load_text(&sb, &format!("num_locks = {given}\n")).unwrap();
        assert_eq!(cfg.values.num_locks, want, "{given}");
        let cfg = load_file(&sb, "", &RuntimeOptions::new().num_locks(given)).unwrap();
        assert_eq!(cfg.values.num_locks, want, "{given}");
    }
    // Near the top of the range: the largest multiple of 32 is fine, above it is an error.
    let cfg = load_file(&sb, "", &RuntimeOptions::new().num_locks(u32::MAX - 31)).unwrap();
    assert_eq!(cfg.values.num_locks, u32::MAX - 31);
    invalid_opts(
        &sb,
        RuntimeOptions::new().num_locks(u32::MAX - 30),
        "num_locks",
    );
}

#[test]
fn num_locks_negative_or_too_big_is_a_parse_error() {
    let sb = Sandbox::new();
    for text in ["num_locks = -1\n", "num_locks = 4294967296\n"] {
        let (_, line, _, _) = expect_parse(load_text(&sb, text));
        assert_eq!(line, 1, "{text}");
    }
}

#[test]
fn max_log_size_limits() {
    let sb = Sandbox::new();
    let (value, _) = invalid_text(&sb, "max_log_size = -2\n", "max_log_size");
    assert_eq!(value, "-2");
    for ok in [-1i64, 0, 1_000_000] {
        let cfg = load_text(&sb, &format!("max_log_size = {ok}\n")).unwrap();
        assert_eq!(cfg.values.max_log_size, ok);
    }
}

#[test]
fn unknown_runtime_name_rejected() {
    let sb = Sandbox::new();
    let (value, _) = invalid_text(&sb, "runtime = \"kata\"\n", "runtime");
    assert_eq!(value, "kata");
    let (_, origin) = invalid_opts(&sb, RuntimeOptions::new().runtime("nope"), "runtime");
    assert_eq!(origin, Source::Flag("--runtime".into()));
    invalid_text(&sb, "runtime = \"\"\n", "runtime");
    // Known once it is in [runtimes].
    let cfg = load_text(
        &sb,
        "runtime = \"kata\"\n[runtimes]\nkata = [\"/opt/kata\"]\n",
    )
    .unwrap();
    assert_eq!(
        cfg.values.runtime_candidates(),
        Some(("kata".into(), vec!["/opt/kata".into()]))
    );
    // [runtimes] adds to the built-in table.
    assert!(cfg.values.runtimes.contains_key("runc"));
}

#[test]
fn absolute_runtime_path_accepted() {
    let sb = Sandbox::new();
    let cfg = load_text(&sb, "runtime = \"/opt/bin/myrunc\"\n").unwrap();
    assert_eq!(cfg.values.runtime, "/opt/bin/myrunc");
    assert_eq!(
        cfg.values.runtime_candidates(),
        Some(("myrunc".into(), vec!["/opt/bin/myrunc".into()]))
    );
    let cfg = load_file(&sb, "", &RuntimeOptions::new().runtime("/x/crun")).unwrap();
    assert_eq!(cfg.values.runtime, "/x/crun");
}

#[test]
fn deprecated_runtime_path_is_honoured_with_a_warning() {
    let sb = Sandbox::new();
    let text = "runtime = \"crun\"\nruntime_path = [\"/opt/bin/myrunc\", \"/usr/bin/myrunc\"]\n";
    let (r, logs) = capture_logs(|| load_text(&sb, text));
    let cfg = r.unwrap();
    assert_eq!(cfg.values.runtime, "myrunc");
    assert_eq!(
        cfg.values.runtimes["myrunc"],
        vec!["/opt/bin/myrunc", "/usr/bin/myrunc"]
    );
    assert_eq!(
        cfg.values.runtime_candidates().unwrap().1,
        vec!["/opt/bin/myrunc", "/usr/bin/myrunc"]
    );
    assert_eq!(
        *cfg.sources.get("runtime"),
        Source::File(sb.etc("libpod.conf"))
    );
    let w = warnings(&logs);
    assert!(
        w.iter()
            .any(|l| l.contains("runtime_path") && l.contains("deprecated")),
        "{logs}"
    );
}

#[test]
fn runtime_option_wins_over_deprecated_runtime_path() {
    let sb = Sandbox::new();
    let text = "runtime_path = [\"/opt/bin/myrunc\"]\n";
    let (r, logs) = capture_logs(|| load_file(&sb, text, &RuntimeOptions::new().runtime("crun")));
    let cfg = r.unwrap();
    assert_eq!(cfg.values.runtime, "crun");
    assert_eq!(
        *cfg.sources.get("runtime"),
        Source::Flag("--runtime".into())
    );
    assert!(!warnings(&logs).is_empty());
}

#[test]
fn syntax_error_has_path_line_and_column() {
    let sb = Sandbox::new();
    // Line 3: the value is missing its closing quote's partner: `tmp_dir = /run` is not a value.
    let conf = sb.file(
        sb.path("conf/libpod.conf"),
        "# comment\nnamespace = \"ok\"\ntmp_dir = /run/rpod\n",
    );
    let opts = RuntimeOptions::new().config_path(conf.clone());
    let err = load_with(&Sandbox::new().root_env(), &opts).unwrap_err();
    let shown = err.to_string();
    let (path, line, column, message) = expect_parse(Err(err));
    assert_eq!(path, conf);
    assert_eq!(line, 3);
    assert_eq!(column, 11, "{message}");
    assert_eq!(shown, format!("{}:3:11: {message}", conf.display()));
}

#[test]
fn syntax_error_column_counts_characters() {
    let sb = Sandbox::new();
    // A non-ASCII string before the error on the same line: the column is in characters.
    let (_, line, column, _) = expect_parse(load_text(&sb, "a = 1\nnamespace = \"ééé\" x\n"));
    assert_eq!((line, column), (2, 19));
}

#[test]
fn type_error_is_a_parse_error_with_the_line() {
    let sb = Sandbox::new();
    let r = load_text(&sb, "namespace = \"x\"\n\nnum_locks = \"x\"\n");
    let (path, line, column, message) = expect_parse(r);
    assert_eq!(path, sb.etc("libpod.conf"));
    assert_eq!(line, 3, "{message}");
    assert_eq!(column, 13, "{message}");
    // Same in a containers.conf layer.
    std::fs::remove_file(sb.etc("libpod.conf")).unwrap();
    write(&sb.etc("containers.conf"), "[engine]\ntmp_dir = 5\n");
    let (path, line, _, _) = expect_parse(load_with(&sb.root_env(), &RuntimeOptions::new()));
    assert_eq!(path, sb.etc("containers.conf"));
    assert_eq!(line, 2);
}

#[test]
fn reading_a_directory_is_a_read_error() {
    let sb = Sandbox::new();
    let dir = sb.path("adir");
    std::fs::create_dir_all(&dir).unwrap();
    match load_with(
        &sb.root_env(),
        &RuntimeOptions::new().config_path(dir.clone()),
    ) {
        Err(ConfigError::Read { path, .. }) => assert_eq!(path, dir),
        other => panic!("expected Read, got {other:?}"),
    }
}

#[test]
fn validate_is_callable_after_edits() {
    let sb = Sandbox::new();
    let mut cfg = load_text(&sb, "").unwrap();
    cfg.validate().unwrap();
    cfg.values.volume_path = PathBuf::from("vol");
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::Invalid {
            key: "volume_path",
            ..
        })
    ));
}
