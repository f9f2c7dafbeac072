//! Runtime options: what the CLI flags (or an embedding program) set on top of the files.

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::load::Config;
use crate::source::Source;

/// A builder for every setting the CLI flags can override. Values set here win over files and
/// are recorded with the flag's name as their [`Source`].
///
/// ```
/// use rpod_config::RuntimeOptions;
/// let opts = RuntimeOptions::new().tmp_dir("/tmp/rpod-test/tmp").num_locks(64);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub(crate) config_path: Option<PathBuf>,
    graph_root: Option<PathBuf>,
    run_root: Option<PathBuf>,
    static_dir: Option<PathBuf>,
    tmp_dir: Option<PathBuf>,
    volume_path: Option<PathBuf>,
    runtime: Option<String>,
    conmon: Option<PathBuf>,
    cgroup_manager: Option<String>,
    cni_config_dir: Option<PathBuf>,
    namespace: Option<String>,
    num_locks: Option<u32>,
    lock_name: Option<String>,
    state_backend: Option<String>,
    cgroup_parent: Option<String>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$name = Some(value.into());
            self
        }
    };
}

impl RuntimeOptions {
    /// No options: files and defaults only.
    pub fn new() -> Self {
        Self::default()
    }

    setter!(
        /// `--config`: read only this `libpod.conf` (it must exist).
        config_path: PathBuf
    );
    setter!(
        /// `--root`: the storage graph root (also moves the static dir and volume path unless
        /// those are set).
        graph_root: PathBuf
    );
    setter!(
        /// `--runroot`: the storage run root.
        run_root: PathBuf
    );
    setter!(
        /// `--static-dir`: where the state database lives.
        static_dir: PathBuf
    );
    setter!(
        /// `--tmpdir`: per-boot state (must be tmpfs).
        tmp_dir: PathBuf
    );
    setter!(
        /// `--volumepath`: named volumes.
        volume_path: PathBuf
    );
    setter!(
        /// `--runtime`: OCI runtime name or absolute path.
        runtime: String
    );
    setter!(
        /// `--conmon`: path of the conmon binary.
        conmon: PathBuf
    );
    setter!(
        /// `--cgroup-manager`: `cgroupfs` or `systemd`.
        cgroup_manager: String
    );
    setter!(
        /// `--cni-config-dir`: CNI configuration directory.
        cni_config_dir: PathBuf
    );
    setter!(
        /// `--namespace`: the logical namespace to work in.
        namespace: String
    );
    /// `--num-locks`: size of the lock segment.
    ///
    /// A plain `u32` rather than `impl Into<u32>`, so that an unsuffixed literal
    /// (`.num_locks(64)`) infers as `u32` instead of falling back to `i32`.
    #[must_use]
    pub fn num_locks(mut self, value: u32) -> Self {
        self.num_locks = Some(value);
        self
    }
    setter!(
        /// `--lock-name`: explicit SHM lock segment name.
        lock_name: String
    );
    setter!(
        /// `--state-backend`: `lmdb` or `memory`.
        state_backend: String
    );
    setter!(
        /// `--cgroup-parent`: cgroup parent of containers and pods.
        cgroup_parent: String
    );

    /// The `--config` path, if given.
    pub fn config_file(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// Applies the options to `cfg`, recording each with its flag as the source.
    pub(crate) fn apply(&self, cfg: &mut Config) -> Result<(), ConfigError> {
        let flag = |f: &str| Source::Flag(f.to_owned());
        let (v, s) = (&mut cfg.values, &mut cfg.sources);
        macro_rules! put {
            ($($field:ident => $key:ident, $flag:literal, $conv:expr;)*) => {$(
                if let Some(x) = &self.$field {
                    v.$key = $conv(x.clone());
                    s.set(stringify!($key), flag($flag));
                }
            )*};
        }
        let same = |x| x;
        put! {
            graph_root => graph_root, "--root", same;
            run_root => run_root, "--runroot", same;
            static_dir => static_dir, "--static-dir", same;
            tmp_dir => tmp_dir, "--tmpdir", same;
            volume_path => volume_path, "--volumepath", same;
            runtime => runtime, "--runtime", |x: String| x;
            conmon => conmon_path, "--conmon", |x: PathBuf| vec![x.display().to_string()];
            cni_config_dir => cni_config_dir, "--cni-config-dir", |x: PathBuf| x.display().to_string();
            namespace => namespace, "--namespace", |x: String| x;
            num_locks => num_locks, "--num-locks", |x: u32| x;
            lock_name => lock_name, "--lock-name", |x: String| Some(x);
            cgroup_parent => cgroup_parent, "--cgroup-parent", |x: String| x;
        }
        if let Some(m) = &self.cgroup_manager {
            cfg.set_cgroup_manager(m, flag("--cgroup-manager"))?;
        }
        if let Some(b) = &self.state_backend {
            cfg.set_state_backend(b, flag("--state-backend"))?;
        }
        Ok(())
    }
}
