//! The crate's error type.

use std::time::Duration;

use nix::errno::Errno;

/// What the crate was doing to a lock segment when the operating system said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOp {
    /// `shm_open(O_CREAT|O_EXCL|O_RDWR, 0600)`.
    Create,
    /// `shm_open(O_RDWR)`.
    Open,
    /// `ftruncate` to the segment size.
    Resize,
    /// `fstat` for the segment size.
    Stat,
    /// `mmap(MAP_SHARED)`.
    Map,
    /// `flock` used to wait for the creator.
    FileLock,
    /// `pthread_mutex_init` of the segment's mutexes.
    InitMutexes,
    /// `shm_unlink`.
    Unlink,
    /// `fcntl(F_OFD_SETLK)` on the allocation gate (byte 0 of the segment).
    AllocationGate,
}

impl std::fmt::Display for SegmentOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SegmentOp::Create => "create",
            SegmentOp::Open => "open",
            SegmentOp::Resize => "resize",
            SegmentOp::Stat => "stat",
            SegmentOp::Map => "map",
            SegmentOp::FileLock => "file-lock",
            SegmentOp::InitMutexes => "initialise the mutexes of",
            SegmentOp::Unlink => "remove",
            SegmentOp::AllocationGate => "lock the allocation gate of",
        })
    }
}

/// Formats an optional holder PID for messages.
fn holder(pid: &Option<i32>) -> String {
    match pid {
        Some(pid) => format!("held by PID {pid}"),
        None => "held by a process that did not record its PID".to_owned(),
    }
}

/// Extra advice for an OS error on a segment.
fn os_hint(errno: &Errno) -> &'static str {
    match errno {
        Errno::ENOENT | Errno::EACCES | Errno::EPERM | Errno::EROFS | Errno::ENOSYS => {
            "; rpod needs a writable tmpfs mounted at /dev/shm"
        }
        Errno::ENOSPC | Errno::ENOMEM => "; /dev/shm is full or too small",
        _ => "",
    }
}

