//! The layer store with both drivers: unions, container layers, mount counting, deletion rules, dedup of the
//! same layer, failed unpacks and reboots. Needs root (mounts, device nodes, trusted xattrs); skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::Layer as Tar;
use rpod_storage::{chain_id, Digest, Driver, LayerError, LayerStore};

/// Detaches a mount when dropped, so a failing test leaves nothing mounted.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

struct Env {
    graph: tempfile::TempDir,
    run: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            graph: tempfile::tempdir().unwrap(),
            run: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self, driver: Driver) -> LayerStore {
        LayerStore::open(self.graph.path(), self.run.path(), driver).unwrap()
    }

    fn home(&self, driver: Driver) -> PathBuf {
        match driver {
            Driver::Overlay => self.graph.path().join("overlay"),
            Driver::Vfs => self.graph.path().join("vfs/dir"),
        }
    }
}

/// The drivers usable here; empty (with a message) when not root.
fn drivers() -> Vec<Driver> {
    if !common::is_root() {
        eprintln!("skipping: the layer store tests need root");
        return Vec::new();
    }
    let probe = tempfile::tempdir().unwrap();
    match Driver::detect(probe.path()).unwrap() {
        Driver::Overlay => vec![Driver::Overlay, Driver::Vfs],
        Driver::Vfs => {
            eprintln!("overlay not usable here: testing vfs only");
            vec![Driver::Vfs]
        }
    }
}

fn overlay_usable() -> bool {
    drivers().contains(&Driver::Overlay)
}

fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

fn layer1() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc/")
        .file("etc/keep", b"keep")
        .file("etc/del", b"del")
        .dir("opq/")
        .file("opq/a", b"a")
        .file("opq/b", b"b");
    t.finish()
}

fn layer2() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc/")
        .whiteout("etc", "del")
        .dir("opq/")
        .opaque("opq")
        .file("opq/c", b"c")
        .file("new", b"n");
    t.finish()
}

fn layer3() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc/").file("etc/keep", b"keep3").file("top", b"t");
    t.finish()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Creates the 3-layer stack (gzip, zstd, plain) and returns the IDs bottom-up.
fn stack(store: &LayerStore) -> [String; 3] {
    let l1 = store
        .create_layer_from_blob(None, &common::gzip(&layer1())[..])
        .unwrap();
    let l2 = store
        .create_layer_from_blob(Some(&l1.id), &common::zstd(&layer2())[..])
        .unwrap();
    let l3 = store
        .create_layer_from_blob(Some(&l2.id), &layer3()[..])
        .unwrap();
    [l1.id, l2.id, l3.id]
}

fn check_union(root: &Path) {
    assert_eq!(names(root), ["etc", "new", "opq", "top"]);
    assert_eq!(names(&root.join("etc")), ["keep"]);
    assert_eq!(fs::read(root.join("etc/keep")).unwrap(), b"keep3");
    assert_eq!(names(&root.join("opq")), ["c"]);
}

#[test]
fn three_layer_stack_shows_the_union() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let ids = stack(&store);
        // IDs are OCI chain IDs of the uncompressed tars.
        let d1 = Digest::of_bytes(&layer1());
        let d2 = Digest::of_bytes(&layer2());
        let c2 = chain_id(Some(&d1), &d2);
        assert_eq!(ids[0], d1.hex());
        assert_eq!(ids[1], c2.hex());
        let l1 = store.get(&ids[0]).unwrap();
        assert_eq!(l1.diff_id.as_deref(), Some(d1.to_string().as_str()));
        assert_eq!(
            l1.compressed_digest.unwrap(),
            Digest::of_bytes(&common::gzip(&layer1())).to_string()
        );
        assert_eq!(l1.size, layer1().len() as u64);
        let root = store.mount(&ids[2]).unwrap();
        let _guard = MountGuard(root.clone());
        check_union(&root);
        if driver == Driver::Overlay {
            assert!(is_mounted(&root));
            // The overlay layout as containers/storage has it.
            let home = env.home(driver);
            let link = fs::read_to_string(home.join(&ids[2]).join("link")).unwrap();
            assert_eq!(link.len(), 26);
            let lower = fs::read_to_string(home.join(&ids[2]).join("lower")).unwrap();
            let l2 = fs::read_to_string(home.join(&ids[1]).join("link")).unwrap();
            let l1 = fs::read_to_string(home.join(&ids[0]).join("link")).unwrap();
            assert_eq!(lower, format!("l/{l2}:l/{l1}"));
            assert!(!home.join(&ids[0]).join("lower").exists());
            assert_eq!(
                fs::read_link(home.join("l").join(&link)).unwrap(),
                Path::new("..").join(&ids[2]).join("diff")
            );
            // An image layer is mounted read-only.
            assert!(fs::write(root.join("x"), b"x").is_err());
        }
        assert_eq!(store.unmount(&ids[2]).unwrap(), 0);
        assert!(!is_mounted(&root));
    }
}

