//! Discovery, parsing and merging of configuration files and options.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{CgroupManager, RuntimeConfig, StateBackend, ROOTLESS_INHERITED_KEYS};
use crate::env::ConfigEnv;
use crate::error::ConfigError;
use crate::options::RuntimeOptions;
use crate::source::{Source, Sources};

/// What kind of file a [`LoadedFile`] was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A `libpod.conf`, all keys applied.
    LibpodConf,
    /// A system `libpod.conf` read by a rootless user without one of their own: only
    /// [`ROOTLESS_INHERITED_KEYS`] applied.
    LibpodConfPartial,
    /// A `containers.conf` layer: its `[engine]` and `[network]` keys that mean the same thing.
    ContainersConf,
}

/// A configuration file that contributed to the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedFile {
    /// The file.
    pub path: PathBuf,
    /// How it was read.
    pub kind: FileKind,
}

/// The assembled configuration: values, where each came from, and the files read.
#[derive(Debug, Clone)]
pub struct Config {
    /// The effective values.
    pub values: RuntimeConfig,
    /// The source of every key.
    pub sources: Sources,
    /// The files read, in the order they were applied.
    pub files: Vec<LoadedFile>,
    /// The environment the configuration was discovered in.
    pub env: ConfigEnv,
    /// Whether `--config` was given (it suppresses the rootless first-run write).
    pub explicit_config_file: bool,
}

/// `libpod.conf` as written: every key optional, so presence means "set explicitly".
#[derive(Debug, Default, Deserialize)]
struct RawLibpod {
    runtime: Option<String>,
    runtime_path: Option<Vec<String>>,
    conmon_path: Option<Vec<String>>,
    conmon_env_vars: Option<Vec<String>>,
    cgroup_manager: Option<String>,
    init_path: Option<String>,
    static_dir: Option<PathBuf>,
    tmp_dir: Option<PathBuf>,
    volume_path: Option<PathBuf>,
    graph_root: Option<PathBuf>,
    run_root: Option<PathBuf>,
    max_log_size: Option<i64>,
    no_pivot_root: Option<bool>,
    hooks_dir: Option<Vec<String>>,
    image_default_transport: Option<String>,
    signature_policy_path: Option<String>,
    cni_config_dir: Option<String>,
    cni_plugin_dir: Option<Vec<String>>,
    cni_default_network: Option<String>,
    network_cmd_path: Option<String>,
    enable_port_reservation: Option<bool>,
    namespace: Option<String>,
    infra_image: Option<String>,
    infra_command: Option<String>,
    /// Alias of `infra_image` (the spelling of the shipped file); `infra_image` wins when both
    /// are present. Separate fields, not `#[serde(alias)]`, which rejects a file with both.
    pause_image: Option<String>,
    /// Alias of `infra_command`, as `pause_image`.
    pause_command: Option<String>,
    label: Option<bool>,
    num_locks: Option<u32>,
    lock_name: Option<String>,
    state_backend: Option<String>,
    cgroup_parent: Option<String>,
    runtimes: Option<BTreeMap<String, Vec<String>>>,
}

