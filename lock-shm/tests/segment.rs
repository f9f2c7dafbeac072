//! Creating, opening, validating and removing SHM segments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::TestSegment;
use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::stat::Mode;
use rpod_lock::{shm, Errno, LockError, LockManager, SegmentOp, ShmLockManager};

/// Makes a raw segment of `size` zero bytes, as a foreign or crashed program might leave it.
fn raw_segment(name: &str, size: u64) -> File {
    let fd = shm_open(
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .unwrap();
    let file = File::from(fd);
    file.set_len(size).unwrap();
    file
}

/// Both `open` and `open_or_create` of `name` for `num_locks` locks fail with an error that
/// `is_expected` accepts and that displays as `message`.
#[track_caller]
fn assert_open_fails(
    name: &str,
    num_locks: u32,
    is_expected: impl Fn(&LockError) -> bool,
    message: &str,
) {
    for err in [
        ShmLockManager::open(name, num_locks).unwrap_err(),
        ShmLockManager::open_or_create(name, num_locks).unwrap_err(),
    ] {
        assert!(is_expected(&err), "{err:?}");
        assert_eq!(err.to_string(), message);
    }
}

fn header_bytes(magic: u32, version: u32, initialised: u32, num_locks: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in [magic, version, initialised, num_locks, num_locks / 32, 64] {
        bytes.extend_from_slice(&v.to_ne_bytes());
    }
    bytes
}

#[test]
fn create_open_and_unlink() {
    let seg = TestSegment::new();
    let err = ShmLockManager::open(&seg.name, 32).unwrap_err();
    assert!(matches!(err, LockError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("lock segment {} does not exist", seg.path())
    );

    let created = ShmLockManager::create(&seg.name, 100).unwrap();
    assert!(created.was_created());
    assert_eq!(created.num_locks(), 128);
    assert_eq!(created.name(), seg.name);
    assert_eq!(created.path(), seg.path());
    let meta = std::fs::metadata(seg.path()).unwrap();
    assert_eq!(meta.len(), ShmLockManager::segment_size(128).unwrap());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    let err = ShmLockManager::create(&seg.name, 128).unwrap_err();
    assert!(matches!(err, LockError::AlreadyExists { .. }), "{err:?}");

    // open and open_or_create see the same table (100 rounds to 128 both times)
    let opened = ShmLockManager::open(&seg.name, 100).unwrap();
    assert!(!opened.was_created());
    let again = ShmLockManager::open_or_create(&seg.name, 128).unwrap();
    assert!(!again.was_created());
    assert_eq!(created.allocate().unwrap().id(), 0);
    assert_eq!(opened.allocate().unwrap().id(), 1);
    assert_eq!(again.counts().unwrap().allocated, 2);
    let lock = opened.retrieve(1).unwrap();
    let guard = lock.lock().unwrap();
    // another thread, through another mapping of the same segment, sees it held
    std::thread::scope(|s| {
        s.spawn(|| assert!(again.retrieve(1).unwrap().try_lock().unwrap().is_none()));
    });
    // this thread, through another mapping: the relock is detected, not a hang
    let err = again.retrieve(1).unwrap().try_lock().unwrap_err();
    assert!(matches!(err, LockError::Deadlock { id: 1 }), "{err:?}");
    drop(guard);

    assert!(ShmLockManager::unlink(&seg.name).unwrap());
    assert!(!ShmLockManager::unlink(&seg.name).unwrap());
    // the existing mappings keep working after unlink
    assert_eq!(created.allocate().unwrap().id(), 2);
    let fresh = ShmLockManager::open_or_create(&seg.name, 128).unwrap();
    assert!(fresh.was_created());
    assert_eq!(fresh.counts().unwrap().allocated, 0);
}

#[test]
fn count_mismatch_says_renumber_and_recreate_fixes_it() {
    let seg = TestSegment::new();
    let old = ShmLockManager::create(&seg.name, 64).unwrap();
    old.allocate().unwrap();
    let message = format!(
        "lock segment {} holds 64 locks but 2048 are configured; run `rpod system renumber`",
        seg.name
    );
    let is_mismatch = |e: &LockError| {
        matches!(
            e,
            LockError::CountMismatch {
                found: 64,
                configured: 2048,
                ..
            }
        )
    };
    assert_open_fails(&seg.name, 2048, is_mismatch, &message);
    let renumbered = ShmLockManager::recreate(&seg.name, 2048).unwrap();
    assert!(renumbered.was_created());
    assert_eq!(renumbered.num_locks(), 2048);
    assert_eq!(renumbered.counts().unwrap().allocated, 0);
    assert_eq!(
        ShmLockManager::open(&seg.name, 2048).unwrap().num_locks(),
        2048
    );
    // recreate also works when the segment is missing
    ShmLockManager::unlink(&seg.name).unwrap();
    assert!(ShmLockManager::recreate(&seg.name, 32)
        .unwrap()
        .was_created());
}

#[test]
fn segment_whose_creator_died_before_the_header_is_taken_over() {
    // Sized but never published (all zeros, no flock held): the creator died part way. No lock
    // was ever handed out from it, so it is initialised again, as if created now.
    let seg = TestSegment::new();
    let _file = raw_segment(&seg.name, ShmLockManager::segment_size(64).unwrap());
    let start = Instant::now();
    let m = ShmLockManager::open(&seg.name, 64).unwrap();
    assert!(m.was_created(), "a taken-over segment counts as created");
    assert!(start.elapsed() < Duration::from_secs(1), "no waiting");
    let l = m.allocate().unwrap();
    drop(l.lock().unwrap());
    // The next opener finds it published.
    assert!(!ShmLockManager::open(&seg.name, 64).unwrap().was_created());
}

#[test]
fn garbage_segment_is_bad_magic() {
    let seg = TestSegment::new();
    let file = raw_segment(&seg.name, ShmLockManager::segment_size(64).unwrap());
    file.write_all_at(&header_bytes(0xdead_beef, 1, 1, 64), 0)
        .unwrap();
    let start = Instant::now();
    let message = format!(
        "{} is not an rpod lock segment (magic 0xdeadbeef, expected 0x52504c4b); \
         run `rpod system renumber` to recreate it",
        seg.path()
    );
    let is_bad_magic = |e: &LockError| {
        matches!(
            e,
            LockError::BadMagic {
                found: 0xdead_beef,
                expected: shm::MAGIC,
                ..
            }
        )
    };
    assert_open_fails(&seg.name, 64, is_bad_magic, &message);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no waiting on garbage"
    );
    // renumber recovers
    assert_eq!(
        ShmLockManager::recreate(&seg.name, 64).unwrap().num_locks(),
        64
    );
}

#[test]
fn other_version_is_rejected() {
    let seg = TestSegment::new();
    let file = raw_segment(&seg.name, ShmLockManager::segment_size(64).unwrap());
    file.write_all_at(&header_bytes(shm::MAGIC, 99, 1, 64), 0)
        .unwrap();
    let err = ShmLockManager::open(&seg.name, 64).unwrap_err();
    assert!(
        matches!(
            err,
            LockError::BadVersion {
                found: 99,
                expected: shm::LAYOUT_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("layout version 99"), "{err}");
}

#[test]
fn wrong_size_is_rejected() {
    let seg = TestSegment::new();
    let size = ShmLockManager::segment_size(64).unwrap();
    let file = raw_segment(&seg.name, size - 64);
    file.write_all_at(&header_bytes(shm::MAGIC, shm::LAYOUT_VERSION, 1, 64), 0)
        .unwrap();
    let err = ShmLockManager::open(&seg.name, 64).unwrap_err();
    assert!(
        matches!(err, LockError::BadSize { size: s, expected: e, .. } if s == size - 64 && e == size),
        "{err:?}"
    );
    // too small for even a header
    let seg2 = TestSegment::new();
    let _f = raw_segment(&seg2.name, 16);
    let err = ShmLockManager::open(&seg2.name, 64).unwrap_err();
    assert!(
        matches!(err, LockError::BadSize { size: 16, .. }),
        "{err:?}"
    );
}

#[test]
fn abandoned_initialisation_is_taken_over() {
    // Header written but `initialised` never set, and no creator holds the flock: the creator
    // died before publishing it. It is initialised again.
    let seg = TestSegment::new();
    let file = raw_segment(&seg.name, ShmLockManager::segment_size(64).unwrap());
    file.write_all_at(&header_bytes(shm::MAGIC, shm::LAYOUT_VERSION, 0, 64), 0)
        .unwrap();
    let m = ShmLockManager::open(&seg.name, 64).unwrap();
    assert!(m.was_created());
    assert_eq!(m.counts().unwrap().allocated, 0);
}

#[test]
fn empty_segment_waits_then_is_taken_over() {
    // Created but never sized: the creator died between shm_open and ftruncate. After a bounded
    // wait for it, the segment is initialised by the opener.
    let seg = TestSegment::new();
    let _file = raw_segment(&seg.name, 0);
    let start = Instant::now();
    let m = ShmLockManager::open_or_create(&seg.name, 64).unwrap();
    let waited = start.elapsed();
    assert!(m.was_created());
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[test]
fn invalid_names_are_rejected_everywhere() {
    let long = format!("/{}", "x".repeat(300));
    for name in ["rpod_lock", "/a/b", "/", long.as_str()] {
        for err in [
            ShmLockManager::open_or_create(name, 32).unwrap_err(),
            ShmLockManager::create(name, 32).unwrap_err(),
            ShmLockManager::open(name, 32).unwrap_err(),
            ShmLockManager::recreate(name, 32).unwrap_err(),
            ShmLockManager::unlink(name).unwrap_err(),
        ] {
            assert!(
                matches!(err, LockError::InvalidName { .. }),
                "{name}: {err:?}"
            );
        }
    }
}

#[test]
fn os_error_text_names_path_and_errno() {
    let err = LockError::Os {
        op: SegmentOp::Create,
        name: "/rpod_lock".into(),
        path: "/dev/shm/rpod_lock".into(),
        errno: Errno::ENOENT,
    };
    assert_eq!(
        err.to_string(),
        "cannot create lock segment /dev/shm/rpod_lock: ENOENT (No such file or directory); \
         rpod needs a writable tmpfs mounted at /dev/shm"
    );
}
