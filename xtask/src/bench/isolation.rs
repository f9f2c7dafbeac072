//! Isolation of the benchmark from the host, and cleaning up after it: the
//! guards each case runs under, the removal of what killed earlier runs
//! left, and the final check that this run left nothing.
//!
//! Isolation rules:
//!
//! - every rpod case runs against its own fresh `--root/--runroot/--tmpdir`
//!   and its own SHM lock segment (`--lock-name /rpod_bench_<pid>_<n>`); an
//!   [`RpodRoot`] guard runs `rpod system reset --force`, removes whatever
//!   processes and runc containers still mention the case's directory,
//!   unlinks the segment and deletes the directories afterwards, also on
//!   failure;
//! - rpod cases that run containers also get `--cgroup-parent
//!   /rpod_bench_cg_<pid>`, removed bottom-up from every cgroup hierarchy
//!   by a [`CgroupParent`] guard;
//! - podman always runs as `podman --runtime runc ...` against the host's
//!   storage, so a podman case only ever creates objects named
//!   `rpod-bench-*`, and a [`PodmanObjects`] guard removes exactly those, by
//!   name, afterwards (and before, in case an earlier run was killed);
//! - the conmon+runc floor of `run` ([`floor`]) uses container IDs
//!   `rpod-bench-floor-<pid>-*` and its own directory, removed with their
//!   processes, runc state and cgroups by a [`floor::Floor`] guard; its CNI
//!   variant ([`cni_floor`]) also uses the netns `rpod-bench-floor-<pid>-net`
//!   and its own bridge `rpodbenchf0` (10.82.2.0/24), removed with the
//!   network's per-container iptables rules by the same guard;
//! - the network cases' engines use networks of the bench's own ([`network`]: bridges
//!   `rpodbench0`, `rpodbenchp0`, `rpodbenchn0`, 10.82.{0,1,3}.0/24), whose bridges and
//!   left-over rules a [`network::BenchNetworks`] guard removes; the podman cases pass
//!   `--network-backend` and never change the host's default backend.
//!
//! At the end the run fails if any SHM segment, cgroup, runc container,
//! process or podman object of its own is left ([`check_nothing_left`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use super::process::{run_quiet, run_quiet_cmd};
use super::runner::{with_prefix, Env};
use super::{cni_floor, floor, network, sweep};
use crate::util;

/// Every podman object the benchmark creates has a name with this prefix.
pub(super) const PODMAN_PREFIX: &str = "rpod-bench-";
/// Prefix (after `/`) of the SHM lock segments of the rpod cases; the full
/// name is `/rpod_bench_<pid>_<n>`.
const SHM_PREFIX: &str = "rpod_bench_";
/// Where `shm_open(3)` names live.
const DEV_SHM: &str = "/dev/shm";

/// Prefix of the cgroup parent of the rpod cases that run containers; the
/// full name is `rpod_bench_cg_<pid>`, a top-level cgroup in every hierarchy
/// removed after each case.
pub(super) const CGROUP_PREFIX: &str = "rpod_bench_cg_";

/// Name of the `i`-th (1-based) container a podman `ps -a` case creates.
pub(super) fn podman_ctr_name(i: u32) -> String {
    format!("{PODMAN_PREFIX}ctr-{i}")
}

/// A fresh rpod root for one case: its own `--root/--runroot/--tmpdir`
/// under the bench directory and its own SHM lock segment. Dropping it runs
/// `rpod system reset --force`, unlinks the segment (should reset not have)
/// and deletes the directories.
pub(super) struct RpodRoot {
    /// `rpod --root ... --runroot ... --tmpdir ... --lock-name ...` (`$RPOD`
    /// in the report).
    pub(super) base: Vec<String>,
    /// `base` plus the case's extra global flags (`--num-locks N`,
    /// `--runtime runc --cgroup-manager cgroupfs --cgroup-parent ...`).
    pub(super) prefix: Vec<String>,
    /// `/dev/shm/rpod_bench_<pid>_<n>`.
    segment: PathBuf,
    /// `$BENCH_DIR/case-<n>`.
    dir: PathBuf,
}

