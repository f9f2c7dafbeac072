//! cgroup parents of containers and pods (reference §3.7): where they go, and removing a pod's
//! cgroup with the pod.

use std::path::{Path, PathBuf};

use rpod_config::{CgroupManager, Config};

/// The parent under which containers (and pod cgroups) are created: the configured
/// `cgroup_parent`, else `/rpod_parent` (cgroupfs) or `machine.slice` (systemd).
pub fn default_parent(cfg: &Config) -> String {
    let v = &cfg.values;
    if !v.cgroup_parent.is_empty() {
        return v.cgroup_parent.clone();
    }
    match v.cgroup_manager {
        CgroupManager::Cgroupfs => rpod_oci::DEFAULT_CGROUPFS_PARENT.to_owned(),
        CgroupManager::Systemd => rpod_oci::DEFAULT_SYSTEMD_PARENT.to_owned(),
    }
}

/// A pod's cgroup, which its containers use as their parent: cgroupfs `<parent>/<podID>`;
/// systemd `<parent-without-.slice>-libpod_pod_<podID>.slice`.
pub fn pod_cgroup(manager: CgroupManager, parent: &str, pod_id: &str) -> String {
    match manager {
        CgroupManager::Cgroupfs => format!("{}/{pod_id}", parent.trim_end_matches('/')),
        CgroupManager::Systemd => {
            let base = parent.rsplit('/').next().unwrap_or(parent);
            let stem = base.strip_suffix(".slice").unwrap_or(base);
            format!("{stem}-libpod_pod_{pod_id}.slice")
        }
    }
}

/// The directories of cgroupfs path `cgroup` in every mounted hierarchy.
pub(crate) fn hierarchy_dirs(cgroup: &str) -> Vec<PathBuf> {
    let rel = cgroup.trim_start_matches('/');
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out
}

/// Removes an empty directory tree bottom-up (cgroup directories can only be removed with
/// `rmdir`, children first).
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a pod's cgroupfs cgroup in every hierarchy (members must be gone). Errors are
/// returned as text for the caller to log, as libpod does.
pub fn remove_cgroupfs(cgroup: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for d in hierarchy_dirs(cgroup) {
        if let Err(e) = remove_tree(&d) {
            errors.push(format!("removing cgroup {}: {e}", d.display()));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cgroup_forms() {
        assert_eq!(
            pod_cgroup(CgroupManager::Cgroupfs, "/rpod_parent", "abc"),
            "/rpod_parent/abc"
        );
        assert_eq!(
            pod_cgroup(CgroupManager::Systemd, "machine.slice", "abc"),
            "machine-libpod_pod_abc.slice"
        );
    }
}
