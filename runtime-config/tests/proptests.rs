//! Property tests: TOML round trip, file round trip with sources, and file/option merging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{write, Sandbox};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use rpod_config::{CgroupManager, Config, RuntimeConfig, RuntimeOptions, Source, StateBackend};

/// Any string, with a bias towards the characters TOML has to escape.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"'\\\\\n\r\t a-zé€😀\u{0}\u{1f}\u{7f}=#\\[\\]{}.,]{0,12}",
        Just(String::new()),
        Just("'''".to_owned()),
        Just("\"\"\"".to_owned()),
        Just("a\r\nb".to_owned()),
    ]
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    vec(any_string(), 0..4)
}

fn any_path() -> impl Strategy<Value = PathBuf> {
    any_string().prop_map(PathBuf::from)
}

fn cgroup_manager() -> impl Strategy<Value = CgroupManager> {
    prop_oneof![Just(CgroupManager::Cgroupfs), Just(CgroupManager::Systemd)]
}

fn state_backend() -> impl Strategy<Value = StateBackend> {
    prop_oneof![Just(StateBackend::Lmdb), Just(StateBackend::Memory)]
}

/// Any `RuntimeConfig` (fields grouped in tuples of at most 12 strategies).
fn arb_config() -> impl Strategy<Value = RuntimeConfig> {
    let a = (
        any_string(),
        strings(),
        strings(),
        strings(),
        cgroup_manager(),
        any_string(),
        any_path(),
        any_path(),
        any_path(),
        any_path(),
        any_path(),
        any::<i64>(),
    );
    let b = (
        any::<bool>(),
        strings(),
        any_string(),
        any_string(),
        any_string(),
        strings(),
        any_string(),
        any_string(),
        any::<bool>(),
        any_string(),
        any_string(),
        any_string(),
    );
    let c = (
        any::<bool>(),
        any::<u32>(),
        option::of(any_string()),
        state_backend(),
        btree_map(any_string(), strings(), 0..4),
        any_string(),
    );
    let d = (
        any_string(),
        any_string(),
        any_string(),
        any_string(),
        any_string(),
    );
    (a, b, c, d).prop_map(
        |(
            (
                runtime,
                runtime_path,
                conmon_path,
                conmon_env_vars,
                cgroup_manager,
                init_path,
                static_dir,
                tmp_dir,
                volume_path,
                graph_root,
                run_root,
                max_log_size,
            ),
            (
                no_pivot_root,
                hooks_dir,
                image_default_transport,
                signature_policy_path,
                cni_config_dir,
                cni_plugin_dir,
                cni_default_network,
                network_cmd_path,
                enable_port_reservation,
                namespace,
                infra_image,
                infra_command,
            ),
            (label, num_locks, lock_name, state_backend, runtimes, cgroup_parent),
            (default_subnet, default_bridge, ipam_data_dir, firewall_driver, netns),
        )| RuntimeConfig {
            runtime,
            runtime_path,
            conmon_path,
            conmon_env_vars,
            cgroup_manager,
            init_path,
            static_dir,
            tmp_dir,
            volume_path,
            graph_root,
            run_root,
            storage_driver: String::new(),
            max_log_size,
            no_pivot_root,
            hooks_dir,
            image_default_transport,
            signature_policy_path,
            cni_config_dir,
            cni_plugin_dir,
            cni_default_network,
            default_subnet,
            default_bridge,
            ipam_data_dir,
            firewall_driver,
            netns,
            network_cmd_path,
            enable_port_reservation,
            namespace,
            infra_image,
            infra_command,
            label,
            num_locks,
            lock_name,
            state_backend,
            cgroup_parent,
            runtimes,
        },
    )
}

/// An absolute path made of arbitrary (non-`/`, non-NUL) components.
fn abs_path() -> impl Strategy<Value = PathBuf> {
    vec("[^/\u{0}]{1,8}", 1..4).prop_map(|parts| PathBuf::from(format!("/{}", parts.join("/"))))
}

fn abs_string() -> impl Strategy<Value = String> {
    abs_path().prop_map(|p| p.display().to_string())
}

/// A runtime name: non-empty, not starting with `/`.
fn runtime_name() -> impl Strategy<Value = String> {
    any_string().prop_filter("a name", |s| !s.is_empty() && !s.starts_with('/'))
}