#[test]
fn container_layer_writes_go_to_its_own_dir() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let ids = stack(&store);
        let rw = store.create_rw_layer(Some(&ids[2])).unwrap();
        assert!(rw.rw);
        let root = store.mount(&rw.id).unwrap();
        let _guard = MountGuard(root.clone());
        check_union(&root);
        fs::write(root.join("etc/keep"), b"changed").unwrap();
        fs::write(root.join("written"), b"w").unwrap();
        fs::remove_file(root.join("top")).unwrap();
        let upper = store.layer_dir(&rw.id);
        assert_eq!(fs::read(upper.join("written")).unwrap(), b"w");
        assert_eq!(fs::read(upper.join("etc/keep")).unwrap(), b"changed");
        for id in &ids {
            let dir = store.layer_dir(id);
            assert!(!dir.join("written").exists(), "{driver:?} {id}");
        }
        assert_eq!(
            fs::read(store.layer_dir(&ids[2]).join("etc/keep")).unwrap(),
            b"keep3"
        );
        assert_eq!(
            fs::read(store.layer_dir(&ids[0]).join("etc/keep")).unwrap(),
            b"keep"
        );
        assert!(store.layer_dir(&ids[2]).join("top").exists());
        store.unmount(&rw.id).unwrap();
    }
}

#[test]
fn mounts_are_counted() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let ids = stack(&store);
        let rw = store.create_rw_layer(Some(&ids[2])).unwrap();
        let a = store.mount(&rw.id).unwrap();
        let _guard = MountGuard(a.clone());
        let b = store.mount(&rw.id).unwrap();
        assert_eq!(a, b);
        assert_eq!(store.mount_count(&rw.id).unwrap(), 2);
        assert_eq!(store.unmount(&rw.id).unwrap(), 1);
        assert_eq!(names(&a), ["etc", "new", "opq", "top"]);
        if driver == Driver::Overlay {
            assert!(is_mounted(&a));
        }
        assert_eq!(store.unmount(&rw.id).unwrap(), 0);
        assert!(!is_mounted(&a));
        assert!(matches!(
            store.unmount(&rw.id),
            Err(LayerError::NotMounted { .. })
        ));
    }
}

#[test]
fn delete_is_refused_while_mounted_or_with_children() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let ids = stack(&store);
        assert!(matches!(
            store.delete_layer(&ids[0]),
            Err(LayerError::HasChildren { .. })
        ));
        let root = store.mount(&ids[2]).unwrap();
        let _guard = MountGuard(root);
        assert!(matches!(
            store.delete_layer(&ids[2]),
            Err(LayerError::Mounted { mounts: 1, .. })
        ));
        store.unmount(&ids[2]).unwrap();
        for id in ids.iter().rev() {
            store.delete_layer(id).unwrap();
            assert!(!env.home(driver).join(id).exists());
        }
        assert!(store.layers().unwrap().is_empty());
        let home = env.home(driver);
        match driver {
            Driver::Overlay => {
                assert_eq!(names(&home), ["l"]);
                assert!(names(&home.join("l")).is_empty());
            }
            Driver::Vfs => assert!(names(&home).is_empty()),
        }
        assert!(matches!(
            store.delete_layer(&ids[0]),
            Err(LayerError::NotFound { .. })
        ));
    }
}

fn assert_one_layer(env: &Env, driver: Driver, store: &LayerStore, id: &str) {
    let layers = store.layers().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].id, id);
    let home = env.home(driver);
    match driver {
        Driver::Overlay => {
            assert_eq!(names(&home), [id, "l"]);
            assert_eq!(names(&home.join("l")).len(), 1);
        }
        Driver::Vfs => assert_eq!(names(&home), [id]),
    }
}

#[test]
fn the_same_layer_created_twice_is_stored_once() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let blob = common::gzip(&layer1());
        let a = store.create_layer_from_blob(None, &blob[..]).unwrap();
        let b = store.create_layer_from_blob(None, &layer1()[..]).unwrap();
        assert_eq!(a.id, b.id);
        assert_one_layer(&env, driver, &store, &a.id);

        // Concurrently, each thread with its own store handle (its own lock file descriptions).
        let env2 = Env::new();
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let env2 = &env2;
                    let blob = &blob;
                    s.spawn(move || {
                        env2.store(driver)
                            .create_layer_from_blob(None, &blob[..])
                            .unwrap()
                            .id
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == a.id));
        assert_one_layer(&env2, driver, &env2.store(driver), &a.id);
    }
}

#[test]
fn a_failed_unpack_leaves_nothing() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let base = store.create_layer_from_blob(None, &layer1()[..]).unwrap();
        let mut t = Tar::new();
        t.file("ok", b"fine").file("../../escape", b"x");
        let err = store
            .create_layer_from_blob(Some(&base.id), &t.finish()[..])
            .unwrap_err();
        assert!(matches!(err, LayerError::Unpack { .. }), "{err}");
        // A truncated gzip stream fails too.
        let gz = common::gzip(&layer2());
        let err = store
            .create_layer_from_blob(Some(&base.id), &gz[..gz.len() - 10])
            .unwrap_err();
        assert!(matches!(err, LayerError::Unpack { .. }), "{err}");
        assert_one_layer(&env, driver, &store, &base.id);
        assert!(!env.graph.path().parent().unwrap().join("escape").exists());
    }
}

