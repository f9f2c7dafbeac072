//! Containers of a root that no readable record describes any more (the state database was
//! damaged, or the tmp dir was wiped while they ran): found by their bundle, which is always
//! under `<static_dir>/containers/`, in the OCI runtime's state directory and on conmon's
//! command line, then killed and deleted, so `system reset --force` leaves nothing running.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rpod_config::Config;

/// Where runc and crun keep their state when no `--root` is given.
const RUNTIME_ROOTS: &[&str] = &["/run/runc", "/run/crun"];

/// IDs of the runtime's containers whose bundle is under `containers_dir`.
fn runtime_containers(containers_dir: &Path) -> Vec<String> {
    let needle = format!("bundle={}/", containers_dir.display());
    let mut ids = Vec::new();
    for root in RUNTIME_ROOTS {
        let Ok(dir) = std::fs::read_dir(root) else {
            continue;
        };
        for e in dir.flatten() {
            let state = e.path().join("state.json");
            if std::fs::read_to_string(&state).is_ok_and(|s| s.contains(&needle)) {
                ids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    ids
}

/// Programs whose processes may belong to a container's init: conmon and the OCI runtimes.
/// Other processes naming a container (a waiting `rpod … cleanup <id>`, `tail -f` of its log)
/// are left alone.
const INIT_PROGRAMS: &[&str] = &["conmon", "runc", "crun"];

/// PIDs of conmon and runtime processes (except this process) one of whose arguments
/// `wanted` accepts.
pub(crate) fn init_processes(wanted: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let me = std::process::id();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmd.split(|b| *b == 0);
            let program = args
                .next()
                .and_then(|a| a.rsplit(|b| *b == b'/').next())
                .unwrap_or_default();
            INIT_PROGRAMS.iter().any(|p| program == p.as_bytes()) && args.any(&wanted)
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// conmon processes of bundles under `containers_dir` (conmon runs with `-b <bundle>`).
fn processes_under(containers_dir: &Path) -> Vec<i32> {
    let needle = format!("{}/", containers_dir.display());
    init_processes(|arg| arg.starts_with(needle.as_bytes()))
}

/// Whether the OCI runtime still has state for container `id` (a `stat`, no exec).
pub(crate) fn runtime_has_state(id: &str) -> bool {
    RUNTIME_ROOTS
        .iter()
        .any(|root| Path::new(root).join(id).join("state.json").exists())
}

/// SIGKILL to `pid` if it is alive and its command line names container `id` (its conmon).
pub(crate) fn kill_if_names(pid: i32, id: &str) {
    if pid <= 0 {
        return;
    }
    let names = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|a| a == id.as_bytes()));
    if names {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills the conmons and deletes (forcibly) the runtime's containers of the root `config`
/// selects. Returns what failed, as text; the caller goes on regardless.
pub(crate) fn stop_orphans(config: &Config) -> Vec<String> {
    let containers_dir = config.values.static_dir.join("containers");
    let mut errors = Vec::new();
    for pid in processes_under(&containers_dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let ids = runtime_containers(&containers_dir);
    if ids.is_empty() {
        return errors;
    }
    let runtime = config
        .values
        .runtime_candidates()
        .and_then(|(name, paths)| rpod_oci::find_binary("OCI runtime", &name, &paths).ok());
    let Some(runtime) = runtime else {
        errors.push(format!(
            "{} containers of this root are left in the OCI runtime: no runtime binary found",
            ids.len()
        ));
        return errors;
    };
    let mut cfg = rpod_oci::RuntimeConfig::new(config.values.tmp_dir.join("exits"));
    cfg.runtime_path = PathBuf::from(&runtime.path);
    match rpod_oci::OciRuntime::new(cfg) {
        Ok(oci) => {
            for id in ids {
                tracing::warn!(container = %id, "deleting a container no record describes");
                match oci.delete(&id, true) {
                    Ok(()) | Err(rpod_oci::OciError::NotFound { .. }) => {}
                    Err(e) => errors.push(format!("deleting container {id}: {e}")),
                }
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    errors
}
