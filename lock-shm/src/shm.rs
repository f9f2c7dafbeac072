//! [`ShmLockManager`]: locks in a POSIX shared memory segment shared by every rpod process of a user.
//!
//! # Segment layout (layout version 1)
//!
//! The segment is created with `shm_open(name, O_CREAT|O_EXCL|O_RDWR, 0600)` and lives at `/dev/shm<name>`. All
//! integers are native-endian; offsets are for x86_64 glibc (`pthread_mutex_t` is 40 bytes).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `magic`: [`MAGIC`] (`0x52504c4b`, "RPLK") |
//! | 4 | 4 | `version`: [`LAYOUT_VERSION`] |
//! | 8 | 4 | `initialised`: 0 while the creator works, 1 once the segment is usable (stored last, release order) |
//! | 12 | 4 | `num_locks`: lock slots, a multiple of 32 |
//! | 16 | 4 | `num_bitmaps`: `num_locks / 32` |
//! | 20 | 4 | `slot_size`: 64 |
//! | 24 | 4 | `creator_pid` (informational) |
//! | 28 | 4 | reserved, zero |
//! | 32 | 8 | `owner`: tag of the state that records the IDs (0 none yet, `u64::MAX` several); see [`LockManager::bind_owner`] |
//! | 40 | 24 | reserved, zero |
//! | 64 | 64 | segment mutex slot (same layout as a lock slot); protects the bitmaps |
//! | 128 | `num_bitmaps * 4`, rounded up to 64 | allocation bitmaps: lock N is bit `N % 32` (LSB first) of bitmap `N / 32` |
//! | `slots_offset` | `num_locks * 64` | lock slots |
//!
//! A lock slot is 64 bytes (one cache line, so neighbouring locks do not false-share): a robust, process-shared,
//! error-checking `pthread_mutex_t` at offset 0 and the holder's PID (`i32`, 0 when free) at offset 40. The holder
//! PID is written right after acquiring and cleared right before releasing.
//!
//! Size: `128 + roundup64(num_locks / 8) + num_locks * 64`; 131,456 bytes for the default 2048 locks. The layout is
//! rpod's own and deliberately not byte-compatible with libpod's (different names, so the two never meet).
//!
//! # Creation protocol
//!
//! The `O_EXCL` winner takes an exclusive `flock` on the segment, sizes it with `ftruncate`, writes the header,
//! initialises every mutex, and sets `initialised` last; then drops the `flock`. Everybody else gets `EEXIST`,
//! opens the segment and polls (for at most 5 s) for a shared `flock` on a non-empty segment: once they get it, the
//! creator has either finished or died, so the header is checked (magic, version, `initialised`, lock count, size)
//! and the result is final. A segment left empty or uninitialised by a dead creator is reported as
//! [`LockError::NotInitialised`] instead of blocking forever. If the creator fails part way, it unlinks the segment.
//!
//! # Allocation gate
//!
//! Byte 0 of the segment also carries an open-file-description lock (`F_OFD_SETLK`, independent of the `flock`
//! above): read-locked by creators between allocating an ID and recording it
//! ([`LockManager::hold_allocations`]), write-locked by a sweep that reclaims unrecorded IDs
//! ([`LockManager::try_sweep`]). Every manager keeps the segment's descriptor open for this.
//!
//! # Damage
//!
//! Opening checks the size with `fstat` before mapping and maps only what is there, then checks the header
//! against it: a truncated segment is [`LockError::BadSize`] (an empty one [`LockError::NotInitialised`] after
//! the creator wait), a foreign or overwritten one [`LockError::BadMagic`], each naming `/dev/shm<name>`.
//! Every later access is bounds-checked against the mapping. Truncating the segment while a process has it
//! mapped is outside this: the kernel then delivers `SIGBUS` on access to the lost pages.

// The public face is `ShmLockManager`; behind it, private submodules own the layout arithmetic (`layout`), the
// creation and opening of the segment (`segment`) and the lock and allocation operations on a mapped segment
// (`inner`). The raw mapping and the pthread calls are in the crate's only `unsafe` module, `sys`.

use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::mman::shm_unlink;

use crate::error::SegmentOp;
use crate::gate::{owner_tag, AllocationGuard, SweepGuard};
use crate::manager::{Backend, HeldLock, Lock, LockCounts, LockManager};
use crate::naming::{segment_path, validate_segment_name};
use crate::LockError;

mod inner;
mod layout;
mod segment;

pub(crate) use inner::ShmInner;
use layout::Layout;
use segment::os_error;

/// Magic number at offset 0 of every rpod lock segment ("RPLK").
pub const MAGIC: u32 = 0x5250_4c4b;
/// Version of the segment layout documented in this module.
pub const LAYOUT_VERSION: u32 = 1;
/// Largest supported number of locks (64 MiB of slots).
pub const MAX_LOCKS: u32 = 1 << 20;

/// Locks in a POSIX shared memory segment, shared by every process that opens the same name. See the
/// [module documentation](self) for the layout and the creation protocol.
///
/// Cloning is cheap and shares the mapping.
#[derive(Clone)]
pub struct ShmLockManager {
    /// The mapped segment, shared with the [`Lock`] handles.
    inner: Arc<ShmInner>,
    /// Whether this manager created the segment.
    created: bool,
}

impl std::fmt::Debug for ShmLockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLockManager")
            .field("name", &self.inner.name())
            .field("num_locks", &self.inner.num_locks())
            .field("created", &self.created)
            .finish()
    }
}

