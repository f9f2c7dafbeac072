//! The [`LockManager`] trait and the [`Lock`] / [`LockGuard`] handle types shared by both implementations.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::gate::{AllocationGuard, SweepGuard};
use crate::memory::MemInner;
use crate::shm::ShmInner;
use crate::LockError;

/// A lock that is currently held, as reported by [`LockManager::held_locks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeldLock {
    /// The lock ID.
    pub id: u32,
    /// PID recorded by the holder. The holder may have died since (the next locker recovers the lock).
    pub pid: i32,
}

/// Allocation counts, as reported by [`LockManager::counts`]. `free + allocated == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockCounts {
    /// Number of locks in the table.
    pub total: u32,
    /// Locks not allocated to any object.
    pub free: u32,
    /// Locks allocated to an object.
    pub allocated: u32,
}

/// Hands out and reclaims locks. Object safe; implemented by [`crate::ShmLockManager`] and
/// [`crate::InMemoryLockManager`], which behave the same and return the same errors.
///
/// Allocation state is only bookkeeping: locking never checks it, so a handle keeps working after its lock is
/// freed (another process may still hold an object that points at it).
pub trait LockManager: Send + Sync + fmt::Debug {
    /// Allocates the lowest free lock ID. [`LockError::Exhausted`] when all are allocated.
    fn allocate(&self) -> Result<Lock, LockError>;

    /// Allocates the given ID (used by refresh after a reboot to re-reserve recorded IDs).
    /// [`LockError::AlreadyAllocated`] if it is allocated, [`LockError::OutOfRange`] if too large.
    fn allocate_given(&self, id: u32) -> Result<Lock, LockError>;

    /// A handle for `id` without touching its allocation state. [`LockError::OutOfRange`] if too large.
    fn retrieve(&self, id: u32) -> Result<Lock, LockError>;

    /// Marks `id` free. [`LockError::NotAllocated`] if it is already free, [`LockError::OutOfRange`] if too large.
    fn free(&self, id: u32) -> Result<(), LockError>;

    /// Marks every lock free. Only for renumbering and tests: until every object is given a new lock, IDs may be
    /// handed out twice.
    fn free_all(&self) -> Result<(), LockError>;

    /// Number of locks in the table (constant for the manager's lifetime).
    fn num_locks(&self) -> u32;

    /// Total, free and allocated counts, read in one consistent snapshot.
    fn counts(&self) -> Result<LockCounts, LockError>;

    /// Locks currently held and the PID recorded by each holder, ordered by ID (a snapshot; it may be stale by
    /// the time it is printed).
    fn held_locks(&self) -> Result<Vec<HeldLock>, LockError>;

    /// Every allocated ID, in ascending order, read in one consistent snapshot.
    fn allocated_ids(&self) -> Result<Vec<u32>, LockError>;

    /// Holds the table's allocation gate shared until the guard is dropped (or the process dies). Hold it from
    /// before [`allocate`](Self::allocate) until the new ID is recorded by its owner (or freed again): no
    /// [`try_sweep`](Self::try_sweep) succeeds meanwhile. Waits while a sweep runs. Holds by any number of
    /// threads and processes coexist.
    fn hold_allocations(&self) -> Result<AllocationGuard, LockError>;

    /// Holds the table's allocation gate exclusively, if no thread or process holds it; `Ok(None)` otherwise
    /// (never waits). While the guard lives, every allocated ID is either recorded by its owner or leaked, and
    /// nothing is allocated (by callers that follow the protocol of
    /// [`hold_allocations`](Self::hold_allocations)).
    fn try_sweep(&self) -> Result<Option<SweepGuard>, LockError>;

    /// Records `owner` (an identifier of the store that records the IDs, such as the path of a state database)
    /// as the user of this table, unless another owner was recorded before. Returns whether `owner` is the
    /// only owner recorded since the table was created: once a second one binds, it returns `false` for
    /// everybody, because no single store knows every allocated ID any more. Only owners compare, by a 64-bit
    /// hash.
    fn bind_owner(&self, owner: &[u8]) -> Result<bool, LockError>;
}

/// The implementation behind a [`Lock`]. An enum rather than a trait object keeps the lock path free of dynamic
/// dispatch.
#[derive(Clone)]
pub(crate) enum Backend {
    Shm(Arc<ShmInner>),
    Memory(Arc<MemInner>),
}

