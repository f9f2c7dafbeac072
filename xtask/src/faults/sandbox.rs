//! Isolation of a fault-injection round from the host and from other users
//! of the machine, and removal of everything it made.
//!
//! A round owns one directory on tmpfs (`/dev/shm/rpod-faults-<pid>/`,
//! holding the busybox rootfs and a directory per trial) and one top-level
//! cgroup, `rpod_faults_<pid>`, in every hierarchy. Each trial (and each
//! damage scenario) is a [`Sandbox`]: its own `--root`, `--runroot`,
//! `--tmpdir`, `--lock-name /rpod_faults_<pid>_<tag>`, `--cgroup-parent
//! /rpod_faults_<pid>/<tag>`, empty configuration directories
//! (`RPOD_CONFIG_ETC_DIR`, `RPOD_CONFIG_SHARE_DIR`, `HOME`), runc with the
//! cgroupfs manager. Dropping a sandbox runs `rpod system reset --force`,
//! then deletes the runc state of its containers (`runc delete --force`,
//! which also thaws and kills paused ones), kills their conmon, runc and
//! container processes, removes its cgroups
//! bottom-up, unlinks its lock segment and deletes its directory; dropping
//! the [`Round`] removes the round's cgroup and directory. In a `--network`
//! round ([`super::net`]) the sandbox passes `--netns bridge` and has a CNI
//! network of its own; its clean-up first removes every pod and container
//! with rpod (so rpod tears their networks down), and last unmounts
//! namespace files left under its tmp dir, removes the iptables rules of
//! its network and subnet and deletes the round's bridge. In an `--images`
//! round ([`super::images`]) the round also holds the tarballs, the saved
//! archive and the template store, which every sandbox's `--root` starts
//! with. Every sandbox's clean-up ends by detaching whatever is still
//! mounted under its directory (`umount -l`: layers `system reset` could
//! not unmount, or mounts rpod lost count of). Nothing is
//! selected by anything but these names and paths, so nothing that the round
//! did not create is ever touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::images::{detach_mounts_under, RoundImages};
use super::killer::{self, Outcome};
use super::net::{RoundNet, SandboxNet};
use crate::bench::sweep;
use crate::util::shell_join;

/// Where `shm_open(3)` names live.
pub const DEV_SHM: &str = "/dev/shm";
/// Where the cgroup hierarchies are mounted.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";
/// The runc binary rpod is told to use.
pub const RUNC: &str = "runc";

/// A round's directory, rootfs and cgroup name.
pub struct Round {
    /// The `rpod` binary under test.
    pub rpod: PathBuf,
    /// `/dev/shm/rpod-faults-<pid>`.
    pub dir: PathBuf,
    /// The busybox rootfs every container runs on (read-only use).
    pub rootfs: PathBuf,
    /// `rpod_faults_<pid>`: the top-level cgroup (and lock name prefix).
    pub name: String,
    /// The round's bridge and subnet (`--network` only).
    pub net: Option<RoundNet>,
    /// The round's image, archive and template store (`--images` only).
    pub images: Option<RoundImages>,
}

impl Round {
    /// Makes the round's directory and rootfs (with `network`, picks its
    /// bridge and subnet; with `images`, prepares its image store).
    pub fn new(rpod: PathBuf, network: bool, images: bool) -> Result<Round> {
        let pid = std::process::id();
        let dir = Path::new(DEV_SHM).join(format!("rpod-faults-{pid}"));
        let net = if network {
            Some(RoundNet::new()?)
        } else {
            None
        };
        let mut round = Round {
            rpod,
            rootfs: dir.join("rootfs"),
            dir,
            name: format!("rpod_faults_{pid}"),
            net,
            images: None,
        };
        // Created exclusively: a directory of this name can only be left by
        // a killed run with our PID, and is not ours to reuse.
        fs::create_dir(&round.dir).with_context(|| format!("creating {}", round.dir.display()))?;
        fs::create_dir(&round.rootfs)?;
        crate::bench::build_busybox_rootfs(&round.rootfs)?;
        if images {
            round.images = Some(RoundImages::new(&round)?);
        }
        Ok(round)
    }

    /// A fresh sandbox named `tag` (unique within the round); in a
    /// `--network` round, `publish` gives it a loopback port to publish.
    pub fn sandbox(&self, tag: &str, publish: bool) -> Result<Sandbox> {
        Sandbox::new(self, tag, publish)
    }

