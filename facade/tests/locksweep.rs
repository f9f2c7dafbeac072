//! Leaked locks: an ID allocated by a creator that died before writing its record is freed by the
//! next runtime, but never one a live creator or remover is still working with, and never in a
//! lock table that another state database shares.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rpod::{ConfigEnv, ContainerSpec, PodSpec, Runtime, RuntimeOptions};
use rpod_lock::{LockManager, ShmLockManager};

const NUM_LOCKS: u32 = 256;

/// Its own root, tmp dir and lock segment; the segment is removed on drop (also on failure).
struct Sandbox {
    dir: tempfile::TempDir,
    lock_name: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = ShmLockManager::unlink(&self.lock_name);
    }
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        let lock_name = format!("/rpod_sweep_test_{tag}_{}", std::process::id());
        let _ = ShmLockManager::unlink(&lock_name);
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
            lock_name,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Root `root` of this sandbox. Roots share the tmp dir and the lock segment, as roots chosen
    /// with `--root` alone share the default tmp dir and its segment.
    fn options_for(&self, root: &str) -> RuntimeOptions {
        RuntimeOptions::new()
            .netns("none")
            .cni_config_dir("/nonexistent/rpod-cni")
            .graph_root(self.path(&format!("{root}/graph")))
            .run_root(self.path(&format!("{root}/run")))
            .tmp_dir(self.path("tmp"))
            .lock_name(self.lock_name.clone())
            .num_locks(NUM_LOCKS)
    }

    fn runtime_for(&self, root: &str) -> Runtime {
        Runtime::with_env(
            &ConfigEnv::sandboxed(self.dir.path()),
            self.options_for(root),
        )
        .unwrap()
    }

    fn runtime(&self) -> Runtime {
        self.runtime_for("a")
    }

    /// Another manager on the segment: another open file description, like another process.
    fn other_process(&self) -> ShmLockManager {
        ShmLockManager::open(&self.lock_name, NUM_LOCKS).unwrap()
    }
}

fn container(rt: &Runtime) -> String {
    rt.new_container(ContainerSpec {
        rootfs: "/".into(),
        command: vec!["true".into()],
        ..Default::default()
    })
    .unwrap()
    .config
    .id
}

fn held(rt: &Runtime) -> u32 {
    rt.lock_report().unwrap().held
}

/// Every record's lock ID, asserting that they are distinct and allocated.
fn recorded_ids(rt: &Runtime, table: &dyn LockManager) -> Vec<u32> {
    let mut ids: Vec<u32> = rt
        .containers()
        .unwrap()
        .iter()
        .map(|c| c.config.lock_id)
        .collect();
    ids.extend(rt.pods().unwrap().iter().map(|p| p.config.lock_id));
    let allocated: HashSet<u32> = table.allocated_ids().unwrap().into_iter().collect();
    let mut seen = HashSet::new();
    for id in &ids {
        assert!(seen.insert(*id), "lock {id} is recorded twice");
        assert!(
            allocated.contains(id),
            "recorded lock {id} is not allocated"
        );
    }
    ids
}

#[test]
fn locks_left_by_a_killed_creator_are_freed_by_the_next_runtime() {
    let sb = Sandbox::new("killed");
    let rt = sb.runtime();
    container(&rt);
    container(&rt);
    rt.new_pod(PodSpec::default()).unwrap();
    assert_eq!(
        held(&rt),
        4,
        "two containers, a pod and its infra container"
    );
    // A creator that allocated and died before writing its record (its process, and with it
    // its hold on the allocation gate, is gone).
    let dead = sb.other_process();
    let leaked: Vec<u32> = (0..3).map(|_| dead.allocate().unwrap().id()).collect();
    drop(dead);
    assert_eq!(held(&rt), 7);

    let rt2 = sb.runtime();
    assert_eq!(held(&rt2), 4, "the 3 unrecorded locks are freed");
    let ids = recorded_ids(&rt2, &sb.other_process());
    assert!(leaked.iter().all(|id| !ids.contains(id)));
    // Nothing is left to do for the next one.
    let rt3 = sb.runtime();
    assert_eq!(held(&rt3), 4);
}

