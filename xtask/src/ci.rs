//! `cargo xtask ci`: the whole CI pipeline, also run by `.ci/run`.
//!
//! The steps: deps, fmt, clippy, doc, test, then a short fault-injection
//! round, a short one on a CNI network, a short one with images and the damaged-state round
//! (`cargo xtask faults`, `--network`, `--images`, `--damage`). Steps run in order
//! and the first failure stops the run with a
//! `xtask ci: STEP failed` line and a non-zero exit code. Cargo uses its
//! default target directory (or whatever `CARGO_TARGET_DIR` the caller set).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::deps::{self, DepsArgs};
use crate::faults::{self, FaultsArgs};
use crate::util::{self, fmt_secs};

/// Options of `cargo xtask ci`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct CiArgs {
    /// Do not check/install the Debian packages first.
    #[arg(long)]
    pub skip_deps: bool,
    /// Do not run the short fault-injection round after the tests.
    #[arg(long)]
    pub skip_faults: bool,
}

/// One CI step: a name and the cargo command it runs.
struct Step {
    name: &'static str,
    command: fn() -> Command,
}

fn fmt_check() -> Command {
    let mut cmd = util::cargo();
    cmd.args(["fmt", "--all", "--", "--check"]);
    cmd
}

fn clippy() -> Command {
    let mut cmd = util::cargo();
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    cmd
}

fn doc() -> Command {
    let mut cmd = util::cargo();
    cmd.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    cmd
}

fn test() -> Command {
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace"]);
    cmd
}

/// The cargo steps, in the order they run.
const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        command: fmt_check,
    },
    Step {
        name: "clippy",
        command: clippy,
    },
    Step {
        name: "doc",
        command: doc,
    },
    Step {
        name: "test",
        command: test,
    },
];

/// Runs the pipeline.
pub fn run(args: CiArgs) -> Result<()> {
    let start = Instant::now();
    let mut done: Vec<(&str, Duration)> = Vec::new();

    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        println!("\n==> xtask ci: {name}");
        let t = Instant::now();
        let result = f();
        let elapsed = t.elapsed();
        match result {
            Ok(()) => {
                println!("==> xtask ci: {name} ok ({})", fmt_secs(elapsed));
                done.push((name, elapsed));
                Ok(())
            }
            Err(err) => {
                eprintln!(
                    "\nxtask ci: {name} failed after {}: {err:#}",
                    fmt_secs(elapsed)
                );
                bail!("xtask ci: {name} failed")
            }
        }
    };

    if args.skip_deps {
        println!("xtask ci: skipping deps (--skip-deps)");
    } else {
        step("deps", &mut || deps::run(DepsArgs::default()))?;
    }
    for s in STEPS {
        step(s.name, &mut || {
            let mut cmd = (s.command)();
            println!("$ {}", util::display_cmd(&cmd));
            util::run(&mut cmd)
        })?;
    }

    if args.skip_faults {
        println!("xtask ci: skipping faults (--skip-faults)");
    } else {
        // A short fault-injection round (about a minute) and the damaged-state round: a
        // violated invariant, a panic, a signal death or a hang fails CI (the full round of
        // 500+ trials is run by hand before an issue is resolved; RELIABILITY.md).
        step("faults", &mut || faults::run(&FaultsArgs::ci()))?;
        // The same on a CNI bridge network of the round's own: one trial per verb.
        step("faults --network", &mut || {
            faults::run(&FaultsArgs::ci_network())
        })?;
        // Containers from an imported image, and the image verbs: one trial per verb.
        step("faults --images", &mut || {
            faults::run(&FaultsArgs::ci_images())
        })?;
        step("faults --damage", &mut || {
            faults::run(&FaultsArgs {
                damage: true,
                ..FaultsArgs::ci()
            })
        })?;
    }

    let per_step = done
        .iter()
        .map(|(name, d)| format!("{name} {}", fmt_secs(*d)))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "\nxtask ci: all {} steps passed in {} ({per_step})",
        done.len(),
        fmt_secs(start.elapsed())
    );
    Ok(())
}
