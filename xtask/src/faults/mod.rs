//! `cargo xtask faults`: the fault-injection run. Kills the `rpod` binary
//! with SIGKILL at randomised points of every mutating verb, runs the verb
//! a user would run next, and checks that nothing is left inconsistent
//! (see [`invariants`]); `--damage` instead damages the state files and
//! records how the binary copes ([`damage`]).
//!
//! A round: build `rpod` (debug, or `--release`), make the round's
//! isolated world ([`sandbox`]), measure each verb's typical duration
//! (median of a few runs without a kill, whose invariants are checked too:
//! the "baseline"), then run the trials planned from the seed
//! ([`schedule`]: verbs round-robin, delays uniform in [0, 1.2 × the
//! verb's duration], one kill in three hits the whole process group), each
//! in a fresh sandbox ([`trials`]), and print the report ([`report`]).
//! `--seed S` replays a round's plan (delays scale with the durations
//! measured in that run); `--seed S --trial T --delay-ms D` replays one
//! trial exactly. The run fails if any invariant was violated, unless
//! `--report-only`. `--network` runs every verb on a real CNI bridge
//! network of the round's own ([`net`]), publishing a loopback port in
//! half the trials, and adds the network invariants (no namespace, lease,
//! cached result or iptables rule left of a removed or exited container).
//! `--images` runs every container from an image the round imports at
//! setup, adds the image verbs (`import`, `load`, `rmi`, `rmi -f`, `mount`)
//! and the image-store invariants ([`images`]: container layers, mounts,
//! images whole, nothing unowned after a collection).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

mod damage;
mod images;
mod invariants;
mod killer;
mod net;
mod observe;
mod report;
mod sandbox;
mod schedule;
mod trials;

use crate::util;
use sandbox::Round;
use schedule::TrialPlan;
use trials::{TrialResult, Verb};

/// Options of `cargo xtask faults`.
#[derive(Debug, Clone, clap::Args)]
pub struct FaultsArgs {
    /// Number of trials (killed verbs), spread round-robin over the verbs.
    #[arg(long, default_value_t = 40)]
    pub trials: u32,
    /// Seed of the plan (printed at the start; a fresh one by default).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only these verbs, comma-separated (create, start, run-d, run-rm,
    /// stop, kill, restart, rm-f, pause, unpause, pod-create, pod-start,
    /// pod-stop, pod-rm-f, exec; with --images also import, load, rmi,
    /// rmi-f, mount).
    #[arg(long, value_name = "VERB,...")]
    pub verbs: Option<String>,
    /// Replay only this trial (1-based) of the seed's plan.
    #[arg(long, requires = "seed")]
    pub trial: Option<u32>,
    /// With `--trial`: kill at this delay instead of one derived from a
    /// fresh duration measurement.
    #[arg(long, requires = "trial")]
    pub delay_ms: Option<f64>,
    /// Unkilled runs per verb to measure its typical duration.
    #[arg(long, default_value_t = 3)]
    pub samples: u32,
    /// Test the release build (default: the debug build).
    #[arg(long)]
    pub release: bool,
    /// Damaged-state scenarios instead of kills.
    #[arg(long, conflicts_with_all = ["trials", "verbs", "trial", "delay_ms"])]
    pub damage: bool,
    /// Run the containers on a CNI bridge network of the round's own
    /// (bridge `rpodflt<pid>`, a free `10.83.<k>.0/24`), publishing a port in
    /// half the trials, and check the network invariants too.
    #[arg(long, conflicts_with = "damage")]
    pub network: bool,
    /// Run every container from an image the round imports at setup, add
    /// the image verbs (import, load, rmi, rmi-f, mount) and check the image
    /// store's invariants too.
    #[arg(long, conflicts_with = "damage")]
    pub images: bool,
    /// Exit 0 even when invariants were violated.
    #[arg(long)]
    pub report_only: bool,
    /// Also write the report as markdown to this file (e.g. RELIABILITY.md).
    #[arg(long, value_name = "PATH")]
    pub write: Option<PathBuf>,
}

