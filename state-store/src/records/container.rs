//! The container records: [`ContainerConfig`] (with its ports, limits and mounts), [`ContainerState`]
//! (with [`ContainerStatus`] and [`ExecSession`]) and [`ContainerRecord`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{epoch, unix_nanos};

/// A port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PortMapping {
    /// Host address to bind (empty = all).
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A resource limit (`RLIMIT_*`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Rlimit {
    /// The limit type, e.g. `RLIMIT_NOFILE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A mount in the container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// Path in the container.
    pub destination: String,
    /// Mount type, e.g. `bind`, `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source path or device.
    pub source: String,
    /// Mount options.
    pub options: Vec<String>,
}

/// The immutable configuration of a container (changed only by [`State::rewrite_container_config`]).
///
/// [`State::rewrite_container_config`]: crate::State::rewrite_container_config
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// Full ID (64 hex characters in practice; must be non-empty and contain no `/`).
    pub id: String,
    /// Unique name (shared namespace with pod names).
    pub name: String,
    /// libpod namespace (a logical partition; empty = none).
    pub namespace: String,
    /// The pod this container belongs to.
    pub pod: Option<String>,
    /// ID of the container's lock in the lock manager.
    pub lock_id: u32,
    /// Root filesystem path.
    pub rootfs: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// User (`uid[:gid]` or name).
    pub user: String,
    /// Hostname.
    pub hostname: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Container whose IPC namespace is joined.
    pub ipc_ns_ctr: Option<String>,
    /// Container whose mount namespace is joined.
    pub mount_ns_ctr: Option<String>,
    /// Container whose network namespace is joined.
    pub net_ns_ctr: Option<String>,
    /// Container whose PID namespace is joined.
    pub pid_ns_ctr: Option<String>,
    /// Container whose user namespace is joined.
    pub user_ns_ctr: Option<String>,
    /// Container whose UTS namespace is joined.
    pub uts_ns_ctr: Option<String>,
    /// Container whose cgroup namespace is joined.
    pub cgroup_ns_ctr: Option<String>,
    /// Other containers this one depends on.
    pub dependencies: Vec<String>,
    /// Published ports.
    pub port_mappings: Vec<PortMapping>,
    /// Networks joined.
    pub networks: Vec<String>,
    /// Signal sent by `stop` (number).
    pub stop_signal: u32,
    /// Seconds to wait after the stop signal before SIGKILL.
    pub stop_timeout: u32,
    /// Log file path.
    pub log_path: String,
    /// Creation time.
    #[serde(with = "unix_nanos")]
    pub created: SystemTime,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// True for a pod's infra container.
    pub is_infra: bool,
    /// Remove the container once it has exited (`run --rm`; libpod's `AutoRemove`).
    pub auto_remove: bool,
    /// Whether the process gets a terminal (`-t`): conmon holds the pty and the output is one stream.
    pub terminal: bool,
    /// Network mode: `bridge` (CNI: [`networks`](Self::networks), empty = the default network),
    /// `none`, `host`, `ns:<path>`, or `container` (the namespace of
    /// [`net_ns_ctr`](Self::net_ns_ctr)). Empty in records written before networking: `none`.
    pub network_mode: String,
    /// Static IP address asked for on the first network (`--ip`); empty = assigned.
    pub static_ip: String,
    /// DNS servers for the generated `/etc/resolv.conf` (`--dns`); empty = the host's.
    pub dns_servers: Vec<String>,
    /// DNS search domains (`--dns-search`); empty = the host's.
    pub dns_search: Vec<String>,
    /// DNS options (`--dns-opt`); empty = the host's.
    pub dns_options: Vec<String>,
    /// Extra `/etc/hosts` entries, `name:ip` (`--add-host`).
    pub add_hosts: Vec<String>,
    /// Do not generate `/etc/hosts` (`--no-hosts`).
    pub no_hosts: bool,
    /// The image the container was created from, as resolved (`registry/repo:tag`); empty for a
    /// `--rootfs` container.
    pub image_name: String,
    /// The image's ID (its config digest hex); empty for a `--rootfs` container.
    pub image_id: String,
    /// The container's writable layer in the image store; empty for a `--rootfs` container.
    pub rootfs_layer: String,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            id: String::new(),
            name: String::new(),
            namespace: String::new(),
            pod: None,
            lock_id: 0,
            rootfs: String::new(),
            command: Vec::new(),
            env: Vec::new(),
            working_dir: String::new(),
            user: String::new(),
            hostname: String::new(),
            labels: BTreeMap::new(),
            ipc_ns_ctr: None,
            mount_ns_ctr: None,
            net_ns_ctr: None,
            pid_ns_ctr: None,
            user_ns_ctr: None,
            uts_ns_ctr: None,
            cgroup_ns_ctr: None,
            dependencies: Vec::new(),
            port_mappings: Vec::new(),
            networks: Vec::new(),
            stop_signal: 15,
            stop_timeout: 10,
            log_path: String::new(),
            created: epoch(),
            rlimits: Vec::new(),
            mounts: Vec::new(),
            is_infra: false,
            auto_remove: false,
            terminal: false,
            network_mode: String::new(),
            static_ip: String::new(),
            dns_servers: Vec::new(),
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            add_hosts: Vec::new(),
            no_hosts: false,
            image_name: String::new(),
            image_id: String::new(),
            rootfs_layer: String::new(),
        }
    }
}

