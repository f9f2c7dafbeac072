//! The configuration record and its built-in defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::env::ConfigEnv;

/// Default number of locks in the shared-memory lock segment (libpod's default).
pub const DEFAULT_NUM_LOCKS: u32 = 2048;

/// Keys a rootless user without a `libpod.conf` of their own inherits from the system file
/// (libpod's partial fallback, reference §5.1 step 4).
pub const ROOTLESS_INHERITED_KEYS: &[&str] = &[
    "conmon_path",
    "conmon_env_vars",
    "runtimes",
    "runtime_path",
    "cni_plugin_dir",
    "no_pivot_root",
];

/// Which cgroup manager rpod asks the OCI runtime to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    /// Plain cgroupfs directories.
    Cgroupfs,
    /// systemd scopes and slices.
    Systemd,
}

impl CgroupManager {
    /// The TOML / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupManager::Cgroupfs => "cgroupfs",
            CgroupManager::Systemd => "systemd",
        }
    }

    /// Parses the TOML / CLI spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cgroupfs" => Some(CgroupManager::Cgroupfs),
            "systemd" => Some(CgroupManager::Systemd),
            _ => None,
        }
    }
}

impl fmt::Display for CgroupManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which state backend the runtime opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// The persistent LMDB database in the static dir (default).
    #[default]
    Lmdb,
    /// An in-process store that forgets everything on exit (tests, embedding).
    Memory,
}

impl StateBackend {
    /// The TOML / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Lmdb => "lmdb",
            StateBackend::Memory => "memory",
        }
    }

    /// Parses the TOML / CLI spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lmdb" => Some(StateBackend::Lmdb),
            "memory" => Some(StateBackend::Memory),
            _ => None,
        }
    }
}