#[test]
fn a_live_creator_and_a_live_remover_are_never_swept() {
    let sb = Sandbox::new("live");
    let rt = sb.runtime();
    container(&rt);

    // A creator between allocating and recording holds the gate: no sweep.
    let creator = sb.other_process();
    let gate = creator.hold_allocations().unwrap();
    let pending = creator.allocate().unwrap();
    assert_eq!(held(&sb.runtime()), 2, "a live creator's lock is kept");
    // Creating in this process meanwhile works (the gate is shared).
    container(&rt);
    assert_eq!(held(&rt), 3);

    // A remover has removed its record but still holds the object's lock: no free.
    let remover = sb.other_process();
    let removing = remover.allocate().unwrap();
    let removing_guard = removing.lock().unwrap();
    drop(gate);
    assert_eq!(
        held(&sb.runtime()),
        3,
        "the locked lock is kept, the pending one freed"
    );
    assert!(!sb
        .other_process()
        .allocated_ids()
        .unwrap()
        .contains(&pending.id()));
    drop(removing_guard);
    assert_eq!(held(&sb.runtime()), 2, "unlocked, it is freed too");
    recorded_ids(&rt, &creator);
}

#[test]
fn a_table_shared_by_two_roots_is_never_swept() {
    let sb = Sandbox::new("shared");
    let a = sb.runtime_for("a");
    container(&a);
    let leaked = sb.other_process().allocate().unwrap().id();
    // Root b records its own objects in its own database, on the same segment.
    let b = sb.runtime_for("b");
    let bid = container(&b);
    assert_eq!(held(&b), 3);
    // Seen from root a, b's lock is as unrecorded as the leaked one: neither is touched.
    let a2 = sb.runtime_for("a");
    assert_eq!(held(&a2), 3);
    let table = sb.other_process();
    let allocated = table.allocated_ids().unwrap();
    assert!(allocated.contains(&leaked));
    assert!(allocated.contains(&b.lookup_container(&bid).unwrap().config.lock_id));
    // `system renumber` gives root a a table of its own again.
    drop((a, a2));
    Runtime::renumber(&ConfigEnv::sandboxed(sb.dir.path()), sb.options_for("a")).unwrap();
    let a3 = sb.runtime_for("a");
    assert_eq!(held(&a3), 1);
}

/// Creators and removers in several threads (each with its own runtime, so its own open file
/// description on the segment, as separate processes) race runtimes that sweep, with a leak
/// planted before every sweep. In the end every record owns a distinct allocated lock and
/// nothing else is allocated.
#[test]
fn concurrent_creators_removers_and_sweeps() {
    let sb = Sandbox::new("race");
    let first = sb.runtime();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3 {
            let sb = &sb;
            let stop = &stop;
            s.spawn(move || {
                let rt = sb.runtime();
                let mut mine = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    if t == 2 && i.is_multiple_of(4) {
                        let pod = rt.new_pod(PodSpec::default()).unwrap();
                        rt.remove_pod(&pod.config.id, true).unwrap();
                    } else {
                        mine.push(container(&rt));
                        if mine.len() > 4 {
                            rt.remove_container(&mine.remove(0), true).unwrap();
                        }
                    }
                    i += 1;
                }
            });
        }
        let sb = &sb;
        let stop = &stop;
        s.spawn(move || {
            let planter = sb.other_process();
            for _ in 0..60 {
                let _ = planter.allocate().unwrap();
                drop(sb.runtime());
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    let rt = sb.runtime();
    let table = sb.other_process();
    let ids = recorded_ids(&rt, &table);
    assert_eq!(held(&rt) as usize, ids.len(), "{ids:?}");
    drop(first);
}
