//! `cargo xtask bench --criterion [--write]`: runs the libraries' criterion
//! benches (`cargo bench --workspace`) and, with `--write`, replaces the
//! criterion section of BENCHMARKS.md with a table of their results.
//!
//! Criterion prints, for each bench, its ID and then
//! `time:   [low mid high]` (on the ID's line when the ID is short): `mid`
//! is criterion's point estimate of the time per iteration and `low`/`high`
//! the bounds of its confidence interval. The sample sizes and measurement
//! times are the ones the bench files set.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{bail, ensure, Context, Result};

use super::markdown::{self, Section};
use super::report::{fmt_goal, git_rev, host_stamp, invocation, mark};
use super::setup;
use crate::util::{self, shell_join};

/// The criterion section of BENCHMARKS.md.
pub const SECTION: Section = Section {
    start: "<!-- bench:criterion:start -->",
    end: "<!-- bench:criterion:end -->",
    heading: "Criterion benches",
};

/// What `--criterion` runs.
const CARGO_ARGS: &[&str] = &["bench", "--workspace"];

/// Goals of individual benches: (bench ID, at most this many nanoseconds).
const TARGETS_NS: &[(&str, f64)] = &[("uncontended_lock_unlock/shm", 30.0)];

/// Ratios reported under the table: (bench, its baseline, what they are).
const BASELINES: &[(&str, &str, &str)] = &[(
    "uncontended_lock_unlock/shm",
    "uncontended_lock_unlock/std_mutex",
    "uncontended lock+unlock, SHM robust mutex vs `std::sync::Mutex`",
)];

/// One criterion result.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// The bench ID (`group/function`).
    pub id: String,
    /// `low`, `mid` and `high` as criterion prints them (`28.018 ns`).
    pub low: String,
    pub mid: String,
    pub high: String,
    /// `mid` in nanoseconds.
    pub mid_ns: f64,
}

/// Runs the criterion benches; with `--write`, updates BENCHMARKS.md.
pub fn run(args: &super::BenchArgs) -> Result<()> {
    let mut cmd = setup::cargo()?;
    cmd.args(CARGO_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("xtask bench: $ {}", util::display_cmd(&cmd));
    let mut child = cmd.spawn().context("failed to start cargo bench")?;
    let stdout = child.stdout.take().context("cargo bench has no stdout")?;
    // Criterion's results go to stdout; echo them as they come (on stderr,
    // which keeps our stdout for the report).
    let mut output = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo bench's output")?;
        eprintln!("{line}");
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`cargo {}` failed ({})",
            shell_join(CARGO_ARGS),
            util::describe_status(status)
        );
    }
    let results = parse(&output)?;
    ensure!(
        !results.is_empty(),
        "no `time: [low mid high]` line in cargo bench's output"
    );
    let report = report(&results);
    println!("\n{report}");
    if args.write {
        markdown::update(&SECTION, &report)?;
    }
    Ok(())
}

/// Every result in criterion's output, in order.
pub fn parse(output: &str) -> Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    let mut previous = "";
    for line in output.lines() {
        if let Some((before, after)) = line.split_once("time:") {
            let values = after.trim();
            if let Some(inner) = values.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                let id = match before.trim() {
                    "" => previous.trim(),
                    id => id,
                };
                ensure!(
                    !id.is_empty(),
                    "criterion time line without a bench ID: {line:?}"
                );
                let words: Vec<&str> = inner.split_whitespace().collect();
                let [lv, lu, mv, mu, hv, hu] = words[..] else {
                    bail!("unexpected criterion time line {line:?}");
                };
                results.push(BenchResult {
                    id: id.to_string(),
                    low: format!("{lv} {lu}"),
                    mid: format!("{mv} {mu}"),
                    high: format!("{hv} {hu}"),
                    mid_ns: to_ns(mv, mu).with_context(|| format!("in {line:?}"))?,
                });
            }
        }
        previous = line;
    }
    Ok(results)
}

/// `value unit` in nanoseconds.
fn to_ns(value: &str, unit: &str) -> Result<f64> {
    let v: f64 = value
        .parse()
        .with_context(|| format!("bad number {value:?}"))?;
    let scale = match unit {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "μs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => bail!("unknown time unit {unit:?}"),
    };
    Ok(v * scale)
}

/// A nanosecond goal: `≤ 30 ns ✓` (met by `mid`) / `≤ 30 ns ✗`, or `–`.
fn target_cell(id: &str, mid_ns: f64) -> String {
    match TARGETS_NS.iter().find(|(t, _)| *t == id) {
        Some((_, goal)) => format!(
            "≤ {} ns{}",
            fmt_goal(*goal),
            mark(Some(mid_ns), Some(*goal))
        ),
        None => "–".to_string(),
    }
}

