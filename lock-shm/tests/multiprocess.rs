//! Tests with several processes. Children are this test binary re-executed with `--exact <test>` and
//! `RPOD_LOCK_CHILD=<role>` (no `fork()` inside the multithreaded test harness).
//!
//! The shared counter below is plain (non-atomic) memory in a second shared mapping, read and written with
//! volatile operations: test-only `unsafe`, allowed in this file alone.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{capture_logs, child_env, child_role, report, spawn_child, ChildProc, TestSegment};
use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use rpod_lock::{Lock, LockError, LockManager, ShmLockManager};

/// A `u64` in its own shared memory segment, incremented non-atomically.
struct SharedCounter {
    map: MmapRaw,
}

impl SharedCounter {
    fn open(name: &str) -> Self {
        let fd = shm_open(
            name,
            OFlag::O_CREAT | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .unwrap();
        let file = File::from(fd);
        if file.metadata().unwrap().len() < 4096 {
            file.set_len(4096).unwrap();
        }
        let map = MmapOptions::new().len(4096).map_raw(&file).unwrap();
        Self { map }
    }

    fn ptr(&self) -> *mut u64 {
        self.map.as_mut_ptr().cast::<u64>()
    }

    /// Non-atomic read-modify-write; only correct under the lock.
    fn increment(&self) {
        // SAFETY: the mapping is 4096 bytes, page aligned, alive for `&self`; exclusive access is what the test
        // checks (a lapse shows up as a wrong total, not as UB visible to Rust, since this is raw volatile access).
        unsafe {
            let v = self.ptr().read_volatile();
            self.ptr().write_volatile(v + 1);
        }
    }

    fn get(&self) -> u64 {
        // SAFETY: as above; read after every writer has exited.
        unsafe { self.ptr().read_volatile() }
    }
}

const PROCS: usize = 8;
const ROUNDS: u64 = 100_000;

#[test]
fn processes_exclude_each_other() {
    if child_role().as_deref() == Some("increment") {
        let manager = ShmLockManager::open(&child_env("RPOD_LOCK_SEGMENT"), 32).unwrap();
        let counter = SharedCounter::open(&child_env("RPOD_LOCK_COUNTER"));
        let lock = manager
            .retrieve(child_env("RPOD_LOCK_ID").parse().unwrap())
            .unwrap();
        report("READY");
        for _ in 0..ROUNDS {
            let _guard = lock.lock().unwrap();
            counter.increment();
        }
        report("DONE");
        return;
    }
    let segment = TestSegment::new();
    let counter_segment = TestSegment::new();
    let manager = ShmLockManager::create(&segment.name, 32).unwrap();
    let lock = manager.allocate().unwrap();
    let counter = SharedCounter::open(&counter_segment.name);
    let envs = [
        ("RPOD_LOCK_SEGMENT", segment.name.clone()),
        ("RPOD_LOCK_COUNTER", counter_segment.name.clone()),
        ("RPOD_LOCK_ID", lock.id().to_string()),
    ];
    let start = Instant::now();
    let mut children: Vec<_> = (0..PROCS)
        .map(|_| spawn_child("processes_exclude_each_other", "increment", &envs))
        .collect();
    for child in &mut children {
        assert_eq!(child.next_report(), "READY");
    }
    for mut child in children {
        assert_eq!(child.next_report(), "DONE");
        child.wait_success();
    }
    assert_eq!(counter.get(), PROCS as u64 * ROUNDS);
    eprintln!(
        "{PROCS} processes x {ROUNDS} locked increments: {:?}",
        start.elapsed()
    );
    assert_eq!(manager.held_locks().unwrap(), []);
}

/// Child role: take lock `RPOD_LOCK_ID`, report, then sleep until killed.
fn hold_lock_forever() {
    let manager = ShmLockManager::open(&child_env("RPOD_LOCK_SEGMENT"), 32).unwrap();
    let lock = manager
        .retrieve(child_env("RPOD_LOCK_ID").parse().unwrap())
        .unwrap();
    let _guard = lock.lock().unwrap();
    report(&format!("LOCKED {}", std::process::id()));
    std::thread::sleep(Duration::from_secs(120));
}

/// In the `hold` child of `test`: holds lock `RPOD_LOCK_ID` until killed, then `None`. In the test
/// itself: creates a 32-lock segment, allocates a lock in it with `allocate`, and starts the child,
/// waiting until it holds that lock; returns the segment, its manager, the lock, the child and its
/// PID.
fn start_holder(
    test: &str,
    allocate: impl FnOnce(&ShmLockManager) -> Lock,
) -> Option<(TestSegment, ShmLockManager, Lock, ChildProc, i32)> {
    if child_role().as_deref() == Some("hold") {
        hold_lock_forever();
        return None;
    }
    let segment = TestSegment::new();
    let manager = ShmLockManager::create(&segment.name, 32).unwrap();
    let lock = allocate(&manager);
    let envs = [
        ("RPOD_LOCK_SEGMENT", segment.name.clone()),
        ("RPOD_LOCK_ID", lock.id().to_string()),
    ];
    let mut child = spawn_child(test, "hold", &envs);
    let pid = child.pid();
    assert_eq!(child.next_report(), format!("LOCKED {pid}"));
    Some((segment, manager, lock, child, pid))
}

/// SIGKILLs `pid` from another thread after 200 ms.
fn kill_soon(pid: i32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    })
}

