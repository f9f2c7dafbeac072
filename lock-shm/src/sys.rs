//! The only module of this crate that contains `unsafe` code.
//!
//! It owns three things:
//!
//! * [`Mapping`]: a `MAP_SHARED` mapping of the lock segment (made with `memmap2`) and typed, bounds-checked views of
//!   it: the [`Header`], the allocation bitmaps and the lock [`Slot`]s.
//! * [`Slot`]: a process-shared, robust, error-checking `pthread_mutex_t` plus the PID of its current holder, with
//!   safe `lock` / `try_lock` / `lock_until` / `unlock` wrappers that turn `EOWNERDEAD` into
//!   [`Acquired::OwnerDied`] after calling `pthread_mutex_consistent`.
//! * [`current_pid`]: a cached `getpid()` (glibc no longer caches it, and a syscall per lock would dominate the
//!   uncontended cost); a `pthread_atfork` child handler resets the cache.
//!
//! Everything in the segment that other processes may change concurrently is accessed either through atomics or
//! through the pthread functions, never through plain Rust references to mutable data. The mutexes live in
//! `UnsafeCell`s and are only ever touched through raw pointers handed to glibc.
//!
//! Trust model: the segment is shared (mode 0600) with other rpod processes of the same user. A process that
//! scribbles over it can corrupt glibc's robust-mutex bookkeeping; that is inherent to process-shared mutexes and
//! out of scope here. The bounds of every view are checked against the mapping length, so a lying header can make
//! the crate report errors but cannot make it read or write outside the mapping.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fs::File;
use std::mem::{align_of, size_of, MaybeUninit};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

/// Size in bytes of one lock slot (a mutex, its holder PID and padding to a cache line).
pub(crate) const SLOT_SIZE: usize = 64;
/// Size in bytes of the segment header (fixed fields, then the segment mutex slot).
pub(crate) const HEADER_SIZE: usize = 128;

/// One lock: a robust process-shared mutex and the PID of the process that holds it (0 when free or unknown).
///
/// Layout on x86_64 glibc: `pthread_mutex_t` at offset 0 (40 bytes), holder PID (`i32`) at offset 40, padding to 64.
#[repr(C, align(64))]
pub(crate) struct Slot {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    holder: AtomicI32,
}

/// The fixed part of the segment. All fields are atomics because other processes map the same bytes.
#[repr(C, align(64))]
pub(crate) struct Header {
    /// [`crate::shm::MAGIC`].
    pub(crate) magic: AtomicU32,
    /// [`crate::shm::LAYOUT_VERSION`].
    pub(crate) version: AtomicU32,
    /// 0 while the creator is initialising, 1 once everything else is written (release store, written last).
    pub(crate) initialised: AtomicU32,
    /// Number of lock slots (a multiple of 32).
    pub(crate) num_locks: AtomicU32,
    /// Number of 32-bit allocation bitmaps (`num_locks / 32`).
    pub(crate) num_bitmaps: AtomicU32,
    /// [`SLOT_SIZE`], recorded so that a layout change without a version bump is still caught.
    pub(crate) slot_size: AtomicU32,
    /// PID of the process that created the segment (informational).
    pub(crate) creator_pid: AtomicI32,
    _reserved0: AtomicU32,
    /// Tag of the store whose records own the IDs (0: none bound yet; `u64::MAX`: several).
    pub(crate) owner: AtomicU64,
    _reserved: [AtomicU32; 6],
    /// Protects the allocation bitmaps.
    pub(crate) segment_lock: Slot,
}

const _: () = assert!(size_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(align_of::<Header>() <= 4096 && align_of::<Slot>() <= 4096);

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The previous holder released it normally.
    Clean,
    /// The previous holder died while holding it; the mutex was marked consistent. `previous_holder` is the PID that
    /// was recorded in the slot (0 if it died before recording it or after clearing it).
    OwnerDied {
        /// PID recorded in the slot before this process overwrote it.
        previous_holder: i32,
    },
}

impl Slot {
    /// PID recorded as the current holder, 0 if none.
    pub(crate) fn holder(&self) -> i32 {
        self.holder.load(Ordering::Relaxed)
    }

    /// Blocks until the mutex is acquired. Retries on `EAGAIN`.
    pub(crate) fn lock(&self) -> Result<Acquired, Errno> {
        loop {
            // SAFETY: the pointer comes from an `UnsafeCell` inside a live mapping (the `&self` borrow keeps it
            // mapped) and the mutex was initialised by the segment creator before `initialised` was published.
            let rc = unsafe { libc::pthread_mutex_lock(self.mutex.get()) };
            if rc == libc::EAGAIN {
                std::thread::yield_now();
                continue;
            }
            return self.finish_acquire(rc);
        }
    }

