//! Discovery of libpod.conf / containers.conf, aliases, unknown keys and registries.conf.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{capture_logs, load, load_with, warnings, write, Sandbox};
use rpod_config::{
    CgroupManager, Config, ConfigError, FileKind, LoadedFile, Registries, RuntimeConfig,
    RuntimeOptions, Source, ROOTLESS_INHERITED_KEYS,
};

fn files(cfg: &Config) -> Vec<(PathBuf, FileKind)> {
    cfg.files.iter().map(|f| (f.path.clone(), f.kind)).collect()
}

#[test]
fn no_files_gives_defaults() {
    let sb = Sandbox::new();
    let env = sb.root_env();
    let cfg = load(&env);
    assert_eq!(cfg.values, RuntimeConfig::defaults(&env));
    assert!(cfg.files.is_empty());
    assert_eq!(cfg.sources.iter().count(), 0);
    assert_eq!(*cfg.sources.get("tmp_dir"), Source::Default);
}

#[test]
fn config_flag_must_exist() {
    let sb = Sandbox::new();
    let missing = sb.path("nope/libpod.conf");
    // Even with a system file present, a missing --config is an error.
    write(&sb.etc("libpod.conf"), "namespace = \"etc\"\n");
    let err = load_with(
        &sb.root_env(),
        &RuntimeOptions::new().config_path(missing.clone()),
    )
    .unwrap_err();
    match err {
        ConfigError::NotFound { path } => assert_eq!(path, missing),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn config_flag_wins_over_every_other_file() {
    let sb = Sandbox::new();
    let custom = sb.file(sb.path("custom/libpod.conf"), "namespace = \"custom\"\n");
    write(
        &sb.user("libpod.conf"),
        "namespace = \"user\"\nnum_locks = 64\n",
    );
    write(
        &sb.etc("libpod.conf"),
        "namespace = \"etc\"\ninfra_image = \"etc/pause\"\n",
    );
    write(&sb.share("libpod.conf"), "namespace = \"share\"\n");
    write(&sb.etc("containers.conf"), "[engine]\nnamespace = \"cc\"\n");
    for env in [sb.root_env(), sb.rootless_env()] {
        let cfg = load_with(&env, &RuntimeOptions::new().config_path(custom.clone())).unwrap();
        assert_eq!(cfg.values.namespace, "custom");
        assert_eq!(*cfg.sources.get("namespace"), Source::File(custom.clone()));
        // Only one libpod.conf is read: nothing from the others.
        assert_eq!(cfg.values.num_locks, 2048);
        assert_eq!(
            cfg.values.infra_image,
            RuntimeConfig::defaults(&env).infra_image
        );
        assert_eq!(files(&cfg), vec![(custom.clone(), FileKind::LibpodConf)]);
        assert!(cfg.explicit_config_file);
    }
}

#[test]
fn rootless_user_file_wins_and_is_the_only_one_read() {
    let sb = Sandbox::new();
    write(&sb.user("libpod.conf"), "namespace = \"user\"\n");
    write(
        &sb.etc("libpod.conf"),
        "namespace = \"etc\"\nconmon_path = [\"/etc/conmon\"]\n",
    );
    write(&sb.share("libpod.conf"), "namespace = \"share\"\n");
    let env = sb.rootless_env();
    let cfg = load(&env);
    assert_eq!(cfg.values.namespace, "user");
    // Not even the inherited keys come from the system file when the user has one.
    assert_eq!(
        cfg.values.conmon_path,
        RuntimeConfig::defaults(&env).conmon_path
    );
    assert_eq!(
        files(&cfg),
        vec![(sb.user("libpod.conf"), FileKind::LibpodConf)]
    );
    assert!(!cfg.explicit_config_file);
}

#[test]
fn root_ignores_user_libpod_conf() {
    let sb = Sandbox::new();
    write(&sb.user("libpod.conf"), "namespace = \"user\"\n");
    write(&sb.share("libpod.conf"), "namespace = \"share\"\n");
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.namespace, "share");
    assert_eq!(
        files(&cfg),
        vec![(sb.share("libpod.conf"), FileKind::LibpodConf)]
    );
}

#[test]
fn etc_wins_over_share_and_only_one_is_read() {
    let sb = Sandbox::new();
    write(&sb.etc("libpod.conf"), "namespace = \"etc\"\n");
    write(
        &sb.share("libpod.conf"),
        "namespace = \"share\"\ninfra_command = \"/share-pause\"\nnum_locks = 64\n",
    );
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.namespace, "etc");
    assert_eq!(cfg.values.infra_command, "/pause");
    assert_eq!(cfg.values.num_locks, 2048);
    assert_eq!(
        *cfg.sources.get("namespace"),
        Source::File(sb.etc("libpod.conf"))
    );
    assert_eq!(*cfg.sources.get("infra_command"), Source::Default);
    assert_eq!(
        files(&cfg),
        vec![(sb.etc("libpod.conf"), FileKind::LibpodConf)]
    );
}