impl ContainerConfig {
    /// A config with the given ID and name and defaults elsewhere (created now).
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        ContainerConfig {
            id: id.into(),
            name: name.into(),
            created: SystemTime::now(),
            ..Default::default()
        }
    }

    /// Every container this one depends on: the namespace-sharing containers plus
    /// [`dependencies`](Self::dependencies), sorted and without duplicates (libpod's `Dependencies()`).
    pub fn dependencies(&self) -> Vec<String> {
        let ns = [
            &self.ipc_ns_ctr,
            &self.mount_ns_ctr,
            &self.net_ns_ctr,
            &self.pid_ns_ctr,
            &self.user_ns_ctr,
            &self.uts_ns_ctr,
            &self.cgroup_ns_ctr,
        ];
        let set: BTreeSet<&String> = ns
            .into_iter()
            .flatten()
            .chain(self.dependencies.iter())
            .collect();
        set.into_iter().cloned().collect()
    }
}

/// The status of a container (libpod `ContainerStatus`); serialised as the lowercase name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Unknown (an error state).
    #[default]
    Unknown,
    /// Storage exists, nothing in the OCI runtime.
    Configured,
    /// Created in the OCI runtime (conmon running), not started.
    Created,
    /// Running.
    Running,
    /// The process exited; the OCI runtime still knows the container.
    Stopped,
    /// Paused.
    Paused,
    /// Exited and cleaned up (`runc delete` done).
    Exited,
}

impl ContainerStatus {
    /// Every status, in libpod's numeric order (0..=6).
    pub const ALL: [ContainerStatus; 7] = [
        ContainerStatus::Unknown,
        ContainerStatus::Configured,
        ContainerStatus::Created,
        ContainerStatus::Running,
        ContainerStatus::Stopped,
        ContainerStatus::Paused,
        ContainerStatus::Exited,
    ];

    /// The lowercase name (`running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Unknown => "unknown",
            ContainerStatus::Configured => "configured",
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "stopped",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Exited => "exited",
        }
    }
}

impl fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContainerStatus {
    type Err = crate::StateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContainerStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| crate::StateError::InvalidArg(format!("unknown container status {s:?}")))
    }
}

/// An exec session running in a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecSession {
    /// Command and arguments.
    pub command: Vec<String>,
    /// PID of the session's process.
    pub pid: i32,
}

/// The mutable state of a container (written by [`State::save_container`]).
///
/// [`State::save_container`]: crate::State::save_container
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    /// Status.
    pub status: ContainerStatus,
    /// PID of the container's init process (0 = none).
    pub pid: i32,
    /// PID of conmon (0 = none).
    pub conmon_pid: i32,
    /// Exit code of the last run.
    pub exit_code: i32,
    /// When it last started.
    #[serde(with = "unix_nanos::option")]
    pub started: Option<SystemTime>,
    /// When it last finished.
    #[serde(with = "unix_nanos::option")]
    pub finished: Option<SystemTime>,
    /// Whether the last run was OOM-killed.
    pub oom_killed: bool,
    /// Path of the network namespace (empty = none).
    pub netns_path: String,
    /// Results of network setup (opaque CNI results).
    pub network_results: Vec<serde_json::Value>,
    /// Exec sessions by ID.
    pub exec_sessions: BTreeMap<String, ExecSession>,
}

impl ContainerState {
    /// A fresh state for a new container: [`ContainerStatus::Configured`].
    pub fn configured() -> Self {
        ContainerState {
            status: ContainerStatus::Configured,
            ..Default::default()
        }
    }

    /// Reset the per-boot fields after a reboot (libpod `resetState`): PIDs, netns, network results and exec
    /// sessions are cleared; the status becomes `Configured` unless it is `Exited`. Exit code, OOM flag and
    /// timestamps are kept.
    pub fn reset_for_reboot(&mut self) {
        self.pid = 0;
        self.conmon_pid = 0;
        self.netns_path.clear();
        self.network_results.clear();
        self.exec_sessions.clear();
        if self.status != ContainerStatus::Exited {
            self.status = ContainerStatus::Configured;
        }
    }
}

/// A container as stored: its config and its state (as of the read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Immutable config.
    pub config: ContainerConfig,
    /// State when read; refresh with [`State::update_container`](crate::State::update_container).
    pub state: ContainerState,
}

impl ContainerRecord {
    /// A record with a config and a [`ContainerState::configured`] state.
    pub fn new(config: ContainerConfig) -> Self {
        ContainerRecord {
            config,
            state: ContainerState::configured(),
        }
    }

    /// The container's ID.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}