/// A configuration that passes validation unchanged (no rounding, no runtime_path rewrite).
fn valid_config() -> impl Strategy<Value = RuntimeConfig> {
    let runtimes = btree_map(runtime_name(), strings(), 1..4);
    let runtime_choice = (any::<prop::sample::Index>(), option::of(abs_string()));
    (
        arb_config(),
        runtimes,
        runtime_choice,
        (abs_path(), abs_path(), abs_path(), abs_path(), abs_path()),
        abs_string(),
        1u32..=(u32::MAX / 32),
        -1i64..=i64::MAX,
    )
        .prop_map(
            |(mut c, runtimes, (idx, abs_runtime), paths, cni, locks, max_log)| {
                c.runtime = match abs_runtime {
                    Some(p) => p,
                    None => idx.get(&runtimes.keys().collect::<Vec<_>>()).to_string(),
                };
                c.runtimes = runtimes;
                c.runtime_path = Vec::new();
                (
                    c.static_dir,
                    c.tmp_dir,
                    c.volume_path,
                    c.graph_root,
                    c.run_root,
                ) = paths;
                c.cni_config_dir = cni;
                c.num_locks = locks * 32;
                c.max_log_size = max_log;
                // A cgroup parent must suit the cgroup manager; use one that does (or none).
                c.cgroup_parent = match (c.cgroup_parent.len() % 3, c.cgroup_manager) {
                    (0, _) => String::new(),
                    (_, CgroupManager::Cgroupfs) => "/rpod_prop_parent".to_owned(),
                    (_, CgroupManager::Systemd) => "rpod_prop.slice".to_owned(),
                };
                c
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Any configuration survives `to_toml` and `toml::from_str`.
    #[test]
    fn toml_round_trip(c in arb_config()) {
        let text = c.to_toml().unwrap();
        let back: RuntimeConfig = toml::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, c);
    }

    /// (b) A valid configuration written to a file and loaded with `--config` comes back, and
    /// every key written is sourced from that file.
    #[test]
    fn file_round_trip_with_sources(c in valid_config()) {
        let sb = Sandbox::new();
        let file = sb.path("conf/libpod.conf");
        let text = c.to_toml().unwrap();
        write(&file, &text);
        let env = sb.root_env();
        let cfg = Config::load(&env, &RuntimeOptions::new().config_path(file.clone()))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        // [runtimes] adds to the built-in table (as libpod's decoder did).
        let mut expected = c.clone();
        let mut runtimes = RuntimeConfig::defaults(&env).runtimes;
        runtimes.extend(c.runtimes.clone());
        expected.runtimes = runtimes;
        prop_assert_eq!(&cfg.values, &expected);

        let table: toml::Table = toml::from_str(&text).unwrap();
        let src = Source::File(file.clone());
        for (key, _, source) in cfg.explain().unwrap() {
            if table.contains_key(&key) {
                prop_assert_eq!(&source, &src, "{}", key);
            } else {
                prop_assert_eq!(&source, &Source::Default, "{}", key);
            }
        }
        prop_assert!(table.contains_key("runtime"));
        prop_assert_eq!(table.contains_key("lock_name"), c.lock_name.is_some());
    }
}

/// One key's value in the merge test, as it is written to a file and given as an option.
#[derive(Debug, Clone)]
enum Val {
    Path(PathBuf),
    Str(String),
    Num(u32),
}

/// The keys settable both ways, with a strategy for a value of each.
const MERGE_KEYS: &[&str] = &[
    "graph_root",
    "run_root",
    "static_dir",
    "tmp_dir",
    "volume_path",
    "runtime",
    "conmon_path",
    "cgroup_manager",
    "cni_config_dir",
    "namespace",
    "num_locks",
    "lock_name",
    "state_backend",
];

fn flag_of(key: &str) -> &'static str {
    match key {
        "graph_root" => "--root",
        "run_root" => "--runroot",
        "static_dir" => "--static-dir",
        "tmp_dir" => "--tmpdir",
        "volume_path" => "--volumepath",
        "runtime" => "--runtime",
        "conmon_path" => "--conmon",
        "cgroup_manager" => "--cgroup-manager",
        "cni_config_dir" => "--cni-config-dir",
        "namespace" => "--namespace",
        "num_locks" => "--num-locks",
        "lock_name" => "--lock-name",
        "state_backend" => "--state-backend",
        _ => unreachable!("{key}"),
    }
}

fn value_for(key: &'static str) -> BoxedStrategy<Val> {
    match key {
        "graph_root" | "run_root" | "static_dir" | "tmp_dir" | "volume_path" | "conmon_path"
        | "cni_config_dir" => abs_path().prop_map(Val::Path).boxed(),
        "runtime" => prop_oneof![
            Just("runc".to_owned()),
            Just("crun".to_owned()),
            abs_string()
        ]
        .prop_map(Val::Str)
        .boxed(),
        "cgroup_manager" => prop_oneof![Just("cgroupfs"), Just("systemd")]
            .prop_map(|s| Val::Str(s.to_owned()))
            .boxed(),
        "state_backend" => prop_oneof![Just("lmdb"), Just("memory")]
            .prop_map(|s| Val::Str(s.to_owned()))
            .boxed(),
        "num_locks" => (1u32..100_000).prop_map(Val::Num).boxed(),
        "namespace" | "lock_name" => any_string().prop_map(Val::Str).boxed(),
        _ => unreachable!("{key}"),
    }
}

/// For each key: maybe a file value, maybe an option value.
fn merge_case() -> impl Strategy<Value = Vec<(&'static str, Option<Val>, Option<Val>)>> {
    MERGE_KEYS
        .iter()
        .map(|k| (Just(*k), option::of(value_for(k)), option::of(value_for(k))))
        .collect::<Vec<_>>()
}

