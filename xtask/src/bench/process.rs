//! Running the commands the benchmark sets up, measures and cleans up with:
//! an argv as a [`Command`], quiet runs, and runs whose failure carries the
//! command's stderr.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::{self, shell_join};

/// The command that runs `argv` (`argv[0]` with the rest as arguments).
pub fn command(argv: &[String]) -> Result<Command> {
    let (program, rest) = argv.split_first().context("empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    Ok(cmd)
}

/// `cmd` with stdin, stdout and stderr all on `/dev/null`.
pub fn silenced(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Runs `argv` with output discarded; fails on a non-zero exit.
pub fn run_quiet(argv: &[String]) -> Result<()> {
    run_quiet_cmd(&mut command(argv)?)
}

/// Runs `cmd` with output discarded; fails on a non-zero exit.
pub fn run_quiet_cmd(cmd: &mut Command) -> Result<()> {
    util::run(silenced(cmd))
}

/// Runs `argv` with stdout discarded; on failure the error carries stderr.
pub fn run_capturing(argv: &[String]) -> Result<()> {
    let out = command(argv)?
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("failed to start `{}`", shell_join(argv)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            shell_join(argv),
            util::describe_status(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