    /// Takes the mutex if nobody holds it. `Ok(None)` means it is busy.
    pub(crate) fn try_lock(&self) -> Result<Option<Acquired>, Errno> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.mutex.get()) };
        match rc {
            libc::EBUSY | libc::EAGAIN => Ok(None),
            rc => self.finish_acquire(rc).map(Some),
        }
    }

    /// Blocks until the mutex is acquired or the absolute `CLOCK_REALTIME` deadline passes (`Ok(None)`).
    pub(crate) fn lock_until(&self, deadline: &libc::timespec) -> Result<Option<Acquired>, Errno> {
        loop {
            // SAFETY: as in `lock`; `deadline` is a valid reference for the duration of the call.
            let rc = unsafe { libc::pthread_mutex_timedlock(self.mutex.get(), deadline) };
            match rc {
                libc::ETIMEDOUT => return Ok(None),
                libc::EAGAIN | libc::EINTR => std::thread::yield_now(),
                rc => return self.finish_acquire(rc).map(Some),
            }
        }
    }

    /// Handles the return code of a lock call that may have acquired the mutex.
    fn finish_acquire(&self, rc: i32) -> Result<Acquired, Errno> {
        match rc {
            0 => {
                self.holder.store(current_pid(), Ordering::Relaxed);
                Ok(Acquired::Clean)
            }
            libc::EOWNERDEAD => {
                let previous_holder = self.holder.load(Ordering::Relaxed);
                // SAFETY: as in `lock`; this thread owns the mutex (EOWNERDEAD means it was acquired).
                let rc = unsafe { libc::pthread_mutex_consistent(self.mutex.get()) };
                if rc != 0 {
                    // We own an inconsistent mutex we cannot repair. Release it (which makes it
                    // ENOTRECOVERABLE for everyone) rather than keep it forever.
                    self.holder.store(0, Ordering::Relaxed);
                    // SAFETY: as above; this thread owns the mutex.
                    unsafe { libc::pthread_mutex_unlock(self.mutex.get()) };
                    return Err(Errno::from_raw(rc));
                }
                self.holder.store(current_pid(), Ordering::Relaxed);
                Ok(Acquired::OwnerDied { previous_holder })
            }
            rc => Err(Errno::from_raw(rc)),
        }
    }

    /// Clears the holder PID, then releases the mutex. Retries on `EAGAIN`.
    pub(crate) fn unlock(&self) -> Result<(), Errno> {
        let previous = self.holder.swap(0, Ordering::Relaxed);
        loop {
            // SAFETY: as in `lock`. glibc checks ownership of robust mutexes and returns EPERM for a non-owner.
            let rc = unsafe { libc::pthread_mutex_unlock(self.mutex.get()) };
            match rc {
                0 => return Ok(()),
                libc::EAGAIN => std::thread::yield_now(),
                rc => {
                    // Not ours after all: put back what was recorded.
                    let _ = self.holder.compare_exchange(
                        0,
                        previous,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    return Err(Errno::from_raw(rc));
                }
            }
        }
    }
}

/// A shared mapping of a lock segment.
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("len", &self.raw.len())
            .finish()
    }
}

