//! OCI runtime spec generation (typed `oci-spec` builders) and atomic
//! `config.json` writing.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    BoxBuilder, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::error::{OciError, Result};

/// Default `PATH` put into the container environment when none is given.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default cgroup parent for the `cgroupfs` manager.
pub const DEFAULT_CGROUPFS_PARENT: &str = "/rpod_parent";
/// Default cgroup parent (slice) for the `systemd` manager.
pub const DEFAULT_SYSTEMD_PARENT: &str = "machine.slice";
/// Default size of `/dev/shm` (64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// podman's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
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

/// cgroup manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupManager {
    /// Plain cgroupfs paths (`<parent>/libpod-<id>`).
    #[default]
    Cgroupfs,
    /// systemd slices (`<slice>:libpod:<id>`).
    Systemd,
}

/// One resource limit request (`name` like `nofile` or `RLIMIT_NOFILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// Limit name: `nofile`, `RLIMIT_NOFILE`, `nproc`, ...
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
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
        }
    }
}

/// The cgroup path written to the spec for a container:
/// cgroupfs `<parent>/libpod-<id>` (default parent [`DEFAULT_CGROUPFS_PARENT`]),
/// systemd `<slice>:libpod:<id>` (default [`DEFAULT_SYSTEMD_PARENT`]).
pub fn cgroup_path(manager: CgroupManager, parent: Option<&str>, id: &str) -> Result<String> {
    match manager {
        CgroupManager::Cgroupfs => {
            let parent = parent.unwrap_or(DEFAULT_CGROUPFS_PARENT);
            let trimmed = parent.trim_end_matches('/');
            if trimmed.ends_with(".slice") {
                return Err(OciError::InvalidArgument(format!(
                    "systemd slice {parent:?} received as cgroup parent when using cgroupfs"
                )));
            }
            if trimmed.is_empty() {
                return Ok(format!("/libpod-{id}"));
            }
            let lead = if trimmed.starts_with('/') { "" } else { "/" };
            Ok(format!("{lead}{trimmed}/libpod-{id}"))
        }
        CgroupManager::Systemd => {
            let parent = parent.unwrap_or(DEFAULT_SYSTEMD_PARENT);
            let base = parent
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(parent);
            if !base.ends_with(".slice") || base.len() < 6 {
                return Err(OciError::InvalidArgument(format!(
                    "did not receive systemd slice as cgroup parent when using systemd to manage cgroups: {parent:?}"
                )));
            }
            Ok(format!("{base}:libpod:{id}"))
        }
    }
}

fn rlimit_type(name: &str) -> Result<PosixRlimitType> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    PosixRlimitType::from_str(&full)
        .map_err(|_| OciError::InvalidArgument(format!("unknown rlimit {name:?}")))
}

fn nix_resource(t: PosixRlimitType) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match t {
        PosixRlimitType::RlimitCpu => R::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => R::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => R::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => R::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => R::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => R::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => R::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => R::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => R::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => R::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => R::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => R::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => R::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => R::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => R::RLIMIT_RTTIME,
    })
}

/// Clamp a requested limit pair to the caller's hard limit `max_hard`
/// (the container can never get more than the caller has).
pub fn clamp_rlimit(soft: u64, hard: u64, max_hard: u64) -> (u64, u64) {
    let hard = hard.min(max_hard);
    let soft = soft.min(hard);
    (soft, hard)
}

fn build_rlimits(input: &[Rlimit]) -> Result<Vec<PosixRlimit>> {
    let mut out = Vec::with_capacity(input.len());
    for r in input {
        let typ = rlimit_type(&r.name)?;
        let max_hard = match nix_resource(typ) {
            Some(res) => {
                nix::sys::resource::getrlimit(res)
                    .map_err(|e| OciError::sys("getrlimit", e))?
                    .1
            }
            None => u64::MAX,
        };
        let (soft, hard) = clamp_rlimit(r.soft, r.hard, max_hard);
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()?,
        );
    }
    Ok(out)
}

/// A resolved process user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Home directory from `/etc/passwd` (when found).
    pub home: Option<String>,
}

