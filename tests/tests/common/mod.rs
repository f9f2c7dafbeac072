//! Sandbox for end-to-end tests: its own root, run root, tmp dir, config dirs and lock segment,
//! a busybox-static root filesystem, and a guard that removes every container, the state and
//! the lock segment when dropped (also when the test fails).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod net;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// The tmp dir, on tmpfs (`/dev/shm`) as rpod's tmp dir should be.
    pub tmp: tempfile::TempDir,
    pub lock_name: String,
    pub rootfs: PathBuf,
}

/// Whether the real components are here (root, runc, conmon, busybox); tests skip otherwise.
pub fn available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let ok = root
        && Path::new("/usr/bin/busybox").exists()
        && Path::new("/usr/bin/conmon").exists()
        && (Path::new("/usr/sbin/runc").exists() || Path::new("/usr/bin/runc").exists());
    if !ok {
        eprintln!("skipping: needs root, runc, conmon and busybox-static (cargo xtask deps)");
    }
    ok
}

/// A new sandbox, or `None` (the test is then skipped) when the real components are missing.
pub fn sandbox() -> Option<Sandbox> {
    available().then(Sandbox::new)
}

/// Asserts that `out` succeeded, showing its stderr otherwise.
pub fn expect_ok(out: &Output) {
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Asserts that `out` exited with `code`, showing its stderr otherwise.
pub fn expect_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
}

/// Asserts that the stderr of `out` mentions `needle`.
pub fn expect_stderr_has(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(err.contains(needle), "no {needle:?} in {err}");
}

/// Builds a busybox-static root filesystem in `dir`.
pub fn build_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// The `rpod` binary of this build (`cargo test --workspace` builds it; run
/// `cargo build -p rpod-cli` first when testing this package alone).
pub fn rpod_bin() -> PathBuf {
    let p = assert_cmd::cargo::cargo_bin("rpod");
    assert!(
        p.is_file(),
        "{} does not exist: build it first with `cargo build -p rpod-cli` (cargo test --workspace does)",
        p.display()
    );
    p
}

impl Sandbox {
    pub fn new() -> Sandbox {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        for d in ["etc", "share", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let rootfs = dir.path().join("rootfs");
        build_rootfs(&rootfs);
        let tmp = tempfile::Builder::new()
            .prefix("rpod-e2e-tmp-")
            .tempdir_in("/dev/shm")
            .unwrap();
        Sandbox {
            tmp,
            lock_name: format!(
                "/rpod_e2e_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            dir,
            rootfs,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The `rpod` command with this sandbox's configuration.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(rpod_bin());
        c.env("RPOD_CONFIG_ETC_DIR", self.path("etc"))
            .env("RPOD_CONFIG_SHARE_DIR", self.path("share"))
            .env("HOME", self.path("home"))
            .env_remove("XDG_CONFIG_HOME")
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.tmp.path())
            .arg("--lock-name")
            .arg(&self.lock_name)
            .arg("--runtime")
            .arg("runc")
            .arg("--cgroup-parent")
            .arg(self.cgroup_parent())
            // No network unless a test asks for one (with its own CNI config dir, bridge and
            // subnet): the default, bridge, would make rpod's default network on the host.
            .args(["--netns", "none", "--cni-config-dir"])
            .arg(self.path("cni"));
        c
    }

    /// Asserts that nothing of container `id` is left: processes, runc state, bundle.
    pub fn assert_container_gone(&self, id: &str) {
        assert!(
            eventually(std::time::Duration::from_secs(5), || processes_mentioning(
                id
            )
            .is_empty()),
            "processes left for {id}: {:?}",
            processes_mentioning(id)
        );
        assert!(
            !Path::new(&format!("/run/runc/{id}")).exists(),
            "runc state left for {id}"
        );
        assert!(
            !self.path(&format!("root/libpod/containers/{id}")).exists(),
            "bundle left for {id}"
        );
    }

    /// This sandbox's own cgroup parent (removed when the sandbox is dropped).
    pub fn cgroup_parent(&self) -> String {
        self.lock_name.replace("/rpod_e2e_", "/rpod_e2e_cg_")
    }

    /// cgroup directories (in any hierarchy) named `libpod-<id>` under this sandbox's parent.
    pub fn cgroups_of(&self, id: &str) -> Vec<PathBuf> {
        cgroup_dirs(&format!("{}/libpod-{id}", self.cgroup_parent()))
    }

    /// Runs `rpod ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs `rpod ARGS`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rpod {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The command `rpod VERB FLAGS --rootfs <sandbox rootfs> CMD`.
    pub fn ctr_cmd(&self, verb: &str, flags: &[&str], cmd: &[&str]) -> Command {
        let mut c = self.cmd();
        c.arg(verb)
            .args(flags)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(cmd);
        c
    }

    /// `rpod run … --rootfs <sandbox rootfs> ARGS`.
    pub fn run_ctr(&self, flags: &[&str], cmd: &[&str]) -> Output {
        self.ctr_cmd("run", flags, cmd).output().unwrap()
    }

    /// [`Sandbox::run_ctr`], asserting success; returns stdout, trimmed (with `-d`: the ID).
    pub fn run_ctr_ok(&self, flags: &[&str], cmd: &[&str]) -> String {
        let out = self.run_ctr(flags, cmd);
        expect_ok(&out);
        text(&out.stdout).trim().to_owned()
    }

    /// `rpod run -d --name NAME --rootfs <sandbox rootfs> CMD`, asserting success; returns the
    /// container's ID.
    pub fn run_detached(&self, name: &str, cmd: &[&str]) -> String {
        let id = self.run_ctr_ok(&["-d", "--name", name], cmd);
        assert_eq!(id.len(), 64, "not an ID: {id:?}");
        id
    }

    /// `rpod create FLAGS --rootfs <sandbox rootfs> CMD`, asserting success; returns the
    /// container's ID.
    pub fn create_ctr(&self, flags: &[&str], cmd: &[&str]) -> String {
        let out = self.ctr_cmd("create", flags, cmd).output().unwrap();
        expect_ok(&out);
        text(&out.stdout).trim().to_owned()
    }

    /// Asserts that within 5 s no container is listed any more, and then that no lock is held.
    pub fn assert_removed_soon(&self) {
        assert!(
            eventually(std::time::Duration::from_secs(5), || self
                .ps_json()
                .is_empty()),
            "still listed: {:?}",
            self.ps_json()
        );
        assert_eq!(self.held_locks(), 0);
    }

    /// Asserts that within 10 s `ps` lists `name`.
    pub fn assert_listed_soon(&self, name: &str) {
        assert!(
            eventually(std::time::Duration::from_secs(10), || self
                .ok(&["ps"])
                .contains(name)),
            "{name} never listed"
        );
    }

    /// Asserts that no container and no pod is listed and no lock is held.
    pub fn assert_empty(&self) {
        assert!(self.ps_json().is_empty(), "{:?}", self.ps_json());
        assert!(self.pod_ps_json().is_empty(), "{:?}", self.pod_ps_json());
        assert_eq!(self.held_locks(), 0);
    }

    pub fn ps_json(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["ps", "-a", "--format", "json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn held_locks(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["system", "locks", "--format", "json"])).unwrap();
        v["held"].as_u64().unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Remove every container (stopping running ones), then all state and the segment.
        if let Ok(out) = self.cmd().args(["ps", "-aq", "--no-trunc"]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = self.cmd().args(["rm", "-f"]).args(&ids).output();
            }
        }
        let _ = self.cmd().args(["system", "reset", "--force"]).output();
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
        for d in cgroup_dirs(&self.cgroup_parent()) {
            remove_tree(&d);
        }
    }
}

/// The directories of cgroup path `cgroup` in every hierarchy where it exists.
pub fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let rel = cgroup.trim_start_matches('/');
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join(rel))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a cgroup directory tree bottom-up (cgroup files vanish with their directory).
pub fn remove_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{}: {text}", name.to_string_lossy()));
            }
        }
    }
    found
}