/// The markdown section.
fn report(results: &[BenchResult]) -> String {
    let rustc = util::first_line_or_unknown("rustc", &["--version"]);
    let mut out = format!(
        "Command: `{}` (runs `cargo {}`)\n\n",
        invocation(),
        shell_join(CARGO_ARGS)
    );
    out.push_str(&format!(
        "{} · rpod `{}` · {rustc}\n\n",
        host_stamp(),
        git_rev()
    ));
    out.push_str("| bench | time (mid) | low – high | target |\n|---|---:|---|---|\n");
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {} – {} | {} |\n",
            r.id,
            r.mid,
            r.low,
            r.high,
            target_cell(&r.id, r.mid_ns)
        ));
    }
    let mid = |id: &str| results.iter().find(|r| r.id == id).map(|r| r.mid_ns);
    let mut ratios = Vec::new();
    for (bench, baseline, what) in BASELINES {
        if let (Some(a), Some(b)) = (mid(bench), mid(baseline)) {
            if b > 0.0 {
                ratios.push(format!(
                    "{what}: {:.2}× ({} vs {})",
                    a / b,
                    fmt_ns(a),
                    fmt_ns(b)
                ));
            }
        }
    }
    if !ratios.is_empty() {
        out.push_str(&format!("\nBaselines: {}.\n", ratios.join("; ")));
    }
    out.push_str(&format!(
        "\n`time (mid)` is the middle value of criterion's `time: [low mid high]`: its point \
         estimate of the time per iteration; `low – high` is its confidence interval. \
         Targets: ✓ met / ✗ missed by `mid`. Sample sizes and measurement times are set in \
         the bench files: {}.\n",
        bench_files().join(", ")
    ));
    out
}

/// What the known bench files measure.
const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "lock-shm/benches/locks.rs",
        "uncontended lock+unlock, allocate+free and a two-party hand-off, each with a \
         `std::sync::Mutex` baseline",
    ),
    (
        "state-store/benches/state.rs",
        "lookup by a 12-character ID prefix among 100 000 records and listing 10 000, for the \
         LMDB and in-memory backends",
    ),
];

/// The workspace's bench files (`<crate>/benches/*.rs`), described where
/// known.
fn bench_files() -> Vec<String> {
    let root = util::repo_root();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let benches = krate.path().join("benches");
        for file in std::fs::read_dir(&benches).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(rel) = path.strip_prefix(&root) {
                    files.push(rel.display().to_string());
                }
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| match DESCRIPTIONS.iter().find(|(p, _)| *p == f) {
            Some((_, what)) => format!("`{f}` ({what})"),
            None => format!("`{f}`"),
        })
        .collect()
}

/// `28.02 ns`, `4.35 µs`, ...
fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
running 5 tests
test shm::tests::layout_sizes ... ignored

test result: ok. 0 passed; 0 failed; 5 ignored; 0 measured; 0 filtered out; finished in 0.00s

uncontended_lock_unlock/std_mutex
                        time:   [9.5009 ns 9.5131 ns 9.5269 ns]
Found 3 outliers among 30 measurements (10.00%)
  1 (3.33%) low mild
uncontended_lock_unlock/shm
                        time:   [27.896 ns 28.018 ns 28.203 ns]
                        change: [-1.0% +0.5% +2.0%] (p = 0.50 > 0.05)
                        No change in performance detected.
handoff_round_trip/shm_two_processes
                        time:   [4.2937 µs 4.3455 µs 4.4231 µs]

lookup_prefix_100k/lmdb time:   [7.6984 µs 8.9735 µs 10.345 µs]
all_containers_10k/lmdb time:   [55.081 ms 56.368 ms 57.801 ms]
";

    #[test]
    fn parses_criterion_output() -> Result<()> {
        let results = parse(OUTPUT)?;
        let ids: Vec<_> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "uncontended_lock_unlock/std_mutex",
                "uncontended_lock_unlock/shm",
                "handoff_round_trip/shm_two_processes",
                "lookup_prefix_100k/lmdb",
                "all_containers_10k/lmdb",
            ]
        );
        assert_eq!(results[1].mid, "28.018 ns");
        assert_eq!(results[1].low, "27.896 ns");
        assert_eq!(results[1].high, "28.203 ns");
        assert!((results[2].mid_ns - 4345.5).abs() < 1e-6);
        assert!((results[4].mid_ns - 56.368e6).abs() < 1e-3);
        assert!(parse("x\n   time:   [1 ns 2 ns]\n").is_err());
        assert!(parse("x\n   time:   [1 ns 2 furlongs 3 ns]\n").is_err());
        Ok(())
    }

    #[test]
    fn report_has_targets_and_baselines() -> Result<()> {
        let table = report(&parse(OUTPUT)?);
        assert!(table.contains("`lock-shm/benches/locks.rs` (uncontended"));
        assert!(table.contains(
            "| uncontended_lock_unlock/shm | 28.018 ns | 27.896 ns – 28.203 ns | ≤ 30 ns ✓ |"
        ));
        assert!(table.contains("| uncontended_lock_unlock/std_mutex | 9.5131 ns |"));
        assert!(table.contains(": 2.95× (28.02 ns vs 9.51 ns)"));
        Ok(())
    }

    #[test]
    fn targets() {
        assert_eq!(
            target_cell("uncontended_lock_unlock/shm", 29.0),
            "≤ 30 ns ✓"
        );
        assert_eq!(
            target_cell("uncontended_lock_unlock/shm", 31.0),
            "≤ 30 ns ✗"
        );
        assert_eq!(target_cell("allocate_free/shm_half_full", 1.0), "–");
    }
}
