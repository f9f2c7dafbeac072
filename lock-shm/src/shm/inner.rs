//! [`ShmInner`]: the lock operations on a mapped segment, shared by a [`ShmLockManager`](super::ShmLockManager)
//! and its [`Lock`](crate::Lock) handles: locking a slot (recovering it when its holder died), and allocating and
//! freeing lock IDs in the bitmaps under the segment mutex.

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;

use crate::gate::{Gate, SHARED_OWNER};
use crate::manager::{HeldLock, LockCounts};
use crate::memory::ids_in_bitmaps;
use crate::naming::segment_path;
use crate::sys::{self, Acquired, Mapping, Slot};
use crate::LockError;

use super::layout::Layout;

/// How long to wait for the allocation mutex (held only for a few bitmap operations, so this only expires if the
/// holder is stopped).
const SEGMENT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared state behind a [`ShmLockManager`](super::ShmLockManager) and its [`Lock`](crate::Lock) handles.
pub(crate) struct ShmInner {
    /// The segment name, as given to `shm_open`.
    name: String,
    /// The whole segment, mapped.
    map: Mapping,
    /// Where everything is in `map` (validated against the mapping's length).
    layout: Layout,
    /// The allocation gate, on the segment's descriptor (kept open for it).
    gate: Arc<Gate>,
}

impl ShmInner {
    /// The state of the segment `name`, open as `file`, mapped as `map` and laid out as `layout` (checked by
    /// the caller).
    pub(super) fn new(name: &str, file: File, map: Mapping, layout: Layout) -> Self {
        Self {
            name: name.to_owned(),
            map,
            layout,
            gate: Gate::new(name, Some(file)),
        }
    }

