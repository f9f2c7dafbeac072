//! `cargo xtask bench`: whole-command benchmarks of rpod against podman,
//! measured in the same run on the same host, plus `--criterion` for the
//! libraries' criterion benches ([`criterion`]).
//!
//! Wall time comes from `hyperfine` (median/mean/σ of the runs), peak RSS
//! from GNU time's `%M` (median of a few runs). Every case runs isolated
//! from the host and from the other cases, and the run fails if anything of
//! its own is left at the end (see [`isolation`]). Each podman case runs
//! right after the rpod case it mirrors, so the two are measured side by
//! side.
//!
//! This module holds the options and the whole run; the rest is split by
//! concern:
//!
//! - the cases: [`cases`] (what a case is) and [`table`] (every case);
//! - setting up and measuring them: [`setup`] (rpod binary, rootfs, podman
//!   images), [`runner`] (one case under its guards), [`isolation`] (the
//!   guards and the final check), [`measure`] (hyperfine and GNU time),
//!   [`process`] (running commands), [`sweep`], [`floor`] and [`cni_floor`];
//! - the results: [`report`] (the markdown tables) and [`markdown`]
//!   (writing them into BENCHMARKS.md);
//! - `--images`: the image benchmarks ([`images`]: pull, unpack, `run --rm IMAGE`, `images`).

use std::fs;

use anyhow::{ensure, Context, Result};

mod cases;
mod cni_floor;
mod criterion;
mod floor;
mod images;
mod isolation;
mod markdown;
mod measure;
mod network;
mod process;
mod report;
mod runner;
mod setup;
pub(crate) mod sweep;
mod table;

pub(crate) use cases::{ROOTFS, RUN_RM_TRUE};
pub(crate) use setup::{build_busybox_rootfs, cargo, run_cargo_build};

use crate::containers_conf;
use crate::deps::{self, DepsArgs};
use cases::{Case, Run, Tool};
use report::Row;
use runner::Env;
use setup::{PODMAN_BUSYBOX_IMAGE, PODMAN_PAUSE_IMAGE};
use table::CASES;

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Replace the whole-command section of BENCHMARKS.md with the results
    /// (with `--criterion`: the criterion section).
    #[arg(long)]
    pub write: bool,
    /// Run the libraries' criterion benches (`cargo bench --workspace`)
    /// instead of the whole-command benchmarks.
    #[arg(long, conflicts_with_all = ["filter", "podman_image", "quick"])]
    pub criterion: bool,
    /// Only run cases whose name contains one of these substrings
    /// (e.g. `--filter podman`, `--filter "ps -a"`). Repeatable.
    #[arg(long, value_name = "SUBSTRING")]
    pub filter: Vec<String>,
    /// Skip the slow cases (`ps -a` with 10 000 containers, whose set-up
    /// creates 10 000 containers) for fast iteration.
    #[arg(long)]
    pub quick: bool,
    /// Measured hyperfine runs per case.
    #[arg(long, default_value_t = 30)]
    pub runs: u32,
    /// hyperfine warm-up runs per case.
    #[arg(long, default_value_t = 3)]
    pub warmup: u32,
    /// Runs under `/usr/bin/time` per case; peak RSS is their median.
    #[arg(long, default_value_t = 5)]
    pub rss_runs: u32,
    /// Import the `rpod-bench-busybox` and `rpod-bench-pause` images into
    /// podman (if absent) even when no selected case needs them.
    #[arg(long)]
    pub podman_image: bool,
    /// Do not check/install Debian packages (podman, hyperfine, time, ...).
    #[arg(long)]
    pub skip_deps: bool,
    /// Run the image benchmarks instead (pull from a loopback registry, layer unpack,
    /// `run --rm IMAGE true`, `images` with 100 images; rpod and podman on fresh stores);
    /// `--write` writes them into their own section of BENCHMARKS.md.
    #[arg(long, conflicts_with_all = ["criterion", "filter", "quick"])]
    pub images: bool,
    /// With `--images`: timed runs of each pull and unpack case (each on a fresh store).
    #[arg(long, default_value_t = 5)]
    pub pull_runs: u32,
}

/// Runs the benchmarks.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.criterion {
        return criterion::run(args);
    }
    if args.images {
        ensure!(args.pull_runs >= 1, "--pull-runs must be at least 1");
        return images::run(args);
    }
    ensure!(args.runs >= 2, "--runs must be at least 2");
    ensure!(args.rss_runs >= 1, "--rss-runs must be at least 1");

    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| args.filter.is_empty() || args.filter.iter().any(|f| c.name.contains(f)))
        .collect();
    ensure!(
        !cases.is_empty(),
        "no benchmark case matches {:?}",
        args.filter
    );
    let measured = |c: &&&Case| c.not_measured.is_none() && !(args.quick && c.slow);
    let needs_rpod = cases.iter().filter(measured).any(|c| c.tool == Tool::Rpod);
    let needs_podman = cases
        .iter()
        .filter(measured)
        .any(|c| c.tool == Tool::Podman)
        || args.podman_image;

    if !args.skip_deps {
        deps::run(DepsArgs { with_podman: true })?;
    }
    if needs_podman {
        containers_conf::ensure()?;
    }
    let rpod = if needs_rpod {
        Some(setup::build_rpod()?)
    } else {
        None
    };

    let dir = tempfile::Builder::new().prefix("rpod-bench-").tempdir()?;
    let rootfs = dir.path().join("rootfs");
    if needs_rpod {
        fs::create_dir(&rootfs)?;
        build_busybox_rootfs(&rootfs)?;
        isolation::remove_stale_segments()?;
    }
    isolation::remove_stale_containers();
    let env = Env { rpod, dir, rootfs };

    let uses = |image: &str| {
        cases
            .iter()
            .filter(measured)
            .any(|c| c.uses_podman_image(image))
    };
    if args.podman_image || uses(PODMAN_BUSYBOX_IMAGE) {
        setup::ensure_podman_busybox_image()?;
    }
    if args.podman_image || uses(PODMAN_PAUSE_IMAGE) {
        setup::ensure_podman_pause_image()?;
    }

    let shell_ms = if cases
        .iter()
        .filter(measured)
        .any(|c| matches!(c.run, Run::Seq(..)))
    {
        eprintln!("\nxtask bench: sh -c true (shell start-up, for the pair cases)");
        let argv = vec!["sh".into(), "-c".into(), "true".into()];
        Some(measure::hyperfine(&env, "sh -c true", &argv, args.warmup, args)?.0 * 1e3)
    } else {
        None
    };

    let mut rows = Vec::new();
    for (seq, case) in cases.iter().enumerate() {
        let skip = case
            .not_measured
            .map(str::to_string)
            .or_else(|| (args.quick && case.slow).then(|| "skipped with --quick".to_string()));
        if let Some(reason) = skip {
            eprintln!("\nxtask bench: {}: not measured ({reason})", case.name);
            rows.push(Row {
                name: case.name,
                label: case.name.to_string(),
                target: case.target,
                rss_target_mib: case.rss_target_mib,
                outcome: Err(reason),
            });
            continue;
        }
        eprintln!("\nxtask bench: {}", case.name);
        rows.push(
            runner::run_case(&env, seq, case, args)
                .with_context(|| format!("benchmark `{}` failed", case.name))?,
        );
    }
    isolation::check_nothing_left(&env, needs_podman)?;

    let report = report::report(&env, args, &rows, shell_ms);
    println!("\n{report}");
    if args.write {
        markdown::update(&markdown::WHOLE_COMMANDS, &report)?;
    }
    Ok(())
}
