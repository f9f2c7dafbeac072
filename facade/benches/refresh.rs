//! The first `Runtime::new` after a (simulated) reboot with 1 000 containers and 10 pods: the
//! refresh resets per-boot state and reserves every object's lock ID.
//!
//! Each iteration wipes the tmp dir and unlinks the lock segment (what a reboot does) outside
//! the measurement, then times `Runtime::with_env`. Run with `cargo bench -p rpod --bench
//! refresh`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rpod::{ConfigEnv, ContainerSpec, PodSpec, Runtime, RuntimeOptions};

struct World {
    dir: tempfile::TempDir,
    tmp: tempfile::TempDir,
    lock_name: String,
}

impl World {
    fn options(&self) -> RuntimeOptions {
        RuntimeOptions::new()
            .netns("none")
            .cni_config_dir("/nonexistent/rpod-cni")
            .graph_root(self.dir.path().join("root"))
            .run_root(self.dir.path().join("runroot"))
            .tmp_dir(self.tmp.path())
            .lock_name(self.lock_name.clone())
    }

    fn env(&self) -> ConfigEnv {
        ConfigEnv::sandboxed(self.dir.path())
    }

    /// What a reboot does to rpod: the tmp dir and the lock segment are gone.
    fn reboot(&self) {
        if let Ok(rd) = std::fs::read_dir(self.tmp.path()) {
            for e in rd.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
        let _ = std::fs::remove_dir_all(self.dir.path().join("runroot"));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
    }
}

fn refresh(c: &mut Criterion) {
    let shm = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let world = World {
        dir: tempfile::tempdir().unwrap(),
        tmp: tempfile::Builder::new()
            .prefix("rpod-bench-refresh-")
            .tempdir_in(shm)
            .unwrap(),
        lock_name: format!("/rpod_bench_refresh_{}", std::process::id()),
    };
    let rootfs = world.dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    {
        let rt = Runtime::with_env(&world.env(), world.options()).unwrap();
        for _ in 0..10 {
            rt.new_pod(PodSpec::default()).unwrap();
        }
        for _ in 0..1000 {
            rt.new_container(ContainerSpec {
                rootfs: rootfs.clone(),
                command: vec!["true".into()],
                ..Default::default()
            })
            .unwrap();
        }
    }
    let mut g = c.benchmark_group("refresh");
    g.sample_size(20);
    g.bench_function("runtime_new_after_reboot_1000_containers", |b| {
        b.iter_batched(
            || world.reboot(),
            |()| Runtime::with_env(&world.env(), world.options()).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("runtime_new_no_refresh_1000_containers", |b| {
        b.iter(|| Runtime::with_env(&world.env(), world.options()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);
