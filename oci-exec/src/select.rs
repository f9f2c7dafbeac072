//! Finding and choosing the OCI runtime binary, and host suitability checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cgroup::{host_cgroup_mode, CgroupMode};
use crate::error::{OciError, Result};

/// A runtime that was found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChoice {
    /// Runtime name (`runc`, `crun`, or the file name of an absolute path).
    pub name: String,
    /// Absolute path of the executable.
    pub path: PathBuf,
}

fn is_executable_file(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(md) => md.is_file() && md.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Choose a runtime like libpod: `requested` is either an absolute path or a
/// name looked up in `runtimes` (name → candidate paths, first existing
/// executable regular file wins). The choice is then checked against the host
/// with [`check_runtime_suitable`] using [`host_cgroup_mode`].
pub fn choose_runtime(
    requested: &str,
    runtimes: &[(String, Vec<PathBuf>)],
) -> Result<RuntimeChoice> {
    choose_runtime_for_mode(requested, runtimes, host_cgroup_mode())
}

/// [`choose_runtime`] with an explicit cgroup mode (for tests and callers that
/// already know it).
pub fn choose_runtime_for_mode(
    requested: &str,
    runtimes: &[(String, Vec<PathBuf>)],
    mode: CgroupMode,
) -> Result<RuntimeChoice> {
    let choice = if requested.starts_with('/') {
        let path = PathBuf::from(requested);
        if !is_executable_file(&path) {
            return Err(OciError::RuntimeNotFound {
                name: requested.to_string(),
                searched: vec![path],
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| requested.to_string());
        RuntimeChoice { name, path }
    } else {
        let candidates: Vec<PathBuf> = runtimes
            .iter()
            .filter(|(n, _)| n == requested)
            .flat_map(|(_, p)| p.iter().cloned())
            .collect();
        match candidates.iter().find(|p| is_executable_file(p)) {
            Some(p) => RuntimeChoice {
                name: requested.to_string(),
                path: p.clone(),
            },
            None => {
                return Err(OciError::RuntimeNotFound {
                    name: requested.to_string(),
                    searched: candidates,
                })
            }
        }
    };
    check_runtime_suitable(&choice, mode)?;
    Ok(choice)
}

/// Refuse runtimes that cannot work on this host: crun does not support
/// cgroups v1 or hybrid hosts.
pub fn check_runtime_suitable(choice: &RuntimeChoice, mode: CgroupMode) -> Result<()> {
    let file_name = choice
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_crun = choice.name == "crun" || file_name == "crun";
    if is_crun && mode != CgroupMode::V2 {
        return Err(OciError::RuntimeUnsuitable {
            runtime: choice.path.clone(),
            message: format!(
                "crun does not support cgroups v1 or hybrid hosts (this host: {mode}); use --runtime runc"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_refused_on_hybrid() {
        let c = RuntimeChoice {
            name: "crun".into(),
            path: "/usr/bin/crun".into(),
        };
        let err = check_runtime_suitable(&c, CgroupMode::Hybrid)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "crun does not support cgroups v1 or hybrid hosts (this host: v1 hybrid); use --runtime runc"
        );
        assert!(check_runtime_suitable(&c, CgroupMode::V2).is_ok());
        let r = RuntimeChoice {
            name: "runc".into(),
            path: "/usr/sbin/runc".into(),
        };
        assert!(check_runtime_suitable(&r, CgroupMode::V1).is_ok());
    }

    #[test]
    fn first_existing_candidate_wins() {
        let rt = vec![(
            "runc".to_string(),
            vec![
                PathBuf::from("/nonexistent/runc"),
                PathBuf::from("/usr/sbin/runc"),
            ],
        )];
        if Path::new("/usr/sbin/runc").exists() {
            let c = choose_runtime_for_mode("runc", &rt, CgroupMode::Hybrid);
            assert_eq!(
                c.ok().map(|c| c.path),
                Some(PathBuf::from("/usr/sbin/runc"))
            );
        }
        assert!(matches!(
            choose_runtime_for_mode("nope", &rt, CgroupMode::V2),
            Err(OciError::RuntimeNotFound { .. })
        ));
    }
}