    /// `text` with the round's directory shown as `$ROUND` and its PID as
    /// `<pid>`, for reports.
    pub fn hide_paths(&self, text: &str) -> String {
        let pid = std::process::id().to_string();
        let mut text = text
            .replace(&self.dir.display().to_string(), "$ROUND")
            .replace(&self.name, &self.name.replace(&pid, "<pid>"));
        if let Some(net) = &self.net {
            text = text.replace(&net.bridge, &net.bridge.replace(&pid, "<pid>"));
        }
        text
    }

    /// The file names (in /dev/shm) of this round's lock segments.
    pub fn segment_prefix(&self) -> String {
        format!("{}_", self.name)
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        if let Some(net) = &self.net {
            net.clean_up();
        }
        for dir in cgroup_dirs(&self.name) {
            if let Err(e) = sweep::remove_cgroup_tree(&dir) {
                eprintln!("xtask faults: warning: {e:#}");
            }
        }
        detach_mounts_under(&self.dir);
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "xtask faults: warning: removing {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// One trial's private rpod world (see the module documentation).
pub struct Sandbox {
    /// The rpod binary.
    rpod: PathBuf,
    /// The round's rootfs.
    pub rootfs: PathBuf,
    /// `<round dir>/<tag>`.
    pub dir: PathBuf,
    /// `--lock-name`: `/rpod_faults_<pid>_<tag>`.
    pub lock_name: String,
    /// `--cgroup-parent` without the leading `/`: `rpod_faults_<pid>/<tag>`.
    pub cgroup_rel: String,
    /// Its CNI network (`--network` rounds only).
    pub net: Option<SandboxNet>,
    /// The round's image files; the sandbox starts with its store
    /// (`--images` rounds only).
    pub images: Option<RoundImages>,
}

impl Sandbox {
    fn new(round: &Round, tag: &str, publish: bool) -> Result<Sandbox> {
        let dir = round.dir.join(tag);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for sub in ["root", "runroot", "tmp", "etc", "share", "home"] {
            fs::create_dir(dir.join(sub))?;
        }
        let mut sb = Sandbox {
            rpod: round.rpod.clone(),
            rootfs: round.rootfs.clone(),
            dir,
            lock_name: format!("/{}_{tag}", round.name),
            cgroup_rel: format!("{}/{tag}", round.name),
            net: None,
            images: round.images.clone(),
        };
        if let Some(images) = &round.images {
            images.install(&sb.dir.join("root"))?;
        }
        if let Some(net) = &round.net {
            sb.net = Some(SandboxNet::new(net, tag, &sb.dir, publish)?);
        }
        Ok(sb)
    }

    /// Where rpod keeps the network namespace files: `<tmpdir>/netns`.
    pub fn netns_dir(&self) -> PathBuf {
        self.tmp().join("netns")
    }

    /// rpod's cache of CNI results: `<static dir>/cni/results`.
    pub fn results_dir(&self) -> PathBuf {
        self.static_dir().join("cni/results")
    }

    /// `--tmpdir`.
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// The static dir (`--root`'s `libpod/`), holding the state database.
    pub fn static_dir(&self) -> PathBuf {
        self.dir.join("root/libpod")
    }

    /// `/dev/shm/<lock name>`.
    pub fn segment(&self) -> PathBuf {
        Path::new(DEV_SHM).join(self.lock_name.trim_start_matches('/'))
    }

    /// The segment rpod would use for this tmp dir had `--lock-name` been
    /// lost on the way (e.g. in an exit command): `/rpod_lock_<fnv1a-64 of
    /// the tmp dir>`, as rpod-lock's `default_segment_name` makes it.
    pub fn default_segment(&self) -> PathBuf {
        let name = rpod_lock::default_segment_name(&self.tmp(), false, None);
        PathBuf::from(rpod_lock::segment_path(&name))
    }

    /// `rpod <isolation flags> args...` as a command.
    pub fn cmd(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.rpod);
        cmd.env("RPOD_CONFIG_ETC_DIR", self.dir.join("etc"))
            .env("RPOD_CONFIG_SHARE_DIR", self.dir.join("share"))
            .env("HOME", self.dir.join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CONTAINERS_CONF")
            .env_remove("RUST_BACKTRACE")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.tmp())
            .args(["--lock-name", &self.lock_name])
            .args(["--runtime", RUNC, "--cgroup-manager", "cgroupfs"])
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.cgroup_rel))
            .arg("--netns")
            .arg(if self.net.is_some() { "bridge" } else { "none" })
            .arg("--cni-config-dir")
            .arg(self.dir.join("cni"))
            .args(args);
        cmd
    }

    /// Runs `rpod args...` to its end (with the hang timeout).
    pub fn rpod(&self, args: &[String]) -> Result<Outcome> {
        killer::run(&mut self.cmd(args), &display(args))
    }

    /// The cgroup directories of this sandbox, one per hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs(&self.cgroup_rel)
    }

    /// Runs `rpod args...` for the clean-up; a failure is a warning.
    fn rpod_quietly(&self, args: &[&str]) -> Option<Outcome> {
        let argv: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        match self.rpod(&argv) {
            Ok(o) if o.ok() => Some(o),
            Ok(o) => {
                eprintln!(
                    "xtask faults: warning: cleaning up {}: `{}`: {}: {}",
                    self.dir.display(),
                    o.line,
                    o.ending.short(),
                    o.first_err_line()
                );
                None
            }
            Err(e) => {
                eprintln!("xtask faults: warning: {e:#}");
                None
            }
        }
    }

    /// Removes every trace of the sandbox; problems are only warnings.
    fn clean_up(&self) {
        if self.net.is_some() {
            // rpod's own removal tears the containers' networks down.
            let pods = self.rpod_quietly(&["pod", "ps", "-q"]);
            for pod in pods.iter().flat_map(|o| o.stdout.split_whitespace()) {
                self.rpod_quietly(&["pod", "rm", "-f", pod]);
            }
            self.rpod_quietly(&["rm", "-af"]);
        }
        match self.rpod(&["system".into(), "reset".into(), "--force".into()]) {
            Ok(o) if o.ok() => {}
            Ok(o) => eprintln!(
                "xtask faults: warning: cleaning up {}: `rpod system reset --force`: {}: {}",
                self.dir.display(),
                o.ending.short(),
                o.first_err_line()
            ),
            Err(e) => eprintln!("xtask faults: warning: {e:#}"),
        }
        let needle = self.dir.display().to_string();
        for id in sweep::runc_containers(|_, state| state.contains(&needle)) {
            let status = Command::new(RUNC)
                .args(["delete", "--force", &id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("xtask faults: warning: `runc delete --force {id}` failed");
            }
        }
        // conmon and exit commands mention our directory; container
        // processes (and `runc init`) sit in our cgroups, thawed first (a
        // frozen process cannot die).
        for dir in self.cgroup_dirs() {
            thaw(&dir);
        }
        kill_until_gone(|| {
            let mut pids: Vec<u32> = sweep::processes_mentioning(&needle)
                .iter()
                .map(|p| p.pid)
                .collect();
            pids.extend(self.cgroup_pids());
            pids
        });
        for dir in self.cgroup_dirs() {
            if let Err(e) = sweep::remove_cgroup_tree(&dir) {
                eprintln!("xtask faults: warning: {e:#}");
            }
        }
        if let Some(net) = &self.net {
            net.clean_up(&self.netns_dir());
        }
        // Layers `system reset` could not unmount (or a mount rpod lost
        // count of): nothing under the directory may stay mounted.
        detach_mounts_under(&self.dir);
        for segment in [self.segment(), self.default_segment()] {
            match fs::remove_file(&segment) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("xtask faults: warning: removing {}: {e}", segment.display()),
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "xtask faults: warning: removing {}: {e}",
                self.dir.display()
            );
        }
    }

    /// PIDs of the processes in this sandbox's cgroups (any hierarchy).
    pub fn cgroup_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for dir in self.cgroup_dirs() {
            collect_pids(&dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// `rpod args...` for reports (without the isolation flags).
pub fn display(args: &[String]) -> String {
    format!("rpod {}", shell_join(args))
}

/// `/sys/fs/cgroup/<hierarchy>/<rel>` for every hierarchy where it exists.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let Ok(hierarchies) = fs::read_dir(CGROUP_FS) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = hierarchies
        .flatten()
        .map(|h| h.path().join(rel))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Adds the PIDs in `dir`'s `cgroup.procs` and its descendants' to `pids`.
fn collect_pids(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// Thaws every frozen cgroup at and under `dir` (freezer hierarchy only).
fn thaw(dir: &Path) {
    let state = dir.join("freezer.state");
    if state.exists() {
        let _ = fs::write(&state, "THAWED");
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                thaw(&entry.path());
            }
        }
    }
}

/// SIGKILLs, by PID, whatever `find` lists until it lists nothing (for at
/// most two seconds; frozen cgroups are thawed by `runc delete` later).
fn kill_until_gone(find: impl Fn() -> Vec<u32>) {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids: Vec<u32> = find().into_iter().filter(|p| *p != me).collect();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