fn to_toml_value(key: &str, v: &Val) -> toml::Value {
    match v {
        Val::Path(p) if key == "conmon_path" => {
            toml::Value::Array(vec![toml::Value::String(p.display().to_string())])
        }
        Val::Path(p) => toml::Value::String(p.display().to_string()),
        Val::Str(s) => toml::Value::String(s.clone()),
        Val::Num(n) => toml::Value::Integer(i64::from(*n)),
    }
}

fn add_option(o: RuntimeOptions, key: &str, v: &Val) -> RuntimeOptions {
    match (key, v.clone()) {
        ("graph_root", Val::Path(p)) => o.graph_root(p),
        ("run_root", Val::Path(p)) => o.run_root(p),
        ("static_dir", Val::Path(p)) => o.static_dir(p),
        ("tmp_dir", Val::Path(p)) => o.tmp_dir(p),
        ("volume_path", Val::Path(p)) => o.volume_path(p),
        ("conmon_path", Val::Path(p)) => o.conmon(p),
        ("cni_config_dir", Val::Path(p)) => o.cni_config_dir(p),
        ("runtime", Val::Str(s)) => o.runtime(s),
        ("cgroup_manager", Val::Str(s)) => o.cgroup_manager(s),
        ("state_backend", Val::Str(s)) => o.state_backend(s),
        ("namespace", Val::Str(s)) => o.namespace(s),
        ("lock_name", Val::Str(s)) => o.lock_name(s),
        ("num_locks", Val::Num(n)) => o.num_locks(n),
        _ => unreachable!("{key}"),
    }
}

/// Sets `key` of `c` to `v` as the loader should (num_locks rounded up).
fn set_value(c: &mut RuntimeConfig, key: &str, v: &Val) {
    match (key, v.clone()) {
        ("graph_root", Val::Path(p)) => c.graph_root = p,
        ("run_root", Val::Path(p)) => c.run_root = p,
        ("static_dir", Val::Path(p)) => c.static_dir = p,
        ("tmp_dir", Val::Path(p)) => c.tmp_dir = p,
        ("volume_path", Val::Path(p)) => c.volume_path = p,
        ("conmon_path", Val::Path(p)) => c.conmon_path = vec![p.display().to_string()],
        ("cni_config_dir", Val::Path(p)) => c.cni_config_dir = p.display().to_string(),
        ("runtime", Val::Str(s)) => c.runtime = s,
        ("cgroup_manager", Val::Str(s)) => c.cgroup_manager = CgroupManager::parse(&s).unwrap(),
        ("state_backend", Val::Str(s)) => c.state_backend = StateBackend::parse(&s).unwrap(),
        ("namespace", Val::Str(s)) => c.namespace = s,
        ("lock_name", Val::Str(s)) => c.lock_name = Some(s),
        ("num_locks", Val::Num(n)) => c.num_locks = n.div_ceil(32) * 32,
        _ => unreachable!("{key}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (c) Each key's value and source: the option's if set, else the /etc file's, else the
    /// default (with static_dir and volume_path following an explicit graph root).
    #[test]
    fn files_and_options_merge(case in merge_case()) {
        let sb = Sandbox::new();
        let env = sb.root_env();
        let conf = sb.etc("libpod.conf");
        let mut table = toml::Table::new();
        let mut opts = RuntimeOptions::new();
        let mut expected = RuntimeConfig::defaults(&env);
        let mut sources: BTreeMap<&str, Source> = BTreeMap::new();
        for (key, file, opt) in &case {
            if let Some(v) = file {
                table.insert((*key).to_owned(), to_toml_value(key, v));
            }
            if let Some(v) = opt {
                opts = add_option(opts, key, v);
            }
            match (opt, file) {
                (Some(v), _) => {
                    set_value(&mut expected, key, v);
                    sources.insert(key, Source::Flag(flag_of(key).to_owned()));
                }
                (None, Some(v)) => {
                    set_value(&mut expected, key, v);
                    sources.insert(key, Source::File(conf.clone()));
                }
                (None, None) => {
                    sources.insert(key, Source::Default);
                }
            }
        }
        if sources["graph_root"].is_explicit() {
            if !sources["static_dir"].is_explicit() {
                expected.static_dir = expected.graph_root.join("libpod");
            }
            if !sources["volume_path"].is_explicit() {
                expected.volume_path = expected.graph_root.join("volumes");
            }
        }
        let text = toml::to_string(&table).unwrap();
        write(&conf, &text);
        let cfg = Config::load(&env, &opts)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&cfg.values, &expected);
        for (key, source) in &sources {
            prop_assert_eq!(cfg.sources.get(key), source, "{}", key);
        }
        // Keys neither file nor option can set stay default.
        prop_assert_eq!(cfg.sources.get("infra_image"), &Source::Default);
        let files: Vec<_> = cfg.files.iter().map(|f| f.path.clone()).collect();
        prop_assert_eq!(files, vec![conf]);
    }
}