/// The seed of CI's short round (a round that passed on the final code of issue 12).
pub const CI_SEED: u64 = 354_615_344;
/// The seed of CI's short network round (likewise).
pub const CI_NETWORK_SEED: u64 = 541_478_630;
/// The seed of CI's short images round (a 100-trial `--images` round that passed with the
/// load and orphan-layer fixes).
pub const CI_IMAGES_SEED: u64 = 38_044_166;

impl FaultsArgs {
    /// The short round `cargo xtask ci` runs: 30 trials, 2 calibration runs
    /// per verb; a violation fails (see `ci.rs`). The seed is fixed so that CI
    /// checks the same schedule every time (kill points still follow each
    /// machine's timing); random seeds are for `cargo xtask faults` itself.
    pub fn ci() -> FaultsArgs {
        FaultsArgs {
            trials: 30,
            seed: Some(CI_SEED),
            verbs: None,
            trial: None,
            delay_ms: None,
            samples: 2,
            release: false,
            damage: false,
            network: false,
            images: false,
            report_only: false,
            write: None,
        }
    }

    /// The short network round `cargo xtask ci` runs: one trial per verb
    /// (15), one calibration run per verb; a violation fails.
    pub fn ci_network() -> FaultsArgs {
        FaultsArgs {
            trials: 15,
            samples: 1,
            network: true,
            seed: Some(CI_NETWORK_SEED),
            ..FaultsArgs::ci()
        }
    }

    /// The short images round `cargo xtask ci` runs: one trial per verb
    /// (20), one calibration run per verb; a violation fails.
    pub fn ci_images() -> FaultsArgs {
        FaultsArgs {
            trials: 20,
            samples: 1,
            images: true,
            seed: Some(CI_IMAGES_SEED),
            ..FaultsArgs::ci()
        }
    }
}

/// Runs `cargo xtask faults`.
pub fn run(args: &FaultsArgs) -> Result<()> {
    let verbs = trials::select(args.verbs.as_deref(), args.images).map_err(anyhow::Error::msg)?;
    if !nix::unistd::Uid::effective().is_root() {
        bail!("cargo xtask faults runs containers with runc and must run as root");
    }
    let rpod = build_rpod(args.release)?;
    let round = Round::new(rpod, args.network, args.images)?;
    if args.damage {
        return damage::run(&round, args);
    }
    let seed = args.seed.unwrap_or_else(schedule::fresh_seed);
    println!("xtask faults: seed {seed} (replay with --seed {seed})");
    if let Some(net) = &round.net {
        println!(
            "xtask faults: network: bridge {}, subnet {}",
            net.bridge,
            net.subnet()
        );
    }

    let plans: Vec<TrialPlan> = match args.trial {
        Some(t) => vec![schedule::plan_trial(seed, t, verbs.len())],
        None => schedule::plan(seed, args.trials, verbs.len()),
    };
    // Only the verbs some trial uses need measuring.
    let mut used: Vec<usize> = plans.iter().map(|p| p.verb).collect();
    used.sort_unstable();
    used.dedup();

    let start = Instant::now();
    let mut baseline = Vec::new();
    let mut durations: Vec<Duration> = vec![Duration::ZERO; verbs.len()];
    if args.delay_ms.is_none() {
        for &i in &used {
            let (d, runs) = calibrate(&round, &verbs[i], i, args.samples.max(1))?;
            println!(
                "xtask faults: {:<10} typically takes {:.1} ms",
                verbs[i].name,
                d.as_secs_f64() * 1e3
            );
            durations[i] = d;
            baseline.extend(runs);
        }
    }

    let mut results = Vec::new();
    for plan in &plans {
        let verb = &verbs[plan.verb];
        let delay = match args.delay_ms {
            Some(ms) => Duration::from_secs_f64(ms.max(0.0) / 1e3),
            None => plan.delay(durations[plan.verb]),
        };
        let result = trials::run_trial(
            &round,
            &format!("t{}", plan.trial),
            verb,
            Some(plan.clone()),
            Some((delay, plan.mode)),
            plan.publish,
        )?;
        let verdict = if result.violations.is_empty() {
            "ok".to_string()
        } else {
            format!("{} violation(s)", result.violations.len())
        };
        let port = if args.network && plan.publish {
            " -p"
        } else {
            ""
        };
        println!(
            "xtask faults: trial {:>3} {:<10}{port:<3} kill {:<5} at {:>7.1} ms: verb {:<8} {verdict}",
            plan.trial,
            verb.name,
            plan.mode.name(),
            delay.as_secs_f64() * 1e3,
            result.ending.short(),
        );
        results.push(result);
    }

    let mut replay =
        "cargo xtask faults --seed {seed} --trial {trial} --delay-ms {delay}".to_string();
    if let Some(list) = &args.verbs {
        replay.push_str(&format!(" --verbs {}", util::shell_quote(list)));
    }
    if args.release {
        replay.push_str(" --release");
    }
    if args.network {
        replay.push_str(" --network");
    }
    if args.images {
        replay.push_str(" --images");
    }
    let text = round.hide_paths(&report::markdown(&report::Round {
        seed,
        network: args.network,
        images: args.images,
        verbs: used
            .iter()
            .map(|&i| (verbs[i].name, durations[i]))
            .collect(),
        baseline: &baseline,
        trials: &results,
        replay: &replay,
    }));
    println!("\n{text}");
    println!("xtask faults: done in {}", util::fmt_secs(start.elapsed()));
    if let Some(path) = &args.write {
        let title = match (args.network, args.images) {
            (true, true) => "Fault injection on the network with images",
            (true, false) => "Fault injection on the network",
            (false, true) => "Fault injection with images",
            (false, false) => "Fault injection",
        };
        write_markdown(path, title, args, &text)?;
    }
    let bad = results
        .iter()
        .chain(&baseline)
        .filter(|t| !t.violations.is_empty())
        .count();
    if bad > 0 && !args.report_only {
        bail!("{bad} trial(s) violated invariants (seed {seed}; --report-only to exit 0)");
    }
    Ok(())
}

