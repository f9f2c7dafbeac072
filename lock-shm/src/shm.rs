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
//! | 28 | 36 | reserved, zero |
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

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;

use crate::error::SegmentOp;
use crate::manager::{Backend, HeldLock, Lock, LockCounts, LockManager};
use crate::naming::{segment_path, validate_segment_name};
use crate::sys::{self, Acquired, Mapping, Slot, HEADER_SIZE, SLOT_SIZE};
use crate::LockError;

/// Magic number at offset 0 of every rpod lock segment ("RPLK").
pub const MAGIC: u32 = 0x5250_4c4b;
/// Version of the segment layout documented in this module.
pub const LAYOUT_VERSION: u32 = 1;
/// Largest supported number of locks (64 MiB of slots).
pub const MAX_LOCKS: u32 = 1 << 20;

/// How long an opener waits for a concurrent creator to finish.
const INIT_WAIT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for the creator.
const INIT_POLL: Duration = Duration::from_millis(1);
/// How long to wait for the allocation mutex (held only for a few bitmap operations, so this only expires if the
/// holder is stopped).
const SEGMENT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sizes and offsets of a segment with a given number of locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    num_locks: u32,
    num_bitmaps: u32,
    bitmaps_offset: usize,
    slots_offset: usize,
    size: usize,
}

impl Layout {
    /// The layout for `requested` locks, rounded up to a multiple of 32.
    fn for_requested(requested: u32) -> Result<Self, LockError> {
        if requested == 0 || requested > MAX_LOCKS {
            return Err(LockError::InvalidCount {
                requested,
                max: MAX_LOCKS,
            });
        }
        Ok(Self::for_exact(requested.div_ceil(32) * 32))
    }

    /// The layout for `num_locks` (already a multiple of 32 and at most [`MAX_LOCKS`]).
    fn for_exact(num_locks: u32) -> Self {
        let num_bitmaps = num_locks / 32;
        let bitmaps_offset = HEADER_SIZE;
        let bitmap_bytes = (num_bitmaps as usize * 4).div_ceil(64) * 64;
        let slots_offset = bitmaps_offset + bitmap_bytes;
        Self {
            num_locks,
            num_bitmaps,
            bitmaps_offset,
            slots_offset,
            size: slots_offset + num_locks as usize * SLOT_SIZE,
        }
    }
}

/// The shared state behind a [`ShmLockManager`] and its [`Lock`] handles.
pub(crate) struct ShmInner {
    name: String,
    map: Mapping,
    layout: Layout,
}

impl ShmInner {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn slot(&self, id: u32) -> Result<&Slot, LockError> {
        if id >= self.layout.num_locks {
            return Err(LockError::OutOfRange {
                id,
                total: self.layout.num_locks,
            });
        }
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

    pub(crate) fn lock(&self, id: u32) -> Result<Option<i32>, LockError> {
        let slot = self.slot(id)?;
        let acquired = slot
            .lock()
            .map_err(|e| self.mutex_error("pthread_mutex_lock", Some(id), e))?;
        Ok(self.recovered(id, acquired))
    }

    pub(crate) fn try_lock(&self, id: u32) -> Result<Option<Option<i32>>, LockError> {
        let slot = self.slot(id)?;
        let acquired = slot
            .try_lock()
            .map_err(|e| self.mutex_error("pthread_mutex_trylock", Some(id), e))?;
        Ok(acquired.map(|a| self.recovered(id, a)))
    }

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

    pub(crate) fn unlock(&self, id: u32) -> Result<(), LockError> {
        self.slot(id)?
            .unlock()
            .map_err(|e| self.mutex_error("pthread_mutex_unlock", Some(id), e))
    }

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

    fn check_id(&self, id: u32) -> Result<(), LockError> {
        if id >= self.layout.num_locks {
            return Err(LockError::OutOfRange {
                id,
                total: self.layout.num_locks,
            });
        }
        Ok(())
    }

