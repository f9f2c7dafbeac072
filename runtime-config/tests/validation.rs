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
    let r = load_file(
        &sb,
        "cgroup_manager = \"cgroupv2\"\n",
        &RuntimeOptions::new(),
    );
    let (value, origin) = expect_invalid(r, "cgroup_manager");
    assert_eq!(value, "cgroupv2");
    assert_eq!(origin, Source::File(sb.etc("libpod.conf")));
}

#[test]
fn bad_cgroup_manager_flag() {
    let sb = Sandbox::new();
    let r = load_file(&sb, "", &RuntimeOptions::new().cgroup_manager("Systemd"));
    let (value, origin) = expect_invalid(r, "cgroup_manager");
    assert_eq!(value, "Systemd");
    assert_eq!(origin, Source::Flag("--cgroup-manager".into()));
}

#[test]
fn bad_state_backend() {
    let sb = Sandbox::new();
    let r = load_file(&sb, "state_backend = \"bolt\"\n", &RuntimeOptions::new());
    expect_invalid(r, "state_backend");
    let r = load_file(&sb, "", &RuntimeOptions::new().state_backend("sqlite"));
    expect_invalid(r, "state_backend");
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
        let r = load_file(
            &sb,
            &format!("{key} = \"relative/dir\"\n"),
            &RuntimeOptions::new(),
        );
        let (value, origin) = expect_invalid(r, key);
        assert_eq!(value, "relative/dir");
        assert_eq!(origin, Source::File(sb.etc("libpod.conf")));
    }
    // Also from a flag.
    let r = load_file(&sb, "", &RuntimeOptions::new().tmp_dir("tmp"));
    let (_, origin) = expect_invalid(r, "tmp_dir");
    assert_eq!(origin, Source::Flag("--tmpdir".into()));
    // A relative --root makes the derived static dir and volume path relative too: the error
    // names the key the user set, not a derived one.
    let r = load_file(&sb, "", &RuntimeOptions::new().graph_root("rel"));
    let (value, origin) = expect_invalid(r, "graph_root");
    assert_eq!(value, "rel");
    assert_eq!(origin, Source::Flag("--root".into()));
}

#[test]
fn num_locks_zero_rejected() {
    let sb = Sandbox::new();
    let r = load_file(&sb, "num_locks = 0\n", &RuntimeOptions::new());
    expect_invalid(r, "num_locks");
    let r = load_file(&sb, "", &RuntimeOptions::new().num_locks(0u32));
    let (_, origin) = expect_invalid(r, "num_locks");
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
        let cfg = load_file(
            &sb,
            &format!("num_locks = {given}\n"),
            &RuntimeOptions::new(),
        )
        .unwrap();
        assert_eq!(cfg.values.num_locks, want, "{given}");
        let cfg = load_file(&sb, "", &RuntimeOptions::new().num_locks(given)).unwrap();
        assert_eq!(cfg.values.num_locks, want, "{given}");
    }
    // Near the top of the range: the largest multiple of 32 is fine, above it is an error.
    let cfg = load_file(&sb, "", &RuntimeOptions::new().num_locks(u32::MAX - 31)).unwrap();
    assert_eq!(cfg.values.num_locks, u32::MAX - 31);
    let r = load_file(&sb, "", &RuntimeOptions::new().num_locks(u32::MAX - 30));
    expect_invalid(r, "num_locks");
}

#[test]
fn num_locks_negative_or_too_big_is_a_parse_error() {
    let sb = Sandbox::new();
    for text in ["num_locks = -1\n", "num_locks = 4294967296\n"] {
        match load_file(&sb, text, &RuntimeOptions::new()) {
            Err(ConfigError::Parse { line, .. }) => assert_eq!(line, 1, "{text}"),
            other => panic!("{text}: expected Parse, got {other:?}"),
        }
    }
}