#[test]
fn killed_holder_is_recovered() {
    let Some((_segment, manager, lock, mut child, pid)) =
        start_holder("killed_holder_is_recovered", |m| {
            m.allocate().unwrap();
            m.allocate().unwrap()
        })
    else {
        return;
    };
    assert_eq!(lock.holder_pid(), Some(pid));
    assert!(lock.try_lock().unwrap().is_none());
    assert_eq!(
        manager.held_locks().unwrap(),
        [rpod_lock::HeldLock { id: 1, pid }]
    );

    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let _ = child.child.wait().unwrap();

    let start = Instant::now();
    let (recovered, logs) = capture_logs(|| {
        let guard = lock.lock_timeout(Duration::from_secs(1)).unwrap();
        let recovered = guard.recovered_from();
        assert_eq!(lock.holder_pid(), Some(std::process::id() as i32));
        recovered
    });
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(recovered, Some(pid));
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains(&format!("lock 1 was held by PID {pid}, which died")),
        "{logs}"
    );

    // After recovery the lock is normal again: no second warning, no recovery.
    let (guard_recovered, logs) = capture_logs(|| lock.lock().unwrap().recovered_from());
    assert_eq!(guard_recovered, None);
    assert!(!logs.contains("WARN"), "{logs}");
    assert_eq!(manager.held_locks().unwrap(), []);
}

