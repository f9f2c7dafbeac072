//! Assembling the configuration: discovery of the files, merging files and options in order,
//! derived values, `config show --explain` and the rootless first-run write.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::ROOTLESS_INHERITED_KEYS;
use crate::config::{Layer, RuntimeConfig, RuntimeOptions, GLOBAL_FLAGS, KEY_ORDER};
use crate::env::ConfigEnv;
use crate::error::ConfigError;
use crate::files::{read_containers_conf, read_libpod_conf};
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
        apply_options(&mut cfg, options.layer.clone())?;
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
        crate::validate::invalid(&self.sources, key, value, reason)
    }

    /// Checks the values rpod cannot work with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::validate::validate(&self.values, &self.sources)
    }

    /// Applies a `libpod.conf`; a `partial` one (a rootless user's fallback to the system file)
    /// gives only [`ROOTLESS_INHERITED_KEYS`].
    fn apply_libpod_file(&mut self, path: &Path, partial: bool) -> Result<(), ConfigError> {
        let layer = read_libpod_conf(path)?;
        let source = Source::File(path.to_owned());
        layer.apply(&mut self.values, &mut self.sources, |key| {
            (!partial || ROOTLESS_INHERITED_KEYS.contains(&key)).then(|| source.clone())
        })?;
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
        let layer = read_containers_conf(path)?;
        let source = Source::File(path.to_owned());
        layer.apply(&mut self.values, &mut self.sources, |_| {
            Some(source.clone())
        })?;
        self.files.push(LoadedFile {
            path: path.to_owned(),
            kind: FileKind::ContainersConf,
        });
        Ok(())
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

/// Applies the options' layer, each key with its flag as the source.
fn apply_options(cfg: &mut Config, layer: Layer) -> Result<(), ConfigError> {
    layer.apply(&mut cfg.values, &mut cfg.sources, |key| {
        GLOBAL_FLAGS
            .iter()
            .find(|f| f.key == Some(key))
            .map(|f| Source::Flag(f.dashed()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_serialisation() {
        let env = ConfigEnv::sandboxed(Path::new("/nonexistent"));
        let mut c = RuntimeConfig::defaults(&env);
        c.runtime_path = vec!["/x".into()];
        c.lock_name = Some("/l".into());
        c.cgroup_parent = "/p".into();
        c.storage_driver = "vfs".into();
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

    #[test]
    fn every_flag_sets_its_key_with_its_name_as_source() {
        let env = ConfigEnv::sandboxed(Path::new("/nonexistent"));
        let mut opts = RuntimeOptions::new();
        for flag in GLOBAL_FLAGS.iter().filter(|f| f.key.is_some()) {
            let arg = match flag.long {
                "runtime" => "/bin/true",
                "cgroup-manager" => "cgroupfs",
                "state-backend" => "memory",
                "num-locks" => "64",
                "cgroup-parent" => "/p",
                _ => "/x",
            };
            opts = opts
                .set_flag(flag.long, arg.as_ref())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let cfg = Config::load(&env, &opts).unwrap_or_else(|e| panic!("{e}"));
        for flag in GLOBAL_FLAGS {
            if let Some(key) = flag.key {
                assert_eq!(cfg.sources.get(key), &Source::Flag(flag.dashed()), "{key}");
            }
        }
    }
}
