//! The values rpod cannot work with, reported with the key and where its value came from.

use crate::config::RuntimeConfig;
use crate::error::ConfigError;
use crate::source::Sources;
use crate::value::CgroupManager;

/// `key`'s value is unusable for `reason`.
pub(crate) fn invalid(
    sources: &Sources,
    key: &'static str,
    value: String,
    reason: &str,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value,
        origin: sources.get(key).clone(),
        reason: reason.to_owned(),
    }
}

/// Checks the values rpod cannot work with.
pub(crate) fn validate(v: &RuntimeConfig, sources: &Sources) -> Result<(), ConfigError> {
    let invalid = |key, value, reason: &str| invalid(sources, key, value, reason);
    // The storage roots first: static_dir and volume_path may be derived from graph_root,
    // and the error should name the key the user actually set.
    for (key, path) in [
        ("graph_root", &v.graph_root),
        ("run_root", &v.run_root),
        ("static_dir", &v.static_dir),
        ("tmp_dir", &v.tmp_dir),
        ("volume_path", &v.volume_path),
    ] {
        if !path.is_absolute() {
            return Err(invalid(
                key,
                path.display().to_string(),
                "must be an absolute path",
            ));
        }
    }
    if !v.cni_config_dir.starts_with('/') {
        return Err(invalid(
            "cni_config_dir",
            v.cni_config_dir.clone(),
            "must be an absolute path",
        ));
    }
    if v.num_locks == 0 {
        return Err(invalid("num_locks", "0".into(), "must be at least 1"));
    }
    if v.max_log_size < -1 {
        return Err(invalid(
            "max_log_size",
            v.max_log_size.to_string(),
            "must be -1 (unlimited) or a size in bytes",
        ));
    }
    if !v.cgroup_parent.is_empty() {
        let base = v.cgroup_parent.rsplit('/').next().unwrap_or("");
        let slice = base.ends_with(".slice");
        let reason = match v.cgroup_manager {
            CgroupManager::Cgroupfs if slice => {
                Some("systemd slices cannot be used with the cgroupfs cgroup manager")
            }
            CgroupManager::Cgroupfs if !v.cgroup_parent.starts_with('/') => {
                Some("must be an absolute cgroup path with the cgroupfs cgroup manager")
            }
            CgroupManager::Systemd if !slice || base.len() < 6 => {
                Some("must be a systemd slice (NAME.slice) with the systemd cgroup manager")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(invalid("cgroup_parent", v.cgroup_parent.clone(), reason));
        }
    }
    if v.runtime.is_empty() {
        return Err(invalid("runtime", String::new(), "must not be empty"));
    }
    if v.runtime_candidates().is_none() {
        let known: Vec<&str> = v.runtimes.keys().map(String::as_str).collect();
        return Err(invalid(
            "runtime",
            v.runtime.clone(),
            &format!(
                "neither an absolute path nor a name in [runtimes] (known: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(())
}
