//! rpod's developer tasks, run as `cargo xtask <command>`:
//!
//! - `deps`: check (and, as root, apt-get install) the Debian packages the
//!   tests and benchmarks need; `--with-podman` adds podman.
//! - `ci`: deps, then `cargo fmt --check`, clippy, rustdoc, tests and a
//!   short fault-injection round, failing on the first broken step (this is
//!   what `.ci/run` runs).
//! - `bench`: whole-command benchmarks of rpod against podman (hyperfine +
//!   GNU time), optionally written into `BENCHMARKS.md`; `--criterion` runs
//!   the libraries' criterion benches instead (`--criterion --write` writes
//!   their results into `BENCHMARKS.md` too).
//! - `demo`: the README's main job: a real pod (web server + client), its containers run
//!   from an image the demo imports from a busybox tarball, on the
//!   embedded defaults, in its own root, then cleaned up.
//! - `faults`: the fault-injection run: `rpod` killed at random points of
//!   every mutating verb, then invariants checked; `--damage` runs the
//!   damaged-state scenarios.

mod bench;
mod ci;
mod containers_conf;
mod demo;
mod deps;
mod faults;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rpod's developer tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The available tasks.
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check/install the Debian packages needed by tests and benchmarks.
    Deps(deps::DepsArgs),
    /// Run the CI pipeline: deps, fmt, clippy, doc, test, faults.
    Ci(ci::CiArgs),
    /// Benchmark whole rpod commands against podman.
    Bench(bench::BenchArgs),
    /// Run a real pod (web server + client) from an image imported from a busybox tarball, then
    /// clean up.
    Demo,
    /// Kill rpod at random points of every mutating verb and check that
    /// nothing is left inconsistent; `--damage`: damaged-state scenarios.
    Faults(faults::FaultsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Deps(args) => deps::run(args),
        Cmd::Ci(args) => ci::run(args),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Demo => demo::run(),
        Cmd::Faults(args) => faults::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
