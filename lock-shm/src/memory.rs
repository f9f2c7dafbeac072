//! [`InMemoryLockManager`]: the same behaviour as [`crate::ShmLockManager`] inside one process, for tests of the
//! layers above.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::gate::{owner_tag, AllocationGuard, Gate, SweepGuard, SHARED_OWNER};
use crate::manager::{Backend, HeldLock, Lock, LockCounts, LockManager};
use crate::shm::MAX_LOCKS;
use crate::LockError;

#[derive(Debug)]
struct MemState {
    /// Allocation bitmaps: lock N is bit `N % 32` of word `N / 32` (as in the SHM segment).
    allocated: Vec<u32>,
    holders: Vec<Option<ThreadId>>,
    /// Threads blocked in `acquire`; `unlock` only signals the condition variable if there are any (a futex wake
    /// costs a system call).
    waiters: usize,
}

thread_local! {
    /// `std::thread::current()` clones an `Arc`; cache the ID.
    static THREAD_ID: ThreadId = std::thread::current().id();
}

fn current_thread() -> ThreadId {
    THREAD_ID.with(|id| *id)
}

/// The shared state behind an [`InMemoryLockManager`] and its [`Lock`] handles.
#[derive(Debug)]
pub(crate) struct MemInner {
    num_locks: u32,
    state: Mutex<MemState>,
    released: Condvar,
}

