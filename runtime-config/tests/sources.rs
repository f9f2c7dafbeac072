//! Source tracking (default, file, flag, database), flag precedence, `--root` derivation and
//! the database override rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{load, load_with, write, Sandbox};
use rpod_config::{
    CgroupManager, Config, ConfigError, DbConfig, DbField, RuntimeConfig, RuntimeOptions, Source,
    StateBackend,
};

fn flag(f: &str) -> Source {
    Source::Flag(f.to_owned())
}

#[test]
fn source_display_strings() {
    assert_eq!(Source::Default.to_string(), "default");
    assert_eq!(
        Source::File(PathBuf::from("/etc/containers/libpod.conf")).to_string(),
        "file:/etc/containers/libpod.conf"
    );
    assert_eq!(flag("--tmpdir").to_string(), "flag:--tmpdir");
    assert_eq!(Source::Database.to_string(), "database");
    assert!(!Source::Default.is_explicit());
    assert!(!Source::Database.is_explicit());
    assert!(Source::File(PathBuf::from("/x")).is_explicit());
    assert!(flag("--root").is_explicit());
}

#[test]
fn one_key_of_each_source() {
    let sb = Sandbox::new();
    let conf = sb.file(sb.etc("libpod.conf"), "namespace = \"fromfile\"\n");
    let opts = RuntimeOptions::new().tmp_dir(sb.path("flagtmp"));
    let mut cfg = load_with(&sb.root_env(), &opts).unwrap();

    assert_eq!(*cfg.sources.get("infra_image"), Source::Default);
    assert_eq!(*cfg.sources.get("namespace"), Source::File(conf.clone()));
    assert_eq!(*cfg.sources.get("tmp_dir"), flag("--tmpdir"));
    assert_eq!(cfg.values.tmp_dir, sb.path("flagtmp"));

    let db = DbConfig {
        run_root: "/db/runroot".into(),
        ..DbConfig::default()
    };
    cfg.apply_db_config(&db).unwrap();
    assert_eq!(*cfg.sources.get("run_root"), Source::Database);
    assert_eq!(cfg.values.run_root, PathBuf::from("/db/runroot"));
    assert_eq!(cfg.sources.get("run_root").to_string(), "database");

    // explain() reports the same sources.
    let explained = cfg.explain().unwrap();
    let find = |k: &str| {
        explained
            .iter()
            .find(|(key, _, _)| key == k)
            .unwrap()
            .clone()
    };
    assert_eq!(find("namespace").1, "\"fromfile\"");
    assert_eq!(find("namespace").2, Source::File(conf));
    assert_eq!(find("tmp_dir").2, flag("--tmpdir"));
    assert_eq!(find("run_root").2, Source::Database);
    assert_eq!(find("label").2, Source::Default);
    assert_eq!(find("lock_name").1, "(unset)");
}

/// A libpod.conf setting every key that has a command-line option.
const EVERY_OPTION_FILE: &str = r#"
graph_root = "/file/graph"
run_root = "/file/runroot"
static_dir = "/file/static"
tmp_dir = "/file/tmp"
volume_path = "/file/volumes"
runtime = "crun"
conmon_path = ["/file/conmon"]
cgroup_manager = "cgroupfs"
cni_config_dir = "/file/net.d"
namespace = "file"
num_locks = 64
lock_name = "/file-lock"
state_backend = "lmdb"
"#;

