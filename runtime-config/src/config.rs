//! The configuration record: the one declaration of every key (its type, doc, default, the
//! `containers.conf` key and global flag that set it), and its built-in defaults.
//!
//! Adding a key means adding one entry here; `declare_keys!` (in `keys.rs`) derives the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::value::{CgroupManager, StateBackend};

/// Default number of locks in the shared-memory lock segment (libpod's default).
pub const DEFAULT_NUM_LOCKS: u32 = 2048;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

declare_keys! {
    /// The effective runtime configuration: every `libpod.conf` key of libpod v1.2 under its TOML
    /// name, plus the few rpod keys that libpod took from elsewhere (storage paths, lock segment
    /// name, state backend).
    ///
    /// Field order is the serialisation order; tables come last so that any value serialises to
    /// valid TOML.
    pub struct RuntimeConfig;

    /// A builder for every setting the CLI flags can override. Values set here win over files and
    /// are recorded with the flag's name as their [`Source`](crate::Source).
    ///
    /// ```
    /// use rpod_config::RuntimeOptions;
    /// let opts = RuntimeOptions::new().tmp_dir("/tmp/rpod-test/tmp").num_locks(64);
    /// # let _ = opts;
    /// ```
    pub struct RuntimeOptions;

    /// The built-in defaults for the user described by `env` (root or rootless).
    ///
    /// State-holding paths are rpod's own (`/var/lib/rpod`, `/run/rpod`, or under
    /// `~/.local/share/rpod` and `$XDG_RUNTIME_DIR/rpod`), so rpod and podman never share state.
    fn defaults(env) {
        let (data_dir, run_dir) = env.default_dirs();
    }

    /// OCI runtime: a name in `runtimes` or an absolute path.
    runtime: String {
        engine: runtime,
        flag: "runtime" "RUNTIME",
        set: runtime(impl Into<String>),
        resolved: runtime,
        help: "OCI runtime: a name in `[runtimes]` or an absolute path.",
    } = "runc".to_owned();

    /// Deprecated list of OCI runtime paths; when set in a file it wins over `runtime` (with a
    /// warning), unless `runtime` was given as a flag.
    runtime_path: Vec<String> {
        serde(default, skip_serializing_if = "Vec::is_empty"),
        rootless: inherit,
    } = Vec::new();

    /// Candidate paths for conmon; the first existing non-directory is used.
    conmon_path: Vec<String> {
        engine: conmon_path,
        rootless: inherit,
        flag: "conmon" "PATH",
        set: conmon(impl Into<PathBuf>),
        resolved: conmon,
        help: "Path of the conmon binary.",
    } = strings(&[
        "/usr/libexec/podman/conmon",
        "/usr/libexec/crio/conmon",
        "/usr/local/lib/podman/conmon",
        "/usr/local/libexec/crio/conmon",
        "/usr/bin/conmon",
        "/usr/sbin/conmon",
        "/usr/lib/crio/bin/conmon",
        "/usr/lib/podman/bin/conmon",
    ]);

    /// Environment given to conmon.
    conmon_env_vars: Vec<String> {
        engine: conmon_env_vars,
        rootless: inherit,
    } = strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);

    /// `cgroupfs` or `systemd`.
    cgroup_manager: CgroupManager {
        engine: cgroup_manager,
        flag: "cgroup-manager" "CGROUP_MANAGER",
        set: cgroup_manager(impl Into<String>),
        help: "cgroup manager: cgroupfs or systemd.",
    } = // libpod: systemd for root, cgroupfs forced for rootless. Like later podman, rpod
        // falls back to cgroupfs where systemd is not the init system.
        if env.rootless || !env.systemd_booted {
            CgroupManager::Cgroupfs
        } else {
            CgroupManager::Systemd
        };

    /// Path of the init binary (catatonit) used by `--init` and the pod infra container.
    init_path: String {} = "/usr/libexec/podman/catatonit".to_owned();

    /// Directory for persistent rpod state (the database).
    static_dir: PathBuf {
        engine: static_dir,
        flag: "static-dir" "DIR",
        set: static_dir(impl Into<PathBuf>),
        help: "Directory of the state database.",
    } = data_dir.clone();

    /// Directory for per-boot state; must be on tmpfs so reboots are detected.
    tmp_dir: PathBuf {
        engine: tmp_dir,
        flag: "tmpdir" "DIR",
        set: tmp_dir(impl Into<PathBuf>),
        help: "Directory for per-boot state (must be tmpfs).",
    } = run_dir.clone();

    /// Directory for named volumes.
    volume_path: PathBuf {
        engine: volume_path,
        flag: "volumepath" "DIR",
        set: volume_path(impl Into<PathBuf>),
        help: "Directory for named volumes.",
    } = data_dir.join("volumes");

    /// Container storage graph root (libpod took it from storage.conf; `--root`).
    graph_root: PathBuf {
        flag: "root" "DIR",
        set: graph_root(impl Into<PathBuf>),
        help: "Storage graph root (moves the static dir and volume path with it).",
    } = data_dir.join("storage");

    /// Container storage run root (`--runroot`).
    run_root: PathBuf {
        flag: "runroot" "DIR",
        set: run_root(impl Into<PathBuf>),
        help: "Storage run root.",
    } = run_dir.join("storage");

    /// Storage driver of the image store: `overlay`, `vfs`, or empty to use overlay where the
    /// kernel has it and vfs elsewhere (storage.conf's `driver`; `--storage-driver`).
    storage_driver: String {
        serde(default, skip_serializing_if = "String::is_empty"),
        flag: "storage-driver" "NAME",
        set: storage_driver(impl Into<String>),
        help: "Storage driver of the image store: overlay or vfs (default: overlay where available).",
    } = String::new();

    /// Maximum container log size in bytes; -1 means unlimited.
    max_log_size: i64 {} = -1;

    /// Pass `--no-pivot` to the OCI runtime.
    no_pivot_root: bool {
        rootless: inherit,
    } = false;

    /// OCI hooks directories; a later one wins on a name clash.
    hooks_dir: Vec<String> {} = strings(&[
        "/usr/share/containers/oci/hooks.d",
        "/etc/containers/oci/hooks.d",
    ]);

    /// Transport used for image names without one.
    image_default_transport: String {} = "docker://".to_owned();

    /// Path of the signature policy; empty for the containers/image default.
    signature_policy_path: String {} = String::new();

    /// Directory holding CNI network configuration lists.
    cni_config_dir: String {
        network: network_config_dir,
        flag: "cni-config-dir" "DIR",
        set: cni_config_dir(impl Into<PathBuf>),
        help: "CNI configuration directory.",
    } = "/etc/cni/net.d/".to_owned();

    /// Directories searched for CNI plugins.
    cni_plugin_dir: Vec<String> {
        network: cni_plugin_dirs,
        rootless: inherit,
    } = strings(&["/usr/libexec/cni", "/usr/lib/cni", "/usr/local/lib/cni", "/opt/cni/bin"]);

    /// Name of the default CNI network. rpod's own (`rpod`), so that rpod and podman (whose
    /// default network is `podman` on `cni-podman0`, 10.88.0.0/16) coexist on one host.
    cni_default_network: String {
        network: default_network,
    } = "rpod".to_owned();

    /// Subnet of the default network when rpod writes its configuration (on first use, when
    /// `cni_config_dir` has no configuration for `cni_default_network`).
    default_subnet: String {
        network: default_subnet,
    } = "10.77.0.0/16".to_owned();

    /// Bridge of the default network when rpod writes its configuration.
    default_bridge: String {} = "rpod0".to_owned();

    /// Where the `host-local` IPAM plugin keeps its leases for the networks rpod writes
    /// (the conflists' `dataDir`; one directory per network below it).
    ipam_data_dir: String {} = "/var/lib/cni/networks".to_owned();

    /// rpod's own firewall backend, run after each CNI ADD and before each DEL: `none` (the
    /// default: the CNI `firewall` plugin in the conflist does the work, as in libpod 1.6+) or
    /// `iptables` (libpod 1.0–1.5's CNI-FORWARD rules).
    firewall_driver: String {
        network: firewall_driver,
    } = "none".to_owned();

    /// The network mode of containers and pods created without `--network` (containers.conf's
    /// `netns`): `bridge` (the default network, as podman does for root; `none` for rootless),
    /// `none` or `host`.
    netns: String {
        flag: "netns" "MODE",
        set: netns(impl Into<String>),
        help: "Network mode of containers and pods created without --network: bridge, none or host.",
    } = // podman: bridge for root; rootless podman uses slirp4netns, which rpod does not
        // drive, so a rootless rpod defaults to a new, empty namespace.
        if env.rootless { "none" } else { "bridge" }.to_owned();

    /// Path of slirp4netns; empty means look it up on `$PATH`.
    network_cmd_path: String {} = String::new();

    /// Hold host ports open while containers that map them live.
    enable_port_reservation: bool {} = true;

    /// Logical namespace rpod works in; empty means all.
    namespace: String {
        engine: namespace,
        flag: "namespace" "NAMESPACE",
        set: namespace(impl Into<String>),
        help: "Work in this logical namespace only.",
    } = String::new();

    /// Image of the pod infra container (alias `pause_image`).
    infra_image: String {
        serde(alias = "pause_image"),
        file_alias: pause_image,
        engine: infra_image,
    } = "k8s.gcr.io/pause:3.1".to_owned();

    /// Command of the pod infra container (alias `pause_command`).
    infra_command: String {
        serde(alias = "pause_command"),
        file_alias: pause_command,
        engine: infra_command,
    } = "/pause".to_owned();

    /// SELinux labelling.
    label: bool {} = true;

    /// Number of locks in the lock segment, rounded up to a multiple of 32.
    num_locks: u32 {
        engine: num_locks,
        flag: "num-locks" "NUM_LOCKS",
        set: num_locks(u32),
        help: "Number of locks in the lock segment.",
    } = DEFAULT_NUM_LOCKS;

    /// Explicit name of the SHM lock segment; derived from the tmp dir when unset.
    lock_name: Option<String> {
        serde(default, skip_serializing_if = "Option::is_none"),
        flag: "lock-name" "LOCK_NAME",
        set: lock_name(impl Into<String>),
        resolved: lock_name,
        help: "Explicit name of the SHM lock segment.",
    } = None;

    /// State backend: `lmdb` or `memory`.
    state_backend: StateBackend {
        flag: "state-backend" "STATE_BACKEND",
        set: state_backend(impl Into<String>),
        help: "State backend: lmdb or memory.",
    } = StateBackend::Lmdb;

    /// cgroup parent of containers and pods; empty for the cgroup manager's default
    /// (`/rpod_parent` for cgroupfs, `machine.slice` for systemd).
    cgroup_parent: String {
        serde(default, skip_serializing_if = "String::is_empty"),
        flag: "cgroup-parent" "CGROUP_PARENT",
        set: cgroup_parent(impl Into<String>),
        help: "cgroup parent of containers and pods (default: /rpod_parent, or machine.slice with systemd).",
    } = String::new();

    /// OCI runtimes by name, each with candidate paths.
    runtimes: BTreeMap<String, Vec<String>> {
        engine: runtimes,
        rootless: inherit,
    } = BTreeMap::from([
        (
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
        ),
        (
            "crun".to_owned(),
            strings(&[
                "/usr/bin/crun",
                "/usr/sbin/crun",
                "/usr/local/bin/crun",
                "/usr/local/sbin/crun",
                "/sbin/crun",
                "/bin/crun",
            ]),
        ),
    ]);
}

impl RuntimeConfig {
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
