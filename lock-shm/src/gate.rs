//! The allocation gate of a lock table: a readers-writer lock between the processes that allocate lock IDs
//! (creators, shared) and the one that reclaims IDs nobody records (a sweep, exclusive).
//!
//! An object's lock is allocated before its record is written. A creator holds the gate shared from before
//! [`LockManager::allocate`](crate::LockManager::allocate) until its record is written (or the lock freed
//! again), so a sweep that holds the gate exclusively knows that every allocated ID is either recorded or
//! leaked. A creator that dies releases its hold with its file descriptors.
//!
//! Between processes the gate is an open-file-description (`F_OFD_SETLK`) lock on byte 0 of the segment,
//! which is independent of the `flock` of the creation protocol and released when the holder dies. Inside a
//! process every handle on one segment shares one open file description, whose lock is not counted, so the
//! gate also keeps a count of its holders in this process and only takes the file lock for the first one and
//! releases it with the last.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use crate::error::SegmentOp;
use crate::naming::segment_path;
use crate::LockError;

/// Holders in this process.
#[derive(Debug, Default)]
struct Holders {
    /// Creators holding the gate shared.
    shared: usize,
    /// Whether a sweep holds it exclusively.
    exclusive: bool,
}

/// The gate of one lock table (see the module documentation).
pub(crate) struct Gate {
    /// The segment, for its byte-range lock; `None` for the in-memory table.
    file: Option<File>,
    /// The segment name, for errors.
    name: String,
    holders: Mutex<Holders>,
    /// Signalled when a sweep in this process lets go.
    released: Condvar,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("name", &self.name)
            .field("holders", &*self.holders())
            .finish()
    }
}

/// What kind of file lock to take.
#[derive(Clone, Copy)]
enum Kind {
    Shared,
    Exclusive,
    Unlock,
}

impl Gate {
    /// The gate of the segment `name`, open as `file` (`None`: an in-memory table, gated in this process only).
    pub(crate) fn new(name: &str, file: Option<File>) -> Arc<Gate> {
        Arc::new(Gate {
            file,
            name: name.to_owned(),
            holders: Mutex::new(Holders::default()),
            released: Condvar::new(),
        })
    }

    /// The holder counts (every update is one assignment, so a panic cannot leave them half-changed).
    fn holders(&self) -> MutexGuard<'_, Holders> {
        self.holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes (or, with `Kind::Unlock`, drops) the file lock; `wait` blocks for a conflicting holder.
    /// `Ok(false)`: not waiting and someone else holds a conflicting lock.
    fn file_lock(&self, kind: Kind, wait: bool) -> Result<bool, LockError> {
        let Some(file) = &self.file else {
            return Ok(true);
        };
        let l_type = match kind {
            Kind::Shared => libc::F_RDLCK,
            Kind::Exclusive => libc::F_WRLCK,
            Kind::Unlock => libc::F_UNLCK,
        };
        let lock = libc::flock {
            l_type: l_type as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 1,
            l_pid: 0,
        };
        loop {
            let arg = if wait {
                FcntlArg::F_OFD_SETLKW(&lock)
            } else {
                FcntlArg::F_OFD_SETLK(&lock)
            };
            match fcntl(file.as_raw_fd(), arg) {
                Ok(_) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN | Errno::EACCES) if !wait => return Ok(false),
                Err(errno) => {
                    return Err(LockError::Os {
                        op: SegmentOp::AllocationGate,
                        name: self.name.clone(),
                        path: segment_path(&self.name),
                        errno,
                    })
                }
            }
        }
    }

    /// Holds the gate shared, waiting while a sweep holds it (a sweep takes milliseconds). A thread that holds
    /// a [`SweepGuard`] of this gate must not call this.
    pub(crate) fn hold(self: &Arc<Self>) -> Result<AllocationGuard, LockError> {
        let mut holders = self.holders();
        while holders.exclusive {
            holders = self
                .released
                .wait(holders)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if holders.shared == 0 {
            self.file_lock(Kind::Shared, true)?;
        }
        holders.shared += 1;
        Ok(AllocationGuard {
            gate: Arc::clone(self),
        })
    }

    /// Holds the gate exclusively if nobody (in any process) holds it; `Ok(None)` otherwise. Never waits.
    pub(crate) fn try_exclusive(self: &Arc<Self>) -> Result<Option<SweepGuard>, LockError> {
        let mut holders = self.holders();
        if holders.exclusive || holders.shared > 0 || !self.file_lock(Kind::Exclusive, false)? {
            return Ok(None);
        }
        holders.exclusive = true;
        Ok(Some(SweepGuard {
            gate: Arc::clone(self),
        }))
    }

    /// Drops one shared hold.
    fn release_shared(&self) {
        let mut holders = self.holders();
        holders.shared = holders.shared.saturating_sub(1);
        if holders.shared == 0 {
            self.unlock_file();
        }
    }

    /// Drops the exclusive hold.
    fn release_exclusive(&self) {
        let mut holders = self.holders();
        self.unlock_file();
        holders.exclusive = false;
        drop(holders);
        self.released.notify_all();
    }

    fn unlock_file(&self) {
        if let Err(err) = self.file_lock(Kind::Unlock, true) {
            // Unlocking a lock we hold cannot fail short of a closed descriptor; the kernel drops it with the
            // descriptor anyway.
            tracing::error!(segment = %self.name, error = %err, "releasing the allocation gate: {err}");
        }
    }
}

/// A shared hold on a lock table's allocation gate, from [`LockManager::hold_allocations`]: while any exists,
/// no sweep runs, so IDs allocated under it are not reclaimed before their owner is recorded. Released on
/// drop (or when the process dies).
///
/// [`LockManager::hold_allocations`]: crate::LockManager::hold_allocations
#[must_use = "the gate is released as soon as the guard is dropped"]
pub struct AllocationGuard {
    gate: Arc<Gate>,
}

impl fmt::Debug for AllocationGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocationGuard")
            .field("segment", &self.gate.name)
            .finish()
    }
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        self.gate.release_shared();
    }
}

/// The exclusive hold on a lock table's allocation gate, from [`LockManager::try_sweep`]: nobody is between
/// allocating an ID and recording its owner, so an allocated ID that no record names is leaked. Released on
/// drop.
///
/// [`LockManager::try_sweep`]: crate::LockManager::try_sweep
#[must_use = "the gate is released as soon as the guard is dropped"]
pub struct SweepGuard {
    gate: Arc<Gate>,
}

impl fmt::Debug for SweepGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SweepGuard")
            .field("segment", &self.gate.name)
            .finish()
    }
}

impl Drop for SweepGuard {
    fn drop(&mut self) {
        self.gate.release_exclusive();
    }
}

/// The owner tag recorded for `owner` (FNV-1a 64; never 0, which means "no owner", nor [`SHARED_OWNER`]).
pub(crate) fn owner_tag(owner: &[u8]) -> u64 {
    match crate::naming::fnv1a_64(owner) {
        0 => 1,
        SHARED_OWNER => SHARED_OWNER - 1,
        h => h,
    }
}

/// Owner tag of a table that two owners have used.
pub(crate) const SHARED_OWNER: u64 = u64::MAX;