#[test]
fn names_are_unique_and_looked_up() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let ids = stack(&store);
        let rw = store.create_rw_layer(Some(&ids[2])).unwrap();
        store.set_names(&ids[2], &["ctr".into()]).unwrap();
        assert_eq!(store.lookup("ctr").unwrap().id, ids[2]);
        let moved = store
            .set_names(&rw.id, &["ctr".into(), "x".into()])
            .unwrap();
        assert_eq!(moved.names, ["ctr", "x"]);
        assert!(store.get(&ids[2]).unwrap().names.is_empty());
        assert_eq!(store.lookup("ctr").unwrap().id, rw.id);
        assert_eq!(store.lookup(&ids[0]).unwrap().id, ids[0]);
        assert!(matches!(
            store.lookup("nope"),
            Err(LayerError::NotFound { .. })
        ));
    }
}

#[test]
fn a_wrong_diff_id_is_refused() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let wrong = Digest::of_bytes(b"not the layer");
        let err = store
            .create_layer_verified(None, &common::gzip(&layer1())[..], &wrong)
            .unwrap_err();
        assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");
        assert!(store.layers().unwrap().is_empty());
        let right = Digest::of_bytes(&layer1());
        let layer = store
            .create_layer_verified(None, &common::gzip(&layer1())[..], &right)
            .unwrap();
        assert_eq!(layer.id, right.hex());
        // Present already: the reader is not even read.
        let again = store
            .create_layer_verified(None, std::io::empty(), &right)
            .unwrap();
        assert_eq!(again, layer);
        assert_one_layer(&env, driver, &store, &layer.id);
    }
}

#[test]
fn a_reboot_resets_mount_counts_and_leftovers_are_removed() {
    for driver in drivers() {
        let env = Env::new();
        let store = env.store(driver);
        let base = store.create_layer_from_blob(None, &layer1()[..]).unwrap();
        let rw = store.create_rw_layer(Some(&base.id)).unwrap();
        let root = store.mount(&rw.id).unwrap();
        let guard = MountGuard(root.clone());
        assert_eq!(store.mount_count(&rw.id).unwrap(), 1);
        // "Reboot": the mount goes away and the run root is wiped.
        drop(guard);
        fs::remove_dir_all(env.run.path()).unwrap();
        // Leftovers of a killed builder: a temp dir nobody holds and a layer dir without a record.
        let home = env.home(driver);
        fs::create_dir_all(home.join(".tmp-killed/diff")).unwrap();
        fs::create_dir_all(home.join("a".repeat(64)).join("diff")).unwrap();
        drop(store);
        let store = env.store(driver);
        assert_eq!(store.mount_count(&rw.id).unwrap(), 0);
        assert!(!home.join(".tmp-killed").exists());
        assert!(!home.join("a".repeat(64)).exists());
        assert_eq!(store.layers().unwrap().len(), 2);
        // A mount whose count was lost (run root wiped while mounted) does not block mounting or deleting.
        let stale = store.mount(&rw.id).unwrap();
        let _stale_guard = MountGuard(stale.clone());
        fs::remove_dir_all(env.run.path()).unwrap();
        assert_eq!(store.mount_count(&rw.id).unwrap(), 0);
        store.mount(&rw.id).unwrap();
        store.unmount(&rw.id).unwrap();
        assert!(!is_mounted(&stale));
        store.mount(&rw.id).unwrap();
        fs::remove_dir_all(env.run.path()).unwrap();
        store.delete_layer(&rw.id).unwrap();
        assert!(!is_mounted(&stale));
        let root = store.mount(&base.id).unwrap();
        let _guard = MountGuard(root.clone());
        assert_eq!(names(&root), ["etc", "opq"]);
        store.unmount(&base.id).unwrap();
    }
}

#[test]
fn detect_honours_an_existing_store() {
    if !common::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let env = Env::new();
    env.store(Driver::Vfs)
        .create_layer_from_blob(None, &layer1()[..])
        .unwrap();
    assert_eq!(Driver::detect(env.graph.path()).unwrap(), Driver::Vfs);
}

#[test]
fn deep_overlay_stacks_mount_up_to_the_depth_limit() {
    if !overlay_usable() {
        return;
    }
    let env = Env::new();
    let store = env.store(Driver::Overlay);
    let mut parent: Option<String> = None;
    let mut ids = Vec::new();
    for i in 0..129 {
        let mut t = Tar::new();
        t.file(&format!("f{i:03}"), b"x");
        let layer = store
            .create_layer_from_blob(parent.as_deref(), &t.finish()[..])
            .unwrap();
        parent = Some(layer.id.clone());
        ids.push(layer.id);
    }
    // 128 lowers: too long for absolute paths in one page, mounted with relative ones.
    let root = store.mount(&ids[127]).unwrap();
    let _guard = MountGuard(root.clone());
    assert_eq!(names(&root).len(), 128);
    store.unmount(&ids[127]).unwrap();
    let err = store.mount(&ids[128]).unwrap_err();
    assert!(
        matches!(err, LayerError::MaxDepth { depth: 129, .. }),
        "{err}"
    );
}