impl Mapping {
    /// Maps the first `len` bytes of `file` read-write and shared.
    pub(crate) fn map(file: &File, len: usize) -> std::io::Result<Self> {
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        Ok(Self { raw })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Returns a pointer to `count` values of `T` at `offset`, or `None` if they do not fit or are misaligned.
    fn array_ptr<T>(&self, offset: usize, count: usize) -> Option<*mut T> {
        let bytes = count.checked_mul(size_of::<T>())?;
        let end = offset.checked_add(bytes)?;
        if end > self.raw.len() || !offset.is_multiple_of(align_of::<T>()) {
            return None;
        }
        // SAFETY: `offset + bytes <= len`, so the result stays inside the mapping (one past the end at most).
        Some(unsafe { self.raw.as_mut_ptr().add(offset) }.cast::<T>())
    }

    /// The header, if the mapping is large enough to hold one.
    pub(crate) fn header(&self) -> Option<&Header> {
        let ptr = self.array_ptr::<Header>(0, 1)?;
        // SAFETY: in bounds and aligned (the mapping is page aligned). Every field is an atomic integer or a
        // `pthread_mutex_t` (plain integers) in an `UnsafeCell`, so every bit pattern is a valid value, and
        // concurrent modification by other processes happens only through atomics or pthread calls. The borrow of
        // `self` keeps the mapping alive for the reference's lifetime.
        Some(unsafe { &*ptr })
    }

    /// `count` allocation bitmaps starting at `offset`.
    pub(crate) fn bitmaps(&self, offset: usize, count: usize) -> Option<&[AtomicU32]> {
        let ptr = self.array_ptr::<AtomicU32>(offset, count)?;
        // SAFETY: in bounds and aligned (checked by `array_ptr`); `AtomicU32` is valid for any bit pattern and
        // designed for concurrent access; the mapping outlives the borrow.
        Some(unsafe { std::slice::from_raw_parts(ptr, count) })
    }

    /// Slot `index` of the slot array that starts at `offset` and holds `count` slots.
    pub(crate) fn slot(&self, offset: usize, count: usize, index: usize) -> Option<&Slot> {
        if index >= count {
            return None;
        }
        let ptr = self.array_ptr::<Slot>(offset, count)?;
        // SAFETY: `index < count` and the whole array is in bounds and aligned (`array_ptr`). A `Slot` is valid
        // for any bit pattern (see `header`).
        Some(unsafe { &*ptr.add(index) })
    }

    /// Initialises the segment mutex and `count` lock slots at `slots_offset` (robust, process-shared,
    /// error-checking mutexes; holder PIDs 0).
    ///
    /// `&mut self` proves no other reference into this mapping exists in this process. Other processes cannot be
    /// using the mutexes either: this is only called by the creator of a segment made with `O_CREAT|O_EXCL`,
    /// before it publishes the `initialised` flag, and openers do not touch a mutex until they see that flag.
    pub(crate) fn init_mutexes(&mut self, slots_offset: usize, count: usize) -> Result<(), Errno> {
        let header = self.array_ptr::<Header>(0, 1).ok_or(Errno::EINVAL)?;
        let slots = self
            .array_ptr::<Slot>(slots_offset, count)
            .ok_or(Errno::EINVAL)?;
        let attr = MutexAttr::new()?;
        // SAFETY: `header` is in bounds (checked above); `addr_of_mut!` creates no reference.
        let segment_slot = unsafe { std::ptr::addr_of_mut!((*header).segment_lock) };
        attr.init_slot(segment_slot)?;
        for i in 0..count {
            // SAFETY: `i < count` and the array is in bounds (checked above).
            attr.init_slot(unsafe { slots.add(i) })?;
        }
        Ok(())
    }
}

/// A `pthread_mutexattr_t` set up for robust, process-shared, error-checking mutexes.
struct MutexAttr {
    attr: libc::pthread_mutexattr_t,
}

impl MutexAttr {
    fn new() -> Result<Self, Errno> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is valid writable storage for a mutexattr.
        let rc = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        if rc != 0 {
            return Err(Errno::from_raw(rc));
        }
        // SAFETY: `pthread_mutexattr_init` succeeded, so `attr` is initialised.
        let mut this = Self {
            attr: unsafe { attr.assume_init() },
        };
        // SAFETY: the attribute object is initialised and exclusively borrowed.
        let rc = unsafe {
            libc::pthread_mutexattr_settype(&mut this.attr, libc::PTHREAD_MUTEX_ERRORCHECK)
        };
        check(rc)?;
        // SAFETY: as above.
        let rc = unsafe {
            libc::pthread_mutexattr_setpshared(&mut this.attr, libc::PTHREAD_PROCESS_SHARED)
        };
        check(rc)?;
        // SAFETY: as above.
        let rc = unsafe {
            libc::pthread_mutexattr_setrobust(&mut this.attr, libc::PTHREAD_MUTEX_ROBUST)
        };
        check(rc)?;
        Ok(this)
    }

    /// Initialises the mutex of `slot` and clears its holder.
    fn init_slot(&self, slot: *mut Slot) -> Result<(), Errno> {
        // SAFETY: the caller passes an in-bounds, aligned slot pointer that nobody else is using (see
        // `Mapping::init_mutexes`); `addr_of_mut!` creates no reference; the attribute is initialised.
        let rc = unsafe {
            std::ptr::addr_of_mut!((*slot).holder).write(AtomicI32::new(0));
            libc::pthread_mutex_init(
                UnsafeCell::raw_get(std::ptr::addr_of!((*slot).mutex)),
                &self.attr,
            )
        };
        if rc != 0 {
            return Err(Errno::from_raw(rc));
        }
        Ok(())
    }
}

impl Drop for MutexAttr {
    fn drop(&mut self) {
        // SAFETY: the attribute was initialised in `new` and is destroyed exactly once.
        unsafe { libc::pthread_mutexattr_destroy(&mut self.attr) };
    }
}

/// The absolute `CLOCK_REALTIME` time `timeout` from now, as `pthread_mutex_timedlock` wants it. Timeouts beyond a
/// century are capped.
pub(crate) fn realtime_deadline(timeout: std::time::Duration) -> libc::timespec {
    const CAP: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    // `SystemTime` is CLOCK_REALTIME on Linux. A clock before 1970 is treated as 1970.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_add(timeout.min(CAP));
    libc::timespec {
        tv_sec: libc::time_t::try_from(at.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: at.subsec_nanos() as libc::c_long,
    }
}

/// Converts a pthread-style return code (0 or an error number) into a `Result`.
fn check(rc: i32) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw(rc))
    }
}

static PID: AtomicI32 = AtomicI32::new(0);
static ATFORK: Once = Once::new();

extern "C" fn reset_pid_after_fork() {
    PID.store(0, Ordering::Relaxed);
}

/// The PID of this process, cached (reset in the child after `fork`).
pub(crate) fn current_pid() -> i32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic store, which is async-signal-safe and valid in
        // the child of a fork. Failure (ENOMEM) only means the cache is not reset after fork; nothing to undo.
        unsafe { libc::pthread_atfork(None, None, Some(reset_pid_after_fork)) };
    });
    let pid = nix::unistd::getpid().as_raw();
    PID.store(pid, Ordering::Relaxed);
    pid
}
