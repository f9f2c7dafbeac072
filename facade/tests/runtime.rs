//! `Runtime` construction: configuration, binaries, directories and the lock segment, in a sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rpod::{ConfigEnv, Runtime, RuntimeError, RuntimeOptions};

/// A new container that runs `true` in `/`.
fn new_true_container(rt: &Runtime) -> rpod::ContainerRecord {
    let spec = rpod::ContainerSpec {
        rootfs: "/".into(),
        command: vec!["true".into()],
        ..Default::default()
    };
    rt.new_container(spec).unwrap()
}

struct Sandbox {
    dir: tempfile::TempDir,
    lock_name: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
    }
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        Sandbox {
            dir,
            lock_name: format!("/rpod_facade_test_{tag}_{}", std::process::id()),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn env(&self) -> ConfigEnv {
        ConfigEnv::sandboxed(self.dir.path())
    }

    fn options(&self) -> RuntimeOptions {
        RuntimeOptions::new()
            .netns("none")
            .cni_config_dir("/nonexistent/rpod-cni")
            .graph_root(self.path("root"))
            .run_root(self.path("runroot"))
            .tmp_dir(self.path("tmp"))
            .lock_name(self.lock_name.clone())
    }
}

#[test]
fn runtime_creates_dirs_and_lock_segment() {
    let sb = Sandbox::new("dirs");
    let rt = Runtime::with_env(&sb.env(), sb.options().num_locks(100)).unwrap();
    assert!(sb.path("root/libpod").is_dir());
    assert!(sb.path("tmp/alive.lck").is_file());
    assert!(Path::new(&format!("/dev/shm{}", sb.lock_name)).exists());
    let report = rt.lock_report().unwrap();
    assert_eq!((report.total, report.free, report.held), (128, 128, 0));
    // Locks from another manager on the same segment are visible in the report.
    let other = rpod_lock::ShmLockManager::open_or_create(&sb.lock_name, 100).unwrap();
    let lock = rpod_lock::LockManager::allocate(&other).unwrap();
    let guard = lock.lock().unwrap();
    let report = rt.lock_report().unwrap();
    assert_eq!(report.held, 1);
    assert_eq!(report.locked.len(), 1);
    assert_eq!(report.locked[0].id, lock.id());
    assert_eq!(report.locked[0].pid, std::process::id() as i32);
    drop(guard);
    lock.free().unwrap();
    // A second runtime on the same tmp dir shares the table.
    let rt2 = Runtime::with_env(&sb.env(), sb.options().num_locks(100)).unwrap();
    let c = new_true_container(&rt2);
    assert_eq!(rt.lock_report().unwrap().held, 1);
    rt.remove_container(&c.config.id, false).unwrap();
    assert_eq!(rt2.lock_report().unwrap().held, 0);
}

#[test]
fn config_is_a_copy() {
    let sb = Sandbox::new("copy");
    let rt = Runtime::with_env(&sb.env(), sb.options()).unwrap();
    let mut c = rt.config();
    c.values.num_locks = 1;
    assert_eq!(rt.config().values.num_locks, 2048);
    assert_eq!(rt.config().values.static_dir, sb.path("root/libpod"));
}

#[test]
fn count_mismatch_then_renumber() {
    let sb = Sandbox::new("renumber");
    Runtime::with_env(&sb.env(), sb.options().num_locks(64)).unwrap();
    let err = Runtime::with_env(&sb.env(), sb.options().num_locks(96)).unwrap_err();
    assert!(matches!(err, RuntimeError::Lock(_)), "{err:?}");
    assert!(err.to_string().contains("rpod system renumber"), "{err}");
    let rt = Runtime::renumber(&sb.env(), sb.options().num_locks(96)).unwrap();
    assert_eq!(rt.lock_report().unwrap().total, 96);
    Runtime::with_env(&sb.env(), sb.options().num_locks(96)).unwrap();
}

#[test]
fn memory_backend_uses_in_memory_locks() {
    let sb = Sandbox::new("memory");
    let rt = Runtime::with_env(&sb.env(), sb.options().state_backend("memory")).unwrap();
    let report = rt.lock_report().unwrap();
    assert_eq!(report.segment, "<in-memory>");
    assert!(!Path::new(&format!("/dev/shm{}", sb.lock_name)).exists());
}

