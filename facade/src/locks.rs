//! Wiring of the lock manager: which segment, how many locks, and the `alive.lck` file lock that
//! serialises its creation (reference §5.1 steps 6–7).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rpod_config::{Config, RuntimeConfig, StateBackend};
use rpod_lock::{HeldLock, InMemoryLockManager, LockManager, ShmLockManager};
use serde::Serialize;

use crate::error::RuntimeError;

/// The exclusive file lock `<tmp_dir>/alive.lck`, held while a runtime initialises (creating the
/// lock segment, and after a reboot refreshing the state). Released on drop.
#[derive(Debug)]
pub(crate) struct AliveLock {
    _file: File,
}

impl AliveLock {
    /// Blocks until this process holds `<tmp_dir>/alive.lck`.
    pub(crate) fn acquire(tmp_dir: &Path) -> Result<AliveLock, RuntimeError> {
        let path = tmp_dir.join("alive.lck");
        let err = |source| RuntimeError::AliveLock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(err)?;
        file.lock().map_err(err)?;
        Ok(AliveLock { _file: file })
    }
}

/// The name of the lock segment for `cfg`: the configured `lock_name`, else `/rpod_lock` (rootless
/// `/rpod_rootless_lock_<uid>`) for the default tmp dir and a name derived from any other tmp dir.
pub fn segment_name(cfg: &Config) -> String {
    if let Some(name) = &cfg.values.lock_name {
        return name.clone();
    }
    let default_tmp = RuntimeConfig::defaults(&cfg.env).tmp_dir;
    let rootless_uid = cfg.env.rootless.then_some(cfg.env.uid);
    rpod_lock::default_segment_name(
        &cfg.values.tmp_dir,
        cfg.values.tmp_dir == default_tmp,
        rootless_uid,
    )
}

/// Opens the configured lock manager, creating the segment when it is missing; also says
/// whether this call created it. The in-memory state backend gets an in-memory lock manager
/// (nothing outlives the process anyway).
pub(crate) fn open(cfg: &Config) -> Result<(Arc<dyn LockManager>, bool), RuntimeError> {
    let n = cfg.values.num_locks;
    Ok(match cfg.values.state_backend {
        StateBackend::Memory => (Arc::new(InMemoryLockManager::new(n)?), true),
        StateBackend::Lmdb => {
            let m = ShmLockManager::open_or_create(&segment_name(cfg), n)?;
            let created = m.was_created();
            if created {
                tracing::debug!(segment = %m.path(), locks = n, "created the lock segment");
            }
            (Arc::new(m), created)
        }
    })
}

/// Recreates the lock segment with the configured count (for `rpod system renumber`).
pub(crate) fn recreate(cfg: &Config) -> Result<Arc<dyn LockManager>, RuntimeError> {
    let n = cfg.values.num_locks;
    Ok(match cfg.values.state_backend {
        StateBackend::Memory => Arc::new(InMemoryLockManager::new(n)?),
        StateBackend::Lmdb => Arc::new(ShmLockManager::recreate(&segment_name(cfg), n)?),
    })
}

/// What `rpod system locks` reports.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    /// The segment name (`shm_open` name), or `<in-memory>`.
    pub segment: String,
    /// Where the segment lives (`/dev/shm/...`), if it is shared memory.
    pub path: Option<PathBuf>,
    /// Locks in the table.
    pub total: u32,
    /// Locks not allocated to any container or pod.
    pub free: u32,
    /// Locks allocated to containers and pods.
    pub held: u32,
    /// Locks locked right now, with the PID of each holder.
    pub locked: Vec<LockHolder>,
}

/// A lock that is locked right now.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    /// The lock ID.
    pub id: u32,
    /// The PID its holder recorded.
    pub pid: i32,
}

impl From<HeldLock> for LockHolder {
    fn from(h: HeldLock) -> Self {
        LockHolder {
            id: h.id,
            pid: h.pid,
        }
    }
}

pub(crate) fn report(cfg: &Config, locks: &dyn LockManager) -> Result<LockReport, RuntimeError> {
    let counts = locks.counts()?;
    let (segment, path) = match cfg.values.state_backend {
        StateBackend::Memory => ("<in-memory>".to_owned(), None),
        StateBackend::Lmdb => {
            let name = segment_name(cfg);
            let path = PathBuf::from(rpod_lock::segment_path(&name));
            (name, Some(path))
        }
    };
    Ok(LockReport {
        segment,
        path,
        total: counts.total,
        free: counts.free,
        held: counts.allocated,
        locked: locks.held_locks()?.into_iter().map(Into::into).collect(),
    })
}