impl MemInner {
    /// The state, even if a thread panicked while holding the internal mutex (every update is a single
    /// assignment, so the state is never half-changed).
    fn state(&self) -> MutexGuard<'_, MemState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_id(&self, id: u32) -> Result<usize, LockError> {
        if id >= self.num_locks {
            return Err(LockError::OutOfRange {
                id,
                total: self.num_locks,
            });
        }
        Ok(id as usize)
    }

    /// Waits for lock `id` until `deadline` (forever if `None`). `Ok(false)` on timeout.
    fn acquire(&self, id: u32, deadline: Option<Instant>) -> Result<bool, LockError> {
        let idx = self.check_id(id)?;
        let me = current_thread();
        let mut state = self.state();
        loop {
            match state.holders[idx] {
                None => {
                    state.holders[idx] = Some(me);
                    return Ok(true);
                }
                Some(holder) if holder == me => return Err(LockError::Deadlock { id }),
                Some(_) => {}
            }
            let wait = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
            };
            state.waiters += 1;
            state = match wait {
                None => self
                    .released
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(left) => {
                    self.released
                        .wait_timeout(state, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
            state.waiters -= 1;
        }
    }

    pub(crate) fn lock(&self, id: u32) -> Result<Option<i32>, LockError> {
        self.acquire(id, None).map(|_| None)
    }

    pub(crate) fn try_lock(&self, id: u32) -> Result<Option<Option<i32>>, LockError> {
        let acquired = self.acquire(id, Some(Instant::now()))?;
        Ok(acquired.then_some(None))
    }

    pub(crate) fn lock_timeout(
        &self,
        id: u32,
        timeout: Duration,
    ) -> Result<Option<i32>, LockError> {
        let deadline = Instant::now().checked_add(timeout);
        if self.acquire(id, deadline)? {
            Ok(None)
        } else {
            Err(LockError::Timeout {
                id,
                timeout,
                holder_pid: self.holder_pid(id),
            })
        }
    }

    pub(crate) fn unlock(&self, id: u32) -> Result<(), LockError> {
        let idx = self.check_id(id)?;
        let me = current_thread();
        let mut state = self.state();
        if state.holders[idx] != Some(me) {
            return Err(LockError::Mutex {
                op: "unlock",
                name: "<in-memory>".to_owned(),
                id: Some(id),
                errno: nix::errno::Errno::EPERM,
            });
        }
        state.holders[idx] = None;
        let waiters = state.waiters;
        drop(state);
        if waiters > 0 {
            self.released.notify_all();
        }
        Ok(())
    }

    pub(crate) fn holder_pid(&self, id: u32) -> Option<i32> {
        let idx = self.check_id(id).ok()?;
        self.state().holders[idx].map(|_| own_pid())
    }

    pub(crate) fn free(&self, id: u32) -> Result<(), LockError> {
        let idx = self.check_id(id)?;
        let mut state = self.state();
        let (word, mask) = (idx / 32, 1u32 << (idx % 32));
        if state.allocated[word] & mask == 0 {
            return Err(LockError::NotAllocated { id });
        }
        state.allocated[word] &= !mask;
        Ok(())
    }
}

fn own_pid() -> i32 {
    crate::sys::current_pid()
}

/// Locks in process memory with the same behaviour and errors as [`crate::ShmLockManager`]: lowest free ID
/// first, counts rounded up to a multiple of 32, relocking from the holding thread fails with
/// [`LockError::Deadlock`], timeouts name the holder (always this process). Holders cannot die without the process
/// dying, so [`crate::LockGuard::recovered_from`] is always `None`.
///
/// Cloning is cheap and shares the table.
#[derive(Debug, Clone)]
pub struct InMemoryLockManager {
    inner: Arc<MemInner>,
    /// The allocation gate (threads of this process only).
    gate: Arc<Gate>,
    /// The owner tag (see [`LockManager::bind_owner`]); 0 = none yet.
    owner: Arc<Mutex<u64>>,
}

impl InMemoryLockManager {
    /// A table of `num_locks` locks, rounded up to a multiple of 32. [`LockError::InvalidCount`] for 0 or more
    /// than [`MAX_LOCKS`].
    pub fn new(num_locks: u32) -> Result<Self, LockError> {
        if num_locks == 0 || num_locks > MAX_LOCKS {
            return Err(LockError::InvalidCount {
                requested: num_locks,
                max: MAX_LOCKS,
            });
        }
        let num_locks = num_locks.div_ceil(32) * 32;
        Ok(Self {
            inner: Arc::new(MemInner {
                num_locks,
                state: Mutex::new(MemState {
                    allocated: vec![0; (num_locks / 32) as usize],
                    holders: vec![None; num_locks as usize],
                    waiters: 0,
                }),
                released: Condvar::new(),
            }),
            gate: Gate::new("<in-memory>", None),
            owner: Arc::new(Mutex::new(0)),
        })
    }

    fn handle(&self, id: u32) -> Lock {
        Lock::new(id, Backend::Memory(Arc::clone(&self.inner)))
    }
}

impl LockManager for InMemoryLockManager {
    fn allocate(&self) -> Result<Lock, LockError> {
        let mut state = self.inner.state();
        let (word, bits) = state
            .allocated
            .iter_mut()
            .enumerate()
            .find(|(_, bits)| **bits != u32::MAX)
            .ok_or(LockError::Exhausted {
                total: self.inner.num_locks,
            })?;
        let bit = bits.trailing_ones();
        *bits |= 1 << bit;
        drop(state);
        Ok(self.handle(word as u32 * 32 + bit))
    }

    fn allocate_given(&self, id: u32) -> Result<Lock, LockError> {
        let idx = self.inner.check_id(id)?;
        let mut state = self.inner.state();
        let (word, mask) = (idx / 32, 1u32 << (idx % 32));
        if state.allocated[word] & mask != 0 {
            return Err(LockError::AlreadyAllocated { id });
        }
        state.allocated[word] |= mask;
        drop(state);
        Ok(self.handle(id))
    }

    fn retrieve(&self, id: u32) -> Result<Lock, LockError> {
        self.inner.check_id(id).map(|_| self.handle(id))
    }

    fn free(&self, id: u32) -> Result<(), LockError> {
        self.inner.free(id)
    }

    fn free_all(&self) -> Result<(), LockError> {
        self.inner.state().allocated.fill(0);
        Ok(())
    }

    fn num_locks(&self) -> u32 {
        self.inner.num_locks
    }

    fn counts(&self) -> Result<LockCounts, LockError> {
        let allocated = self
            .inner
            .state()
            .allocated
            .iter()
            .map(|w| w.count_ones())
            .sum::<u32>();
        Ok(LockCounts {
            total: self.inner.num_locks,
            free: self.inner.num_locks - allocated,
            allocated,
        })
    }

    fn held_locks(&self) -> Result<Vec<HeldLock>, LockError> {
        let pid = own_pid();
        Ok(self
            .inner
            .state()
            .holders
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_some())
            .map(|(id, _)| HeldLock { id: id as u32, pid })
            .collect())
    }

    fn allocated_ids(&self) -> Result<Vec<u32>, LockError> {
        Ok(ids_in_bitmaps(self.inner.state().allocated.iter().copied()))
    }

    fn hold_allocations(&self) -> Result<AllocationGuard, LockError> {
        self.gate.hold()
    }

    fn try_sweep(&self) -> Result<Option<SweepGuard>, LockError> {
        self.gate.try_exclusive()
    }

    fn bind_owner(&self, owner: &[u8]) -> Result<bool, LockError> {
        let tag = owner_tag(owner);
        let mut current = self
            .owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match *current {
            0 => {
                *current = tag;
                true
            }
            t if t == tag => true,
            _ => {
                *current = SHARED_OWNER;
                false
            }
        })
    }
}

/// The IDs whose bits are set in `bitmaps` (lock N is bit `N % 32` of word `N / 32`), ascending.
pub(crate) fn ids_in_bitmaps(bitmaps: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut ids = Vec::new();
    for (i, mut word) in bitmaps.enumerate() {
        while word != 0 {
            let bit = word.trailing_zeros();
            ids.push(i as u32 * 32 + bit);
            word &= word - 1;
        }
    }
    ids
}