#[test]
fn share_is_read_when_etc_is_missing() {
    let sb = Sandbox::new();
    write(&sb.share("libpod.conf"), "namespace = \"share\"\n");
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.namespace, "share");
    assert_eq!(
        *cfg.sources.get("namespace"),
        Source::File(sb.share("libpod.conf"))
    );
}

const FULL_SYSTEM_FILE: &str = r#"
runtime = "crun"
runtime_path = ["/opt/bin/myrunc"]
conmon_path = ["/opt/conmon"]
conmon_env_vars = ["PATH=/opt"]
cni_plugin_dir = ["/opt/cni"]
no_pivot_root = true
namespace = "system"
num_locks = 64
tmp_dir = "/sys-tmp"
cgroup_manager = "systemd"
infra_image = "sys/pause"
max_log_size = 100

[runtimes]
kata = ["/opt/kata"]
"#;

#[test]
fn rootless_inherits_only_some_keys_from_the_system_file() {
    let sb = Sandbox::new();
    write(&sb.etc("libpod.conf"), FULL_SYSTEM_FILE);
    write(
        &sb.share("libpod.conf"),
        "conmon_path = [\"/share/conmon\"]\n",
    );
    // containers.conf is ignored when any libpod.conf exists.
    write(&sb.user("containers.conf"), "[engine]\nnum_locks = 96\n");
    let env = sb.rootless_env();
    let (cfg, logs) = capture_logs(|| load(&env));
    let defaults = RuntimeConfig::defaults(&env);
    let src = Source::File(sb.etc("libpod.conf"));

    // Inherited.
    assert_eq!(cfg.values.conmon_path, vec!["/opt/conmon"]);
    assert_eq!(cfg.values.conmon_env_vars, vec!["PATH=/opt"]);
    assert_eq!(cfg.values.cni_plugin_dir, vec!["/opt/cni"]);
    assert!(cfg.values.no_pivot_root);
    assert_eq!(cfg.values.runtime_path, vec!["/opt/bin/myrunc"]);
    assert_eq!(cfg.values.runtimes["kata"], vec!["/opt/kata"]);
    // runtime_path (deprecated, inherited) takes over the runtime.
    assert_eq!(cfg.values.runtime, "myrunc");
    assert_eq!(cfg.values.runtimes["myrunc"], vec!["/opt/bin/myrunc"]);
    assert!(warnings(&logs).iter().any(|l| l.contains("runtime_path")));
    for key in ROOTLESS_INHERITED_KEYS {
        assert_eq!(*cfg.sources.get(key), src, "{key}");
    }
    // Not inherited.
    assert_eq!(cfg.values.namespace, defaults.namespace);
    assert_eq!(cfg.values.num_locks, defaults.num_locks);
    assert_eq!(cfg.values.tmp_dir, defaults.tmp_dir);
    assert_eq!(cfg.values.cgroup_manager, CgroupManager::Cgroupfs);
    assert_eq!(cfg.values.infra_image, defaults.infra_image);
    assert_eq!(cfg.values.max_log_size, -1);
    for key in [
        "namespace",
        "num_locks",
        "tmp_dir",
        "cgroup_manager",
        "infra_image",
        "max_log_size",
    ] {
        assert_eq!(*cfg.sources.get(key), Source::Default, "{key}");
    }
    assert_eq!(
        cfg.files,
        vec![LoadedFile {
            path: sb.etc("libpod.conf"),
            kind: FileKind::LibpodConfPartial
        }]
    );
}

