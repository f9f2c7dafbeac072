//! Shared helpers for the real runc + conmon tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpod_oci::{CreateOptions, Created, OciRuntime, RuntimeConfig, SpecInput};

pub const RUNC: &str = "/usr/sbin/runc";
pub const CONMON: &str = "/usr/bin/conmon";
pub const BUSYBOX: &str = "/usr/bin/busybox";
/// Each test container gets its own cgroup parent, removed with it, so tests leave no cgroup
/// directory behind and never race on a shared parent.
pub fn cgroup_parent(id: &str) -> String {
    format!("/rpodtest-parent-{id}")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `TestCtr::new(tag)`, or a return from the test when the real runtime is not here.
#[allow(unused_macros)]
macro_rules! test_ctr {
    ($tag:expr) => {
        match common::can_run() {
            true => common::TestCtr::new($tag),
            false => return,
        }
    };
}

/// Whether the real runtime tests can run here.
pub fn can_run() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Path::new(RUNC).exists()
        && Path::new(CONMON).exists()
        && Path::new(BUSYBOX).exists();
    if !ok {
        eprintln!("skipping: needs root, {RUNC}, {CONMON} and {BUSYBOX}");
    }
    ok
}

pub fn unique_id(tag: &str) -> String {
    format!(
        "rpodtest-{}-{}-{}",
        std::process::id(),
        tag,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Build a busybox-static rootfs at `dir`.
pub fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// Paths of the cgroup directories runc may create for `id` (the container's, then its
/// parent's), in removal order.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let parent = cgroup_parent(id);
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(parent.trim_start_matches('/'));
            out.push(p.join(format!("libpod-{id}")));
            out.push(p);
        }
    }
    out
}

/// One test container: own tempdir with rootfs, bundle, exit dir; cleaned up
/// on drop even when the test fails.
pub struct TestCtr {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    pub exits: PathBuf,
    pub rt: OciRuntime,
    pub conmon_pid: Option<i32>,
}

impl TestCtr {
    pub fn new(tag: &str) -> Self {
        Self::with_runtime(tag, RUNC, CONMON)
    }

    pub fn with_runtime(tag: &str, runtime: &str, conmon: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rpod-oci-test.")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        make_rootfs(&rootfs);
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let exits = dir.path().join("exits");
        let mut cfg = RuntimeConfig::new(&exits);
        cfg.runtime_path = runtime.into();
        cfg.conmon_path = conmon.into();
        cfg.create_timeout = Duration::from_secs(30);
        let rt = OciRuntime::new(cfg).unwrap();
        TestCtr {
            id: unique_id(tag),
            dir,
            rootfs,
            bundle,
            exits,
            rt,
            conmon_pid: None,
        }
    }

    pub fn spec(&self, args: &[&str]) -> SpecInput {
        let mut s = SpecInput::new(
            self.id.clone(),
            self.rootfs.clone(),
            args.iter().map(|a| a.to_string()).collect(),
        );
        s.cgroup_parent = Some(cgroup_parent(&self.id));
        s.hostname = Some("rpodtest".into());
        s
    }

    pub fn opts(&self) -> CreateOptions {
        CreateOptions::new(self.id.clone(), self.bundle.clone())
    }

    pub fn log_path(&self) -> PathBuf {
        self.opts().log_path()
    }

    pub fn create(&mut self, args: &[&str]) -> rpod_oci::Result<Created> {
        let spec = self.spec(args);
        self.create_with(&spec)
    }

    pub fn create_with(&mut self, spec: &SpecInput) -> rpod_oci::Result<Created> {
        rpod_oci::write_spec_for(&self.bundle, spec).unwrap();
        let c = self.rt.create(&self.opts());
        self.conmon_pid = self.rt.conmon_pid(&self.opts());
        c
    }

    pub fn run(&mut self, args: &[&str]) -> Created {
        let c = self.create(args).unwrap();
        self.rt.start(&self.id).unwrap();
        c
    }

    /// Assert nothing of the container is left: runc state, cgroups, conmon.
    pub fn assert_clean(&self) {
        assert!(
            !Path::new("/run/runc").join(&self.id).exists(),
            "runc state left for {}",
            self.id
        );
        let own = format!("libpod-{}", self.id);
        for d in cgroup_dirs(&self.id).iter().filter(|d| d.ends_with(&own)) {
            assert!(!d.exists(), "cgroup left: {}", d.display());
        }
        if let Some(pid) = self.conmon_pid {
            // conmon exits right after writing the exit file; give it a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while rpod_oci::process_alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!rpod_oci::process_alive(pid), "conmon {pid} still alive");
        }
    }
}

impl Drop for TestCtr {
    fn drop(&mut self) {
        let _ = std::process::Command::new(RUNC)
            .args(["delete", "--force", &self.id])
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(pid) = self.conmon_pid.or_else(|| self.rt.conmon_pid(&self.opts())) {
            if rpod_oci::process_alive(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for d in cgroup_dirs(&self.id) {
            let _ = std::fs::remove_dir(&d);
        }
    }
}
