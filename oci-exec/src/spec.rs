//! OCI runtime spec generation (typed `oci-spec` builders) and atomic
//! `config.json` writing.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    BoxBuilder, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::cgroup::{cgroup_path, CgroupManager};
use crate::error::{OciError, Result};
use crate::rlimit::{build_rlimits, Rlimit};
use crate::user::resolve_user;

/// Default `PATH` put into the container environment when none is given.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default size of `/dev/shm` (64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// The default capability set: podman's, plus `CAP_NET_RAW`, which libpod v1 granted (busybox
/// `ping` opens raw ICMP sockets; the `ping_group_range` sysctl alone does not serve it).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// podman's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

/// podman's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How one namespace is set up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NsMode {
    /// Share the host's namespace (not listed in the spec).
    Host,
    /// A fresh namespace (for the network: a new, empty netns).
    #[default]
    New,
    /// Join the namespace at this path (e.g. `/proc/<pid>/ns/net` or a
    /// bind-mounted netns file), as pod members do.
    Join(PathBuf),
}

/// Namespace configuration. The mount namespace is always new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// PID namespace.
    pub pid: NsMode,
    /// Network namespace (`New` = `--network none`: loopback only).
    pub net: NsMode,
    /// IPC namespace.
    pub ipc: NsMode,
    /// UTS namespace (hostname is only set when not `Host`).
    pub uts: NsMode,
    /// Cgroup namespace (host by default, as podman on cgroups v1).
    pub cgroup: NsMode,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            pid: NsMode::New,
            net: NsMode::New,
            ipc: NsMode::New,
            uts: NsMode::New,
            cgroup: NsMode::Host,
        }
    }
}

/// An extra mount requested by the user (volumes, bind mounts, tmpfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMount {
    /// Path inside the container.
    pub destination: PathBuf,
    /// Host path or device (`tmpfs` for tmpfs).
    pub source: PathBuf,
    /// Filesystem type (`bind`, `tmpfs`, ...).
    pub fstype: String,
    /// Mount options (`rbind`, `ro`, ...).
    pub options: Vec<String>,
}

/// Everything needed to generate a container's OCI spec (plain data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecInput {
    /// Container ID (used for the cgroup path).
    pub id: String,
    /// Command and arguments.
    pub args: Vec<String>,
    /// Environment (`KEY=VALUE`); `PATH` and `HOME` are added when missing.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User: empty (root), `uid`, `uid:gid`, `name`, `name:group`.
    /// Names are resolved from the rootfs `/etc/passwd` and `/etc/group`.
    pub user: String,
    /// Hostname (applied when the UTS namespace is not the host's).
    pub hostname: Option<String>,
    /// Root filesystem path (absolute).
    pub rootfs: PathBuf,
    /// Mount the root filesystem read-only.
    pub rootfs_readonly: bool,
    /// Resource limits; each is clamped to the caller's hard limit.
    pub rlimits: Vec<Rlimit>,
    /// Namespaces.
    pub namespaces: Namespaces,
    /// Size of the `/dev/shm` tmpfs in bytes.
    pub shm_size: u64,
    /// Extra mounts; one with the same destination as a default mount replaces it.
    pub mounts: Vec<UserMount>,
    /// Capabilities (`CAP_X` or `X`); `None` means podman's default set.
    pub capabilities: Option<Vec<String>>,
    /// Set `noNewPrivileges`.
    pub no_new_privileges: bool,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Initial size of the terminal, `(rows, cols)` (`process.consoleSize`).
    pub console_size: Option<(u16, u16)>,
    /// cgroup manager.
    pub cgroup_manager: CgroupManager,
    /// cgroup parent; `None` gives the manager's default.
    pub cgroup_parent: Option<String>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of pids.
    pub pids_limit: Option<i64>,
    /// Annotations.
    pub annotations: Vec<(String, String)>,
    /// Namespaced kernel parameters (`linux.sysctl`), e.g. podman's default
    /// `net.ipv4.ping_group_range=0 0` for a container with its own network namespace.
    pub sysctls: Vec<(String, String)>,
}

impl SpecInput {
    /// An input with podman's defaults: new namespaces (empty netns), root
    /// user, cwd `/`, writable rootfs, nofile/nproc limits as high as the
    /// caller allows, 64 MiB `/dev/shm`.
    pub fn new(id: impl Into<String>, rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        SpecInput {
            id: id.into(),
            args,
            env: Vec::new(),
            cwd: "/".to_string(),
            user: String::new(),
            hostname: None,
            rootfs: rootfs.into(),
            rootfs_readonly: false,
            rlimits: vec![
                Rlimit {
                    name: "RLIMIT_NOFILE".into(),
                    soft: 1_048_576,
                    hard: 1_048_576,
                },
                Rlimit {
                    name: "RLIMIT_NPROC".into(),
                    soft: 4_194_304,
                    hard: 4_194_304,
                },
            ],
            namespaces: Namespaces::default(),
            shm_size: DEFAULT_SHM_SIZE,
            mounts: Vec::new(),
            capabilities: None,
            no_new_privileges: false,
            terminal: false,
            console_size: None,
            cgroup_manager: CgroupManager::Cgroupfs,
            cgroup_parent: None,
            memory_limit: None,
            pids_limit: None,
            annotations: Vec::new(),
            sysctls: Vec::new(),
        }
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn default_mounts(input: &SpecInput) -> Result<Vec<Mount>> {
    let shm_kib = input.shm_size.div_ceil(1024).max(1);
    let shm_size = format!("size={shm_kib}k");
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
    ];
    if input.namespaces.ipc == NsMode::Host {
        m.push(mount(
            "/dev/mqueue",
            "bind",
            "/dev/mqueue",
            &["rbind", "nosuid", "noexec", "nodev"],
        )?);
        m.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "nosuid", "noexec", "nodev"],
        )?);
    } else {
        m.push(mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?);
        m.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?);
    }
    if input.namespaces.net == NsMode::Host {
        m.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?);
    } else {
        m.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?);
        m.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"],
        )?);
    }
    Ok(m)
}