#[test]
fn rootless_partial_falls_back_to_share() {
    let sb = Sandbox::new();
    write(
        &sb.share("libpod.conf"),
        "conmon_path = [\"/share/conmon\"]\nnamespace = \"share\"\n",
    );
    let cfg = load(&sb.rootless_env());
    assert_eq!(cfg.values.conmon_path, vec!["/share/conmon"]);
    assert_eq!(cfg.values.namespace, "");
    assert_eq!(
        files(&cfg),
        vec![(sb.share("libpod.conf"), FileKind::LibpodConfPartial)]
    );
}

#[test]
fn libpod_conf_present_means_containers_conf_ignored() {
    let sb = Sandbox::new();
    write(&sb.share("libpod.conf"), "namespace = \"libpod\"\n");
    write(
        &sb.etc("containers.conf"),
        "[engine]\nnamespace = \"cc\"\nnum_locks = 96\n",
    );
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.namespace, "libpod");
    assert_eq!(cfg.values.num_locks, 2048);
    assert_eq!(
        files(&cfg),
        vec![(sb.share("libpod.conf"), FileKind::LibpodConf)]
    );
}

#[test]
fn containers_conf_layers_are_merged_in_order() {
    let sb = Sandbox::new();
    write(
        &sb.share("containers.conf"),
        r#"
[containers]
log_size_max = 1000

[engine]
runtime = "crun"
conmon_path = ["/share/conmon"]
conmon_env_vars = ["A=share"]
cgroup_manager = "systemd"
static_dir = "/share/static"
tmp_dir = "/share/tmp"
volume_path = "/share/volumes"
num_locks = 96
infra_image = "share/pause"
infra_command = "/share-pause"
namespace = "share"
events_logger = "file"

[engine.runtimes]
kata = ["/share/kata"]

[network]
cni_plugin_dirs = ["/share/cni"]
network_config_dir = "/share/net.d"
default_network = "sharenet"
"#,
    );
    write(
        &sb.etc("containers.conf"),
        r#"
[engine]
tmp_dir = "/etc/tmp"
namespace = "etc"
cgroup_manager = "cgroupfs"

[engine.runtimes]
runsc = ["/etc/runsc"]

[network]
default_network = "etcnet"
"#,
    );
    write(
        &sb.user("containers.conf"),
        "[engine]\nnamespace = \"user\"\ninfra_command = \"/user-pause\"\n",
    );
    let share = Source::File(sb.share("containers.conf"));
    let etc = Source::File(sb.etc("containers.conf"));
    let user = Source::File(sb.user("containers.conf"));
    let env = sb.rootless_env();
    let (cfg, logs) = capture_logs(|| load(&env));
    let v = &cfg.values;
    let s = &cfg.sources;

    assert_eq!(v.runtime, "crun");
    assert_eq!(*s.get("runtime"), share);
    assert_eq!(v.conmon_path, vec!["/share/conmon"]);
    assert_eq!(*s.get("conmon_path"), share);
    assert_eq!(v.conmon_env_vars, vec!["A=share"]);
    assert_eq!(*s.get("conmon_env_vars"), share);
    assert_eq!(v.cgroup_manager, CgroupManager::Cgroupfs);
    assert_eq!(*s.get("cgroup_manager"), etc);
    assert_eq!(v.static_dir, PathBuf::from("/share/static"));
    assert_eq!(*s.get("static_dir"), share);
    assert_eq!(v.tmp_dir, PathBuf::from("/etc/tmp"));
    assert_eq!(*s.get("tmp_dir"), etc);
    assert_eq!(v.volume_path, PathBuf::from("/share/volumes"));
    assert_eq!(*s.get("volume_path"), share);
    assert_eq!(v.num_locks, 96);
    assert_eq!(*s.get("num_locks"), share);
    assert_eq!(v.infra_image, "share/pause");
    assert_eq!(*s.get("infra_image"), share);
    assert_eq!(v.infra_command, "/user-pause");
    assert_eq!(*s.get("infra_command"), user);
    assert_eq!(v.namespace, "user");
    assert_eq!(*s.get("namespace"), user);
    // Runtimes tables are merged with the built-in ones and with each other.
    assert_eq!(v.runtimes["kata"], vec!["/share/kata"]);
    assert_eq!(v.runtimes["runsc"], vec!["/etc/runsc"]);
    assert!(v.runtimes.contains_key("runc"));
    assert_eq!(*s.get("runtimes"), etc);
    assert_eq!(v.cni_plugin_dir, vec!["/share/cni"]);
    assert_eq!(*s.get("cni_plugin_dir"), share);
    assert_eq!(v.cni_config_dir, "/share/net.d");
    assert_eq!(*s.get("cni_config_dir"), share);
    assert_eq!(v.cni_default_network, "etcnet");
    assert_eq!(*s.get("cni_default_network"), etc);
    // Not mapped: stays default.
    assert_eq!(v.max_log_size, -1);
    assert_eq!(*s.get("max_log_size"), Source::Default);

    assert_eq!(
        files(&cfg),
        vec![
            (sb.share("containers.conf"), FileKind::ContainersConf),
            (sb.etc("containers.conf"), FileKind::ContainersConf),
            (sb.user("containers.conf"), FileKind::ContainersConf),
        ]
    );
    // containers.conf keys rpod does not use are legitimate there: no warning.
    assert!(warnings(&logs).is_empty(), "{logs}");
}