impl RpodRoot {
    /// Makes the fresh root of case number `seq`, with `extra` global flags.
    pub(super) fn new(env: &Env, seq: usize, extra: &[String]) -> Result<RpodRoot> {
        let rpod = env
            .rpod
            .as_ref()
            .context("internal error: rpod binary not built")?;
        let dir = env.dir.path().join(format!("case-{seq}"));
        for sub in ["root", "runroot", "tmpdir"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let lock_name = format!("/{SHM_PREFIX}{}_{seq}", std::process::id());
        let segment = Path::new(DEV_SHM).join(&lock_name[1..]);
        // A segment of this name can only be left over by a killed earlier
        // run whose PID we reuse: it must not leak its allocations into ours.
        remove_if_exists(&segment)?;
        let mut base = vec![rpod.display().to_string()];
        for (flag, sub) in [
            ("--root", "root"),
            ("--runroot", "runroot"),
            ("--tmpdir", "tmpdir"),
        ] {
            base.push(flag.into());
            base.push(dir.join(sub).display().to_string());
        }
        base.extend(["--lock-name".to_string(), lock_name]);
        // The cases without a network measure what they did before networking existed; the
        // network cases pass `--network` themselves.
        base.extend(["--netns", "none", "--cni-config-dir"].map(String::from));
        base.push(dir.join("cni").display().to_string());
        let mut prefix = base.clone();
        prefix.extend(extra.iter().cloned());
        Ok(RpodRoot {
            base,
            prefix,
            segment,
            dir,
        })
    }

    /// The argv of `rpod <isolation flags> args...`.
    fn argv(&self, args: &[&str], rootfs: &Path) -> Vec<String> {
        with_prefix(&self.prefix, args, rootfs)
    }

    /// Removes every trace of this root; errors are only reported.
    fn clean_up(&self) {
        let reset = self.argv(&["system", "reset", "--force"], Path::new(""));
        if let Err(e) = run_quiet(&reset) {
            eprintln!("xtask bench: warning: {e:#}");
        }
        // Whatever the reset did not stop (conmon, an exit command still
        // running, a runc container) mentions the case's directory.
        sweep::sweep_dir(&self.dir);
        if let Err(e) = remove_if_exists(&self.segment) {
            eprintln!("xtask bench: warning: {e:#}");
        }
        sweep::remove_dir(&self.dir);
    }
}

impl Drop for RpodRoot {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// The cgroup parent `/rpod_bench_cg_<pid>` of the rpod cases that run
/// containers. Dropping it removes `/sys/fs/cgroup/*/rpod_bench_cg_<pid>`,
/// bottom-up (declare it before the [`RpodRoot`], whose reset empties it).
pub(super) struct CgroupParent {
    /// `rpod_bench_cg_<pid>`.
    pub(super) name: String,
}

impl CgroupParent {
    /// The parent of this run (removed first, should a killed run with our
    /// PID have left it).
    pub(super) fn new() -> CgroupParent {
        let parent = CgroupParent {
            name: format!("{CGROUP_PREFIX}{}", std::process::id()),
        };
        parent.remove();
        parent
    }