#[test]
fn max_log_size_limits() {
    let sb = Sandbox::new();
    let r = load_file(&sb, "max_log_size = -2\n", &RuntimeOptions::new());
    let (value, _) = expect_invalid(r, "max_log_size");
    assert_eq!(value, "-2");
    for ok in [-1i64, 0, 1_000_000] {
        let cfg = load_file(
            &sb,
            &format!("max_log_size = {ok}\n"),
            &RuntimeOptions::new(),
        )
        .unwrap();
        assert_eq!(cfg.values.max_log_size, ok);
    }
}

#[test]
fn unknown_runtime_name_rejected() {
    let sb = Sandbox::new();
    let r = load_file(&sb, "runtime = \"kata\"\n", &RuntimeOptions::new());
    let (value, _) = expect_invalid(r, "runtime");
    assert_eq!(value, "kata");
    let r = load_file(&sb, "", &RuntimeOptions::new().runtime("nope"));
    let (_, origin) = expect_invalid(r, "runtime");
    assert_eq!(origin, Source::Flag("--runtime".into()));
    let r = load_file(&sb, "runtime = \"\"\n", &RuntimeOptions::new());
    expect_invalid(r, "runtime");
    // Known once it is in [runtimes].
    let cfg = load_file(
        &sb,
        "runtime = \"kata\"\n[runtimes]\nkata = [\"/opt/kata\"]\n",
        &RuntimeOptions::new(),
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
    let cfg = load_file(
        &sb,
        "runtime = \"/opt/bin/myrunc\"\n",
        &RuntimeOptions::new(),
    )
    .unwrap();
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
    let (r, logs) = capture_logs(|| load_file(&sb, text, &RuntimeOptions::new()));
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
    let conf = sb.path("conf/libpod.conf");
    // Line 3: the value is missing its closing quote's partner: `tmp_dir = /run` is not a value.
    write(
        &conf,
        "# comment\nnamespace = \"ok\"\ntmp_dir = /run/rpod\n",
    );
    let err = load_with(
        &Sandbox::new().root_env(),
        &RuntimeOptions::new().config_path(conf.clone()),
    )
    .unwrap_err();
    let shown = err.to_string();
    match err {
        ConfigError::Parse {
            path,
            line,
            column,
            message,
        } => {
            assert_eq!(path, conf);
            assert_eq!(line, 3);
            assert_eq!(column, 11, "{message}");
            assert_eq!(shown, format!("{}:3:11: {message}", conf.display()));
        }
        other => panic!("expected Parse, got {other:?}"),
    }
}

#[test]
fn syntax_error_column_counts_characters() {
    let sb = Sandbox::new();
    // A non-ASCII string before the error on the same line: the column is in characters.
    let r = load_file(
        &sb,
        "a = 1\nnamespace = \"ééé\" x\n",
        &RuntimeOptions::new(),
    );
    match r {
        Err(ConfigError::Parse { line, column, .. }) => {
            assert_eq!((line, column), (2, 19));
        }
        other => panic!("expected Parse, got {other:?}"),
    }
}

#[test]
fn type_error_is_a_parse_error_with_the_line() {
    let sb = Sandbox::new();
    let r = load_file(
        &sb,
        "namespace = \"x\"\n\nnum_locks = \"x\"\n",
        &RuntimeOptions::new(),
    );
    match r {
        Err(ConfigError::Parse {
            path,
            line,
            column,
            message,
        }) => {
            assert_eq!(path, sb.etc("libpod.conf"));
            assert_eq!(line, 3, "{message}");
            assert_eq!(column, 13, "{message}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
    // Same in a containers.conf layer.
    std::fs::remove_file(sb.etc("libpod.conf")).unwrap();
    write(&sb.etc("containers.conf"), "[engine]\ntmp_dir = 5\n");
    match load_with(&sb.root_env(), &RuntimeOptions::new()) {
        Err(ConfigError::Parse { path, line, .. }) => {
            assert_eq!(path, sb.etc("containers.conf"));
            assert_eq!(line, 2);
        }
        other => panic!("expected Parse, got {other:?}"),
    }
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
    let mut cfg = load_file(&sb, "", &RuntimeOptions::new()).unwrap();
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
