//! Finding and removing what containers leave on the host: processes
//! (conmon, rpod's exit command, ...), runc state under `/run/runc` and
//! cgroups under `/sys/fs/cgroup/<hierarchy>/`.
//!
//! Everything here is selected by a name or a path that only the benchmark
//! uses (`rpod_bench_cg_<pid>`, `rpod-bench-floor-<pid>-*`, its private
//! temporary directory), so nothing else on the host is ever touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::process::silenced;

/// Where the cgroup hierarchies are mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";
/// runc's state directory (root's default `--root`).
const RUNC_STATE: &str = "/run/runc";
/// The runc binary (Debian's `runc` package).
pub const RUNC: &str = "/usr/sbin/runc";

/// The top-level cgroups, in every hierarchy, whose name `select` accepts
/// (`/sys/fs/cgroup/*/<name>`).
pub fn cgroups(select: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = fs::read_dir(CGROUP_FS) else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let Ok(entries) = fs::read_dir(hierarchy.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && select(&entry.file_name().to_string_lossy()) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Removes the cgroup `dir` bottom-up (children first: a cgroup directory
/// can only be `rmdir`ed, and only once it has no children and no tasks).
/// Retries for a moment, as exiting processes leave their cgroup late.
pub fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match try_remove_cgroup_tree(dir) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
        }
    }
}

fn try_remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            try_remove_cgroup_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes every cgroup of [`cgroups`]`(select)`; failures are warnings.
pub fn remove_cgroups(select: impl Fn(&str) -> bool) {
    for dir in cgroups(select) {
        if let Err(e) = remove_cgroup_tree(&dir) {
            eprintln!("xtask bench: warning: {e:#}");
        }
    }
}

/// A live process: PID and command line (arguments joined by spaces).
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    pub cmdline: String,
}

/// Every process other than this one, as its PID and arguments. Zombies
/// have an empty command line and are not listed.
pub fn processes() -> Vec<(u32, Vec<String>)> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if !argv.is_empty() {
            found.push((pid, argv));
        }
    }
    found
}

/// The processes (other than this one) with `needle` in their command line.
/// Zombies have an empty command line and are not listed.
pub fn processes_mentioning(needle: &str) -> Vec<Process> {
    processes()
        .into_iter()
        .map(|(pid, argv)| Process {
            pid,
            cmdline: argv.join(" "),
        })
        .filter(|p| p.cmdline.contains(needle))
        .collect()
}

/// Waits up to `grace` for the processes mentioning `needle` (conmon, an
/// exit command, ...) to exit by themselves, then SIGKILLs the rest, by PID.
pub fn kill_processes_mentioning(needle: &str, grace: Duration) {
    let deadline = Instant::now() + grace;
    while !processes_mentioning(needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = processes_mentioning(needle);
    for p in &left {
        eprintln!(
            "xtask bench: warning: killing left-over process {} ({})",
            p.pid, p.cmdline
        );
        let _ = silenced(Command::new("kill").args(["-KILL", &p.pid.to_string()])).status();
    }
    if !left.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !processes_mentioning(needle).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The runc containers (IDs under `/run/runc`) that `select` accepts, given
/// the ID and the text of the container's `state.json` (which holds its
/// bundle and rootfs paths).
pub fn runc_containers(select: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(RUNC_STATE) else {
        return found;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let state = fs::read_to_string(entry.path().join("state.json")).unwrap_or_default();
        if select(&id, &state) {
            found.push(id);
        }
    }
    found.sort();
    found
}

/// `runc delete --force` of every container [`runc_containers`]`(select)`
/// lists (it kills the container's processes and removes its state and
/// cgroups); failures are warnings.
pub fn delete_runc_containers(select: impl Fn(&str, &str) -> bool) {
    for id in runc_containers(select) {
        eprintln!("xtask bench: warning: deleting left-over runc container {id}");
        let status = silenced(Command::new(RUNC).args(["delete", "--force", &id])).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("xtask bench: warning: `runc delete --force {id}` failed");
        }
    }
}

/// Removes what containers started under `dir` left behind: processes
/// mentioning it (after a grace period) and runc containers whose state
/// mentions it.
pub fn sweep_dir(dir: &Path) {
    let needle = dir.display().to_string();
    kill_processes_mentioning(&needle, Duration::from_secs(5));
    delete_runc_containers(|_, state| state.contains(&needle));
}

/// Removes the directory `dir` and everything in it; failures are warnings.
pub fn remove_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        eprintln!("xtask bench: warning: removing {}: {e}", dir.display());
    }
}

/// The PID in `name` = `prefix` + digits (+ optionally a `-`/`_` suffix).
pub fn name_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits: &str = rest.split(['-', '_']).next().unwrap_or_default();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tail = &rest[digits.len()..];
    if !(tail.is_empty() || tail.starts_with('-') || tail.starts_with('_')) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` (= `prefix` + PID ...) was made by a benchmark run that is
/// gone (its PID is not alive, or is ours: we have made nothing yet).
pub fn is_stale(name: &str, prefix: &str) -> bool {
    name_pid(name, prefix).is_some_and(|pid| {
        pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_in_names() {
        assert_eq!(name_pid("rpod_bench_cg_123", "rpod_bench_cg_"), Some(123));
        assert_eq!(
            name_pid(
                "rpod-bench-floor-42-77-1700000000123456",
                "rpod-bench-floor-"
            ),
            Some(42)
        );
        assert_eq!(name_pid("rpod_bench_cg_", "rpod_bench_cg_"), None);
        assert_eq!(name_pid("rpod_bench_cg_12x", "rpod_bench_cg_"), None);
        assert_eq!(name_pid("libpod_parent", "rpod_bench_cg_"), None);
    }

    #[test]
    fn missing_cgroup_is_removed() -> Result<()> {
        remove_cgroup_tree(Path::new("/nonexistent/rpod_bench_cg_0"))
    }
}