fn parse_caps(names: &[String]) -> Result<HashSet<Capability>> {
    names
        .iter()
        .map(|n| {
            let upper = n.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            Capability::from_str(bare)
                .map_err(|_| OciError::InvalidArgument(format!("unknown capability {n:?}")))
        })
        .collect()
}

/// Generate the OCI spec for `input` with the `oci-spec` builders.
pub fn generate_spec(input: &SpecInput) -> Result<Spec> {
    if input.args.is_empty() {
        return Err(OciError::InvalidArgument(format!(
            "container {}: no command given",
            input.id
        )));
    }
    if !input.rootfs.is_absolute() {
        return Err(OciError::InvalidArgument(format!(
            "rootfs path {} must be absolute",
            input.rootfs.display()
        )));
    }
    let user = resolve_user(&input.rootfs, &input.user)?;

    let mut env = input.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH_ENV.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }
    if input.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }

    let cap_names: Vec<String> = match &input.capabilities {
        Some(c) => c.clone(),
        None => DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
    };
    let caps = parse_caps(&cap_names)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;

    let mut process = ProcessBuilder::default();
    if let Some((rows, cols)) = input.console_size.filter(|_| input.terminal) {
        process = process.console_size(
            BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(cols))
                .build()?,
        );
    }
    let process = process
        .terminal(input.terminal)
        .user(UserBuilder::default().uid(user.uid).gid(user.gid).build()?)
        .args(input.args.clone())
        .env(env)
        .cwd(if input.cwd.is_empty() {
            "/"
        } else {
            input.cwd.as_str()
        })
        .capabilities(capabilities)
        .rlimits(build_rlimits(&input.rlimits)?)
        .no_new_privileges(input.no_new_privileges)
        .build()?;

    let mut namespaces = vec![LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Mount)
        .build()?];
    for (typ, mode) in [
        (LinuxNamespaceType::Pid, &input.namespaces.pid),
        (LinuxNamespaceType::Network, &input.namespaces.net),
        (LinuxNamespaceType::Ipc, &input.namespaces.ipc),
        (LinuxNamespaceType::Uts, &input.namespaces.uts),
        (LinuxNamespaceType::Cgroup, &input.namespaces.cgroup),
    ] {
        match mode {
            NsMode::Host => {}
            NsMode::New => namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?),
            NsMode::Join(path) => namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(path.clone())
                    .build()?,
            ),
        }
    }

    let mut resources =
        LinuxResourcesBuilder::default().devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?]);
    if let Some(limit) = input.memory_limit {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(limit) = input.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(cgroup_path(
            input.cgroup_manager,
            input.cgroup_parent.as_deref(),
            &input.id,
        )?)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .sysctl(
            input
                .sysctls
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;

    let mut mounts: Vec<Mount> = default_mounts(input)?
        .into_iter()
        .filter(|m| {
            !input
                .mounts
                .iter()
                .any(|u| u.destination == *m.destination())
        })
        .collect();
    for u in &input.mounts {
        mounts.push(
            MountBuilder::default()
                .destination(u.destination.clone())
                .typ(u.fstype.clone())
                .source(u.source.clone())
                .options(u.options.clone())
                .build()?,
        );
    }

    let hostname = match (&input.namespaces.uts, &input.hostname) {
        (NsMode::Host, _) | (_, None) => String::new(),
        (_, Some(h)) => h.clone(),
    };

    let spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path(input.rootfs.clone())
                .readonly(input.rootfs_readonly)
                .build()?,
        )
        .hostname(hostname)
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .annotations(
            input
                .annotations
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;
    Ok(spec)
}

/// Write `spec` to `<bundle>/config.json` atomically (temp file in the
/// bundle, fsync, rename; mode 0600: it holds the container's environment).
pub fn write_spec(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let target = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| OciError::InvalidArgument(format!("serializing OCI spec: {e}")))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(bundle)
        .map_err(|e| OciError::io("creating temporary spec file in", bundle, e))?;
    tmp.write_all(&json)
        .map_err(|e| OciError::io("writing", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| OciError::io("chmod", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| OciError::io("fsync", tmp.path().to_path_buf(), e))?;
    tmp.persist(&target)
        .map_err(|e| OciError::io("renaming spec to", target.clone(), e.error))?;
    Ok(target)
}

/// Generate the spec for `input` and write it into `bundle`.
pub fn write_spec_for(bundle: &Path, input: &SpecInput) -> Result<Spec> {
    let spec = generate_spec(input)?;
    write_spec(bundle, &spec)?;
    Ok(spec)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
