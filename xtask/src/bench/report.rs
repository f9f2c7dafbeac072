//! The report: the results table in markdown, with each case's goals
//! checked (✓/✗), the ratios of the relative goals, the environment stamp
//! (date, kernel, versions) and the exact commands that were measured.

use std::fs;
use std::process::{Command, Stdio};

use super::cases::{FloorNet, Target};
use super::floor;
use super::measure::Measurement;
use super::runner::Env;
use super::table::{CASES, FLOOR_CNI_PUBLISH_RUN, FLOOR_CNI_RUN, FLOOR_RUN};
use super::BenchArgs;
use crate::util::{self, shell_join};

/// One line of the report.
pub(super) struct Row {
    /// The case name (what [`Relative::case`](super::cases::Relative::case)
    /// refers to).
    pub(super) name: &'static str,
    /// The case name, with the counted N for `ps -a` cases.
    pub(super) label: String,
    /// The case's goal.
    pub(super) target: Target,
    /// The case's peak RSS goal in MiB.
    pub(super) rss_target_mib: Option<f64>,
    /// `Err(reason)` when the case was not measured.
    pub(super) outcome: std::result::Result<Measurement, String>,
}

/// The median of the row named `name`, if it was measured.
fn median_ms(rows: &[Row], name: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.name == name)
        .and_then(|r| r.outcome.as_ref().ok())
        .map(|m| m.median_ms)
}

/// Formats a goal: `5` → `5`, `2.5` → `2.5`.
pub(super) fn fmt_goal(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The mark after a goal: ` ✓` when `value` is at most `goal`, ` ✗` when it
/// is over, nothing when either is unknown.
pub(super) fn mark(value: Option<f64>, goal: Option<f64>) -> &'static str {
    match (value, goal) {
        (Some(v), Some(goal)) if v <= goal => " ✓",
        (Some(_), Some(_)) => " ✗",
        _ => "",
    }
}