    /// The allocation gate.
    pub(super) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Binds the owner `tag` (see [`LockManager::bind_owner`](crate::LockManager::bind_owner)).
    pub(super) fn bind_owner(&self, tag: u64) -> Result<bool, LockError> {
        let header = self.map.header().ok_or_else(|| self.corrupt())?;
        match header
            .owner
            .compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(true),
            Err(current) if current == tag => Ok(true),
            Err(SHARED_OWNER) => Ok(false),
            Err(_) => {
                header.owner.store(SHARED_OWNER, Ordering::Release);
                tracing::debug!(
                    segment = %self.name,
                    "lock segment {} is used by more than one state database",
                    self.name
                );
                Ok(false)
            }
        }
    }

    /// Every allocated ID, ascending.
    pub(super) fn allocated_ids(&self) -> Result<Vec<u32>, LockError> {
        self.with_bitmaps(|bitmaps| {
            ids_in_bitmaps(bitmaps.iter().map(|w| w.load(Ordering::Relaxed)))
        })
    }

    /// The segment name, as given to `shm_open`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Number of lock slots.
    pub(super) fn num_locks(&self) -> u32 {
        self.layout.num_locks
    }

    /// The slot of lock `id`.
    fn slot(&self, id: u32) -> Result<&Slot, LockError> {
        self.check_id(id)?;
        self.map
            .slot(
                self.layout.slots_offset,
                self.layout.num_locks as usize,
                id as usize,
            )
            .ok_or_else(|| self.corrupt())
    }

    /// Validated at open; only reachable if the mapping is shorter than the layout, which `open` rules out.
    fn corrupt(&self) -> LockError {
        LockError::BadSize {
            name: self.name.clone(),
            path: segment_path(&self.name),
            size: self.map.len() as u64,
            expected: self.layout.size as u64,
        }
    }

    /// The error for `op` on the mutex of lock `id` (`None`: the segment mutex) failing with `errno`.
    fn mutex_error(&self, op: &'static str, id: Option<u32>, errno: Errno) -> LockError {
        match (errno, id) {
            (Errno::EDEADLK, Some(id)) => LockError::Deadlock { id },
            (Errno::ENOTRECOVERABLE, Some(id)) => LockError::NotRecoverable {
                name: self.name.clone(),
                id,
            },
            _ => LockError::Mutex {
                op,
                name: self.name.clone(),
                id,
                errno,
            },
        }
    }

    /// The PID of the dead previous holder when `acquired` recovered lock `id` (with a warning), else `None`.
    fn recovered(&self, id: u32, acquired: Acquired) -> Option<i32> {
        match acquired {
            Acquired::Clean => None,
            Acquired::OwnerDied { previous_holder } => {
                tracing::warn!(
                    lock_id = id,
                    dead_pid = previous_holder,
                    segment = %self.name,
                    "lock {id} was held by PID {previous_holder}, which died without releasing it; \
                     recovered the lock (state it protected may be inconsistent)"
                );
                Some(previous_holder)
            }
        }
    }

    /// Blocks until lock `id` is held; `Some(pid)` when it was recovered from the dead holder `pid`.
    pub(crate) fn lock(&self, id: u32) -> Result<Option<i32>, LockError> {
        let slot = self.slot(id)?;
        let acquired = slot
            .lock()
            .map_err(|e| self.mutex_error("pthread_mutex_lock", Some(id), e))?;
        Ok(self.recovered(id, acquired))
    }

    /// Takes lock `id` if it is free (`Ok(None)` when busy); the inner `Some(pid)` as in [`Self::lock`].
    pub(crate) fn try_lock(&self, id: u32) -> Result<Option<Option<i32>>, LockError> {
        let slot = self.slot(id)?;
        let acquired = slot
            .try_lock()
            .map_err(|e| self.mutex_error("pthread_mutex_trylock", Some(id), e))?;
        Ok(acquired.map(|a| self.recovered(id, a)))
    }

    /// Takes lock `id`, waiting at most `timeout`, else fails with [`LockError::Timeout`] naming the holder.
    pub(crate) fn lock_timeout(
        &self,
        id: u32,
        timeout: Duration,
    ) -> Result<Option<i32>, LockError> {
        let slot = self.slot(id)?;
        match slot
            .try_lock()
            .map_err(|e| self.mutex_error("pthread_mutex_trylock", Some(id), e))?
        {
            Some(acquired) => return Ok(self.recovered(id, acquired)),
            None if timeout.is_zero() => {}
            None => {
                let deadline = sys::realtime_deadline(timeout);
                if let Some(acquired) = slot
                    .lock_until(&deadline)
                    .map_err(|e| self.mutex_error("pthread_mutex_timedlock", Some(id), e))?
                {
                    return Ok(self.recovered(id, acquired));
                }
            }
        }
        Err(LockError::Timeout {
            id,
            timeout,
            holder_pid: nonzero(slot.holder()),
        })
    }

    /// Releases lock `id`.
    pub(crate) fn unlock(&self, id: u32) -> Result<(), LockError> {
        self.slot(id)?
            .unlock()
            .map_err(|e| self.mutex_error("pthread_mutex_unlock", Some(id), e))
    }

    /// The PID recorded as the holder of lock `id`, if any.
    pub(crate) fn holder_pid(&self, id: u32) -> Option<i32> {
        self.slot(id).ok().and_then(|slot| nonzero(slot.holder()))
    }

    /// Runs `f` on the bitmaps with the segment mutex held.
    fn with_bitmaps<R>(&self, f: impl FnOnce(&[AtomicU32]) -> R) -> Result<R, LockError> {
        let header = self.map.header().ok_or_else(|| self.corrupt())?;
        let bitmaps = self
            .map
            .bitmaps(self.layout.bitmaps_offset, self.layout.num_bitmaps as usize)
            .ok_or_else(|| self.corrupt())?;
        let slot = &header.segment_lock;
        let acquired = match slot
            .try_lock()
            .map_err(|e| self.mutex_error("pthread_mutex_trylock", None, e))?
        {
            Some(acquired) => acquired,
            None => {
                let deadline = sys::realtime_deadline(SEGMENT_LOCK_TIMEOUT);
                slot.lock_until(&deadline)
                    .map_err(|e| self.mutex_error("pthread_mutex_timedlock", None, e))?
                    .ok_or_else(|| LockError::SegmentBusy {
                        name: self.name.clone(),
                        timeout: SEGMENT_LOCK_TIMEOUT,
                        holder_pid: nonzero(slot.holder()),
                    })?
            }
        };
        if let Acquired::OwnerDied { previous_holder } = acquired {
            // Bitmap updates are single-word stores, so the bitmaps are consistent even if the holder died.
            tracing::warn!(
                dead_pid = previous_holder,
                segment = %self.name,
                "the allocation lock of segment {} was held by PID {previous_holder}, which died; recovered it",
                self.name
            );
        }
        let result = f(bitmaps);
        slot.unlock()
            .map_err(|e| self.mutex_error("pthread_mutex_unlock", None, e))?;
        Ok(result)
    }

    /// Fails with [`LockError::OutOfRange`] unless `id` is a lock of this segment.
    pub(super) fn check_id(&self, id: u32) -> Result<(), LockError> {
        if id >= self.layout.num_locks {
            return Err(LockError::OutOfRange {
                id,
                total: self.layout.num_locks,
            });
        }
        Ok(())
    }

    /// Allocates the lowest free lock ID.
    pub(super) fn allocate(&self) -> Result<u32, LockError> {
        self.with_bitmaps(|bitmaps| {
            bitmaps.iter().enumerate().find_map(|(i, word)| {
                let w = word.load(Ordering::Relaxed);
                (w != u32::MAX).then(|| {
                    let bit = (!w).trailing_zeros();
                    word.store(w | (1 << bit), Ordering::Relaxed);
                    i as u32 * 32 + bit
                })
            })
        })?
        .ok_or(LockError::Exhausted {
            total: self.layout.num_locks,
        })
    }

    /// Allocates lock `id`; fails with [`LockError::AlreadyAllocated`] if it is taken.
    pub(super) fn allocate_given(&self, id: u32) -> Result<(), LockError> {
        self.set_allocated(id, true).and_then(|was| {
            if was {
                Err(LockError::AlreadyAllocated { id })
            } else {
                Ok(())
            }
        })
    }

    /// Frees lock `id`; fails with [`LockError::NotAllocated`] if it is free.
    pub(crate) fn free(&self, id: u32) -> Result<(), LockError> {
        self.set_allocated(id, false).and_then(|was| {
            if was {
                Ok(())
            } else {
                Err(LockError::NotAllocated { id })
            }
        })
    }

    /// Sets the allocation bit of lock `id` to `allocated`, unless it already is; returns what it was.
    fn set_allocated(&self, id: u32, allocated: bool) -> Result<bool, LockError> {
        self.check_id(id)?;
        self.with_bitmaps(|bitmaps| {
            let (word, mask) = (&bitmaps[(id / 32) as usize], 1u32 << (id % 32));
            let w = word.load(Ordering::Relaxed);
            let was = w & mask != 0;
            if was != allocated {
                word.store(
                    if allocated { w | mask } else { w & !mask },
                    Ordering::Relaxed,
                );
            }
            was
        })
    }

    /// Frees every lock.
    pub(super) fn free_all(&self) -> Result<(), LockError> {
        self.with_bitmaps(|bitmaps| {
            for word in bitmaps {
                word.store(0, Ordering::Relaxed);
            }
        })
    }

    /// How many locks there are, free and allocated.
    pub(super) fn counts(&self) -> Result<LockCounts, LockError> {
        let allocated = self.with_bitmaps(|bitmaps| {
            bitmaps
                .iter()
                .map(|w| w.load(Ordering::Relaxed).count_ones())
                .sum::<u32>()
        })?;
        Ok(LockCounts {
            total: self.layout.num_locks,
            free: self.layout.num_locks - allocated,
            allocated,
        })
    }

    /// The locks whose slot records a holder PID.
    pub(super) fn held_locks(&self) -> Result<Vec<HeldLock>, LockError> {
        let mut held = Vec::new();
        for id in 0..self.layout.num_locks {
            let pid = self.slot(id)?.holder();
            if pid != 0 {
                held.push(HeldLock { id, pid });
            }
        }
        Ok(held)
    }
}

/// `pid`, unless it is 0 (no holder).
fn nonzero(pid: i32) -> Option<i32> {
    (pid != 0).then_some(pid)
}
