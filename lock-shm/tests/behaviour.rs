//! Behaviour every `LockManager` must share, run against both implementations through `&dyn LockManager`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::TestSegment;
use rpod_lock::{
    HeldLock, InMemoryLockManager, LockCounts, LockError, LockManager, ShmLockManager,
};

fn with_both(num_locks: u32, check: impl Fn(&dyn LockManager)) {
    let segment = TestSegment::new();
    let shm = ShmLockManager::create(&segment.name, num_locks).unwrap();
    check(&shm);
    let memory = InMemoryLockManager::new(num_locks).unwrap();
    check(&memory);
}

fn counts(m: &dyn LockManager) -> (u32, u32, u32) {
    let LockCounts {
        total,
        free,
        allocated,
    } = m.counts().unwrap();
    assert_eq!(free + allocated, total);
    (total, free, allocated)
}

fn check_allocation(m: &dyn LockManager) {
    assert_eq!(m.num_locks(), 64, "40 rounds up to 64");
    assert_eq!(counts(m), (64, 64, 0));
    let ids: Vec<u32> = (0..3).map(|_| m.allocate().unwrap().id()).collect();
    assert_eq!(ids, [0, 1, 2], "lowest free ID first");
    m.free(1).unwrap();
    assert_eq!(m.allocate().unwrap().id(), 1, "freed ID is reused first");
    assert_eq!(counts(m), (64, 61, 3));

    // retrieve does not allocate
    let handle = m.retrieve(10).unwrap();
    assert_eq!(handle.id(), 10);
    assert_eq!(counts(m), (64, 61, 3));

    // allocate_given
    assert_eq!(m.allocate_given(10).unwrap().id(), 10);
    let err = m.allocate_given(10).unwrap_err();
    assert!(
        matches!(err, LockError::AlreadyAllocated { id: 10 }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("lock ID 10 is already allocated"),
        "{err}"
    );
    assert_eq!(m.allocate().unwrap().id(), 3);

    // free and double free
    handle.free().unwrap();
    let err = m.free(10).unwrap_err();
    assert!(matches!(err, LockError::NotAllocated { id: 10 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot free lock ID 10: it is not allocated (freed twice?)"
    );

    // out of range, for every entry point
    for err in [
        m.retrieve(64).unwrap_err(),
        m.allocate_given(64).unwrap_err(),
        m.free(64).unwrap_err(),
        m.retrieve(u32::MAX).map(|_| ()).unwrap_err(),
    ] {
        assert!(
            matches!(err, LockError::OutOfRange { total: 64, .. }),
            "{err:?}"
        );
    }
    assert_eq!(
        m.retrieve(64).unwrap_err().to_string(),
        "lock ID 64 is out of range: the segment holds 64 locks"
    );

    // exhaustion
    let mut allocated = 4;
    loop {
        match m.allocate() {
            Ok(_) => allocated += 1,
            Err(err) => {
                assert!(matches!(err, LockError::Exhausted { total: 64 }), "{err:?}");
                assert_eq!(
                    err.to_string(),
                    "allocation failed: all 64 locks are in use; raise num_locks and run `rpod system renumber`"
                );
                break;
            }
        }
    }
    assert_eq!(allocated, 64);
    assert_eq!(counts(m), (64, 0, 64));
    m.free(37).unwrap();
    assert_eq!(m.allocate().unwrap().id(), 37);

    // free_all
    m.free_all().unwrap();
    assert_eq!(counts(m), (64, 64, 0));
    assert_eq!(m.allocate().unwrap().id(), 0);
    m.free_all().unwrap();
}

#[test]
fn allocation() {
    with_both(40, check_allocation);
}

fn check_locking(m: &dyn LockManager) {
    let me = std::process::id() as i32;
    let lock = m.allocate().unwrap();
    let other = m.allocate().unwrap();
    assert_eq!(m.held_locks().unwrap(), []);
    assert_eq!(lock.holder_pid(), None);

    let guard = lock.lock().unwrap();
    assert_eq!(guard.id(), lock.id());
    assert_eq!(guard.recovered_from(), None);
    assert_eq!(lock.holder_pid(), Some(me));
    assert_eq!(
        m.held_locks().unwrap(),
        [HeldLock {
            id: lock.id(),
            pid: me
        }]
    );

    // same thread again: a clear error, not a hang
    let err = lock.lock().unwrap_err();
    assert!(
        matches!(err, LockError::Deadlock { id } if id == lock.id()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("run `rpod system renumber`"),
        "{err}"
    );
    let err = lock.try_lock().unwrap_err();
    assert!(matches!(err, LockError::Deadlock { .. }), "{err:?}");
    let err = lock.lock_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(matches!(err, LockError::Deadlock { .. }), "{err:?}");

    // other locks are independent
    let g2 = other.try_lock().unwrap().expect("other lock is free");
    drop(g2);

    // another thread sees it held, and times out naming the lock and the holder
    std::thread::scope(|s| {
        s.spawn(|| {
            let handle = m.retrieve(lock.id()).unwrap();
            assert!(handle.try_lock().unwrap().is_none());
            let start = Instant::now();
            let err = handle.lock_timeout(Duration::from_millis(100)).unwrap_err();
            assert!(start.elapsed() >= Duration::from_millis(90));
            assert!(
                matches!(err, LockError::Timeout { id, holder_pid: Some(pid), .. } if id == lock.id() && pid == me),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&format!("lock {}", lock.id())), "{text}");
            assert!(text.contains(&format!("PID {me}")), "{text}");
            let err = handle.lock_timeout(Duration::ZERO).unwrap_err();
            assert!(matches!(err, LockError::Timeout { .. }), "{err:?}");
        });
    });

    // a blocked locker in another thread gets it once we release
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let handle = m.retrieve(lock.id()).unwrap();
            let g = handle.lock().unwrap();
            assert_eq!(handle.holder_pid(), Some(me));
            drop(g);
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(guard);
        waiter.join().unwrap();
    });
    assert_eq!(m.held_locks().unwrap(), []);
    assert_eq!(lock.holder_pid(), None);

    // explicit unlock, lock_timeout when free
    lock.lock_timeout(Duration::from_secs(1))
        .unwrap()
        .unlock()
        .unwrap();

    // a freed lock still works (other holders of the ID may still use it)
    lock.free().unwrap();
    let g = lock.lock().unwrap();
    assert_eq!(m.held_locks().unwrap().len(), 1);
    drop(g);
    other.free().unwrap();
    assert_eq!(counts(m).2, 0);
}

#[test]
fn locking() {
    with_both(64, check_locking);
}

/// 8 threads each add 1 to a counter 100 000 times with a separate load and store (not an atomic increment), under
/// one lock: any lapse in mutual exclusion loses updates.
fn check_threads_exclude(m: &dyn LockManager) {
    const THREADS: u64 = 8;
    const ROUNDS: u64 = 100_000;
    let id = m.allocate().unwrap().id();
    let counter = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let lock = m.retrieve(id).unwrap(); // a handle per thread, like separate objects
                barrier.wait();
                for _ in 0..ROUNDS {
                    let _guard = lock.lock().unwrap();
                    let v = counter.load(Ordering::Relaxed);
                    counter.store(v + 1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(counter.load(Ordering::Relaxed), THREADS * ROUNDS);
    m.free(id).unwrap();
}

#[test]
fn threads_exclude_each_other() {
    with_both(32, check_threads_exclude);
}

#[test]
fn invalid_counts() {
    for n in [0, rpod_lock::MAX_LOCKS + 1] {
        let err = InMemoryLockManager::new(n).unwrap_err();
        assert!(matches!(err, LockError::InvalidCount { .. }), "{err:?}");
        let segment = TestSegment::new();
        let err = ShmLockManager::open_or_create(&segment.name, n).unwrap_err();
        assert!(matches!(err, LockError::InvalidCount { .. }), "{err:?}");
    }
}

#[test]
fn lock_handles_outlive_manager() {
    let segment = TestSegment::new();
    let lock = {
        let m = ShmLockManager::create(&segment.name, 32).unwrap();
        m.allocate().unwrap()
    };
    let g = lock.lock().unwrap();
    drop(g);
    let lock2 = lock.clone();
    assert_eq!(lock2.id(), 0);
    assert!(format!("{lock2:?}").contains(&segment.name));
}

fn check_allocated_ids(m: &dyn LockManager) {
    assert_eq!(m.allocated_ids().unwrap(), Vec::<u32>::new());
    let locks: Vec<_> = (0..40).map(|_| m.allocate().unwrap()).collect();
    m.free(3).unwrap();
    m.free(32).unwrap();
    m.allocate_given(63).unwrap();
    let mut expected: Vec<u32> = (0..40).filter(|id| *id != 3 && *id != 32).collect();
    expected.push(63);
    assert_eq!(m.allocated_ids().unwrap(), expected);
    assert_eq!(expected.len() as u32, counts(m).2);
    drop(locks);
    m.free_all().unwrap();
    assert_eq!(m.allocated_ids().unwrap(), Vec::<u32>::new());
}

#[test]
fn allocated_ids_lists_the_bitmaps() {
    with_both(64, check_allocated_ids);
}

fn check_gate(m: &dyn LockManager) {
    // Shared holds coexist; any of them keeps a sweep out; the last one lets it in.
    let a = m.hold_allocations().unwrap();
    let b = m.hold_allocations().unwrap();
    assert!(m.try_sweep().unwrap().is_none());
    drop(a);
    assert!(m.try_sweep().unwrap().is_none(), "one holder is left");
    drop(b);
    let sweep = m.try_sweep().unwrap().expect("nobody holds the gate");
    assert!(m.try_sweep().unwrap().is_none(), "a sweep is exclusive");
    // A creator in another thread waits for the sweep to end.
    let entered = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let creator = s.spawn(|| {
            let _hold = m.hold_allocations().unwrap();
            entered.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !entered.load(Ordering::SeqCst),
            "a creator got past a sweep"
        );
        drop(sweep);
        creator.join().unwrap();
    });
    assert!(entered.load(Ordering::SeqCst));
    assert!(m.try_sweep().unwrap().is_some());
}

#[test]
fn allocation_gate_is_shared_for_creators_and_exclusive_for_a_sweep() {
    with_both(32, check_gate);
}

fn check_owner(m: &dyn LockManager) {
    assert!(m.bind_owner(b"/var/lib/a").unwrap(), "first owner binds");
    assert!(m.bind_owner(b"/var/lib/a").unwrap(), "same owner again");
    assert!(
        !m.bind_owner(b"/var/lib/b").unwrap(),
        "a second owner shares"
    );
    assert!(!m.bind_owner(b"/var/lib/a").unwrap(), "shared for good");
}

#[test]
fn bind_owner_detects_a_shared_table() {
    with_both(32, check_owner);
}

#[test]
fn gate_and_owner_span_managers_of_one_segment() {
    let segment = TestSegment::new();
    let first = ShmLockManager::create(&segment.name, 32).unwrap();
    let second = ShmLockManager::open(&segment.name, 32).unwrap();
    // Two managers are two open file descriptions: their gate locks conflict like two processes'.
    let hold = second.hold_allocations().unwrap();
    assert!(first.try_sweep().unwrap().is_none());
    drop(hold);
    let sweep = first.try_sweep().unwrap().expect("gate free");
    assert!(second.try_sweep().unwrap().is_none());
    drop(sweep);
    assert!(first.bind_owner(b"one").unwrap());
    assert!(first.bind_owner(b"one").unwrap());
    assert!(!second.bind_owner(b"two").unwrap());
    assert!(!first.bind_owner(b"one").unwrap(), "the header is shared");
    // A recreated segment starts unbound.
    let again = ShmLockManager::recreate(&segment.name, 32).unwrap();
    assert!(again.bind_owner(b"two").unwrap());
}