#[test]
fn containers_conf_layers_missing_are_skipped() {
    let sb = Sandbox::new();
    write(&sb.etc("containers.conf"), "[engine]\nnum_locks = 128\n");
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.num_locks, 128);
    assert_eq!(
        files(&cfg),
        vec![(sb.etc("containers.conf"), FileKind::ContainersConf)]
    );
}

#[test]
fn containers_conf_bad_cgroup_manager_is_invalid() {
    let sb = Sandbox::new();
    write(
        &sb.etc("containers.conf"),
        "[engine]\ncgroup_manager = \"v2\"\n",
    );
    match load_with(&sb.root_env(), &RuntimeOptions::new()).unwrap_err() {
        ConfigError::Invalid { key, origin, .. } => {
            assert_eq!(key, "cgroup_manager");
            assert_eq!(origin, Source::File(sb.etc("containers.conf")));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn pause_aliases_set_infra_keys() {
    let sb = Sandbox::new();
    write(
        &sb.etc("libpod.conf"),
        "pause_image = \"example.org/pause:1\"\npause_command = \"/bin/pause\"\n",
    );
    let (cfg, logs) = capture_logs(|| load(&sb.root_env()));
    let src = Source::File(sb.etc("libpod.conf"));
    assert_eq!(cfg.values.infra_image, "example.org/pause:1");
    assert_eq!(cfg.values.infra_command, "/bin/pause");
    assert_eq!(*cfg.sources.get("infra_image"), src);
    assert_eq!(*cfg.sources.get("infra_command"), src);
    // The aliases are known keys, not unknown ones.
    assert!(warnings(&logs).is_empty(), "{logs}");
}

#[test]
fn pause_alias_and_infra_key_together() {
    // The shipped libpod.conf documents pause_image; a user may add infra_image as well. Both
    // present must not be an error; the real key name wins.
    let sb = Sandbox::new();
    write(
        &sb.etc("libpod.conf"),
        "pause_image = \"alias/pause\"\ninfra_image = \"real/pause\"\npause_command = \"/alias\"\ninfra_command = \"/real\"\n",
    );
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.infra_image, "real/pause");
    assert_eq!(cfg.values.infra_command, "/real");
    // Also in the other order.
    write(
        &sb.etc("libpod.conf"),
        "infra_image = \"real/pause\"\npause_image = \"alias/pause\"\n",
    );
    let cfg = load(&sb.root_env());
    assert_eq!(cfg.values.infra_image, "real/pause");
}

#[test]
fn unknown_keys_warn_and_the_rest_applies() {
    let sb = Sandbox::new();
    let conf = sb.file(
        sb.etc("libpod.conf"),
        r#"
namespace = "ns"
bogus_key = 42
pause_imgae = "typo"
num_locks = 64

[bogus_table]
inner = true
"#,
    );
    let (cfg, logs) = capture_logs(|| load_with(&sb.root_env(), &RuntimeOptions::new()));
    let cfg = cfg.expect("unknown keys are not an error");
    assert_eq!(cfg.values.namespace, "ns");
    assert_eq!(cfg.values.num_locks, 64);
    let warns = warnings(&logs);
    let file = conf.display().to_string();
    for key in ["bogus_key", "pause_imgae", "bogus_table"] {
        assert!(
            warns.iter().any(|l| l.contains(key) && l.contains(&file)),
            "no warning naming {key} and {file} in:\n{logs}"
        );
    }
    assert!(!warns.iter().any(|l| l.contains("namespace")), "{logs}");
}

#[test]
fn keys_of_later_libpod_versions_are_not_warned_about() {
    let sb = Sandbox::new();
    write(
        &sb.etc("libpod.conf"),
        "events_logger = \"file\"\nevents_logfile_path = \"/x\"\nlock_type = \"shm\"\nnamespace = \"n\"\n",
    );
    let (cfg, logs) = capture_logs(|| load(&sb.root_env()));
    assert_eq!(cfg.values.namespace, "n");
    assert!(warnings(&logs).is_empty(), "{logs}");
}

#[test]
fn unknown_keys_in_partial_file_do_not_fail() {
    let sb = Sandbox::new();
    write(
        &sb.etc("libpod.conf"),
        "whatever = 1\nconmon_path = [\"/c\"]\n",
    );
    let (cfg, logs) = capture_logs(|| load(&sb.rootless_env()));
    assert_eq!(cfg.values.conmon_path, vec!["/c"]);
    assert!(warnings(&logs).iter().any(|l| l.contains("whatever")));
}

#[test]
fn xdg_config_home_locates_the_user_file() {
    let sb = Sandbox::new();
    let mut env = sb.rootless_env();
    let xdg = sb.path("xdg");
    env.xdg_config_home = Some(xdg.clone());
    write(&xdg.join("containers/libpod.conf"), "namespace = \"xdg\"\n");
    write(&sb.user("libpod.conf"), "namespace = \"home\"\n");
    let cfg = load(&env);
    assert_eq!(cfg.values.namespace, "xdg");
    assert_eq!(cfg.files[0].kind, FileKind::LibpodConf);
}

#[test]
fn registries_v2_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registries.conf");
    write(
        &path,
        r#"
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]

[[registry]]
location = "localhost:5000"
insecure = true

[[registry]]
prefix = "example.com/foo"
insecure = true

[[registry]]
location = "quay.io"
"#,
    );
    let r = Registries::load(&path).unwrap();
    assert_eq!(r.search, vec!["registry.fedoraproject.org", "docker.io"]);
    assert_eq!(r.insecure, vec!["localhost:5000", "example.com/foo"]);

    write(&path, "unqualified-search-registries = [\n");
    let err = Registries::load(&path).unwrap_err();
    assert_eq!(err.path, path);
}