/// Measures `verb`'s typical duration: the median of `samples` runs without
/// a kill, each a whole trial whose violations are kept as the baseline.
fn calibrate(
    round: &Round,
    verb: &Verb,
    index: usize,
    samples: u32,
) -> Result<(Duration, Vec<TrialResult>)> {
    let mut runs = Vec::new();
    for k in 1..=samples {
        // In a `--network` round, every other run (the first included)
        // publishes a port.
        runs.push(trials::run_trial(
            round,
            &format!("c{index}_{k}"),
            verb,
            None,
            None,
            k % 2 == 1,
        )?);
    }
    let mut times: Vec<Duration> = runs.iter().map(|r| r.elapsed).collect();
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    Ok((median, runs))
}

/// Writes `text` as the section `title` of the markdown file `path`
/// (replacing that section if the file has it, keeping the others, so the
/// kill round and `--damage` can share one RELIABILITY.md).
fn write_markdown(
    path: &std::path::Path,
    title: &str,
    args: &FaultsArgs,
    text: &str,
) -> Result<()> {
    let mut command = String::from("cargo xtask faults");
    for a in std::env::args().skip_while(|a| a != "faults").skip(1) {
        command.push(' ');
        command.push_str(&util::shell_quote(&a));
    }
    let build = if args.release { "release" } else { "debug" };
    let section = format!(
        "## {title}\n\nGenerated by `{command}` (rpod {build} build, {}, {}).\n\n{text}",
        util::first_line_or_unknown("runc", &["--version"]),
        util::first_line_or_unknown("conmon", &["--version"]),
    );
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let body = report::replace_section(&existing, title, &section);
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    println!("xtask faults: wrote {}", path.display());
    Ok(())
}

/// Builds `rpod` (debug or release) and returns the binary's path.
fn build_rpod(release: bool) -> Result<PathBuf> {
    let mut cmd = crate::bench::cargo()?;
    cmd.args([
        "build",
        "-p",
        "rpod-cli",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    crate::bench::run_cargo_build(
        cmd,
        "xtask faults",
        "`cargo build -p rpod-cli` must succeed",
    )
}