    fn allocate(&self) -> Result<u32, LockError> {
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

    fn allocate_given(&self, id: u32) -> Result<(), LockError> {
        self.check_id(id)?;
        self.with_bitmaps(|bitmaps| {
            let (word, mask) = (&bitmaps[(id / 32) as usize], 1u32 << (id % 32));
            let w = word.load(Ordering::Relaxed);
            if w & mask != 0 {
                return Err(LockError::AlreadyAllocated { id });
            }
            word.store(w | mask, Ordering::Relaxed);
            Ok(())
        })?
    }

    pub(crate) fn free(&self, id: u32) -> Result<(), LockError> {
        self.check_id(id)?;
        self.with_bitmaps(|bitmaps| {
            let (word, mask) = (&bitmaps[(id / 32) as usize], 1u32 << (id % 32));
            let w = word.load(Ordering::Relaxed);
            if w & mask == 0 {
                return Err(LockError::NotAllocated { id });
            }
            word.store(w & !mask, Ordering::Relaxed);
            Ok(())
        })?
    }

    fn free_all(&self) -> Result<(), LockError> {
        self.with_bitmaps(|bitmaps| {
            for word in bitmaps {
                word.store(0, Ordering::Relaxed);
            }
        })
    }

    fn counts(&self) -> Result<LockCounts, LockError> {
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

    fn held_locks(&self) -> Result<Vec<HeldLock>, LockError> {
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

fn nonzero(pid: i32) -> Option<i32> {
    (pid != 0).then_some(pid)
}

/// Builds an [`LockError::Os`].
fn os_error(op: SegmentOp, name: &str, errno: Errno) -> LockError {
    LockError::Os {
        op,
        name: name.to_owned(),
        path: segment_path(name),
        errno,
    }
}

fn io_errno(err: &std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

/// Locks in a POSIX shared memory segment, shared by every process that opens the same name. See the
/// [module documentation](self) for the layout and the creation protocol.
///
/// Cloning is cheap and shares the mapping.
#[derive(Clone)]
pub struct ShmLockManager {
    inner: Arc<ShmInner>,
    created: bool,
}

impl std::fmt::Debug for ShmLockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLockManager")
            .field("name", &self.inner.name)
            .field("num_locks", &self.inner.layout.num_locks)
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
        &self.inner.name
    }

    /// Where the segment lives: `/dev/shm<name>`.
    pub fn path(&self) -> String {
        segment_path(&self.inner.name)
    }

    /// Whether this manager created the segment (it won the `O_EXCL` race) rather than opening an existing one.
    pub fn was_created(&self) -> bool {
        self.created
    }

    fn create_with(name: &str, layout: Layout) -> Result<Self, LockError> {
        let fd = match shm_open(
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                return Err(LockError::AlreadyExists {
                    name: name.to_owned(),
                    path: segment_path(name),
                })
            }
            Err(errno) => return Err(os_error(SegmentOp::Create, name, errno)),
        };
        let result = Self::initialise(name, fd, layout);
        if result.is_err() {
            // Leave nothing half-made behind; openers waiting on it will report it.
            let _ = shm_unlink(name);
        }
        result
    }

    fn initialise(name: &str, fd: OwnedFd, layout: Layout) -> Result<Self, LockError> {
        let file = Flock::lock(File::from(fd), FlockArg::LockExclusive)
            .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
        file.set_len(layout.size as u64)
            .map_err(|e| os_error(SegmentOp::Resize, name, io_errno(&e)))?;
        let mut map = Mapping::map(&file, layout.size)
            .map_err(|e| os_error(SegmentOp::Map, name, io_errno(&e)))?;
        map.init_mutexes(layout.slots_offset, layout.num_locks as usize)
            .map_err(|errno| os_error(SegmentOp::InitMutexes, name, errno))?;
        let header = map
            .header()
            .ok_or_else(|| os_error(SegmentOp::Map, name, Errno::EINVAL))?;
        header.magic.store(MAGIC, Ordering::Relaxed);
        header.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        header.num_locks.store(layout.num_locks, Ordering::Relaxed);
        header
            .num_bitmaps
            .store(layout.num_bitmaps, Ordering::Relaxed);
        header.slot_size.store(SLOT_SIZE as u32, Ordering::Relaxed);
        header
            .creator_pid
            .store(sys::current_pid(), Ordering::Relaxed);
        // Publish: everything above happens-before any opener's acquire load of the flag.
        header.initialised.store(1, Ordering::Release);
        drop(file);
        tracing::debug!(
            segment = name,
            num_locks = layout.num_locks,
            "created lock segment"
        );
        Ok(Self {
            inner: Arc::new(ShmInner {
                name: name.to_owned(),
                map,
                layout,
            }),
            created: true,
        })
    }

    fn open_with(name: &str, layout: Layout) -> Result<Self, LockError> {
        let fd = match shm_open(name, OFlag::O_RDWR, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                return Err(LockError::NotFound {
                    name: name.to_owned(),
                    path: segment_path(name),
                })
            }
            Err(errno) => return Err(os_error(SegmentOp::Open, name, errno)),
        };
        let start = Instant::now();
        let not_initialised = || LockError::NotInitialised {
            name: name.to_owned(),
            path: segment_path(name),
            waited: start.elapsed(),
        };
        let mut file = File::from(fd);
        loop {
            // The creator holds an exclusive flock from just after shm_open until the segment is initialised.
            let locked = match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(locked) => locked,
                Err((f, Errno::EWOULDBLOCK)) => {
                    if start.elapsed() >= INIT_WAIT {
                        return Err(not_initialised());
                    }
                    file = f;
                    std::thread::sleep(INIT_POLL);
                    continue;
                }
                Err((_, errno)) => return Err(os_error(SegmentOp::FileLock, name, errno)),
            };
            let size = locked
                .metadata()
                .map_err(|e| os_error(SegmentOp::Stat, name, io_errno(&e)))?
                .len();
            if size == 0 {
                // The creator has not taken its flock yet (or died before sizing the segment).
                if start.elapsed() >= INIT_WAIT {
                    return Err(not_initialised());
                }
                file = locked
                    .unlock()
                    .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
                std::thread::sleep(INIT_POLL);
                continue;
            }
            let manager = Self::validate(name, &locked, size, layout, start)?;
            drop(locked);
            return Ok(manager);
        }
    }

