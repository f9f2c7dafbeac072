//! Taking a [`Snapshot`] of one sandbox: rpod's records (`ps -a`, `pod ps`,
//! `system locks`, all as JSON) and what is on the host (conmon and
//! `runc init` processes, runc state dirs, cgroups, exit files, lock
//! segments; with `--network`, what the network left, [`super::net`], and
//! each running container's address from `inspect`), and [`check`], which
//! waits for the sandbox to settle and evaluates the invariants on it.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use super::images;
use super::invariants::{self, cgroup_id, CtrRecord, Expect, PodRecord, Snapshot, Violation};
use super::killer::Outcome;
use super::net;
use super::sandbox::{Sandbox, DEV_SHM};
use crate::bench::sweep;

/// How long exit commands (`rpod container cleanup`) may still be running
/// when we look.
const QUIESCE: Duration = Duration::from_secs(5);
/// How long transient leftovers (an exiting conmon, ...) may take to go.
const SETTLE: Duration = Duration::from_secs(3);

/// `args` as owned strings.
pub fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_string()).collect()
}

/// The rpod queries run for one look at a sandbox: their outcomes, and
/// what went wrong with them.
#[derive(Default)]
struct Queries {
    outcomes: Vec<Outcome>,
    errors: Vec<String>,
}

impl Queries {
    /// Runs a JSON query; on failure records it in `errors`.
    fn run(&mut self, sb: &Sandbox, argv: &[&str]) -> Option<Value> {
        let outcome = match sb.rpod(&args(argv)) {
            Ok(o) => o,
            Err(e) => {
                self.errors.push(format!("{e:#}"));
                return None;
            }
        };
        let value = if outcome.ok() {
            match serde_json::from_str::<Value>(&outcome.stdout) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.errors
                        .push(format!("`{}`: bad JSON: {e}", outcome.line));
                    None
                }
            }
        } else {
            self.errors.push(format!(
                "`{}` ({}): {}",
                outcome.line,
                outcome.ending.short(),
                outcome.first_err_line()
            ));
            None
        };
        self.outcomes.push(outcome);
        value
    }

    /// `ps -a` and `pod ps`, as JSON.
    fn records(&mut self, sb: &Sandbox) -> (Option<Value>, Option<Value>) {
        let ctrs = self.run(sb, &["ps", "-a", "--format", "json"]);
        let pods = self.run(sb, &["pod", "ps", "--format", "json"]);
        (ctrs, pods)
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// The container records (infra included) of `ps -a --format json`.
pub fn parse_containers(v: &Value) -> Vec<CtrRecord> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| CtrRecord {
                    id: str_of(c, "Id"),
                    name: c["Names"][0].as_str().unwrap_or_default().to_string(),
                    state: str_of(c, "State"),
                    pod: str_of(c, "Pod"),
                    infra: c["IsInfra"].as_bool().unwrap_or(false),
                    image: str_of(c, "ImageID"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The pod records of `pod ps --format json`.
pub fn parse_pods(v: &Value) -> Vec<PodRecord> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| PodRecord {
                    id: str_of(p, "Id"),
                    name: str_of(p, "Name"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the images (for the retry's target-state checks).
pub fn image_names(sb: &Sandbox) -> Result<Vec<String>, String> {
    let mut q = Queries::default();
    match q.run(sb, &["images", "--format", "json"]) {
        Some(v) => Ok(v
            .as_array()
            .map(|a| {
                a.iter()
                    .flat_map(|i| i["Names"].as_array().cloned().unwrap_or_default())
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()),
        None => Err(q.errors.join("; ")),
    }
}

/// The records only (for the retry's target-state checks).
pub fn records(sb: &Sandbox) -> Result<(Vec<CtrRecord>, Vec<PodRecord>), String> {
    let mut q = Queries::default();
    match q.records(sb) {
        (Some(c), Some(p)) => Ok((parse_containers(&c), parse_pods(&p))),
        _ => Err(q.errors.join("; ")),
    }
}

/// A process: PID and arguments.
struct Proc {
    pid: u32,
    argv: Vec<String>,
}

fn processes() -> Vec<Proc> {
    sweep::processes()
        .into_iter()
        .map(|(pid, argv)| Proc { pid, argv })
        .collect()
}

fn basename(arg: &str) -> &str {
    arg.rsplit('/').next().unwrap_or(arg)
}

/// The container ID in the cgroup paths of `pid` under `rel`, if any:
/// `Some("")` when the process is under `rel` but no ID is found.
fn cgroup_container(pid: u32, rel: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let needle = format!("/{rel}/");
    let mut under = false;
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        if let Some(pos) = path.find(&needle) {
            under = true;
            let rest = &path[pos + needle.len()..];
            if let Some(id) = rest.rsplit('/').find_map(cgroup_id) {
                return Some(id.to_string());
            }
        }
    }
    under.then(String::new)
}

/// The processes (other than conmon) mentioning the sandbox's directory:
/// exit commands and stray `rpod` runs still at work.
fn busy(sb: &Sandbox) -> usize {
    let needle = sb.dir.display().to_string();
    processes()
        .iter()
        .filter(|p| basename(&p.argv[0]) != "conmon" && p.argv.iter().any(|a| a.contains(&needle)))
        .count()
}

/// Relative paths of every directory under `dir`.
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            walk(&entry.path(), &path, out);
            out.push(path);
        }
    }
}

/// A snapshot of `sb` and the outcomes of the rpod queries it ran.
pub fn snapshot(sb: &Sandbox, round_prefix: &str) -> (Snapshot, Vec<Outcome>) {
    let mut snap = Snapshot::default();
    let mut q = Queries::default();
    let (ctrs, pods) = q.records(sb);
    let locks = q.run(sb, &["system", "locks", "--format", "json"]);
    if let Some(v) = &ctrs {
        snap.containers = parse_containers(v);
    }
    if let Some(v) = &pods {
        snap.pods = parse_pods(v);
    }
    match locks.as_ref().map(|v| v["held"].as_u64()) {
        Some(Some(held)) => snap.locks_held = held,
        Some(None) => q
            .errors
            .push("`rpod system locks --format json` has no `held`".into()),
        None => {}
    }
    snap.query_errors = q.errors;

    let needle = sb.dir.display().to_string();
    for p in processes() {
        match basename(&p.argv[0]) {
            "conmon" if p.argv.iter().any(|a| a.contains(&needle)) => {
                let id = p
                    .argv
                    .iter()
                    .position(|a| a == "-c")
                    .and_then(|i| p.argv.get(i + 1))
                    .cloned()
                    .unwrap_or_default();
                snap.conmons.push((p.pid, id));
            }
            "runc" if p.argv.get(1).is_some_and(|a| a == "init") => {
                if let Some(id) = cgroup_container(p.pid, &sb.cgroup_rel) {
                    snap.runc_inits.push((p.pid, id));
                }
            }
            _ => {}
        }
    }
    snap.runc_states = sweep::runc_containers(|_, state| state.contains(&needle));
    for dir in sb.cgroup_dirs() {
        walk(&dir, "", &mut snap.cgroups);
    }
    snap.cgroups.sort();
    snap.cgroups.dedup();
    if let Ok(entries) = fs::read_dir(sb.tmp().join("exits")) {
        // Exit codes of removed containers wait in `exits/removed/` for late waiters and
        // are pruned there after a minute: only files directly in `exits/` need an owner.
        snap.exit_files = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        snap.exit_files.sort();
    }
    if let Ok(entries) = fs::read_dir(DEV_SHM) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_file()) && name.starts_with(round_prefix) {
                snap.segments.push(name);
            }
        }
    }
    if sb.default_segment().exists() {
        snap.segments.push(
            sb.default_segment()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    snap.segments.sort();
    if let Some(n) = &sb.net {
        let mut ns = net::observe(n, &sb.netns_dir(), &sb.results_dir());
        for c in snap.containers.iter().filter(|c| c.state == "running") {
            let mut look = Queries::default();
            if let Some(v) = look.run(sb, &["inspect", &c.id]) {
                ns.addresses.push((c.id.clone(), ip_address(&v)));
            }
            ns.errors.extend(look.errors);
            q.outcomes.extend(look.outcomes);
        }
        snap.net = Some(ns);
    }
    if sb.images.is_some() {
        snap.store = Some(images::observe(sb));
    }
    (snap, q.outcomes)
}

/// `NetworkSettings.IPAddress` of `inspect`'s JSON (an array of one, or
/// the object itself).
pub fn ip_address(v: &Value) -> String {
    let obj = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    obj["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits for the sandbox to settle (exit commands done, transient
/// leftovers gone, for a bounded time), then returns the violations of the
/// invariants (and of the queries' own endings), tagged with `phase`.
pub fn check(sb: &Sandbox, round_prefix: &str, phase: &'static str) -> Vec<Violation> {
    check_store(sb, round_prefix, phase, false)
}

/// [`check`]; `gc_clean`: the image store was just collected (see
/// [`Expect::gc_clean`]).
pub fn check_store(
    sb: &Sandbox,
    round_prefix: &str,
    phase: &'static str,
    gc_clean: bool,
) -> Vec<Violation> {
    let expect = Expect {
        own_segment: sb.lock_name.trim_start_matches('/').to_string(),
        gc_clean,
    };
    let start = Instant::now();
    while busy(sb) > 0 && start.elapsed() < QUIESCE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    loop {
        let (snap, outcomes) = snapshot(sb, round_prefix);
        let mut found: Vec<Violation> = outcomes
            .iter()
            .flat_map(|o| invariants::check_outcome(o, phase))
            .collect();
        found.extend(invariants::evaluate(&snap, &expect, phase));
        let transient = found.iter().any(|v| v.kind.settles());
        if !transient || start.elapsed() >= SETTLE {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_json() {
        let ps: Value = serde_json::json!([
            {"Id": "a1", "Names": ["t"], "State": "running", "Pod": "", "IsInfra": false},
            {"Id": "b2", "Names": ["p-infra"], "State": "exited", "Pod": "c3", "IsInfra": true}
        ]);
        let ctrs = parse_containers(&ps);
        assert_eq!(ctrs.len(), 2);
        assert_eq!(ctrs[1].name, "p-infra");
        assert_eq!(ctrs[1].pod, "c3");
        assert!(ctrs[1].infra && !ctrs[0].infra);
        let pods = parse_pods(&serde_json::json!([{"Id": "c3", "Name": "p"}]));
        assert_eq!(pods[0].name, "p");
        assert!(parse_pods(&serde_json::json!({})).is_empty());
        let inspect = serde_json::json!([{"NetworkSettings": {"IPAddress": "10.83.7.3"}}]);
        assert_eq!(ip_address(&inspect), "10.83.7.3");
        assert_eq!(ip_address(&inspect[0]), "10.83.7.3");
        assert_eq!(ip_address(&serde_json::json!([])), "");
    }
}
