//! Finding the binaries rpod drives (the OCI runtime, conmon) and asking them
//! for their versions; choosing the OCI runtime and checking it suits the host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::cgroup::{host_cgroup_mode, CgroupMode};
use crate::error::{OciError, Result};

/// A binary rpod drives, found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binary {
    /// The name it is known by (`runc`, `crun`, `conmon`, or the file name of
    /// an absolute path).
    pub name: String,
    /// The path found.
    pub path: PathBuf,
}

impl Binary {
    /// The first line of `<path> --version`, or `None` if it cannot be run.
    pub fn version(&self) -> Option<String> {
        let out = Command::new(&self.path)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().next().map(|l| l.trim().to_owned())
    }
}

/// A runtime that was chosen (same shape as any other found [`Binary`]).
pub type RuntimeChoice = Binary;

/// The first candidate that exists and is not a directory (libpod's rule);
/// [`OciError::BinaryNotFound`] naming `what` and every candidate otherwise.
pub fn find_binary(what: &str, name: &str, candidates: &[String]) -> Result<Binary> {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.metadata().map(|m| !m.is_dir()).unwrap_or(false))
        .map(|p| Binary {
            name: name.to_owned(),
            path: p.to_owned(),
        })
        .ok_or_else(|| OciError::BinaryNotFound {
            what: what.to_owned(),
            candidates: candidates.to_vec(),
        })
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

    #[test]
    fn skips_missing_and_directories() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let file = dir.path().join("bin");
        std::fs::write(&file, b"").ok();
        let c = vec![
            "/nonexistent/x".to_owned(),
            dir.path().display().to_string(),
            file.display().to_string(),
        ];
        let b = find_binary("conmon", "conmon", &c).ok();
        assert_eq!(b.map(|b| b.path), Some(file));
    }

    #[test]
    fn names_the_candidates_when_none_exists() {
        let err = find_binary("conmon", "conmon", &["/nonexistent/a".to_owned()]);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "could not find a working conmon binary (configured options: [/nonexistent/a])"
        );
    }
}