impl ShmLockManager {
    /// Opens the segment `name`, creating it with `num_locks` locks (rounded up to a multiple of 32) if it does
    /// not exist. This is the normal path. Concurrent callers are safe: exactly one creates, the others wait for
    /// it to finish (at most 5 s) and open. [`ShmLockManager::was_created`] tells which one this was.
    ///
    /// Fails with [`LockError::CountMismatch`] if the existing segment holds a different number of locks.
    pub fn open_or_create(name: &str, num_locks: u32) -> Result<Self, LockError> {
        let layout = Layout::for_requested(num_locks)?;
        validate_segment_name(name)?;
        // Creation can only lose to an existing segment, and opening can only fail with NotFound if someone
        // unlinked it in between; a few rounds settle any such race.
        let mut last = None;
        for _ in 0..8 {
            match Self::create_with(name, layout) {
                Err(LockError::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Self::open_with(name, layout) {
                Err(err @ LockError::NotFound { .. }) => last = Some(err),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| os_error(SegmentOp::Open, name, Errno::ENOENT)))
    }

    /// Creates the segment `name` with `num_locks` locks (rounded up to a multiple of 32). Fails with
    /// [`LockError::AlreadyExists`] if it exists.
    pub fn create(name: &str, num_locks: u32) -> Result<Self, LockError> {
        let layout = Layout::for_requested(num_locks)?;
        validate_segment_name(name)?;
        Self::create_with(name, layout)
    }

    /// Opens the existing segment `name` and checks that it holds `num_locks` locks (rounded up to a multiple of
    /// 32). Fails with [`LockError::NotFound`] if it does not exist; waits (at most 5 s) for a concurrent creator.
    pub fn open(name: &str, num_locks: u32) -> Result<Self, LockError> {
        let layout = Layout::for_requested(num_locks)?;
        validate_segment_name(name)?;
        Self::open_with(name, layout)
    }

    /// Removes the segment `name` and creates it again with `num_locks` locks (for `rpod system renumber`).
    ///
    /// Processes that still have the old segment mapped keep using it, so stop every other rpod process first.
    pub fn recreate(name: &str, num_locks: u32) -> Result<Self, LockError> {
        let layout = Layout::for_requested(num_locks)?;
        Self::unlink(name)?;
        match Self::create_with(name, layout) {
            // Someone recreated it first; use theirs if it has the same count.
            Err(LockError::AlreadyExists { .. }) => Self::open_or_create(name, num_locks),
            other => other,
        }
    }

    /// Removes the segment `name` (`shm_unlink`). Returns `Ok(false)` if it did not exist. Mappings in running
    /// processes stay valid.
    pub fn unlink(name: &str) -> Result<bool, LockError> {
        validate_segment_name(name)?;
        match shm_unlink(name) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(os_error(SegmentOp::Unlink, name, errno)),
        }
    }

    /// Size in bytes of a segment holding `num_locks` locks (rounded up to a multiple of 32).
    pub fn segment_size(num_locks: u32) -> Result<u64, LockError> {
        Ok(Layout::for_requested(num_locks)?.size as u64)
    }

    /// The segment name, as given to `shm_open`.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Where the segment lives: `/dev/shm<name>`.
    pub fn path(&self) -> String {
        segment_path(self.inner.name())
    }

    /// Whether this manager created the segment (it won the `O_EXCL` race, or initialised a
    /// segment whose creator died before finishing it) rather than opening an existing one.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Creates the segment `name` (see [`segment::create`]).
    fn create_with(name: &str, layout: Layout) -> Result<Self, LockError> {
        segment::create(name, layout).map(|inner| Self::from_inner(inner, true))
    }

    /// Opens the existing segment `name` (see [`segment::open`]).
    fn open_with(name: &str, layout: Layout) -> Result<Self, LockError> {
        // A segment taken over from a creator that died counts as created: it holds nothing.
        segment::open(name, layout).map(|(inner, took_over)| Self::from_inner(inner, took_over))
    }

    /// The manager of a mapped segment; `created` tells whether this process made it.
    fn from_inner(inner: ShmInner, created: bool) -> Self {
        Self {
            inner: Arc::new(inner),
            created,
        }
    }

    /// A handle on lock `id` of this segment.
    fn handle(&self, id: u32) -> Lock {
        Lock::new(id, Backend::Shm(Arc::clone(&self.inner)))
    }
}

impl LockManager for ShmLockManager {
    fn allocate(&self) -> Result<Lock, LockError> {
        self.inner.allocate().map(|id| self.handle(id))
    }

    fn allocate_given(&self, id: u32) -> Result<Lock, LockError> {
        self.inner.allocate_given(id).map(|()| self.handle(id))
    }

    fn retrieve(&self, id: u32) -> Result<Lock, LockError> {
        self.inner.check_id(id).map(|()| self.handle(id))
    }

    fn free(&self, id: u32) -> Result<(), LockError> {
        self.inner.free(id)
    }

    fn free_all(&self) -> Result<(), LockError> {
        self.inner.free_all()
    }

    fn num_locks(&self) -> u32 {
        self.inner.num_locks()
    }

    fn counts(&self) -> Result<LockCounts, LockError> {
        self.inner.counts()
    }

    fn held_locks(&self) -> Result<Vec<HeldLock>, LockError> {
        self.inner.held_locks()
    }

    fn allocated_ids(&self) -> Result<Vec<u32>, LockError> {
        self.inner.allocated_ids()
    }

    fn hold_allocations(&self) -> Result<AllocationGuard, LockError> {
        self.inner.gate().hold()
    }

    fn try_sweep(&self) -> Result<Option<SweepGuard>, LockError> {
        self.inner.gate().try_exclusive()
    }

    fn bind_owner(&self, owner: &[u8]) -> Result<bool, LockError> {
        self.inner.bind_owner(owner_tag(owner))
    }
}