/// Mount points under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|m| m.starts_with(&d))
        })
        .map(str::to_owned)
        .collect()
}

/// The runc binary.
pub fn runc_bin() -> &'static str {
    if Path::new("/usr/sbin/runc").exists() {
        "/usr/sbin/runc"
    } else {
        "/usr/bin/runc"
    }
}

/// `(pid, cmdline)` of every process whose command line mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<(u32, String)> {
    processes_mentioning(needle)
        .into_iter()
        .filter_map(|l| {
            let (pid, rest) = l.split_once(": ")?;
            Some((pid.parse().ok()?, rest.to_owned()))
        })
        .collect()
}

impl Sandbox {
    /// IDs of all containers (infra containers included).
    pub fn all_ids(&self) -> Vec<String> {
        self.ok(&["ps", "-aq", "--no-trunc"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `inspect NAME` of a container as JSON (the first document).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// `pod inspect NAME` as JSON.
    pub fn pod_inspect(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["pod", "inspect", name])).unwrap()
    }

    /// `pod ps --format json`.
    pub fn pod_ps_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["pod", "ps", "--format", "json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Simulates a reboot of this sandbox: SIGKILLs its conmon processes (so no exit file is
    /// written and no cleanup runs), kills and deletes `ids` in runc, wipes the tmp dir's
    /// contents and the run root, and unlinks the lock segment. The static dir (state database,
    /// bundles) survives, as on disk.
    /// Mount points at or below `dir` (deepest first), from `/proc/self/mountinfo`.
    pub fn mounts_under(&self, dir: &std::path::Path) -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut out: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(dir))
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        out
    }

    /// Imports the sandbox's busybox rootfs as image `name` (a one-layer image).
    pub fn import_rootfs_image(&self, name: &str) -> String {
        let tarball = self.path("rootfs-image.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&self.rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        self.ok(&["import", "-q", tarball.to_str().unwrap(), name])
            .trim()
            .to_owned()
    }

    pub fn simulate_reboot(&self, ids: &[String]) {
        self.simulate_reboot_with(ids, true);
    }

    /// Like [`Sandbox::simulate_reboot`]; with `unlink_segment` false the lock segment survives
    /// (as when `/dev/shm` is not cleared but the tmp dir is), still holding the old allocations.
    pub fn simulate_reboot_with(&self, ids: &[String], unlink_segment: bool) {
        let tmp = self.tmp.path().display().to_string();
        for (pid, cmdline) in pids_mentioning(&tmp) {
            if cmdline.contains("conmon") {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
        for id in ids {
            let _ = Command::new(runc_bin()).args(["kill", id, "KILL"]).output();
            let _ = Command::new(runc_bin())
                .args(["delete", "--force", id])
                .output();
        }
        for id in ids {
            let gone = (0..100).any(|_| {
                let left = processes_mentioning(id);
                if left.is_empty() {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                false
            });
            assert!(
                gone,
                "processes survived the reboot: {:?}",
                processes_mentioning(id)
            );
        }
        for e in std::fs::read_dir(self.tmp.path()).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        // A reboot also undoes the image store's overlay mounts.
        for m in self.mounts_under(&self.path("root")) {
            let _ = Command::new("umount").arg("-l").arg(&m).output();
        }
        let _ = std::fs::remove_dir_all(self.path("runroot"));
        if unlink_segment {
            let _ = std::fs::remove_file(format!("/dev/shm{}", self.lock_name));
        }
    }
}

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits until `f` holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}