#[test]
fn every_option_overrides_the_file_and_records_its_flag() {
    let sb = Sandbox::new();
    sb.file(sb.etc("libpod.conf"), EVERY_OPTION_FILE);
    let opts = RuntimeOptions::new()
        .graph_root("/flag/graph")
        .run_root("/flag/runroot")
        .static_dir("/flag/static")
        .tmp_dir("/flag/tmp")
        .volume_path("/flag/volumes")
        .runtime("runc")
        .conmon("/flag/conmon")
        .cgroup_manager("systemd")
        .cni_config_dir("/flag/net.d")
        .namespace("flag")
        .num_locks(100u32)
        .lock_name("/flag-lock")
        .state_backend("memory");
    let cfg = load_with(&sb.root_env(), &opts).unwrap();
    let v = &cfg.values;
    assert_eq!(v.graph_root, PathBuf::from("/flag/graph"));
    assert_eq!(v.run_root, PathBuf::from("/flag/runroot"));
    assert_eq!(v.static_dir, PathBuf::from("/flag/static"));
    assert_eq!(v.tmp_dir, PathBuf::from("/flag/tmp"));
    assert_eq!(v.volume_path, PathBuf::from("/flag/volumes"));
    assert_eq!(v.runtime, "runc");
    assert_eq!(v.conmon_path, vec!["/flag/conmon"]);
    assert_eq!(v.cgroup_manager, CgroupManager::Systemd);
    assert_eq!(v.cni_config_dir, "/flag/net.d");
    assert_eq!(v.namespace, "flag");
    assert_eq!(v.num_locks, 128);
    assert_eq!(v.lock_name.as_deref(), Some("/flag-lock"));
    assert_eq!(v.state_backend, StateBackend::Memory);
    for (key, f) in [
        ("graph_root", "--root"),
        ("run_root", "--runroot"),
        ("static_dir", "--static-dir"),
        ("tmp_dir", "--tmpdir"),
        ("volume_path", "--volumepath"),
        ("runtime", "--runtime"),
        ("conmon_path", "--conmon"),
        ("cgroup_manager", "--cgroup-manager"),
        ("cni_config_dir", "--cni-config-dir"),
        ("namespace", "--namespace"),
        ("num_locks", "--num-locks"),
        ("lock_name", "--lock-name"),
        ("state_backend", "--state-backend"),
    ] {
        assert_eq!(*cfg.sources.get(key), flag(f), "{key}");
    }
}

#[test]
fn root_option_moves_static_dir_and_volume_path() {
    let sb = Sandbox::new();
    let root = sb.path("storage");
    let cfg = load_with(
        &sb.root_env(),
        &RuntimeOptions::new().graph_root(root.clone()),
    )
    .unwrap();
    assert_eq!(cfg.values.graph_root, root);
    assert_eq!(cfg.values.static_dir, root.join("libpod"));
    assert_eq!(cfg.values.volume_path, root.join("volumes"));
    assert_eq!(*cfg.sources.get("graph_root"), flag("--root"));

    // Unless they were set explicitly, by flag ...
    let cfg = load_with(
        &sb.root_env(),
        &RuntimeOptions::new()
            .graph_root(root.clone())
            .static_dir("/s")
            .volume_path("/v"),
    )
    .unwrap();
    assert_eq!(cfg.values.static_dir, PathBuf::from("/s"));
    assert_eq!(cfg.values.volume_path, PathBuf::from("/v"));

    // ... or by file.
    write(&sb.etc("libpod.conf"), "static_dir = \"/file/static\"\n");
    let cfg = load_with(
        &sb.root_env(),
        &RuntimeOptions::new().graph_root(root.clone()),
    )
    .unwrap();
    assert_eq!(cfg.values.static_dir, PathBuf::from("/file/static"));
    assert_eq!(cfg.values.volume_path, root.join("volumes"));
}

#[test]
fn no_root_option_keeps_default_static_dir() {
    let sb = Sandbox::new();
    let env = sb.root_env();
    let cfg = load(&env);
    let d = RuntimeConfig::defaults(&env);
    assert_eq!(cfg.values.static_dir, d.static_dir);
    assert_eq!(cfg.values.volume_path, d.volume_path);
}

fn db_all(prefix: &str) -> DbConfig {
    DbConfig {
        static_dir: format!("{prefix}/static"),
        tmp_dir: format!("{prefix}/tmp"),
        run_root: format!("{prefix}/runroot"),
        graph_root: format!("{prefix}/graph"),
        volume_path: format!("{prefix}/volumes"),
    }
}

