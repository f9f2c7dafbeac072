//! Lock benchmarks, with `std::sync::Mutex` baselines in the same run.
//!
//! * `uncontended`: lock + unlock of a free lock.
//! * `allocate_free`: allocate the lowest free ID and free it again.
//! * `handoff`: a round trip between two processes (SHM) or two threads (`std` baseline) with strict alternation
//!   through three locks and blocking waits (see [`BATON_LOCKS`]); one iteration is one full round trip, i.e. two
//!   hand-offs to a waiter blocked in the kernel.
//!
//! The hand-off helper process is this bench binary re-executed with `RPOD_LOCK_BENCH_CHILD=pong`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use rpod_lock::{InMemoryLockManager, Lock, LockManager, ShmLockManager};

const CHILD_ENV: &str = "RPOD_LOCK_BENCH_CHILD";

/// Strict alternation through three locks, with blocking waits (no spinning):
///
/// The leader starts holding locks {0, 1}, the follower {2}. In step `k` (with `i = k % 3`) the leader releases
/// `i` and then takes `i + 2`; the follower takes `i` and then releases `i + 2` (all mod 3). The follower can only
/// take `i` after the leader released it, and the leader can only take `i + 2` after the follower released it, so
/// each step is one full round trip: two hand-offs to a waiter blocked in the kernel.
const BATON_LOCKS: u32 = 3;

fn follow(locks: &[Lock]) {
    let mut held: [Option<rpod_lock::LockGuard<'_>>; 3] =
        [None, None, Some(locks[2].lock().unwrap())];
    println!("READY");
    for k in 0usize.. {
        let i = k % 3;
        held[i] = Some(locks[i].lock().unwrap());
        held[(i + 2) % 3] = None;
    }
}

fn pong() {
    let segment = std::env::var("RPOD_LOCK_BENCH_SEGMENT").unwrap();
    let manager = ShmLockManager::open(&segment, 32).unwrap();
    let locks: Vec<Lock> = (0..BATON_LOCKS)
        .map(|id| manager.retrieve(id).unwrap())
        .collect();
    follow(&locks);
}

fn uncontended(c: &mut Criterion, shm: &ShmLockManager) {
    let mut group = c.benchmark_group("uncontended_lock_unlock");
    let std_mutex = Mutex::new(0u64);
    group.bench_function("std_mutex", |b| {
        b.iter(|| drop(black_box(&std_mutex).lock().unwrap()))
    });
    let lock = shm.allocate().unwrap();
    group.bench_function("shm", |b| b.iter(|| drop(black_box(&lock).lock().unwrap())));
    group.bench_function("shm_try_lock", |b| {
        b.iter(|| drop(black_box(&lock).try_lock().unwrap()))
    });
    group.bench_function("shm_lock_timeout", |b| {
        b.iter(|| {
            drop(
                black_box(&lock)
                    .lock_timeout(Duration::from_secs(1))
                    .unwrap(),
            )
        })
    });
    lock.free().unwrap();
    let memory = InMemoryLockManager::new(2048).unwrap();
    let mem_lock = memory.allocate().unwrap();
    group.bench_function("in_memory", |b| {
        b.iter(|| drop(black_box(&mem_lock).lock().unwrap()))
    });
    group.finish();
}

fn allocate_free(c: &mut Criterion, shm: &ShmLockManager) {
    let mut group = c.benchmark_group("allocate_free");
    let std_mutex = Mutex::new(vec![false; 2048]);
    group.bench_function("std_mutex_vec_baseline", |b| {
        b.iter(|| {
            let idx = {
                let mut v = std_mutex.lock().unwrap();
                let idx = v.iter().position(|a| !a).unwrap();
                v[idx] = true;
                idx
            };
            std_mutex.lock().unwrap()[black_box(idx)] = false;
        })
    });
    // Half full, so the scan is not trivially the first word.
    let held: Vec<_> = (0..1024).map(|_| shm.allocate().unwrap()).collect();
    group.bench_function("shm_half_full", |b| {
        b.iter(|| {
            let lock = shm.allocate().unwrap();
            shm.free(black_box(lock.id())).unwrap();
        })
    });
    for l in held {
        l.free().unwrap();
    }
    let memory = InMemoryLockManager::new(2048).unwrap();
    let held: Vec<_> = (0..1024).map(|_| memory.allocate().unwrap()).collect();
    group.bench_function("in_memory_half_full", |b| {
        b.iter(|| {
            let lock = memory.allocate().unwrap();
            memory.free(black_box(lock.id())).unwrap();
        })
    });
    drop(held);
    group.finish();
}

struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Times the leader's side of the baton protocol (see [`BATON_LOCKS`]) as `name`: each step
/// releases `held[i]` and takes lock `i + 2` (mod 3) with `acquire`.
fn bench_leader<G>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    held: &mut [Option<G>; 3],
    mut acquire: impl FnMut(usize) -> G,
) {
    let mut k = 0usize;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let i = k % 3;
                held[i] = None;
                held[(i + 2) % 3] = Some(acquire((i + 2) % 3));
                k += 1;
            }
            start.elapsed()
        })
    });
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff_round_trip");

    // Baseline: the same protocol with std mutexes between two threads.
    let mutexes: Arc<[Mutex<()>; 3]> = Arc::new([Mutex::new(()), Mutex::new(()), Mutex::new(())]);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicU32::new(0));
    let follower = {
        let mutexes = Arc::clone(&mutexes);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = [None, None, Some(mutexes[2].lock().unwrap())];
            ready_tx.send(()).unwrap();
            for k in 0usize.. {
                let i = k % 3;
                held[i] = Some(mutexes[i].lock().unwrap());
                held[(i + 2) % 3] = None;
                if stop.load(Ordering::Relaxed) != 0 {
                    return;
                }
            }
        })
    };
    {
        let mut held = [
            Some(mutexes[0].lock().unwrap()),
            Some(mutexes[1].lock().unwrap()),
            None,
        ];
        ready_rx.recv().unwrap();
        bench_leader(&mut group, "std_mutex_two_threads", &mut held, |j| {
            mutexes[j].lock().unwrap()
        });
        stop.store(1, Ordering::Relaxed);
        // held drops here, letting the follower run into the stop flag
    }
    follower.join().unwrap();

    // SHM: two processes.
    let segment = format!("/rpod_bench_{}", std::process::id());
    let _ = ShmLockManager::unlink(&segment);
    let manager = ShmLockManager::create(&segment, 32).unwrap();
    let locks: Vec<Lock> = (0..BATON_LOCKS)
        .map(|_| manager.allocate().unwrap())
        .collect();
    let mut held = [
        Some(locks[0].lock().unwrap()),
        Some(locks[1].lock().unwrap()),
        None,
    ];
    let mut helper = Helper(
        Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, "pong")
            .env("RPOD_LOCK_BENCH_SEGMENT", &segment)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(helper.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
    bench_leader(&mut group, "shm_two_processes", &mut held, |j| {
        locks[j].lock().unwrap()
    });
    drop(helper); // SIGKILL while it waits or holds: exactly what robust mutexes are for
    drop(held);
    group.finish();
    let _ = ShmLockManager::unlink(&segment);
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return pong();
    }
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    let segment = format!("/rpod_bench_main_{}", std::process::id());
    let _ = ShmLockManager::unlink(&segment);
    let shm = ShmLockManager::create(&segment, 2048).unwrap();
    uncontended(&mut c, &shm);
    allocate_free(&mut c, &shm);
    handoff(&mut c);
    let _ = ShmLockManager::unlink(&segment);
    c.final_summary();
}
