//! Making and opening the segment: `shm_open`, sizing, mapping and initialising it as its creator, or waiting for
//! the creator and validating the header as an opener (the creation protocol of the [`shm`](super) module
//! documentation).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;

use crate::error::SegmentOp;
use crate::naming::segment_path;
use crate::sys::{self, Mapping, HEADER_SIZE, SLOT_SIZE};
use crate::LockError;

use super::inner::ShmInner;
use super::layout::Layout;
use super::{LAYOUT_VERSION, MAGIC};

/// How long an opener waits for a concurrent creator to finish.
const INIT_WAIT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for the creator.
const INIT_POLL: Duration = Duration::from_millis(1);

/// Creates the segment `name` laid out as `layout` (`O_EXCL`: fails with [`LockError::AlreadyExists`] if it
/// exists) and initialises it; unlinks it again if that fails.
pub(super) fn create(name: &str, layout: Layout) -> Result<ShmInner, LockError> {
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
    let result = initialise(name, fd, layout);
    if result.is_err() {
        // Leave nothing half-made behind; openers waiting on it will report it.
        let _ = shm_unlink(name);
    }
    result
}

/// Sizes, maps and initialises the new segment `name` under an exclusive `flock`, publishing it last.
fn initialise(name: &str, fd: OwnedFd, layout: Layout) -> Result<ShmInner, LockError> {
    let file = Flock::lock(File::from(fd), FlockArg::LockExclusive)
        .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
    initialise_locked(name, file, layout)
}

/// Initialises segment `name`, whose exclusive `flock` the caller holds, from zero bytes up.
fn initialise_locked(name: &str, file: Flock<File>, layout: Layout) -> Result<ShmInner, LockError> {
    // From zero: a segment taken over from a creator that died may hold part of its work.
    file.set_len(0)
        .and_then(|()| file.set_len(layout.size as u64))
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
    let file = file
        .unlock()
        .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
    tracing::debug!(
        segment = name,
        num_locks = layout.num_locks,
        "created lock segment"
    );
    Ok(ShmInner::new(name, file, map, layout))
}

/// Opens the existing segment `name`, waits (at most [`INIT_WAIT`]) for its creator to finish, and validates it
/// against `layout`.
pub(super) fn open(name: &str, layout: Layout) -> Result<(ShmInner, bool), LockError> {
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
            file = locked
                .unlock()
                .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
            if start.elapsed() >= INIT_WAIT {
                // Five seconds without a flock: the creator died between shm_open and flock.
                match take_over(name, file, layout)? {
                    Ok(inner) => return Ok((inner, true)),
                    Err(f) => file = f,
                }
                continue;
            }
            std::thread::sleep(INIT_POLL);
            continue;
        }
        if never_published(&locked, size) {
            // The creator released its flock without publishing the segment: it died part way
            // (a creator holds its exclusive flock until the segment is published). No lock was
            // ever handed out from it, so it is initialised again.
            file = locked
                .unlock()
                .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
            match take_over(name, file, layout)? {
                Ok(inner) => return Ok((inner, true)),
                Err(f) => file = f,
            }
            if start.elapsed() >= INIT_WAIT {
                return Err(not_initialised());
            }
            std::thread::sleep(INIT_POLL);
            continue;
        }
        let (map, layout) = validate(name, &locked, size, layout, start)?;
        let file = locked
            .unlock()
            .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
        return Ok((ShmInner::new(name, file, map, layout), false));
    }
}

/// Whether a non-empty segment (whose flock the caller holds, so no creator is at work) was
/// never published: its `initialised` flag is 0 and its magic is either not written yet or
/// rpod's. A creator holds its exclusive flock until it sets the flag, so such a segment's
/// creator died part way, and no lock was ever handed out from it.
fn never_published(file: &File, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    // A creator sizes the segment in one step to a whole layout; anything shorter than a
    // header is damage, not a creator's leftover.
    if size < HEADER_SIZE as u64 {
        return false;
    }
    let mut head = [0u8; 12];
    if !matches!(file.read_at(&mut head, 0), Ok(12)) {
        return false;
    }
    let word = |i: usize| u32::from_ne_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (magic, initialised) = (word(0), word(8));
    initialised == 0 && (magic == 0 || magic == MAGIC)
}

/// Initialises, in place, a segment whose creator died before publishing it: only with the
/// exclusive flock, taken without waiting, and only if it is still unpublished. `Err(file)`
/// hands the file back when someone else holds the flock or published it meanwhile.
fn take_over(name: &str, file: File, layout: Layout) -> Result<Result<ShmInner, File>, LockError> {
    let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((f, Errno::EWOULDBLOCK)) => return Ok(Err(f)),
        Err((_, errno)) => return Err(os_error(SegmentOp::FileLock, name, errno)),
    };
    let size = locked
        .metadata()
        .map_err(|e| os_error(SegmentOp::Stat, name, io_errno(&e)))?
        .len();
    if size != 0 && !never_published(&locked, size) {
        let f = locked
            .unlock()
            .map_err(|(_, errno)| os_error(SegmentOp::FileLock, name, errno))?;
        return Ok(Err(f));
    }
    tracing::warn!(
        segment = name,
        "the lock segment's creator died before finishing it; initialising it again"
    );
    initialise_locked(name, locked, layout).map(Ok)
}

/// Maps and validates an existing, non-empty segment whose creator is done (we hold a shared flock).
fn validate(
    name: &str,
    file: &File,
    size: u64,
    layout: Layout,
    start: Instant,
) -> Result<(Mapping, Layout), LockError> {
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
    let map = Mapping::map(file, len).map_err(|e| os_error(SegmentOp::Map, name, io_errno(&e)))?;
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
    Ok((map, layout))
}

/// Builds an [`LockError::Os`].
pub(super) fn os_error(op: SegmentOp, name: &str, errno: Errno) -> LockError {
    LockError::Os {
        op,
        name: name.to_owned(),
        path: segment_path(name),
        errno,
    }
}

/// The errno of an I/O error (`EIO` if it has none).
fn io_errno(err: &std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}
