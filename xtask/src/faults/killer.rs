//! Running `rpod`: every command in its own process group with a hang
//! timeout ([`run`]), and the verb under test killed with SIGKILL after a
//! delay, by PID or by process group ([`run_killed`]).
//!
//! Output goes to anonymous temporary files rather than pipes, so a child
//! that leaves grandchildren holding its stdout (conmon) can never block us.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::schedule::KillMode;

/// A command running longer than this hangs.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(10);

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exited with this code.
    Code(i32),
    /// Died of this signal (not sent by us).
    Signal(i32),
    /// Killed by us at the planned delay.
    Killed,
    /// Still running after [`HANG_TIMEOUT`]; killed (with its group).
    Hung,
}

impl Ending {
    /// Short text for tables: `0`, `125`, `SIGBUS`, `killed`, `hang`.
    pub fn short(self) -> String {
        match self {
            Ending::Code(c) => c.to_string(),
            Ending::Signal(s) => Signal::try_from(s)
                .map_or_else(|_| format!("signal {s}"), |s| s.as_str().to_string()),
            Ending::Killed => "killed".into(),
            Ending::Hung => "hang".into(),
        }
    }
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line (for reports).
    pub line: String,
    /// How it ended.
    pub ending: Ending,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Outcome {
    /// Exited with code 0.
    pub fn ok(&self) -> bool {
        self.ending == Ending::Code(0)
    }

    /// Rust's panic exit code (101) or a panic message on stderr.
    pub fn panicked(&self) -> bool {
        self.ending == Ending::Code(101) || self.stderr.contains("panicked")
    }

    /// The line of stderr that explains a failure: the first `Error:`
    /// line, else the first non-empty one.
    pub fn first_err_line(&self) -> &str {
        let mut lines = self.stderr.lines().map(str::trim);
        self.stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("Error"))
            .or_else(|| lines.find(|l| !l.is_empty()))
            .unwrap_or("")
    }
}

/// Runs `cmd` (in its own process group, stdin on /dev/null) to its end,
/// killing its group after [`HANG_TIMEOUT`].
pub fn run(cmd: &mut Command, line: &str) -> Result<Outcome> {
    run_with(cmd, line, None)
}

/// Runs `cmd` (in its own process group) and SIGKILLs it (`mode`) after
/// `delay`, unless it ends before; hangs are handled as in [`run`].
pub fn run_killed(
    cmd: &mut Command,
    line: &str,
    delay: Duration,
    mode: KillMode,
) -> Result<Outcome> {
    run_with(cmd, line, Some((delay, mode)))
}

fn run_with(
    cmd: &mut Command,
    line: &str,
    kill_at: Option<(Duration, KillMode)>,
) -> Result<Outcome> {
    let mut out = tempfile::tempfile().context("creating a temporary file")?;
    let mut err = tempfile::tempfile().context("creating a temporary file")?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    let ending = wait(&mut child, start, kill_at)?;
    let elapsed = start.elapsed();
    Ok(Outcome {
        line: line.to_string(),
        ending,
        stdout: read_all(&mut out)?,
        stderr: read_all(&mut err)?,
        elapsed,
    })
}

/// Waits for `child`, killing it at `kill_at` or when it hangs.
fn wait(
    child: &mut Child,
    start: Instant,
    kill_at: Option<(Duration, KillMode)>,
) -> Result<Ending> {
    let pid = i32::try_from(child.id()).context("PID out of range")?;
    let mut planned = kill_at;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(ending(status));
        }
        let now = start.elapsed();
        if let Some((delay, mode)) = planned {
            if now >= delay {
                // Not reaped yet, so the PID (and group ID) is still ours.
                signal(pid, mode);
                child.wait()?;
                return Ok(Ending::Killed);
            }
        }
        if now >= HANG_TIMEOUT {
            signal(pid, KillMode::Group);
            child.wait()?;
            return Ok(Ending::Hung);
        }
        // Sleep finely before the kill point, coarsely otherwise.
        let step = match planned {
            Some((delay, _)) if delay > now => (delay - now).min(Duration::from_millis(1)),
            Some(_) => Duration::ZERO,
            None => Duration::from_millis(5),
        };
        if planned.is_some_and(|(delay, _)| delay > HANG_TIMEOUT) {
            planned = None;
        }
        std::thread::sleep(step);
    }
}

/// SIGKILLs `pid` or its process group; a process already gone is fine.
fn signal(pid: i32, mode: KillMode) {
    let target = Pid::from_raw(pid);
    let _ = match mode {
        KillMode::Pid => kill(target, Signal::SIGKILL),
        KillMode::Group => killpg(target, Signal::SIGKILL),
    };
}

fn ending(status: ExitStatus) -> Ending {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Code(code),
        (None, Some(sig)) => Ending::Signal(sig),
        (None, None) => Ending::Code(-1),
    }
}

fn read_all(file: &mut File) -> Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_kills() -> Result<()> {
        let done = run(
            Command::new("sh").args(["-c", "echo hi; echo oops >&2; exit 3"]),
            "sh",
        )?;
        assert_eq!(done.ending, Ending::Code(3));
        assert_eq!(done.stdout, "hi\n");
        assert_eq!(done.first_err_line(), "oops");
        let warned = run(
            Command::new("sh").args(["-c", "echo 'WARN x' >&2; echo 'Error: y' >&2"]),
            "sh",
        )?;
        assert_eq!(warned.first_err_line(), "Error: y");
        let killed = run_killed(
            Command::new("sleep").arg("5"),
            "sleep 5",
            Duration::from_millis(50),
            KillMode::Group,
        )?;
        assert_eq!(killed.ending, Ending::Killed);
        assert!(killed.elapsed < Duration::from_secs(2));
        let early = run_killed(
            &mut Command::new("true"),
            "true",
            Duration::from_secs(3),
            KillMode::Pid,
        )?;
        assert_eq!(early.ending, Ending::Code(0));
        assert_eq!(Ending::Signal(7).short(), "SIGBUS");
        Ok(())
    }
}