#[test]
fn live_holder_times_out_with_its_pid() {
    let Some((_segment, _manager, lock, child, pid)) =
        start_holder("live_holder_times_out_with_its_pid", |m| {
            m.allocate_given(7).unwrap()
        })
    else {
        return;
    };

    let start = Instant::now();
    let err = lock.lock_timeout(Duration::from_millis(300)).unwrap_err();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(
        matches!(err, LockError::Timeout { id: 7, holder_pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("timed out after 300ms waiting for lock 7: held by PID {pid}")
    );

    // Now the holder dies while we are blocked in pthread_mutex_timedlock: the wait ends with the lock recovered.
    let killer = kill_soon(pid);
    let start = Instant::now();
    let (recovered, logs) = capture_logs(|| {
        let guard = lock.lock_timeout(Duration::from_secs(10)).unwrap();
        guard.recovered_from()
    });
    killer.join().unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(recovered, Some(pid));
    assert!(
        logs.contains(&format!("lock 7 was held by PID {pid}, which died")),
        "{logs}"
    );
    drop(child); // reap
}

#[test]
fn blocking_lock_recovers_when_holder_dies() {
    let Some((_segment, manager, lock, child, pid)) =
        start_holder("blocking_lock_recovers_when_holder_dies", |m| {
            m.allocate().unwrap()
        })
    else {
        return;
    };
    let killer = kill_soon(pid);
    // lock() with no timeout, blocked in pthread_mutex_lock when the holder dies.
    let guard = lock.lock().unwrap();
    assert_eq!(guard.recovered_from(), Some(pid));
    killer.join().unwrap();
    drop(guard);
    drop(child);
    assert_eq!(manager.held_locks().unwrap(), []);
}

#[test]
fn creation_race_has_one_creator() {
    const RACERS: usize = 16;
    if child_role().as_deref() == Some("race") {
        let start_at: u128 = child_env("RPOD_LOCK_START_AT").parse().unwrap();
        while SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            < start_at
        {
            std::hint::spin_loop();
        }
        let manager = ShmLockManager::open_or_create(&child_env("RPOD_LOCK_SEGMENT"), 64).unwrap();
        let lock = manager.allocate().unwrap();
        report(&format!(
            "created={} id={}",
            manager.was_created(),
            lock.id()
        ));
        return;
    }
    let segment = TestSegment::new();
    let start_at =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(1500);
    let envs = [
        ("RPOD_LOCK_SEGMENT", segment.name.clone()),
        ("RPOD_LOCK_START_AT", start_at.as_nanos().to_string()),
    ];
    let children: Vec<_> = (0..RACERS)
        .map(|_| spawn_child("creation_race_has_one_creator", "race", &envs))
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for mut child in children {
        let line = child.next_report();
        let (c, id) = line.split_once(' ').unwrap();
        if c == "created=true" {
            created += 1;
        } else {
            assert_eq!(c, "created=false");
        }
        ids.insert(id.strip_prefix("id=").unwrap().parse::<u32>().unwrap());
        child.wait_success();
    }
    assert_eq!(created, 1, "exactly one process initialises the segment");
    assert_eq!(
        ids,
        (0..RACERS as u32).collect(),
        "all racers share one table"
    );
    let manager = ShmLockManager::open(&segment.name, 64).unwrap();
    assert!(!manager.was_created());
    assert_eq!(manager.counts().unwrap().allocated, RACERS as u32);
}

#[test]
fn permission_denied_names_path_and_errno() {
    if child_role().as_deref() == Some("nobody") {
        let name = child_env("RPOD_LOCK_SEGMENT");
        let err = ShmLockManager::open_or_create(&name, 32).unwrap_err();
        report(&format!("{err:?}|{err}"));
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    let segment = TestSegment::new();
    let _manager = ShmLockManager::create(&segment.name, 32).unwrap();
    let mut cmd = common::child_command(
        "permission_denied_names_path_and_errno",
        "nobody",
        &[("RPOD_LOCK_SEGMENT", segment.name.clone())],
    );
    std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
    std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
    // The test binary must be reachable by that user (not the case if the checkout is under a 0700 home).
    let mut child = match cmd.spawn() {
        Ok(mut child) => {
            let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            common::ChildProc { child, stdout }
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: uid 65534 cannot execute the test binary: {err}");
            return;
        }
        Err(err) => panic!("spawn as uid 65534: {err}"),
    };
    let line = child.next_report();
    child.wait_success();
    assert!(line.starts_with("Os {"), "{line}");
    assert!(line.contains("EACCES"), "{line}");
    let text = line.split_once('|').unwrap().1;
    assert_eq!(
        text,
        format!(
            "cannot open lock segment {}: EACCES (Permission denied); rpod needs a writable tmpfs mounted at /dev/shm",
            segment.path()
        )
    );
}

/// Child role: allocate a lock under the allocation gate, report, then sleep until killed.
fn allocate_and_hang() {
    let manager = ShmLockManager::open(&child_env("RPOD_LOCK_SEGMENT"), 32).unwrap();
    let _hold = manager.hold_allocations().unwrap();
    let lock = manager.allocate().unwrap();
    report(&format!("ALLOCATED {}", lock.id()));
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn killed_creator_releases_the_allocation_gate() {
    if child_role().as_deref() == Some("allocate") {
        return allocate_and_hang();
    }
    let segment = TestSegment::new();
    let manager = ShmLockManager::create(&segment.name, 32).unwrap();
    let envs = [("RPOD_LOCK_SEGMENT", segment.name.clone())];
    let mut child = spawn_child(
        "killed_creator_releases_the_allocation_gate",
        "allocate",
        &envs,
    );
    assert_eq!(child.next_report(), "ALLOCATED 0");
    assert!(
        manager.try_sweep().unwrap().is_none(),
        "a live creator keeps sweeps out"
    );
    kill(Pid::from_raw(child.pid()), Signal::SIGKILL).unwrap();
    let _ = child.child.wait().unwrap();
    let sweep = manager.try_sweep().unwrap();
    assert!(
        sweep.is_some(),
        "the kernel released the dead creator's hold"
    );
    assert_eq!(manager.allocated_ids().unwrap(), [0], "its lock is leaked");
}