    /// `--cgroup-parent` value.
    pub(super) fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// Removes the cgroup parent from every hierarchy.
    fn remove(&self) {
        sweep::remove_cgroups(|name| name == self.name);
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Podman containers and pods created by one case, all named `rpod-bench-*`:
/// removed by name when the guard is created (leftovers of a killed earlier
/// run) and when it is dropped. Nothing else is ever removed.
pub(super) struct PodmanObjects {
    /// The containers' names.
    containers: Vec<String>,
    /// The pods' names.
    pods: Vec<String>,
    /// The case's global podman flags (`--network-backend …`), so that a container is
    /// removed by the backend that set up its network.
    global: Vec<String>,
}

impl PodmanObjects {
    /// The guard of these podman objects, removed right away (leftovers of a
    /// killed earlier run); fails unless every name is `rpod-bench-*`. `global`: the case's
    /// global podman flags.
    pub(super) fn new(
        containers: Vec<String>,
        pods: Vec<String>,
        global: Vec<String>,
    ) -> Result<PodmanObjects> {
        for name in containers.iter().chain(&pods) {
            ensure!(
                name.starts_with(PODMAN_PREFIX),
                "internal error: podman object {name:?} is not named {PODMAN_PREFIX}*"
            );
        }
        let guard = PodmanObjects {
            containers,
            pods,
            global,
        };
        guard.remove()?;
        Ok(guard)
    }

    /// `podman pod rm -f --ignore <pods>`, then `podman rm -f --ignore
    /// <containers>` (both by name; missing ones are fine).
    fn remove(&self) -> Result<()> {
        if !self.pods.is_empty() {
            let mut cmd = podman();
            cmd.args(&self.global)
                .args(["pod", "rm", "--force", "--ignore"])
                .args(&self.pods);
            run_quiet_cmd(&mut cmd)?;
        }
        for chunk in self.containers.chunks(500) {
            let mut cmd = podman();
            cmd.args(&self.global)
                .args(["rm", "--force", "--ignore"])
                .args(chunk);
            run_quiet_cmd(&mut cmd)?;
        }
        Ok(())
    }
}

impl Drop for PodmanObjects {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("xtask bench: warning: removing podman's rpod-bench-* objects: {e:#}");
        }
    }
}

/// `podman --runtime runc` (podman never runs without it here).
pub(super) fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// Removes the file at `path`; a missing file is fine.
fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The PID in a segment name `rpod_bench_<pid>_<n>` of ours.
fn segment_pid(file_name: &str) -> Option<u32> {
    let (pid, seq) = file_name.strip_prefix(SHM_PREFIX)?.split_once('_')?;
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_num(seq) {
        return None;
    }
    is_num(pid).then(|| pid.parse().ok()).flatten()
}

/// Our segments in /dev/shm whose PID `keep` rejects.
fn our_segments(keep: impl Fn(u32) -> bool) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(DEV_SHM).with_context(|| format!("listing {DEV_SHM}"))? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(pid) = segment_pid(&name.to_string_lossy()) {
            if !keep(pid) {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// Unlinks the segments left behind by benchmark runs that were killed
/// (their PID is gone, or is ours: we have not created any yet).
pub(super) fn remove_stale_segments() -> Result<()> {
    let me = std::process::id();
    let stale = our_segments(|pid| pid != me && Path::new(&format!("/proc/{pid}")).exists())?;
    for path in stale {
        eprintln!(
            "xtask bench: removing {} (left by a killed run)",
            path.display()
        );
        remove_if_exists(&path)?;
    }
    Ok(())
}

/// Removes what benchmark runs that were killed left on the host (their
/// PID is gone): the cgroup parents `rpod_bench_cg_<pid>`, and the floor's
/// runc containers and cgroups `rpod-bench-floor-<pid>-*`. Failures are
/// warnings.
pub(super) fn remove_stale_containers() {
    let stale_floor = |name: &str| sweep::is_stale(name, floor::ID_PREFIX);
    sweep::delete_runc_containers(|id, _| stale_floor(id));
    sweep::remove_cgroups(|name| sweep::is_stale(name, CGROUP_PREFIX) || stale_floor(name));
    cni_floor::remove_stale_netns(floor::ID_PREFIX);
}

/// Fails if this run left an SHM segment, a process, runc state or a cgroup
/// of its containers, the CNI floor's netns, bridge or iptables rules, a bridge or iptables
/// rule of the engines' bench networks, or a
/// podman `rpod-bench-*` container or pod behind
/// (the guards should have removed them all).
pub(super) fn check_nothing_left(env: &Env, check_podman: bool) -> Result<()> {
    let me = std::process::id();
    let segments = our_segments(|pid| pid != me)?;
    ensure!(
        segments.is_empty(),
        "SHM segments left behind: {segments:?}"
    );
    let ours = |name: &str| {
        sweep::name_pid(name, CGROUP_PREFIX) == Some(me)
            || sweep::name_pid(name, floor::ID_PREFIX) == Some(me)
    };
    let cgroups = sweep::cgroups(ours);
    ensure!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let dir = env.dir.path().display().to_string();
    let containers = sweep::runc_containers(|id, state| ours(id) || state.contains(&dir));
    ensure!(
        containers.is_empty(),
        "runc containers left behind: {containers:?}"
    );
    let processes = sweep::processes_mentioning(&dir);
    ensure!(processes.is_empty(), "processes left behind: {processes:?}");
    let mut network = cni_floor::leftovers(&format!("{}{me}-", floor::ID_PREFIX));
    network.extend(network::leftovers());
    ensure!(network.is_empty(), "left behind: {network:?}");
    if check_podman {
        let filter = format!("name=^{PODMAN_PREFIX}");
        let ctrs = util::output(podman().args([
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}}",
        ]))?;
        let pods = util::output(podman().args([
            "pod",
            "ps",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ]))?;
        ensure!(
            ctrs.is_empty() && pods.is_empty(),
            "podman objects left behind: containers {ctrs:?}, pods {pods:?}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_pid("rpod_bench_123_4"), Some(123));
        assert_eq!(segment_pid("rpod_bench_123_"), None);
        assert_eq!(segment_pid("rpod_bench_x_4"), None);
        assert_eq!(segment_pid("rpod_bench_try1"), None);
        assert_eq!(segment_pid("libpod_lock"), None);
    }
}