#[test]
fn missing_conmon_is_reported_and_nothing_is_created() {
    let sb = Sandbox::new("noconmon");
    let err = Runtime::with_env(&sb.env(), sb.options().conmon("/nonexistent/conmon")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not find a working conmon binary (configured options: [/nonexistent/conmon])"
    );
    assert!(!sb.path("tmp").exists());
    assert!(!sb.path("root").exists());
}

#[test]
fn without_lock_name_each_tmp_dir_gets_its_own_segment() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let env = ConfigEnv::sandboxed(a.path());
    let opts = |d: &Path| {
        RuntimeOptions::new()
            .netns("none")
            .cni_config_dir("/nonexistent/rpod-cni")
            .graph_root(d.join("root"))
            .tmp_dir(d.join("tmp"))
    };
    let ra = Runtime::with_env(&env, opts(a.path())).unwrap();
    let rb = Runtime::with_env(&env, opts(b.path())).unwrap();
    let (sa, sb) = (ra.lock_report().unwrap(), rb.lock_report().unwrap());
    let _ = std::fs::remove_file(format!("/dev/shm{}", sa.segment));
    let _ = std::fs::remove_file(format!("/dev/shm{}", sb.segment));
    assert_ne!(sa.segment, sb.segment);
    assert_eq!(sa.segment, rpod::segment_name(&ra.config()));
}

/// Child mode of `concurrent_runtimes_share_one_segment`.
fn child() -> bool {
    let Ok(base) = std::env::var("RPOD_FACADE_CHILD_BASE") else {
        return false;
    };
    let base = PathBuf::from(base);
    let name = std::env::var("RPOD_FACADE_CHILD_LOCK").unwrap();
    while !base.join("go").exists() {
        std::thread::yield_now();
    }
    let opts = RuntimeOptions::new()
        .netns("none")
        .cni_config_dir("/nonexistent/rpod-cni")
        .graph_root(base.join("root"))
        .run_root(base.join("runroot"))
        .tmp_dir(base.join("tmp"))
        .lock_name(name);
    let rt = Runtime::with_env(&ConfigEnv::sandboxed(&base), opts).unwrap();
    let c = new_true_container(&rt);
    println!("ALLOCATED {}", c.config.lock_id);
    true
}

#[test]
fn concurrent_runtimes_share_one_segment() {
    if child() {
        return;
    }
    let sb = Sandbox::new("concurrent");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "concurrent_runtimes_share_one_segment",
                    "--exact",
                    "--nocapture",
                ])
                .env("RPOD_FACADE_CHILD_BASE", sb.dir.path())
                .env("RPOD_FACADE_CHILD_LOCK", &sb.lock_name)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(sb.path("go"), b"").unwrap();
    let mut ids = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let id: u32 = text
            .lines()
            .find_map(|l| l.strip_prefix("ALLOCATED "))
            .unwrap()
            .parse()
            .unwrap();
        ids.push(id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..8).collect::<Vec<_>>());
    let rt = Runtime::with_env(&sb.env(), sb.options()).unwrap();
    assert_eq!(rt.lock_report().unwrap().held, 8);
}

#[test]
fn database_paths_override_defaults_and_explicit_mismatch_fails() {
    let sb = Sandbox::new("dbconfig");
    Runtime::with_env(&sb.env(), sb.options()).unwrap();
    // Without --runroot, the stored run root wins over the default, and says so.
    let opts = RuntimeOptions::new()
        .netns("none")
        .cni_config_dir("/nonexistent/rpod-cni")
        .graph_root(sb.path("root"))
        .tmp_dir(sb.path("tmp"))
        .lock_name(sb.lock_name.clone());
    let rt = Runtime::with_env(&sb.env(), opts.clone()).unwrap();
    let cfg = rt.config();
    assert_eq!(cfg.values.run_root, sb.path("runroot"));
    assert_eq!(cfg.sources.get("run_root"), &rpod::Source::Database);
    drop(rt);
    // An explicit, different run root is refused with libpod's message.
    let err = Runtime::with_env(&sb.env(), opts.run_root(sb.path("elsewhere"))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("database storage temporary directory (runroot)")
            && msg.contains("does not match our"),
        "{msg}"
    );
}
