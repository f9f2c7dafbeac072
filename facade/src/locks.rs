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

/// Identifies this root's state to the lock table ([`LockManager::bind_owner`]): the canonical
/// static dir, where the database lives.
pub(crate) fn owner_id(cfg: &Config) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let dir = &cfg.values.static_dir;
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.clone())
        .as_os_str()
        .as_bytes()
        .to_vec()
}

impl crate::Runtime {
    /// Frees the lock IDs that are allocated although no container or pod records them, and
    /// returns how many. An object's lock is allocated before its record is written and freed
    /// after its record is removed, so an rpod process killed in between leaves its lock
    /// allocated for good ("held" above the number of objects in `rpod system locks`).
    ///
    /// It costs two counts when nothing leaked: the allocated locks (the bitmaps, under the
    /// segment mutex) against the containers and pods (LMDB's entry count, O(1)). Otherwise,
    /// it reclaims only when it is safe:
    ///
    /// * `sole_owner`: this root's database is the only one that ever bound the segment (two roots
    ///   sharing a lock table each see the other's IDs as unrecorded);
    /// * the allocation gate is free ([`LockManager::try_sweep`]): creators hold it shared from
    ///   allocating to recording, so nobody is between the two; if one is, the sweep is left to a
    ///   later command, it never waits;
    /// * every record decodes (an unreadable record's lock is not known);
    /// * the candidate lock is not locked: removers hold an object's lock from removing its record
    ///   until after freeing the lock, and a lock whose holder died is recovered by `try_lock`.
    pub(crate) fn sweep_leaked_locks(&self, sole_owner: bool) -> Result<usize, RuntimeError> {
        let counts = self.locks.counts()?;
        let objects = self.state.object_count()?;
        if u64::from(counts.allocated) <= objects {
            return Ok(0);
        }
        if !sole_owner {
            tracing::debug!(
                held = counts.allocated,
                objects,
                "the lock table is shared with another state database: not reclaiming locks"
            );
            return Ok(0);
        }
        let Some(_gate) = self.locks.try_sweep()? else {
            tracing::debug!("a container or pod is being created: reclaiming locks later");
            return Ok(0);
        };
        let allocated = self.locks.allocated_ids()?;
        let all = self.state.view("")?;
        let mut named = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        let mut listed: u64 = 0;
        // Streamed: a sweep over 10 000 containers does not hold them all in memory.
        all.for_each_container(&mut |c| {
            named.insert(c.config.lock_id);
            ids.insert(c.config.id.clone());
            listed += 1;
            true
        })?;
        for p in all.all_pods()? {
            named.insert(p.config.lock_id);
            listed += 1;
        }
        let objects = all.object_count()?;
        if listed != objects {
            // Undecodable records (logged by the listing), or a removal in between: their locks
            // are unknown, so nothing is reclaimed.
            tracing::debug!(
                listed,
                objects,
                "not every record could be read: not reclaiming locks"
            );
            return Ok(0);
        }
        // A container's writable layer is created after its lock is allocated and deleted
        // before its lock is freed, so a create or pod removal killed in between leaves both:
        // the layer goes with the lock, under the same gate (no create is under way).
        if self.images.options.graph_root.join("images").is_dir() {
            let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            if let Err(e) = self.remove_orphan_layers(&ids) {
                tracing::warn!(error = %e, "removing container layers no container owns");
            }
        }
        let mut freed = 0;
        for id in allocated.into_iter().filter(|id| !named.contains(id)) {
            let lock = self.locks.retrieve(id)?;
            let Some(guard) = lock.try_lock()? else {
                // Its object is being removed right now; the remover frees it.
                continue;
            };
            match self.locks.free(id) {
                Ok(()) => {
                    freed += 1;
                    tracing::warn!(
                        lock = id,
                        "freed lock {id}: it was allocated, but no container or pod records it \
                         (an rpod process was killed while creating or removing one)"
                    );
                }
                Err(rpod_lock::LockError::NotAllocated { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            drop(guard);
        }
        Ok(freed)
    }
}
