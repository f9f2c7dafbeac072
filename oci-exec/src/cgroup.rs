//! cgroups: how the host mounts them ([`host_cgroup_mode`], which decides
//! whether crun can work here) and the cgroup path a container gets in its
//! spec for each [`CgroupManager`] ([`cgroup_path`]).

use crate::error::{OciError, Result};

/// Default cgroup parent for the `cgroupfs` manager.
pub const DEFAULT_CGROUPFS_PARENT: &str = "/rpod_parent";
/// Default cgroup parent (slice) for the `systemd` manager.
pub const DEFAULT_SYSTEMD_PARENT: &str = "machine.slice";

/// How cgroups are mounted on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Legacy v1 controllers only.
    V1,
    /// v1 controllers plus a v2 hierarchy at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// Unified v2 hierarchy at `/sys/fs/cgroup`.
    V2,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "v1 hybrid",
            CgroupMode::V2 => "v2",
        })
    }
}

/// Decide the cgroup mode from the text of `/proc/self/mounts`.
pub fn cgroup_mode_from_mounts(mounts: &str) -> CgroupMode {
    let mut unified_v2 = false;
    let mut root_v2 = false;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (_src, Some(target), Some(fstype)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if fstype == "cgroup2" {
            if target == "/sys/fs/cgroup" {
                root_v2 = true;
            } else if target.starts_with("/sys/fs/cgroup/") {
                unified_v2 = true;
            }
        }
    }
    if root_v2 {
        CgroupMode::V2
    } else if unified_v2 {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

/// The host's cgroup mode, read from `/proc/self/mounts` (V1 when unreadable).
pub fn host_cgroup_mode() -> CgroupMode {
    match std::fs::read_to_string("/proc/self/mounts") {
        Ok(text) => cgroup_mode_from_mounts(&text),
        Err(_) => CgroupMode::V1,
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

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
    const V1: &str =
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
    const V2: &str = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";

    #[test]
    fn parses_modes() {
        assert_eq!(cgroup_mode_from_mounts(HYBRID), CgroupMode::Hybrid);
        assert_eq!(cgroup_mode_from_mounts(V1), CgroupMode::V1);
        assert_eq!(cgroup_mode_from_mounts(V2), CgroupMode::V2);
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
}