/// The target cell: `≤ 5 ms ✓` (met) / `≤ 5 ms ✗`, `ref. 39 ms`, or `–`.
///
/// A relative goal reads `≤ 0.33× podman ✓, ≤ 1.2× floor ✗`, with `median_of`
/// giving the other cases' medians (no mark when one was not measured).
fn target_cell(
    target: Target,
    median_ms: Option<f64>,
    median_of: &dyn Fn(&str) -> Option<f64>,
) -> String {
    let mark = |goal: Option<f64>| mark(median_ms, goal);
    match target {
        Target::None => "–".to_string(),
        Target::AtMost(goal) => format!("≤ {} ms{}", fmt_goal(goal), mark(Some(goal))),
        Target::Reference(ms) => format!("ref. {} ms", fmt_goal(ms)),
        Target::Relative(goals) => goals
            .iter()
            .map(|r| {
                let goal = median_of(r.case).map(|other| r.factor * other);
                format!("≤ {}× {}{}", fmt_goal(r.factor), r.short, mark(goal))
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The "Ratios" lines of the relative goals: `rpod run --rm true / podman
/// run --rm true = 0.31 (goal ≤ 0.33 ✓)`, one per goal.
fn ratio_lines(rows: &[Row], median_of: &dyn Fn(&str) -> Option<f64>) -> Vec<String> {
    let mut lines = Vec::new();
    for row in rows {
        let goals = match row.target {
            Target::Relative(goals) => goals,
            _ => &[],
        };
        for r in goals {
            let ratio = match (median_of(row.name), median_of(r.case)) {
                (Some(m), Some(other)) if other > 0.0 => Some(m / other),
                _ => None,
            };
            let goal = fmt_goal(r.factor);
            let shown = match ratio {
                Some(x) => format!("{x:.2} (goal ≤ {goal}{})", mark(Some(x), Some(r.factor))),
                None => format!("n/a (goal ≤ {goal})"),
            };
            lines.push(format!("`{}` / `{}` = {shown}", row.name, r.case));
        }
        // The comparisons with no goal (rpod's network cases vs both podman backends).
        let compare = CASES
            .iter()
            .find(|c| c.name == row.name)
            .map_or(&[][..], |c| c.compare);
        for other in compare {
            let shown = match (median_of(row.name), median_of(other)) {
                (Some(m), Some(o)) if o > 0.0 => format!("{:.2}", m / o),
                _ => "n/a".to_string(),
            };
            lines.push(format!("`{}` / `{other}` = {shown}", row.name));
        }
    }
    lines
}

/// The RSS target cell: `≤ 12 MiB ✓` / `≤ 12 MiB ✗`, or `–`.
fn rss_target_cell(target_mib: Option<f64>, rss_mib: Option<f64>) -> String {
    match target_mib {
        None => "–".to_string(),
        Some(goal) => format!("≤ {} MiB{}", fmt_goal(goal), mark(rss_mib, Some(goal))),
    }
}

/// The markdown report: environment stamp, results table, exact commands.
pub(super) fn report(env: &Env, args: &BenchArgs, rows: &[Row], shell_ms: Option<f64>) -> String {
    let rev = git_rev();
    let podman = util::first_line_or_unknown("podman", &["--version"]);
    let runc = util::first_line_or_unknown("runc", &["--version"]);
    let hyperfine = util::first_line_or_unknown("hyperfine", &["--version"]);

    let mut out = String::new();
    out.push_str(&format!("Command: `{}`\n\n", invocation()));
    out.push_str(&format!("{}\n\n", host_stamp()));
    out.push_str(&format!(
        "Versions: rpod `{rev}` · {podman} · {runc} · {hyperfine}\n\n"
    ));
    let median_of = |name: &str| median_ms(rows, name);
    out.push_str("| case | median (ms) | mean ± σ (ms) | target | peak RSS (MiB) | RSS target |\n");
    out.push_str("|---|---:|---:|---|---:|---|\n");
    for row in rows {
        match &row.outcome {
            Ok(m) => {
                let sd = m
                    .stddev_ms
                    .map_or_else(|| "?".to_string(), |s| format!("{s:.2}"));
                let rss_mib = m.rss_kib / 1024.0;
                out.push_str(&format!(
                    "| {} | {:.2} | {:.2} ± {sd} | {} | {rss_mib:.1} | {} |\n",
                    row.label,
                    m.median_ms,
                    m.mean_ms,
                    target_cell(row.target, Some(m.median_ms), &median_of),
                    rss_target_cell(row.rss_target_mib, Some(rss_mib)),
                ));
            }
            Err(_) => out.push_str(&format!(
                "| {} | n/a | n/a | {} | n/a | {} |\n",
                row.label,
                target_cell(row.target, None, &median_of),
                rss_target_cell(row.rss_target_mib, None),
            )),
        }
    }
    let ratios = ratio_lines(rows, &median_of);
    if !ratios.is_empty() {
        out.push_str(&format!("\nRatios (medians): {}.\n", ratios.join(" · ")));
    }
    out.push_str(&format!(
        "\nWall time: `hyperfine -N --warmup {} --runs {}` (at least 1 warm-up run for the \
         cases that run containers). Peak RSS: median of {} runs of `/usr/bin/time -f %M`, \
         the largest of the command and the children it waited for. `$BENCH_DIR` is a fresh \
         temporary directory. Targets: rpod's goals (✓ met / ✗ missed by the median); \
         `ref.` is podman's median in the reference measurement; `≤ 0.33× podman` compares \
         with another case's median in this run.\n\n",
        args.warmup, args.runs, args.rss_runs
    ));
    out.push_str(
        "- Each rpod case runs on its own fresh root (`$BENCH_DIR/case-<n>`) with its own SHM \
         lock segment (`--lock-name`), removed afterwards with `rpod system reset --force`. \
         Podman uses the host's storage; every podman object the benchmark creates is named \
         `rpod-bench-*` and removed by name after its case.\n",
    );
    let has = |what: &str| rows.iter().any(|r| r.label.contains(what));
    if has("ps -a") {
        out.push_str(
            "- `ps -a` cases: N is the number of containers `ps -a -q` listed before the \
         measurement. rpod's containers are made by `rpod create --rootfs $BENCH_DIR/rootfs \
         true` (busybox rootfs; `--num-locks 12288` for N=10000, as the default 2048 locks \
         cannot hold them), podman's by `podman --runtime runc create --name \
         rpod-bench-ctr-<i> rpod-bench-busybox true`; both outside the measurement, 2 at a \
         time. podman's N=0 case lists whatever containers the host has (\"pre-existing\").\n",
        );
    }
    if let Some(ms) = shell_ms {
        out.push_str(&format!(
            "- `create+rm`, `pod create+rm` and `pod create+start+rm -f`: one run is all the \
             commands, as `sh -c '… && …'`; the shell's own start-up (`sh -c true`: {ms:.2} ms \
             in this run) is included, for both tools.\n",
        ));
    }
    if has("pod create") {
        out.push_str(
            "- `pod create…`: both create the pod's infra container: rpod from the host's \
             static `catatonit`, podman with `--infra-image rpod-bench-pause --infra-name \
             rpod-bench-pod-infra`, a local image holding the host's static `catatonit` with \
             `ENTRYPOINT [\"/catatonit\", \"-P\"]`: what podman 4.3 would otherwise build \
             itself as `localhost/podman-pause:<version>-<stamp>` (no network needed either \
             way), imported under our own name so that only `rpod-bench-*` objects are \
             created. `pod create+start+rm -f` also starts the infra container (rpod builds \
             its infra rootfs on the first start, in the warm-up) and force-removes the \
             running pod.\n",
        );
    }
    if has("run --rm") || has("floor") {
        out.push_str(
            "- `run --rm true`: busybox `true` in a new, empty network namespace \
             (`--network none`), waited for and removed, all in one command. rpod runs it on \
             runc (`--runtime runc --cgroup-manager cgroupfs`, as podman here) under the \
             cgroup parent `/rpod_bench_cg_<pid>`, removed (bottom-up, in every hierarchy) \
             after the case; podman on its overlay storage, named `rpod-bench-run`. The \
             floor is conmon + runc with no engine: `$BENCH_DIR/floor/run.sh` (below) does \
             podman 4.3's exact conmon handshake (protocols.md §2.1–2.4, \"floor B\" of \
             §2.7) on a bundle made once outside the measurement (busybox rootfs, `runc \
             spec` with `terminal=false`, `args=[\"true\"]`), with a fresh container ID per \
             run: queue the start byte, start conmon, read the SYNC line, `runc start`, spin \
             until conmon's exit file appears, `runc delete --force`. Its container IDs are \
             `rpod-bench-floor-<pid>-*`; their runc state, cgroups (runc's default \
             `/<ID>`) and conmon processes are checked and removed after the case.\n",
        );
    }
    if has("netns+CNI") {
        out.push_str(
            "- `floor netns+CNI+conmon+runc [-p] true`: the floor of `run --rm` on a CNI \
             bridge network, by hand with no engine logic (`$BENCH_DIR/floor-cni[-p]/run.sh`, \
             below): `ip netns add rpod-bench-floor-<pid>-net`; CNI ADD (protocols.md §3.1: \
             each plugin a fresh exec with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, \
             `CNI_IFNAME`, `CNI_PATH=/usr/lib/cni`, `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<id>`, \
             `PATH`) of loopback on `lo`, then bridge + host-local, portmap, firewall, tuning \
             on `eth0`, each result the next one's `prevResult`; the conmon+runc floor with \
             the spec joining that netns; CNI DEL last to first with the final ADD result; \
             `ip netns del`. The network is the floor's own (`rpod-bench-floor-net`, bridge \
             `rpodbenchf0`, 10.82.2.0/24, leases under its directory; the chain of podman's \
             bench network); the bridge is made by the first ADD, in the warm-up. With `-p`, \
             portmap (the one plugin declaring `portMappings`) also gets `runtimeConfig` \
             `{hostPort: 28482, containerPort: 80, protocol: tcp, hostIP: 127.0.0.1}`. The \
             netns, the bridge and any per-container iptables rule of the network are \
             checked and removed after the case (the shared CNI chains stay, as with \
             podman).\n",
        );
    }
    if has("--network") {
        out.push_str(
            "- `… run --rm --network [-p] true`: busybox `true` on a bridge network of the \
             bench's own, each engine its own network with the same plugin chain: rpod's \
             default network from `--config $BENCH_DIR/net/libpod.conf` (`rpodbench0`, bridge \
             `rpodbench0`, 10.82.0.0/24, CNI bridge + host-local, portmap, firewall, tuning; \
             rpod writes its conflist in the warm-up); podman's CNI backend on \
             `rpod-bench-net` (bridge `rpodbenchp0`, 10.82.1.0/24, the same chain, written \
             by the bench into `$BENCH_DIR/net/podman`); podman's netavark backend (1.4) on \
             `rpod-bench-netavark` (bridge `rpodbenchn0`, 10.82.3.0/24, no DNS, written by the \
             bench into `$BENCH_DIR/net/netavark`). podman gets `--network-backend` \
             explicitly (the host's default backend is neither used nor changed) and runs in \
             the host's store with the `rpod-bench-busybox` image, container \
             `rpod-bench-netrun`. `-p` publishes one loopback port (`127.0.0.1:2848x:80`; \
             nothing listens or connects). The bridges and any iptables rule of these \
             networks are removed after each case (the shared `CNI-*`/`NETAVARK*` chains \
             stay, as with podman).\n",
        );
    }
    let skipped: Vec<_> = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|why| (&r.label, why)))
        .collect();
    if !skipped.is_empty() {
        out.push_str("\nNot measured:\n\n");
        for (label, why) in skipped {
            out.push_str(&format!("- {label}: {why}\n"));
        }
    }
    out.push_str("\nCommands");
    if let Some(rpod) = &env.rpod {
        out.push_str(&format!(
            " (`$RPOD` is `{} --root $BENCH_DIR/case-<n>/root --runroot \
             $BENCH_DIR/case-<n>/runroot --tmpdir $BENCH_DIR/case-<n>/tmpdir --lock-name \
             /rpod_bench_<pid>_<n>`: the case's own root and lock segment)",
            env.display(&[rpod.display().to_string()])
        ));
    }
    out.push_str(":\n\n");
    for row in rows {
        if let Ok(m) = &row.outcome {
            out.push_str(&format!("- {}: `{}`\n", row.label, m.command));
        }
    }
    if rows
        .iter()
        .any(|r| r.name == FLOOR_RUN && r.outcome.is_ok())
    {
        let script = floor::display_script(env.dir.path(), FloorNet::None);
        out.push_str(&format!(
            "\nThe floor script, `$BENCH_DIR/floor/run.sh` (`$XTASK_PID` is the \
             benchmark's PID):\n\n```bash\n{}```\n",
            env.hide_dir(&script)
        ));
    }
    let cni = [
        (FLOOR_CNI_PUBLISH_RUN, true, "floor-cni-p"),
        (FLOOR_CNI_RUN, false, "floor-cni"),
    ]
    .into_iter()
    .find(|(name, ..)| rows.iter().any(|r| r.name == *name && r.outcome.is_ok()));
    if let Some((_, publish, dir)) = cni {
        let script = floor::display_script(env.dir.path(), FloorNet::Cni { publish });
        out.push_str(&format!(
            "\nThe CNI floor script, `$BENCH_DIR/{dir}/run.sh` (the other variant differs only \
             in its directory and portmap's `runtimeConfig`):\n\n```bash\n{}```\n",
            env.hide_dir(&script)
        ));
    }
    out
}

/// `cargo xtask <this process's arguments>`.
pub(super) fn invocation() -> String {
    let args = std::env::args().skip(1).collect::<Vec<_>>();
    format!("cargo xtask {}", shell_join(&args))
}

/// The host line of both reports: date, kernel release, number of cores and
/// the load averages.
pub(super) fn host_stamp() -> String {
    let date = util::first_line_or_unknown("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = util::first_line_or_unknown("uname", &["-r"]);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "Date: {date} · kernel `{kernel}` · {cores} cores · load average at the end \
         (1/5/15 min): {}",
        load_average()
    )
}

/// The 1/5/15-minute load averages, e.g. `1.02 0.87 0.80`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_string(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// `git rev-parse --short HEAD`, with `-dirty` for uncommitted changes.
pub(super) fn git_rev() -> String {
    let root = util::repo_root();
    let rev = util::first_line_or_unknown(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty && rev != "unknown" {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cases::Target;
    use crate::bench::table::{PODMAN_RUN, RPOD_RUN, RUN_TARGETS};

    #[test]
    fn ratio_line() {
        let row = |name: &'static str, target, ms: f64| Row {
            name,
            label: name.to_string(),
            target,
            rss_target_mib: None,
            outcome: Ok(Measurement {
                command: String::new(),
                median_ms: ms,
                mean_ms: ms,
                stddev_ms: None,
                rss_kib: 0.0,
            }),
        };
        let rows = [
            row(RPOD_RUN, Target::Relative(RUN_TARGETS), 66.0),
            row(PODMAN_RUN, Target::None, 220.0),
            row(FLOOR_RUN, Target::None, 50.0),
        ];
        let median_of = |name: &str| median_ms(&rows, name);
        assert_eq!(
            ratio_lines(&rows, &median_of),
            [
                "`rpod run --rm true` / `podman run --rm true` = 0.30 (goal ≤ 0.33 ✓)",
                "`rpod run --rm true` / `floor conmon+runc true` = 1.32 (goal ≤ 1.2 ✗)",
            ]
        );
        // A compared case that was not measured.
        let only_rpod = |name: &str| (name == RPOD_RUN).then_some(66.0);
        assert_eq!(
            ratio_lines(&rows, &only_rpod),
            [
                "`rpod run --rm true` / `podman run --rm true` = n/a (goal ≤ 0.33)",
                "`rpod run --rm true` / `floor conmon+runc true` = n/a (goal ≤ 1.2)",
            ]
        );
    }

    #[test]
    fn target_cells() {
        let none = |_: &str| None;
        assert_eq!(
            target_cell(Target::AtMost(5.0), Some(4.2), &none),
            "≤ 5 ms ✓"
        );
        assert_eq!(
            target_cell(Target::AtMost(5.0), Some(5.1), &none),
            "≤ 5 ms ✗"
        );
        assert_eq!(target_cell(Target::AtMost(2.5), None, &none), "≤ 2.5 ms");
        assert_eq!(
            target_cell(Target::Reference(39.0), Some(50.0), &none),
            "ref. 39 ms"
        );
        assert_eq!(target_cell(Target::None, Some(1.0), &none), "–");
        let others = |case: &str| match case {
            PODMAN_RUN => Some(300.0),
            FLOOR_RUN => Some(60.0),
            _ => None,
        };
        assert_eq!(
            target_cell(Target::Relative(RUN_TARGETS), Some(70.0), &others),
            "≤ 0.33× podman ✓, ≤ 1.2× floor ✓"
        );
        assert_eq!(
            target_cell(Target::Relative(RUN_TARGETS), Some(100.0), &others),
            "≤ 0.33× podman ✗, ≤ 1.2× floor ✗"
        );
        assert_eq!(
            target_cell(Target::Relative(RUN_TARGETS), Some(70.0), &none),
            "≤ 0.33× podman, ≤ 1.2× floor"
        );
        assert_eq!(rss_target_cell(Some(12.0), Some(13.0)), "≤ 12 MiB ✗");
        assert_eq!(rss_target_cell(Some(12.0), Some(3.0)), "≤ 12 MiB ✓");
        assert_eq!(rss_target_cell(None, Some(3.0)), "–");
    }
}
