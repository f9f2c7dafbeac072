//! `system reset` and shutdown: stopping everything, removing every object and rpod's files of
//! a root, also when its state cannot be opened any more.

use std::path::Path;
use std::sync::atomic::Ordering;

use rpod_config::{Config, ConfigEnv, RuntimeOptions, StateBackend};

use crate::container::StatusRules;
use crate::error::RuntimeError;
use crate::locks;
use crate::runtime::STATE_FILE;
use crate::Runtime;

impl Runtime {
    /// Marks the runtime unusable (later calls fail with [`RuntimeError::Stopped`]) and closes
    /// the state. With `force`, first stops every running container (10 s timeout each, all in
    /// parallel); without, containers keep running (there is no daemon). Stop errors are
    /// collected and returned after the runtime is shut down.
    pub fn shutdown(&self, force: bool) -> Result<(), RuntimeError> {
        self.check_valid()?;
        let mut errors = Vec::new();
        if force {
            let all = self.all_namespaces()?;
            let running: Vec<String> = all
                .state
                .all_containers()?
                .into_iter()
                .filter_map(|mut c| {
                    all.container_view(&mut c).ok()?;
                    c.state.status.is_running_or_paused().then_some(c.config.id)
                })
                .collect();
            // Members before infra containers, whose namespaces they use.
            let (infra, others): (Vec<String>, Vec<String>) = running.into_iter().partition(|id| {
                all.state
                    .container(id)
                    .map(|c| c.config.is_infra)
                    .unwrap_or(false)
            });
            for batch in [others, infra] {
                errors.extend(std::thread::scope(|s| {
                    let handles: Vec<_> = batch
                        .iter()
                        .map(|id| {
                            let all = &all;
                            s.spawn(move || {
                                match all
                                    .stop_container(id, Some(std::time::Duration::from_secs(10)))
                                {
                                    Ok(_)
                                    | Err(RuntimeError::InvalidState { .. })
                                    | Err(RuntimeError::AlreadyStopped { .. }) => None,
                                    Err(e) => Some(format!("stopping container {id}: {e}")),
                                }
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .filter_map(|h| h.join().unwrap_or(Some("stop thread panicked".to_owned())))
                        .collect::<Vec<_>>()
                }));
            }
        }
        self.valid.store(false, Ordering::Release);
        self.state.close()?;
        errors_result("shutdown", errors)
    }

    /// `rpod system reset --force`: removes every container and pod of this root (all
    /// namespaces), the state database, the lock table and rpod's directories.
    pub fn reset(mut self) -> Result<(), RuntimeError> {
        self.check_valid()?;
        self.state = self.state.view("")?;
        let mut errors: Vec<String> = Vec::new();
        for p in self.state.all_pods()? {
            if let Err(e) = self.remove_pod(&p.config.id, true) {
                errors.push(format!("removing pod {}: {e}", p.config.id));
            }
        }
        for c in self.state.all_containers()? {
            if let Err(e) = self.remove_container(&c.config.id, true) {
                errors.push(format!("removing container {}: {e}", c.config.id));
            }
        }
        self.shutdown(false)?;
        remove_state_files(&self.config, &mut errors);
        reset_result(errors)
    }
}

/// `rpod system reset --force` for a root whose state cannot be opened (a damaged database):
/// removes the database, rpod's directories and the lock segment without reading them. Containers
/// that still run are found by their bundles (in the OCI runtime's state and on conmon's
/// command line), killed and deleted.
pub fn reset_unreadable(env: &ConfigEnv, options: &RuntimeOptions) -> Result<(), RuntimeError> {
    let config = Config::load(env, options)?;
    // Nothing records the containers any more: find them by their bundles.
    let mut errors = crate::orphans::stop_orphans(&config);
    remove_state_files(&config, &mut errors);
    reset_result(errors)
}

/// Removes the lock segment of the root that `options` select (`shm_unlink`), without opening
/// it: the way past a segment that cannot be used ([`RuntimeError::is_unusable_lock_segment`]).
/// The next runtime creates it again and reserves every recorded lock ID. Returns the segment's
/// path and whether it existed. Processes that still have it mapped keep the old one: stop them
/// first.
pub fn remove_lock_segment(
    env: &ConfigEnv,
    options: &RuntimeOptions,
) -> Result<(String, bool), RuntimeError> {
    let mut config = Config::load(env, options)?;
    // The paths recorded in the database (the tmp dir names the segment), if it can be read.
    let db = config.values.static_dir.join(STATE_FILE);
    if config.values.state_backend == StateBackend::Lmdb && db.is_file() {
        if let Ok(state) = rpod_state::LmdbState::open(&config.values.static_dir) {
            if let Ok(recorded) = rpod_state::State::get_db_config(&state) {
                config.apply_db_config(&crate::convert::db_from_state(&recorded))?;
            }
            let _ = rpod_state::State::close(&state);
        }
    }
    let name = locks::segment_name(&config);
    let existed = rpod_lock::ShmLockManager::unlink(&name)?;
    Ok((rpod_lock::segment_path(&name), existed))
}

/// A reset goes on after errors; they are reported together at the end.
fn reset_result(errors: Vec<String>) -> Result<(), RuntimeError> {
    errors_result("reset finished with errors", errors)
}

/// `Ok` without errors, else one error listing them after `what`.
fn errors_result(what: &str, errors: Vec<String>) -> Result<(), RuntimeError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec(format!(
            "{what}: {}",
            errors.join("; ")
        )))
    }
}

/// Removes the state database, rpod's per-root directories and the lock segment.
fn remove_state_files(config: &Config, errors: &mut Vec<String>) {
    let v = &config.values;
    if v.state_backend == StateBackend::Lmdb {
        let name = locks::segment_name(config);
        let _ = rpod_lock::ShmLockManager::unlink(&name);
    }
    for path in [
        v.static_dir.join(STATE_FILE),
        v.static_dir.join(format!("{STATE_FILE}-lock")),
        v.static_dir.join("containers"),
        v.static_dir.join("infra-rootfs"),
        v.tmp_dir.clone(),
    ] {
        remove_path(&path, errors);
    }
    // The image store (podman's reset removes images too), mounts first; then the run root.
    if let Ok(options) = crate::runtime::store_options(config) {
        errors.extend(rpod_storage::images::remove_store(&options));
    }
    remove_path(&v.run_root, errors);
}

fn remove_path(path: &Path, errors: &mut Vec<String>) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            errors.push(format!("removing {}: {e}", path.display()));
        }
    }
}