/// The effective runtime configuration: every `libpod.conf` key of libpod v1.2 under its TOML
/// name, plus the few rpod keys that libpod took from elsewhere (storage paths, lock segment
/// name, state backend).
///
/// Field order is the serialisation order; tables come last so that any value serialises to
/// valid TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// OCI runtime: a name in `runtimes` or an absolute path.
    pub runtime: String,
    /// Deprecated list of OCI runtime paths; when set in a file it wins over `runtime` (with a
    /// warning), unless `runtime` was given as a flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_path: Vec<String>,
    /// Candidate paths for conmon; the first existing non-directory is used.
    pub conmon_path: Vec<String>,
    /// Environment given to conmon.
    pub conmon_env_vars: Vec<String>,
    /// `cgroupfs` or `systemd`.
    pub cgroup_manager: CgroupManager,
    /// Path of the init binary (catatonit) used by `--init` and the pod infra container.
    pub init_path: String,
    /// Directory for persistent rpod state (the database).
    pub static_dir: PathBuf,
    /// Directory for per-boot state; must be on tmpfs so reboots are detected.
    pub tmp_dir: PathBuf,
    /// Directory for named volumes.
    pub volume_path: PathBuf,
    /// Container storage graph root (libpod took it from storage.conf; `--root`).
    pub graph_root: PathBuf,
    /// Container storage run root (`--runroot`).
    pub run_root: PathBuf,
    /// Maximum container log size in bytes; -1 means unlimited.
    pub max_log_size: i64,
    /// Pass `--no-pivot` to the OCI runtime.
    pub no_pivot_root: bool,
    /// OCI hooks directories; a later one wins on a name clash.
    pub hooks_dir: Vec<String>,
    /// Transport used for image names without one.
    pub image_default_transport: String,
    /// Path of the signature policy; empty for the containers/image default.
    pub signature_policy_path: String,
    /// Directory holding CNI network configuration lists.
    pub cni_config_dir: String,
    /// Directories searched for CNI plugins.
    pub cni_plugin_dir: Vec<String>,
    /// Name of the default CNI network.
    pub cni_default_network: String,
    /// Path of slirp4netns; empty means look it up on `$PATH`.
    pub network_cmd_path: String,
    /// Hold host ports open while containers that map them live.
    pub enable_port_reservation: bool,
    /// Logical namespace rpod works in; empty means all.
    pub namespace: String,
    /// Image of the pod infra container (alias `pause_image`).
    #[serde(alias = "pause_image")]
    pub infra_image: String,
    /// Command of the pod infra container (alias `pause_command`).
    #[serde(alias = "pause_command")]
    pub infra_command: String,
    /// SELinux labelling.
    pub label: bool,
    /// Number of locks in the lock segment, rounded up to a multiple of 32.
    pub num_locks: u32,
    /// Explicit name of the SHM lock segment; derived from the tmp dir when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_name: Option<String>,
    /// State backend: `lmdb` or `memory`.
    pub state_backend: StateBackend,
    /// cgroup parent of containers and pods; empty for the cgroup manager's default
    /// (`/rpod_parent` for cgroupfs, `machine.slice` for systemd).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup_parent: String,
    /// OCI runtimes by name, each with candidate paths.
    pub runtimes: BTreeMap<String, Vec<String>>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl RuntimeConfig {
    /// The built-in defaults for the user described by `env` (root or rootless).
    ///
    /// State-holding paths are rpod's own (`/var/lib/rpod`, `/run/rpod`, or under
    /// `~/.local/share/rpod` and `$XDG_RUNTIME_DIR/rpod`), so rpod and podman never share state.
    pub fn defaults(env: &ConfigEnv) -> Self {
        let (data_dir, run_dir) = env.default_dirs();
        let mut runtimes = BTreeMap::new();
        runtimes.insert(
            "runc".to_owned(),
            strings(&[
                "/usr/bin/runc",
                "/usr/sbin/runc",
                "/usr/local/bin/runc",
                "/usr/local/sbin/runc",
                "/sbin/runc",
                "/bin/runc",
                "/usr/lib/cri-o-runc/sbin/runc",
            ]),
        );
        runtimes.insert(
            "crun".to_owned(),
            strings(&[
                "/usr/bin/crun",
                "/usr/sbin/crun",
                "/usr/local/bin/crun",
                "/usr/local/sbin/crun",
                "/sbin/crun",
                "/bin/crun",
            ]),
        );
        RuntimeConfig {
            runtime: "runc".to_owned(),
            runtime_path: Vec::new(),
            conmon_path: strings(&[
                "/usr/libexec/podman/conmon",
                "/usr/libexec/crio/conmon",
                "/usr/local/lib/podman/conmon",
                "/usr/local/libexec/crio/conmon",
                "/usr/bin/conmon",
                "/usr/sbin/conmon",
                "/usr/lib/crio/bin/conmon",
                "/usr/lib/podman/bin/conmon",
            ]),
            conmon_env_vars: strings(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ]),
            // libpod: systemd for root, cgroupfs forced for rootless. Like later podman, rpod
            // falls back to cgroupfs where systemd is not the init system.
            cgroup_manager: if env.rootless || !env.systemd_booted {
                CgroupManager::Cgroupfs
            } else {
                CgroupManager::Systemd
            },
            init_path: "/usr/libexec/podman/catatonit".to_owned(),
            static_dir: data_dir.clone(),
            tmp_dir: run_dir.clone(),
            volume_path: data_dir.join("volumes"),
            graph_root: data_dir.join("storage"),
            run_root: run_dir.join("storage"),
            max_log_size: -1,
            no_pivot_root: false,
            hooks_dir: strings(&[
                "/usr/share/containers/oci/hooks.d",
                "/etc/containers/oci/hooks.d",
            ]),
            image_default_transport: "docker://".to_owned(),
            signature_policy_path: String::new(),
            cni_config_dir: "/etc/cni/net.d/".to_owned(),
            cni_plugin_dir: strings(&[
                "/usr/libexec/cni",
                "/usr/lib/cni",
                "/usr/local/lib/cni",
                "/opt/cni/bin",
            ]),
            cni_default_network: "podman".to_owned(),
            network_cmd_path: String::new(),
            enable_port_reservation: true,
            namespace: String::new(),
            infra_image: "k8s.gcr.io/pause:3.1".to_owned(),
            infra_command: "/pause".to_owned(),
            label: true,
            num_locks: DEFAULT_NUM_LOCKS,
            lock_name: None,
            state_backend: StateBackend::Lmdb,
            cgroup_parent: String::new(),
            runtimes,
        }
    }

    /// Candidate paths for the configured OCI runtime, and the name it is known by.
    ///
    /// An absolute `runtime` is its own only candidate; a name is looked up in `runtimes`.
    /// Returns `None` when the name is unknown.
    pub fn runtime_candidates(&self) -> Option<(String, Vec<String>)> {
        if self.runtime.starts_with('/') {
            let name = self
                .runtime
                .rsplit('/')
                .next()
                .unwrap_or(self.runtime.as_str())
                .to_owned();
            return Some((name, vec![self.runtime.clone()]));
        }
        self.runtimes
            .get(&self.runtime)
            .map(|paths| (self.runtime.clone(), paths.clone()))
    }

    /// Serialises the configuration as TOML.
    pub fn to_toml(&self) -> Result<String, crate::ConfigError> {
        toml::to_string_pretty(self).map_err(|e| crate::ConfigError::Serialize(e.to_string()))
    }
}