    /// Maps and validates an existing, non-empty segment whose creator is done (we hold a shared flock).
    fn validate(
        name: &str,
        file: &File,
        size: u64,
        layout: Layout,
        start: Instant,
    ) -> Result<Self, LockError> {
        let bad_size = |expected: usize| LockError::BadSize {
            name: name.to_owned(),
            path: segment_path(name),
            size,
            expected: expected as u64,
        };
        let len = usize::try_from(size).map_err(|_| bad_size(layout.size))?;
        if len < HEADER_SIZE {
            return Err(bad_size(layout.size));
        }
        let map =
            Mapping::map(file, len).map_err(|e| os_error(SegmentOp::Map, name, io_errno(&e)))?;
        let header = map.header().ok_or_else(|| bad_size(layout.size))?;
        let initialised = header.initialised.load(Ordering::Acquire);
        let magic = header.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(LockError::BadMagic {
                name: name.to_owned(),
                path: segment_path(name),
                found: magic,
                expected: MAGIC,
            });
        }
        let version = header.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(LockError::BadVersion {
                name: name.to_owned(),
                path: segment_path(name),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        if initialised != 1 {
            // The creator released its flock without publishing: it died part way.
            return Err(LockError::NotInitialised {
                name: name.to_owned(),
                path: segment_path(name),
                waited: start.elapsed(),
            });
        }
        let found = header.num_locks.load(Ordering::Relaxed);
        if found != layout.num_locks {
            return Err(LockError::CountMismatch {
                name: name.to_owned(),
                found,
                configured: layout.num_locks,
            });
        }
        if header.num_bitmaps.load(Ordering::Relaxed) != layout.num_bitmaps
            || header.slot_size.load(Ordering::Relaxed) != SLOT_SIZE as u32
            || len != layout.size
        {
            return Err(bad_size(layout.size));
        }
        Ok(Self {
            inner: Arc::new(ShmInner {
                name: name.to_owned(),
                map,
                layout,
            }),
            created: false,
        })
    }

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
        self.inner.layout.num_locks
    }

    fn counts(&self) -> Result<LockCounts, LockError> {
        self.inner.counts()
    }

    fn held_locks(&self) -> Result<Vec<HeldLock>, LockError> {
        self.inner.held_locks()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes() {
        let l = Layout::for_requested(2048).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.num_locks, 2048);
        assert_eq!(l.num_bitmaps, 64);
        assert_eq!(l.slots_offset, 128 + 256);
        assert_eq!(l.size, 131_456);
        let l = Layout::for_requested(1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.num_locks, l.slots_offset, l.size),
            (32, 192, 192 + 32 * 64)
        );
        assert_eq!(Layout::for_requested(33).map(|l| l.num_locks), Ok(64));
        assert!(matches!(
            Layout::for_requested(0),
            Err(LockError::InvalidCount { .. })
        ));
        assert!(matches!(
            Layout::for_requested(MAX_LOCKS + 1),
            Err(LockError::InvalidCount { .. })
        ));
    }
}