/// The parts of `containers.conf` rpod understands.
#[derive(Debug, Default, Deserialize)]
struct RawContainersConf {
    engine: Option<RawEngine>,
    network: Option<RawNetwork>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEngine {
    runtime: Option<String>,
    runtimes: Option<BTreeMap<String, Vec<String>>>,
    conmon_path: Option<Vec<String>>,
    conmon_env_vars: Option<Vec<String>>,
    cgroup_manager: Option<String>,
    static_dir: Option<PathBuf>,
    tmp_dir: Option<PathBuf>,
    volume_path: Option<PathBuf>,
    num_locks: Option<u32>,
    infra_image: Option<String>,
    infra_command: Option<String>,
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNetwork {
    cni_plugin_dirs: Option<Vec<String>>,
    network_config_dir: Option<String>,
    default_network: Option<String>,
}

impl Config {
    /// Assembles the configuration for `env`: built-in defaults, then the configuration files
    /// (discovered as libpod does, or `options`' `--config`), then the options, then values
    /// derived from others; rounds `num_locks` up and validates the result.
    ///
    /// Nothing is written; see [`Config::write_rootless_default`].
    pub fn load(env: &ConfigEnv, options: &RuntimeOptions) -> Result<Config, ConfigError> {
        let mut cfg = Config {
            values: RuntimeConfig::defaults(env),
            sources: Sources::default(),
            files: Vec::new(),
            env: env.clone(),
            explicit_config_file: options.config_path.is_some(),
        };
        if let Some(path) = &options.config_path {
            if !path.exists() {
                return Err(ConfigError::NotFound { path: path.clone() });
            }
            cfg.apply_libpod_file(path, false)?;
        } else if let Some(path) = env
            .libpod_conf_candidates()
            .into_iter()
            .find(|p| p.is_file())
        {
            let partial = env.rootless && Some(&path) != env.user_libpod_conf().as_ref();
            cfg.apply_libpod_file(&path, partial)?;
        } else {
            for layer in env.containers_conf_layers() {
                if layer.is_file() {
                    cfg.apply_containers_conf(&layer)?;
                }
            }
        }
        options.apply(&mut cfg)?;
        cfg.finish()?;
        Ok(cfg)
    }

    /// Derives dependent defaults, handles the deprecated `runtime_path`, rounds `num_locks`
    /// up and validates.
    fn finish(&mut self) -> Result<(), ConfigError> {
        // Like libpod (static dir = <graphroot>/libpod), a graph root chosen by the user carries
        // the static dir and volume path with it unless those were chosen too.
        if self.sources.is_explicit("graph_root") {
            if !self.sources.is_explicit("static_dir") {
                self.values.static_dir = self.values.graph_root.join("libpod");
            }
            if !self.sources.is_explicit("volume_path") {
                self.values.volume_path = self.values.graph_root.join("volumes");
            }
        }
        if !self.values.runtime_path.is_empty() {
            let flag = matches!(self.sources.get("runtime"), Source::Flag(_));
            tracing::warn!(
                source = %self.sources.get("runtime_path"),
                "the runtime_path key is deprecated; use runtime and [runtimes] instead"
            );
            if !flag {
                let first = &self.values.runtime_path[0];
                let name = Path::new(first)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| first.clone());
                self.values
                    .runtimes
                    .insert(name.clone(), self.values.runtime_path.clone());
                self.values.runtime = name;
                let src = self.sources.get("runtime_path").clone();
                self.sources.set("runtime", src);
            }
        }
        let n = self.values.num_locks;
        if n == 0 {
            return Err(self.invalid("num_locks", "0".into(), "must be at least 1"));
        }
        self.values.num_locks = n
            .checked_add(31)
            .map(|v| v / 32 * 32)
            .ok_or_else(|| self.invalid("num_locks", n.to_string(), "is too large"))?;
        self.validate()
    }

    fn invalid(&self, key: &'static str, value: String, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            key,
            value,
            origin: self.sources.get(key).clone(),
            reason: reason.to_owned(),
        }
    }

