//! Shared helpers of the CLI tests: a sandbox with its own config dirs, HOME, root, run root,
//! tmp dir and lock segment, removed (segment included) when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub lock_name: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The lock segment and the cgroup parent live outside the temporary directory.
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
        let rel = self.cgroup_parent();
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                remove_cgroup_tree(&h.path().join(rel.trim_start_matches('/')));
            }
        }
    }
}

/// Removes a cgroup directory tree bottom-up (`rmdir` only: cgroup files go with their directory).
fn remove_cgroup_tree(dir: &std::path::Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Sandbox {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        for d in ["etc", "share", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let lock_name = format!(
            "/rpod_cli_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Sandbox { dir, lock_name }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn etc_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path("etc").join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// `rpod` with the sandbox's config dirs and HOME, without the state flags.
    pub fn bare(&self) -> Command {
        let mut c = Command::cargo_bin("rpod").unwrap();
        c.env("RPOD_CONFIG_ETC_DIR", self.path("etc"))
            .env("RPOD_CONFIG_SHARE_DIR", self.path("share"))
            .env("HOME", self.path("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_RUNTIME_DIR");
        c
    }

    /// `rpod` with the sandbox's config dirs and its own root, run root and tmp dir.
    pub fn cmd(&self) -> Command {
        let mut c = self.bare();
        c.arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .arg("--lock-name")
            .arg(&self.lock_name)
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            // No network (the default, bridge, would make rpod's default network on the host).
            .args(["--netns", "none", "--cni-config-dir"])
            .arg(self.path("cni"));
        c
    }

    /// This sandbox's own cgroup parent (removed when the sandbox is dropped).
    pub fn cgroup_parent(&self) -> String {
        self.lock_name.replace("/rpod_cli_test_", "/rpod_cli_cg_")
    }

    /// Runs [`Sandbox::cmd`] with `args`.
    pub fn run<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs [`Sandbox::bare`] with `args`.
    pub fn run_bare<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Output {
        self.bare().args(args).output().unwrap()
    }

    /// Runs [`Sandbox::cmd`] with `args`, asserting success; returns stdout.
    pub fn ok<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> String {
        stdout_ok(&self.run(args))
    }

    /// Runs `rpod create --rootfs <a minimal rootfs> ARGS`.
    pub fn run_create(&self, args: &[&str]) -> Output {
        let rootfs = rootfs(self);
        let mut c = self.cmd();
        c.arg("create").arg("--rootfs").arg(&rootfs).args(args);
        c.output().unwrap()
    }

    /// [`Sandbox::run_create`], asserting success; returns the ID.
    pub fn create_ctr(&self, args: &[&str]) -> String {
        stdout_ok(&self.run_create(args)).trim().to_owned()
    }
}

/// The stdout of `out`, asserting that it succeeded (its stderr shown otherwise).
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?} (signal {:?}): {}",
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts that `out` succeeded (its stderr shown otherwise).
pub fn expect_ok(out: &Output) {
    stdout_ok(out);
}

pub fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap()
}

/// A minimal root filesystem directory (the state tests never run it).
pub fn rootfs(sb: &Sandbox) -> PathBuf {
    let p = sb.path("rootfs");
    std::fs::create_dir_all(p.join("bin")).unwrap();
    p
}