/// Everything that can go wrong in this crate. Each variant carries what a user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The segment name cannot be passed to `shm_open`.
    #[error("invalid lock segment name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The configured number of locks is 0 or too large.
    #[error("invalid number of locks {requested}: must be between 1 and {max}")]
    InvalidCount {
        /// The configured count.
        requested: u32,
        /// The largest supported count.
        max: u32,
    },

    /// `open` found no segment with this name.
    #[error("lock segment {path} does not exist")]
    NotFound {
        /// Segment name as given to `shm_open`.
        name: String,
        /// Where it would live (`/dev/shm<name>`).
        path: String,
    },

    /// `create` found a segment with this name already (the `O_EXCL` create lost).
    #[error("lock segment {path} already exists")]
    AlreadyExists {
        /// Segment name as given to `shm_open`.
        name: String,
        /// Where it lives (`/dev/shm<name>`).
        path: String,
    },

    /// A system call on the segment failed.
    #[error("cannot {op} lock segment {path}: {errno:?} ({desc}){hint}", desc = errno.desc(), hint = os_hint(errno))]
    Os {
        /// What was being done.
        op: SegmentOp,
        /// Segment name as given to `shm_open`.
        name: String,
        /// Where it lives (`/dev/shm<name>`).
        path: String,
        /// The error number.
        errno: Errno,
    },

    /// The segment does not start with rpod's magic number.
    #[error(
        "{path} is not an rpod lock segment (magic {found:#010x}, expected {expected:#010x}); \
         run `rpod system renumber` to recreate it"
    )]
    BadMagic {
        /// Segment name.
        name: String,
        /// Where it lives.
        path: String,
        /// Magic number found.
        found: u32,
        /// Magic number expected.
        expected: u32,
    },

    /// The segment was made by an rpod with another layout version.
    #[error(
        "lock segment {path} has layout version {found}, this rpod uses version {expected}; \
         stop all rpod processes and run `rpod system renumber`"
    )]
    BadVersion {
        /// Segment name.
        name: String,
        /// Where it lives.
        path: String,
        /// Version found.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },

    /// The segment's size does not match what its header says.
    #[error(
        "lock segment {path} is {size} bytes but its header implies {expected} bytes; it is corrupt, \
         run `rpod system renumber` to recreate it"
    )]
    BadSize {
        /// Segment name.
        name: String,
        /// Where it lives.
        path: String,
        /// Actual size.
        size: u64,
        /// Expected size.
        expected: u64,
    },

    /// The segment holds a different number of locks than configured.
    #[error("lock segment {name} holds {found} locks but {configured} are configured; run `rpod system renumber`")]
    CountMismatch {
        /// Segment name.
        name: String,
        /// Locks in the segment.
        found: u32,
        /// Locks configured (rounded up to a multiple of 32).
        configured: u32,
    },

    /// The segment exists but its creator never finished initialising it.
    #[error(
        "lock segment {path} was not initialised within {waited:?} (its creator probably died); \
         run `rpod system renumber` to recreate it"
    )]
    NotInitialised {
        /// Segment name.
        name: String,
        /// Where it lives.
        path: String,
        /// How long this process waited.
        waited: Duration,
    },

    /// Every lock is allocated.
    #[error("allocation failed: all {total} locks are in use; raise num_locks and run `rpod system renumber`")]
    Exhausted {
        /// Number of locks in the segment.
        total: u32,
    },

    /// The lock ID is not below the number of locks.
    #[error("lock ID {id} is out of range: the segment holds {total} locks")]
    OutOfRange {
        /// The requested ID.
        id: u32,
        /// Number of locks in the segment.
        total: u32,
    },

    /// `allocate_given` on an ID that is already allocated.
    #[error(
        "lock ID {id} is already allocated: two objects claim the same lock; \
         run `rpod system renumber`"
    )]
    AlreadyAllocated {
        /// The requested ID.
        id: u32,
    },

    /// `free` on an ID that is not allocated (a double free).
    #[error("cannot free lock ID {id}: it is not allocated (freed twice?)")]
    NotAllocated {
        /// The ID.
        id: u32,
    },

    /// `lock_timeout` gave up because another process kept the lock.
    #[error(
        "timed out after {timeout:?} waiting for lock {id}: {}",
        holder(holder_pid)
    )]
    Timeout {
        /// The lock ID.
        id: u32,
        /// How long this process waited.
        timeout: Duration,
        /// The PID recorded as holder when the wait ended.
        holder_pid: Option<i32>,
    },

    /// The mutex protecting the allocation bitmaps stayed held for too long.
    #[error(
        "timed out after {timeout:?} waiting for the allocation lock of segment {name}: {}",
        holder(holder_pid)
    )]
    SegmentBusy {
        /// Segment name.
        name: String,
        /// How long this process waited.
        timeout: Duration,
        /// The PID recorded as holder.
        holder_pid: Option<i32>,
    },

    /// This thread already holds the lock (two objects share one lock ID, or a relock).
    #[error(
        "lock ID {id} is already held by this thread: two objects probably share lock ID {id} \
         (deadlock due to lock mismatch); run `rpod system renumber`"
    )]
    Deadlock {
        /// The lock ID.
        id: u32,
    },

    /// The mutex is permanently unusable (a holder died and recovery failed).
    #[error("lock ID {id} in segment {name} is not recoverable; stop all rpod processes and run `rpod system renumber`")]
    NotRecoverable {
        /// Segment name.
        name: String,
        /// The lock ID.
        id: u32,
    },

    /// Any other pthread failure.
    #[error("{op} on lock {what} in segment {name} failed: {errno:?} ({desc})", what = lock_what(id), desc = errno.desc())]
    Mutex {
        /// The pthread call.
        op: &'static str,
        /// Segment name.
        name: String,
        /// The lock ID, `None` for the segment's allocation mutex.
        id: Option<u32>,
        /// The error number.
        errno: Errno,
    },
}

fn lock_what(id: &Option<u32>) -> String {
    match id {
        Some(id) => format!("ID {id}"),
        None => "(allocation mutex)".to_owned(),
    }
}
