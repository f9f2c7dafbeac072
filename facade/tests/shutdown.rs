//! `Runtime::shutdown(true)` on real runc + conmon: running containers are stopped in parallel
//! (one stop timeout in total, not one per container), and the runtime refuses further calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rpod::{
    ConfigEnv, ContainerSpec, ContainerStatus, PodSpec, Runtime, RuntimeError, RuntimeOptions,
};

/// The `rpod` binary next to this test's directory (`target/debug/deps/..` → `target/debug/rpod`).
fn rpod_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("rpod");
    bin.is_file().then_some(bin)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn build_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// Removes a cgroup directory tree bottom-up in every hierarchy.
fn remove_cgroup(cgroup: &str) {
    fn remove_tree(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    remove_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            remove_tree(&e.path().join(cgroup.trim_start_matches('/')));
        }
    }
}

struct Sandbox {
    dir: tempfile::TempDir,
    tmp: tempfile::TempDir,
    lock_name: String,
    cgroup_parent: String,
    rpod: PathBuf,
}

impl Sandbox {
    fn runtime(&self) -> Runtime {
        let opts = RuntimeOptions::new()
            .netns("none")
            .cni_config_dir("/nonexistent/rpod-cni")
            .graph_root(self.dir.path().join("root"))
            .run_root(self.dir.path().join("runroot"))
            .tmp_dir(self.tmp.path())
            .lock_name(self.lock_name.clone())
            .runtime("runc")
            .cgroup_parent(self.cgroup_parent.clone());
        Runtime::with_env(&ConfigEnv::sandboxed(self.dir.path()), opts)
            .unwrap()
            .with_cleanup_binary(Some(self.rpod.clone()))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let rt = self.runtime();
        for c in rt.containers().unwrap_or_default() {
            let _ = rt.remove_container(&c.config.id, true);
        }
        let _ = rt.reset();
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
        remove_cgroup(&self.cgroup_parent);
    }
}

#[test]
fn forced_shutdown_stops_everything_in_parallel() {
    let Some(rpod) = rpod_bin() else {
        eprintln!("skipping: target/debug/rpod is missing (cargo build -p rpod-cli)");
        return;
    };
    if !is_root()
        || !Path::new("/usr/bin/busybox").exists()
        || !Path::new("/usr/bin/conmon").exists()
        || !(Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists())
    {
        eprintln!("skipping: needs root, runc, conmon and busybox-static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("rpod-shutdown-tmp-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let sb = Sandbox {
        lock_name: format!("/rpod_shutdown_test_{}", std::process::id()),
        cgroup_parent: format!("/rpod_shutdown_cg_{}", std::process::id()),
        dir,
        tmp,
        rpod,
    };
    let rootfs = sb.dir.path().join("rootfs");
    build_rootfs(&rootfs);

    let rt = sb.runtime();
    // Nine standalone containers and one in a pod (whose infra container must be stopped after
    // its member), all ignoring SIGTERM.
    let pod = rt
        .new_pod(PodSpec {
            name: Some("pod".into()),
            ..Default::default()
        })
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let c = rt
            .new_container(ContainerSpec {
                name: Some(format!("stubborn{i}")),
                pod: (i == 0).then(|| "pod".to_owned()),
                rootfs: rootfs.clone(),
                command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            })
            .unwrap();
        rt.start_container(&c.config.id).unwrap();
        ids.push(c.config.id);
    }
    // One more that is not running: shutdown leaves it alone.
    let idle = rt
        .new_container(ContainerSpec {
            name: Some("idle".into()),
            rootfs: rootfs.clone(),
            command: vec!["true".into()],
            ..Default::default()
        })
        .unwrap();
    let infra = pod.state.infra_container_id.clone();
    for id in ids.iter().chain([&infra]) {
        let mut c = rt.lookup_container(id).unwrap();
        rt.container_view(&mut c).unwrap();
        assert_eq!(c.state.status, ContainerStatus::Running);
    }

    let t = Instant::now();
    rt.shutdown(true).unwrap();
    let took = t.elapsed();
    // Each container ignores SIGTERM for its 10 s stop timeout: in parallel that is ~10 s in
    // total, one after the other it would be 100 s.
    assert!(took >= Duration::from_secs(9), "shutdown took {took:?}");
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");

    // The runtime refuses everything now.
    assert!(matches!(rt.containers(), Err(RuntimeError::Stopped)));
    assert!(matches!(
        rt.lookup_container(&ids[0]),
        Err(RuntimeError::Stopped)
    ));
    assert!(matches!(
        rt.start_container(&ids[0]),
        Err(RuntimeError::Stopped)
    ));
    assert!(matches!(
        rt.new_container(ContainerSpec {
            rootfs: rootfs.clone(),
            command: vec!["true".into()],
            ..Default::default()
        }),
        Err(RuntimeError::Stopped)
    ));
    assert!(matches!(rt.shutdown(false), Err(RuntimeError::Stopped)));
    drop(rt);

    // A new runtime sees every container exited (SIGKILL after the timeout: 137).
    let rt = sb.runtime();
    for id in &ids {
        let mut c = rt.lookup_container(id).unwrap();
        rt.container_view(&mut c).unwrap();
        assert_eq!(c.state.status, ContainerStatus::Exited, "{id}");
        assert_eq!(c.state.exit_code, 137, "{id}");
        assert!(
            !Path::new(&format!("/run/runc/{id}")).exists(),
            "runc still knows {id}"
        );
        // conmon may still be finishing its exit command.
        let end = Instant::now() + Duration::from_secs(5);
        while processes_mentioning(id) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!processes_mentioning(id), "processes left for {id}");
    }
    // The infra container exited on SIGTERM (catatonit), after its member.
    let mut inf = rt.lookup_container(&infra).unwrap();
    rt.container_view(&mut inf).unwrap();
    assert_eq!(inf.state.status, ContainerStatus::Exited);
    let member = rt.lookup_container(&ids[0]).unwrap();
    assert!(
        inf.state.finished.unwrap() >= member.state.finished.unwrap(),
        "the infra container stopped before its member"
    );
    let idle = rt.lookup_container(&idle.config.id).unwrap();
    assert_eq!(idle.state.status, ContainerStatus::Configured);

    rt.remove_pod("pod", false).unwrap();
    for c in rt.containers().unwrap() {
        rt.remove_container(&c.config.id, false).unwrap();
    }
    assert_eq!(rt.lock_report().unwrap().held, 0);
}

/// Whether any process' command line mentions `needle` (conmon names the container ID).
fn processes_mentioning(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
    })
}