    /// Checks the values rpod cannot work with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = &self.values;
        // The storage roots first: static_dir and volume_path may be derived from graph_root,
        // and the error should name the key the user actually set.
        for (key, path) in [
            ("graph_root", &v.graph_root),
            ("run_root", &v.run_root),
            ("static_dir", &v.static_dir),
            ("tmp_dir", &v.tmp_dir),
            ("volume_path", &v.volume_path),
        ] {
            if !path.is_absolute() {
                return Err(self.invalid(
                    key,
                    path.display().to_string(),
                    "must be an absolute path",
                ));
            }
        }
        if !v.cni_config_dir.starts_with('/') {
            return Err(self.invalid(
                "cni_config_dir",
                v.cni_config_dir.clone(),
                "must be an absolute path",
            ));
        }
        if v.num_locks == 0 {
            return Err(self.invalid("num_locks", "0".into(), "must be at least 1"));
        }
        if v.max_log_size < -1 {
            return Err(self.invalid(
                "max_log_size",
                v.max_log_size.to_string(),
                "must be -1 (unlimited) or a size in bytes",
            ));
        }
        if !v.cgroup_parent.is_empty() {
            let base = v.cgroup_parent.rsplit('/').next().unwrap_or("");
            let slice = base.ends_with(".slice");
            let reason = match v.cgroup_manager {
                CgroupManager::Cgroupfs if slice => {
                    Some("systemd slices cannot be used with the cgroupfs cgroup manager")
                }
                CgroupManager::Cgroupfs if !v.cgroup_parent.starts_with('/') => {
                    Some("must be an absolute cgroup path with the cgroupfs cgroup manager")
                }
                CgroupManager::Systemd if !slice || base.len() < 6 => {
                    Some("must be a systemd slice (NAME.slice) with the systemd cgroup manager")
                }
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(self.invalid("cgroup_parent", v.cgroup_parent.clone(), reason));
            }
        }
        if v.runtime.is_empty() {
            return Err(self.invalid("runtime", String::new(), "must not be empty"));
        }
        if v.runtime_candidates().is_none() {
            let known: Vec<&str> = v.runtimes.keys().map(String::as_str).collect();
            return Err(self.invalid(
                "runtime",
                v.runtime.clone(),
                &format!(
                    "neither an absolute path nor a name in [runtimes] (known: {})",
                    known.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn apply_libpod_file(&mut self, path: &Path, partial: bool) -> Result<(), ConfigError> {
        let text = read_file(path)?;
        let mut unknown = Vec::new();
        let mut raw: RawLibpod = parse_toml(path, &text, &mut unknown)?;
        raw.infra_image = raw.infra_image.or(raw.pause_image.take());
        raw.infra_command = raw.infra_command.or(raw.pause_command.take());
        for key in unknown {
            if LATER_LIBPOD_KEYS.contains(&key.as_str()) {
                tracing::debug!(file = %path.display(), key = %key, "libpod.conf key not used by rpod");
            } else {
                tracing::warn!(file = %path.display(), key = %key, "unknown configuration key ignored");
            }
        }
        let source = Source::File(path.to_owned());
        let keep = |key: &str| !partial || ROOTLESS_INHERITED_KEYS.contains(&key);
        let (v, s) = (&mut self.values, &mut self.sources);
        macro_rules! take {
            ($($field:ident),* $(,)?) => {$(
                if let Some(x) = raw.$field {
                    if keep(stringify!($field)) {
                        v.$field = x;
                        s.set(stringify!($field), source.clone());
                    }
                }
            )*};
        }
        take!(
            runtime,
            runtime_path,
            conmon_path,
            conmon_env_vars,
            init_path,
            static_dir,
            tmp_dir,
            volume_path,
            graph_root,
            run_root,
            max_log_size,
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
            label,
            num_locks,
            cgroup_parent,
        );
        if let Some(x) = raw.runtimes {
            if keep("runtimes") {
                v.runtimes.extend(x);
                s.set("runtimes", source.clone());
            }
        }
        if let Some(x) = raw.lock_name {
            if keep("lock_name") {
                v.lock_name = Some(x);
                s.set("lock_name", source.clone());
            }
        }
        if let Some(x) = raw.cgroup_manager {
            if keep("cgroup_manager") {
                self.set_cgroup_manager(&x, source.clone())?;
            }
        }
        if let Some(x) = raw.state_backend {
            if keep("state_backend") {
                self.set_state_backend(&x, source.clone())?;
            }
        }
        self.files.push(LoadedFile {
            path: path.to_owned(),
            kind: if partial {
                FileKind::LibpodConfPartial
            } else {
                FileKind::LibpodConf
            },
        });
        Ok(())
    }

    fn apply_containers_conf(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = read_file(path)?;
        let mut unknown = Vec::new();
        let raw: RawContainersConf = parse_toml(path, &text, &mut unknown)?;
        for key in unknown {
            // Keys of containers.conf that have no libpod.conf meaning are legitimate there.
            tracing::debug!(file = %path.display(), key = %key, "containers.conf key not used by rpod");
        }
        let source = Source::File(path.to_owned());
        let (v, s) = (&mut self.values, &mut self.sources);
        macro_rules! take {
            ($raw:expr; $($from:ident => $to:ident),* $(,)?) => {$(
                if let Some(x) = $raw.$from {
                    v.$to = x;
                    s.set(stringify!($to), source.clone());
                }
            )*};
        }
        let mut cgroup_manager = None;
        if let Some(e) = raw.engine {
            take!(e;
                runtime => runtime,
                conmon_path => conmon_path,
                conmon_env_vars => conmon_env_vars,
                static_dir => static_dir,
                tmp_dir => tmp_dir,
                volume_path => volume_path,
                num_locks => num_locks,
                infra_image => infra_image,
                infra_command => infra_command,
                namespace => namespace,
            );
            if let Some(x) = e.runtimes {
                v.runtimes.extend(x);
                s.set("runtimes", source.clone());
            }
            cgroup_manager = e.cgroup_manager;
        }
        if let Some(n) = raw.network {
            take!(n;
                cni_plugin_dirs => cni_plugin_dir,
                network_config_dir => cni_config_dir,
                default_network => cni_default_network,
            );
        }
        if let Some(x) = cgroup_manager {
            self.set_cgroup_manager(&x, source)?;
        }
        self.files.push(LoadedFile {
            path: path.to_owned(),
            kind: FileKind::ContainersConf,
        });
        Ok(())
    }

    pub(crate) fn set_cgroup_manager(
        &mut self,
        value: &str,
        source: Source,
    ) -> Result<(), ConfigError> {
        match CgroupManager::parse(value) {
            Some(m) => {
                self.values.cgroup_manager = m;
                self.sources.set("cgroup_manager", source);
                Ok(())
            }
            None => Err(ConfigError::Invalid {
                key: "cgroup_manager",
                value: value.to_owned(),
                origin: source,
                reason: "must be \"cgroupfs\" or \"systemd\"".to_owned(),
            }),
        }
    }

    pub(crate) fn set_state_backend(
        &mut self,
        value: &str,
        source: Source,
    ) -> Result<(), ConfigError> {
        match StateBackend::parse(value) {
            Some(b) => {
                self.values.state_backend = b;
                self.sources.set("state_backend", source);
                Ok(())
            }
            None => Err(ConfigError::Invalid {
                key: "state_backend",
                value: value.to_owned(),
                origin: source,
                reason: "must be \"lmdb\" or \"memory\"".to_owned(),
            }),
        }
    }

    /// Every key with its value (as TOML) and source, in serialisation order; for
    /// `rpod config show --explain`.
    pub fn explain(&self) -> Result<Vec<(String, String, Source)>, ConfigError> {
        let value = toml::Value::try_from(&self.values)
            .map_err(|e| ConfigError::Serialize(e.to_string()))?;
        let table = match value {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Serialize(
                    "configuration is not a table".into(),
                ))
            }
        };
        let mut out = Vec::new();
        for key in KEY_ORDER {
            let shown = match table.get(*key) {
                Some(v) => v.to_string(),
                None => "(unset)".to_owned(),
            };
            out.push(((*key).to_owned(), shown, self.sources.get(key).clone()));
        }
        Ok(out)
    }

    /// Rootless first run: writes the effective configuration to `~/.config/containers/libpod.conf`
    /// if that file does not exist and no `--config` was given.
    ///
    /// The file is created exclusively through a temporary file that is fsynced and linked into
    /// place, so a concurrent writer or an existing file is never clobbered. Returns the path
    /// when this call wrote it.
    pub fn write_rootless_default(&self) -> Result<Option<PathBuf>, ConfigError> {
        if !self.env.rootless || self.explicit_config_file {
            return Ok(None);
        }
        let Some(path) = self.env.user_libpod_conf() else {
            return Ok(None);
        };
        if path.exists() {
            return Ok(None);
        }
        let contents = self.values.to_toml()?;
        let write_err = |source| ConfigError::Write {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        match crate::fsutil::write_file_atomic(&path, contents.as_bytes(), 0o600, true) {
            Ok(()) => Ok(Some(path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(write_err(e)),
        }
    }
}

/// Keys that later libpod versions added to `libpod.conf` (and distributions still ship) that rpod
/// does not use: logged at debug level rather than warned about.
const LATER_LIBPOD_KEYS: &[&str] = &[
    "lock_type",
    "runtime_supports_json",
    "runtime_supports_nocgroups",
    "runtime_supports_kvm",
    "events_logger",
    "events_logfile_path",
    "detach_keys",
    "sdnotify",
];

/// Every key of [`RuntimeConfig`] in serialisation order.
pub(crate) const KEY_ORDER: &[&str] = &[
    "runtime",
    "runtime_path",
    "conmon_path",
    "conmon_env_vars",
    "cgroup_manager",
    "init_path",
    "static_dir",
    "tmp_dir",
    "volume_path",
    "graph_root",
    "run_root",
    "max_log_size",
    "no_pivot_root",
    "hooks_dir",
    "image_default_transport",
    "signature_policy_path",
    "cni_config_dir",
    "cni_plugin_dir",
    "cni_default_network",
    "network_cmd_path",
    "enable_port_reservation",
    "namespace",
    "infra_image",
    "infra_command",
    "label",
    "num_locks",
    "lock_name",
    "state_backend",
    "cgroup_parent",
    "runtimes",
];

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses `text` as `T`, collecting the keys `T` does not know; errors carry file, line and column.
fn parse_toml<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    unknown: &mut Vec<String>,
) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_ignored::deserialize(de, |p| unknown.push(p.to_string())).map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\n", 2), (2, 1));
    }

    #[test]
    fn key_order_matches_serialisation() {
        let env = ConfigEnv::sandboxed(Path::new("/nonexistent"));
        let mut c = RuntimeConfig::defaults(&env);
        c.runtime_path = vec!["/x".into()];
        c.lock_name = Some("/l".into());
        c.cgroup_parent = "/p".into();
        let v = toml::Value::try_from(&c).ok();
        let keys: Vec<String> = match v {
            Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let mut expected: Vec<String> = KEY_ORDER.iter().map(|s| s.to_string()).collect();
        expected.sort();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        assert_eq!(keys_sorted, expected);
    }
}