#[test]
fn db_replaces_non_explicit_values() {
    let sb = Sandbox::new();
    let mut cfg = load(&sb.root_env());
    let db = db_all("/db");
    cfg.apply_db_config(&db).unwrap();
    for field in DbField::ALL {
        assert_eq!(*cfg.sources.get(field.key()), Source::Database);
    }
    assert_eq!(cfg.db_config(), db);
}

#[test]
fn db_empty_values_are_ignored() {
    let sb = Sandbox::new();
    let mut cfg = load(&sb.root_env());
    let before = cfg.values.clone();
    cfg.apply_db_config(&DbConfig::default()).unwrap();
    assert_eq!(cfg.values, before);
    for field in DbField::ALL {
        assert_eq!(*cfg.sources.get(field.key()), Source::Default);
    }
}

#[test]
fn db_equal_explicit_value_is_fine() {
    let sb = Sandbox::new();
    let mut cfg = load_with(&sb.root_env(), &RuntimeOptions::new().tmp_dir("/db/tmp")).unwrap();
    cfg.apply_db_config(&db_all("/db")).unwrap();
    assert_eq!(cfg.values.tmp_dir, PathBuf::from("/db/tmp"));
    assert_eq!(*cfg.sources.get("tmp_dir"), flag("--tmpdir"));
    // The others came from the database.
    assert_eq!(*cfg.sources.get("static_dir"), Source::Database);
}

#[test]
fn db_mismatch_with_explicit_value_fails_and_changes_nothing() {
    let sb = Sandbox::new();
    let mut cfg = load_with(&sb.root_env(), &RuntimeOptions::new().tmp_dir("/ours/tmp")).unwrap();
    let values = cfg.values.clone();
    let sources = cfg.sources.clone();
    // static_dir is checked (and would be replaced) before tmp_dir: it must not be.
    let err = cfg.apply_db_config(&db_all("/db")).unwrap_err();
    let msg = err.to_string();
    match &err {
        ConfigError::DbMismatch {
            field, db, ours, ..
        } => {
            assert_eq!(*field, "libpod temporary files directory (tmpdir)");
            assert_eq!(db, "/db/tmp");
            assert_eq!(ours, "/ours/tmp");
        }
        other => panic!("expected DbMismatch, got {other:?}"),
    }
    assert!(
        msg.contains("libpod temporary files directory (tmpdir)"),
        "{msg}"
    );
    assert!(msg.contains("/db/tmp"), "{msg}");
    assert!(msg.contains("/ours/tmp"), "{msg}");
    assert!(msg.contains("database configuration mismatch"), "{msg}");
    assert_eq!(cfg.values, values);
    assert_eq!(cfg.sources, sources);
}

#[test]
fn db_mismatch_with_file_value_fails() {
    let sb = Sandbox::new();
    write(&sb.etc("libpod.conf"), "volume_path = \"/file/volumes\"\n");
    let mut cfg = load(&sb.root_env());
    match cfg.apply_db_config(&db_all("/db")).unwrap_err() {
        ConfigError::DbMismatch { field, .. } => {
            assert_eq!(field, DbField::VolumePath.label())
        }
        other => panic!("expected DbMismatch, got {other:?}"),
    }
}

#[test]
fn db_labels_are_libpods() {
    let labels: Vec<&str> = DbField::ALL.iter().map(|f| f.label()).collect();
    assert_eq!(
        labels,
        vec![
            "libpod root directory (staticdir)",
            "libpod temporary files directory (tmpdir)",
            "storage temporary directory (runroot)",
            "storage graph root directory (graphroot)",
            "volume path",
        ]
    );
}

#[test]
fn sources_serialise_for_json_output() {
    let sb = Sandbox::new();
    let cfg: Config = load_with(&sb.root_env(), &RuntimeOptions::new().tmp_dir("/t")).unwrap();
    let json = serde_json::to_value(&cfg.sources).unwrap();
    assert_eq!(
        json["tmp_dir"],
        serde_json::json!({"kind": "flag", "detail": "--tmpdir"})
    );
}