fn read_db(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Resolve a user spec (`""`, `uid`, `uid:gid`, `name`, `name:group`, ...)
/// against the rootfs' `/etc/passwd` and `/etc/group`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let passwd_path = rootfs.join("etc/passwd");
    let group_path = rootfs.join("etc/group");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = read_db(&passwd_path);
    // passwd entry: name:x:uid:gid:gecos:home:shell
    let entry = passwd.as_deref().and_then(|text| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let matches = if user_part.parse::<u32>().is_ok() {
                f[2] == user_part
            } else {
                f[0] == user_part
            };
            if !matches {
                return None;
            }
            let uid = f[2].parse::<u32>().ok()?;
            let gid = f[3].parse::<u32>().ok()?;
            Some((uid, gid, f.get(5).map(|h| h.to_string())))
        })
    });
    let (uid, default_gid, home) = match (user_part.parse::<u32>(), entry) {
        (_, Some((uid, gid, home))) => (uid, gid, home),
        (Ok(uid), None) => (uid, 0, None),
        (Err(_), None) => {
            return Err(OciError::UserNotFound {
                user: spec.to_string(),
                file: passwd_path,
                reason: "no matching entries in passwd file".into(),
            })
        }
    };
    let gid = match group_part {
        None | Some("") => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => read_db(&group_path)
                .and_then(|text| {
                    text.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        if f.len() >= 3 && f[0] == g {
                            f[2].parse::<u32>().ok()
                        } else {
                            None
                        }
                    })
                })
                .ok_or_else(|| OciError::UserNotFound {
                    user: spec.to_string(),
                    file: group_path.clone(),
                    reason: format!("no group {g:?}"),
                })?,
        },
    };
    Ok(ResolvedUser { uid, gid, home })
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
/// bundle, fsync, rename; mode 0644).
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
        .set_permissions(std::fs::Permissions::from_mode(0o644))
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
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let etc = d.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:1000:1001:web:/home/web:/bin/sh\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nnogroup:x:65534:\nwebg:x:1001:\nstaff:x:50:\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn clamp() {
        assert_eq!(clamp_rlimit(1_048_576, 1_048_576, 20000), (20000, 20000));
        assert_eq!(clamp_rlimit(100, 200, 20000), (100, 200));
        assert_eq!(clamp_rlimit(30000, 10, 20000), (10, 10));
        assert_eq!(clamp_rlimit(5, u64::MAX, u64::MAX), (5, u64::MAX));
    }

    #[test]
    fn rlimits_never_exceed_caller() {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = build_rlimits(&[Rlimit {
            name: "nofile".into(),
            soft: u64::MAX - 1,
            hard: u64::MAX - 1,
        }])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r[0].typ(), PosixRlimitType::RlimitNofile);
        assert!(r[0].hard() <= hard);
        assert!(r[0].soft() <= r[0].hard());
        assert!(build_rlimits(&[Rlimit {
            name: "bogus".into(),
            soft: 1,
            hard: 1
        }])
        .is_err());
    }

    #[test]
    fn cgroup_paths() {
        let c = |m, p: Option<&str>| cgroup_path(m, p, "abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c(CgroupManager::Cgroupfs, None), "/rpod_parent/libpod-abc");
        assert_eq!(c(CgroupManager::Cgroupfs, Some("/x/y/")), "/x/y/libpod-abc");
        assert_eq!(c(CgroupManager::Cgroupfs, Some("x")), "/x/libpod-abc");
        assert_eq!(c(CgroupManager::Systemd, None), "machine.slice:libpod:abc");
        assert_eq!(
            c(
                CgroupManager::Systemd,
                Some("machine.slice/machine-pod.slice")
            ),
            "machine-pod.slice:libpod:abc"
        );
        assert!(cgroup_path(CgroupManager::Cgroupfs, Some("machine.slice"), "a").is_err());
        assert!(cgroup_path(CgroupManager::Systemd, Some("/foo"), "a").is_err());
    }

    #[test]
    fn namespaces_and_mounts() {
        let r = rootfs();
        let mut input = SpecInput::new("ctr1", r.path(), vec!["true".into()]);
        input.namespaces.net = NsMode::Join("/run/netns/pod1".into());
        input.namespaces.ipc = NsMode::Join("/proc/42/ns/ipc".into());
        input.namespaces.uts = NsMode::Host;
        input.hostname = Some("ignored".into());
        let spec = generate_spec(&input).unwrap_or_else(|e| panic!("{e}"));
        let v = serde_json::to_value(&spec).unwrap_or_else(|e| panic!("{e}"));
        let ns = v["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let find = |t: &str| ns.iter().find(|n| n["type"] == t).cloned();
        assert_eq!(
            find("network").map(|n| n["path"].clone()),
            Some("/run/netns/pod1".into())
        );
        assert_eq!(
            find("ipc").map(|n| n["path"].clone()),
            Some("/proc/42/ns/ipc".into())
        );
        assert!(find("uts").is_none());
        assert!(find("pid").is_some_and(|n| n.get("path").is_none()));
        assert!(find("mount").is_some());
        assert_eq!(v["hostname"], "");
        assert_eq!(v["linux"]["cgroupsPath"], "/rpod_parent/libpod-ctr1");
        let mounts = v["mounts"].as_array().cloned().unwrap_or_default();
        let sys = mounts.iter().find(|m| m["destination"] == "/sys").cloned();
        assert_eq!(sys.map(|m| m["type"].clone()), Some("sysfs".into()));
        let shm = mounts
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .cloned();
        assert!(shm.is_some_and(|m| m["options"].to_string().contains("size=65536k")));
        let caps = v["process"]["capabilities"]["bounding"]
            .as_array()
            .map(|a| a.len());
        assert_eq!(caps, Some(11));
        assert_eq!(
            v["linux"]["maskedPaths"].as_array().map(|a| a.len()),
            Some(11)
        );
        assert!(v["process"]["env"].to_string().contains("PATH="));

        // host network: /sys is a read-only rbind, no netns entry
        input.namespaces.net = NsMode::Host;
        input.shm_size = 1024 * 1024;
        let v = serde_json::to_value(generate_spec(&input).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let mounts = v["mounts"].as_array().cloned().unwrap_or_default();
        let sys = mounts
            .iter()
            .find(|m| m["destination"] == "/sys")
            .cloned()
            .unwrap_or_default();
        assert_eq!(sys["type"], "bind");
        assert!(sys["options"].to_string().contains("rbind"));
        assert!(sys["options"].to_string().contains("\"ro\""));
        assert!(!v["linux"]["namespaces"].to_string().contains("network"));
        assert!(v["mounts"].to_string().contains("size=1024k"));
    }

    #[test]
    fn users() {
        let r = rootfs();
        let u = |s: &str| resolve_user(r.path(), s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!((u("").uid, u("").gid), (0, 0));
        assert_eq!((u("web").uid, u("web").gid), (1000, 1001));
        assert_eq!(u("web").home.as_deref(), Some("/home/web"));
        assert_eq!((u("web:staff").uid, u("web:staff").gid), (1000, 50));
        assert_eq!((u("1000").uid, u("1000").gid), (1000, 1001));
        assert_eq!((u("1234:5").uid, u("1234:5").gid), (1234, 5));
        assert_eq!((u("1234").uid, u("1234").gid), (1234, 0));
        assert!(resolve_user(r.path(), "nosuch").is_err());
        assert!(resolve_user(r.path(), "web:nosuch").is_err());
    }

    #[test]
    fn write_is_atomic_and_readable() {
        let r = rootfs();
        let bundle = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let input = SpecInput::new("w", r.path(), vec!["echo".into(), "hi".into()]);
        write_spec_for(bundle.path(), &input).unwrap_or_else(|e| panic!("{e}"));
        let back = Spec::load(bundle.path().join("config.json")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            back.process().as_ref().and_then(|p| p.args().clone()),
            Some(vec!["echo".to_string(), "hi".to_string()])
        );
        let names: Vec<_> = std::fs::read_dir(bundle.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
