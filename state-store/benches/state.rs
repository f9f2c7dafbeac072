//! Lookup by ID prefix among 100 000 records and `all_containers` over 10 000, for both backends.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rpod_state::{ContainerConfig, ContainerRecord, InMemoryState, LmdbState, State};

/// A 64-hex-character ID derived from `i` (spread like random IDs).
fn id(i: u64) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut s = String::with_capacity(64);
    for _ in 0..4 {
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17) ^ i;
        s.push_str(&format!("{x:016x}"));
    }
    s
}

fn record(i: u64) -> ContainerRecord {
    let mut c = ContainerConfig::new(id(i), format!("ctr-{i}"));
    c.command = vec!["/bin/sh".into(), "-c".into(), "sleep infinity".into()];
    c.env = vec!["PATH=/usr/bin:/bin".into(), "TERM=xterm".into()];
    c.labels.insert("app".into(), format!("bench-{}", i % 10));
    ContainerRecord::new(c)
}

fn fill(s: &dyn State, n: u64) {
    for i in 0..n {
        s.add_container(&record(i)).unwrap();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// Both backends filled with the same records (the LMDB one in its own temporary directory).
struct Backends {
    lmdb: LmdbState,
    mem: InMemoryState,
    _dir: tempfile::TempDir,
}

impl Backends {
    /// Both backends with records `0..n`.
    fn filled(n: u64) -> Self {
        let dir = tempdir();
        let backends = Backends {
            lmdb: LmdbState::open(dir.path()).unwrap(),
            mem: InMemoryState::new(),
            _dir: dir,
        };
        for (_, s) in backends.each() {
            fill(s, n);
        }
        backends
    }

    /// Each backend with its name for the benchmark.
    fn each(&self) -> [(&str, &dyn State); 2] {
        [("lmdb", &self.lmdb), ("memory", &self.mem)]
    }
}

fn benches(c: &mut Criterion) {
    // 100 000 records; look up by a 12-character prefix (what `rpod ps` shows).
    let backends = Backends::filled(100_000);
    let mut g = c.benchmark_group("lookup_prefix_100k");
    for (name, s) in backends.each() {
        let mut i = 0u64;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 7919) % 100_000;
                let want = id(i);
                let rec = s.lookup_container(&want[..12]).unwrap();
                assert_eq!(rec.config.id, want);
            })
        });
    }
    g.finish();

    // all_containers over 10 000 records.
    let backends10 = Backends::filled(10_000);
    let mut g = c.benchmark_group("all_containers_10k");
    for (name, s) in backends10.each() {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| assert_eq!(s.all_containers().unwrap().len(), 10_000))
        });
    }
    g.finish();
}

criterion_group! {
    name = state;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(state);