/// A cheap, cloneable handle to one lock. Clones share the mapping of their manager and keep it alive.
///
/// Handles for the same ID in different threads or processes exclude each other. The handle does not know
/// whether its ID is allocated and keeps working after [`Lock::free`].
#[derive(Clone)]
pub struct Lock {
    id: u32,
    backend: Backend,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Lock");
        d.field("id", &self.id);
        match &self.backend {
            Backend::Shm(inner) => d.field("segment", &inner.name()),
            Backend::Memory(_) => d.field("segment", &"<in-memory>"),
        };
        d.finish()
    }
}

impl Lock {
    pub(crate) fn new(id: u32, backend: Backend) -> Self {
        Self { id, backend }
    }

    /// The lock ID (what objects record as their `LockID`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Blocks until the lock is acquired.
    ///
    /// If the previous holder died while holding it, the lock is recovered, a warning naming the lock ID and the
    /// dead PID is logged, and [`LockGuard::recovered_from`] reports the PID. Fails with [`LockError::Deadlock`]
    /// if this thread already holds it.
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError> {
        let recovered = match &self.backend {
            Backend::Shm(inner) => inner.lock(self.id)?,
            Backend::Memory(inner) => inner.lock(self.id)?,
        };
        Ok(self.guard(recovered))
    }

    /// Takes the lock if it is free; `Ok(None)` if someone else holds it.
    pub fn try_lock(&self) -> Result<Option<LockGuard<'_>>, LockError> {
        let acquired = match &self.backend {
            Backend::Shm(inner) => inner.try_lock(self.id)?,
            Backend::Memory(inner) => inner.try_lock(self.id)?,
        };
        Ok(acquired.map(|recovered| self.guard(recovered)))
    }

    /// Like [`Lock::lock`], but gives up after `timeout` with [`LockError::Timeout`], which names the lock ID and
    /// the PID of the holder.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError> {
        let recovered = match &self.backend {
            Backend::Shm(inner) => inner.lock_timeout(self.id, timeout)?,
            Backend::Memory(inner) => inner.lock_timeout(self.id, timeout)?,
        };
        Ok(self.guard(recovered))
    }

    /// Marks this lock's ID free in its manager (same as [`LockManager::free`]). The handle keeps working.
    pub fn free(&self) -> Result<(), LockError> {
        match &self.backend {
            Backend::Shm(inner) => inner.free(self.id),
            Backend::Memory(inner) => inner.free(self.id),
        }
    }

    /// PID recorded as the current holder, if any (a snapshot).
    pub fn holder_pid(&self) -> Option<i32> {
        match &self.backend {
            Backend::Shm(inner) => inner.holder_pid(self.id),
            Backend::Memory(inner) => inner.holder_pid(self.id),
        }
    }

    fn guard(&self, recovered_from: Option<i32>) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            recovered_from,
            _not_send: PhantomData,
        }
    }

    fn unlock(&self) -> Result<(), LockError> {
        match &self.backend {
            Backend::Shm(inner) => inner.unlock(self.id),
            Backend::Memory(inner) => inner.unlock(self.id),
        }
    }
}

/// Proof that this thread holds a [`Lock`]; dropping it unlocks (clearing the holder PID first).
///
/// A guard is neither `Send` nor `Sync`: a robust mutex must be released by the thread that took it. Do not hold
/// one across an `.await` on a work-stealing executor.
///
/// ```compile_fail
/// use rpod_lock::{InMemoryLockManager, LockManager};
///
/// let manager = InMemoryLockManager::new(32).unwrap();
/// let lock = manager.allocate().unwrap();
/// let guard = lock.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: `*const ()` cannot be sent between threads safely
/// });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    recovered_from: Option<i32>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("id", &self.lock.id)
            .field("recovered_from", &self.recovered_from)
            .finish()
    }
}

impl LockGuard<'_> {
    /// The ID of the held lock.
    pub fn id(&self) -> u32 {
        self.lock.id
    }

    /// `Some(pid)` if the previous holder died while holding the lock and this acquisition recovered it. `pid` is
    /// the PID that holder had recorded, or 0 if it died before recording one. State protected by the lock may be
    /// inconsistent: re-read it from its source of truth.
    pub fn recovered_from(&self) -> Option<i32> {
        self.recovered_from
    }

    /// Unlocks now and reports an error instead of logging it.
    pub fn unlock(self) -> Result<(), LockError> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.unlock()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.lock.unlock() {
            tracing::error!(lock_id = self.lock.id, error = %err, "failed to unlock lock {}: {err}", self.lock.id);
        }
    }
}
