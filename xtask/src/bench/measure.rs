//! Measurement: wall time from `hyperfine` (median/mean/σ of the runs, read
//! from its JSON export) and peak RSS from GNU time's `%M` (median of a few
//! runs).

use std::fs;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

use super::process::run_quiet_cmd;
use super::runner::Env;
use super::BenchArgs;
use crate::util::{self, shell_join};

/// Measurements of one case.
pub(super) struct Measurement {
    /// The measured command as the report shows it.
    pub(super) command: String,
    /// Median wall time in milliseconds.
    pub(super) median_ms: f64,
    /// Mean wall time in milliseconds.
    pub(super) mean_ms: f64,
    /// Standard deviation of the wall time in milliseconds, if hyperfine
    /// gave one.
    pub(super) stddev_ms: Option<f64>,
    /// Median peak RSS in KiB.
    pub(super) rss_kib: f64,
}

/// Benchmarks `argv` (shown as `command`): hyperfine for wall time, GNU
/// time for peak RSS.
pub(super) fn measure(
    env: &Env,
    name: &str,
    argv: &[String],
    command: String,
    warmup: u32,
    args: &BenchArgs,
) -> Result<Measurement> {
    let (median, mean, stddev) = hyperfine(env, name, argv, warmup, args)?;

    let mut rss = Vec::new();
    let rss_path = env.dir.path().join("time.out");
    for _ in 0..args.rss_runs {
        let mut time = Command::new("/usr/bin/time");
        time.arg("-o").arg(&rss_path).args(["-f", "%M"]).args(argv);
        run_quiet_cmd(&mut time)?;
        let text = fs::read_to_string(&rss_path)?;
        let kib: f64 = text
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .parse()
            .with_context(|| format!("unexpected /usr/bin/time output {text:?}"))?;
        rss.push(kib);
    }

    Ok(Measurement {
        command,
        median_ms: median * 1e3,
        mean_ms: mean * 1e3,
        stddev_ms: stddev.map(|s| s * 1e3),
        rss_kib: median_of(&mut rss),
    })
}

/// `(median, mean, stddev)` in seconds of `argv` under hyperfine.
pub(super) fn hyperfine(
    env: &Env,
    name: &str,
    argv: &[String],
    warmup: u32,
    args: &BenchArgs,
) -> Result<(f64, f64, Option<f64>)> {
    let json_path = env.dir.path().join("hyperfine.json");
    let mut hf = Command::new("hyperfine");
    hf.args(["-N", "--warmup", &warmup.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .arg("--export-json")
        .arg(&json_path)
        .args(["--command-name", name])
        .arg(shell_join(argv));
    // Keep our stdout for the report: hyperfine's progress goes to stderr.
    hf.stdin(Stdio::null()).stdout(std::io::stderr());
    util::run(&mut hf)?;
    let json: Value = serde_json::from_str(
        &fs::read_to_string(&json_path).context("reading hyperfine's JSON export")?,
    )
    .context("parsing hyperfine's JSON export")?;
    parse_hyperfine(&json)
}

/// `(median, mean, stddev)` in seconds from hyperfine's JSON export.
pub(super) fn parse_hyperfine(json: &Value) -> Result<(f64, f64, Option<f64>)> {
    let r = &json["results"][0];
    let median = r["median"]
        .as_f64()
        .context("hyperfine JSON: no results[0].median")?;
    let mean = r["mean"]
        .as_f64()
        .context("hyperfine JSON: no results[0].mean")?;
    Ok((median, mean, r["stddev"].as_f64()))
}

/// Median of `values` (sorted in place); 0 when empty.
pub(super) fn median_of(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median() {
        assert_eq!(median_of(&mut []), 0.0);
        assert_eq!(median_of(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn hyperfine_json() -> Result<()> {
        let json: Value = serde_json::from_str(
            r#"{"results":[{"command":"x","mean":0.012,"stddev":0.001,"median":0.011}]}"#,
        )?;
        assert_eq!(parse_hyperfine(&json)?, (0.011, 0.012, Some(0.001)));
        assert!(parse_hyperfine(&serde_json::json!({"results": []})).is_err());
        Ok(())
    }
}
