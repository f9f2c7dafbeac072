//! The OCI runtime's command line (runc, or crun): every operation after
//! create (`start`, `kill`, `delete`, `pause`, `resume`, `state`, `exec`, and
//! libpod's `stop` sequence) runs the runtime binary directly, and its error
//! message is extracted from its JSON log or logrus stderr.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{OciError, Result};
use crate::runtime::{status_text, OciRuntime};

/// Time to wait for the exit after `kill --all KILL` (libpod's `killContainerTimeout`).
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default runtime path on this kind of host.
pub const DEFAULT_RUNTIME_PATH: &str = "/usr/sbin/runc";

/// Status reported by `runc state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeStatus {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
    /// Exited (runc still knows it).
    Stopped,
    /// Being created (rare, transient).
    Creating,
}

/// `runc state` output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RuntimeState {
    /// OCI version of the runtime.
    #[serde(rename = "ociVersion", default)]
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Init pid (0 when stopped).
    #[serde(default)]
    pub pid: i32,
    /// Status.
    pub status: RuntimeStatus,
    /// Bundle path.
    #[serde(default)]
    pub bundle: PathBuf,
    /// Root filesystem path.
    #[serde(default)]
    pub rootfs: PathBuf,
    /// Creation time (RFC3339Nano).
    #[serde(default)]
    pub created: String,
    /// Owner.
    #[serde(default)]
    pub owner: String,
}

/// Where an exec'd process' stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecStdio {
    /// Inherit the caller's stdin/stdout/stderr.
    Inherit,
    /// stdin from /dev/null; stdout and stderr captured in [`ExecOutput`].
    #[default]
    Piped,
    /// All /dev/null.
    Null,
}

/// Parameters for [`OciRuntime::exec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    /// Command and arguments.
    pub args: Vec<String>,
    /// Extra environment (`KEY=VALUE`).
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: Option<String>,
    /// Numeric `uid[:gid]` (resolve names with [`crate::resolve_user`] first).
    pub user: Option<String>,
    /// stdio handling.
    pub stdio: ExecStdio,
    /// Set no_new_privs for the process.
    pub no_new_privs: bool,
    /// Where runc writes the process pid (`--pid-file`).
    pub pid_file: Option<PathBuf>,
    /// Give the process a terminal (`--tty`). The runtime runs it in the foreground itself (size,
    /// raw mode and resizes from the caller's terminal), so stdio must be inherited and one of
    /// stdin, stdout, stderr must be a terminal.
    pub tty: bool,
}

/// Result of [`OciRuntime::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The process' exit code (128+signal when killed).
    pub exit_code: i32,
    /// Captured stdout (only with [`ExecStdio::Piped`]).
    pub stdout: Vec<u8>,
    /// Captured stderr (only with [`ExecStdio::Piped`]).
    pub stderr: Vec<u8>,
}

/// Last `msg` of an error/fatal line in runc JSON log text (`--log-format=json`).
pub fn last_error_in_json_log(text: &str) -> Option<String> {
    let mut last = None;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let level = v.get("level").and_then(|l| l.as_str()).unwrap_or("");
        if matches!(level, "error" | "fatal" | "panic") {
            if let Some(m) = v.get("msg").and_then(|m| m.as_str()) {
                last = Some(m.to_string());
            }
        }
    }
    last
}

/// Extract the runtime's message from its stderr: the last error of JSON log
/// lines, else the last logrus text `level=error msg="..."`, else the whole
/// text (trimmed) verbatim.
pub fn runtime_message_from_stderr(stderr: &str) -> String {
    if let Some(m) = last_error_in_json_log(stderr) {
        return m;
    }
    let logrus = stderr
        .lines()
        .rev()
        .find(|l| l.contains("msg=\"") && (l.contains("level=error") || l.contains("level=fatal")));
    if let Some(line) = logrus {
        if let Some(idx) = line.find("msg=\"") {
            let rest = &line[idx + 5..];
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(n) => out.push(n),
                        None => {}
                    },
                    '"' => break,
                    c => out.push(c),
                }
            }
            return out;
        }
    }
    stderr.trim().to_string()
}

fn is_gone_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not running")
        || m.contains("process already finished")
        || m.contains("no such process")
        || m.contains("container not running")
}

impl OciRuntime {
    /// `runtime [--root <root>] --log-format=json`, ready for an operation.
    fn runtime_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.cfg.runtime_path);
        if let Some(root) = &self.cfg.runtime_root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("--log-format=json");
        cmd
    }

    /// Run `runtime <op> <args>` to completion; a failure carries the runtime's own message.
    fn run(&self, id: &str, op: &'static str, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = self.runtime_cmd();
        cmd.arg(op).args(args).stdin(Stdio::null());
        let out = cmd
            .output()
            .map_err(OciError::spawn(id, &self.cfg.runtime_path))?;
        if out.status.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = runtime_message_from_stderr(&stderr);
        if message.contains("does not exist") {
            return Err(OciError::NotFound {
                id: id.to_string(),
                runtime: self.cfg.runtime_path.clone(),
            });
        }
        Err(OciError::RuntimeCommand {
            id: id.to_string(),
            runtime: self.cfg.runtime_path.clone(),
            op,
            status: status_text(&out.status),
            message,
        })
    }

    /// `runtime start <id>`.
    pub fn start(&self, id: &str) -> Result<()> {
        self.run(id, "start", &[id]).map(|_| ())
    }

    /// `runtime kill [--all] <id> <signal>`.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        if all {
            self.run(id, "kill", &["--all", id, &sig]).map(|_| ())
        } else {
            self.run(id, "kill", &[id, &sig]).map(|_| ())
        }
    }

    /// `runtime delete [--force] <id>`.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        if force {
            self.run(id, "delete", &["--force", id]).map(|_| ())
        } else {
            self.run(id, "delete", &[id]).map(|_| ())
        }
    }

    /// `runtime pause <id>`.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.run(id, "pause", &[id]).map(|_| ())
    }

    /// `runtime resume <id>`.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.run(id, "resume", &[id]).map(|_| ())
    }

    /// `runtime state <id>`; [`OciError::NotFound`] when the runtime does not know it.
    pub fn state(&self, id: &str) -> Result<RuntimeState> {
        let out = self.run(id, "state", &[id])?;
        serde_json::from_slice(&out.stdout).map_err(|e| OciError::RuntimeOutput {
            id: id.to_string(),
            runtime: self.cfg.runtime_path.clone(),
            op: "state",
            message: format!("{e}: {:?}", String::from_utf8_lossy(&out.stdout)),
        })
    }

    /// Stop like libpod: send `stop_signal` (SIGTERM when `None`), wait up to
    /// `timeout` for the exit file, then `kill --all KILL` and wait up to
    /// [`KILL_TIMEOUT`]. Returns the exit code.
    pub fn stop(&self, id: &str, timeout: Duration, stop_signal: Option<i32>) -> Result<i32> {
        if let Some(code) = self.wait_exit(id, Some(Duration::ZERO))? {
            return Ok(code);
        }
        let sig = stop_signal.unwrap_or(nix::sys::signal::Signal::SIGTERM as i32);
        if !timeout.is_zero() {
            match self.kill(id, sig, false) {
                Ok(()) => {}
                Err(OciError::RuntimeCommand { ref message, .. }) if is_gone_message(message) => {}
                Err(e) => return Err(e),
            }
            if let Some(code) = self.wait_exit(id, Some(timeout))? {
                return Ok(code);
            }
            tracing::info!("Timed out stopping container {id}, resorting to SIGKILL");
        }
        match self.kill(id, nix::sys::signal::Signal::SIGKILL as i32, true) {
            Ok(()) => {}
            Err(OciError::RuntimeCommand { ref message, .. }) if is_gone_message(message) => {}
            Err(e) => return Err(e),
        }
        self.wait_exit(id, Some(KILL_TIMEOUT))?
            .ok_or_else(|| OciError::StopTimeout {
                id: id.to_string(),
                timeout: KILL_TIMEOUT,
            })
    }

    /// Run a process in a running container (`runtime exec`), wait for it and
    /// return its exit code. A failure of the runtime itself (for example the
    /// command does not exist) is [`OciError::ExecFailed`] with runc's message;
    /// map it with [`OciError::create_exit_code`].
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<ExecOutput> {
        if opts.args.is_empty() {
            return Err(OciError::InvalidArgument("exec: no command given".into()));
        }
        let log = tempfile::Builder::new()
            .prefix("rpod-exec-log.")
            .tempfile()
            .map_err(|e| OciError::io("creating exec log in", std::env::temp_dir(), e))?;
        let mut cmd = self.runtime_cmd();
        cmd.arg("--log").arg(log.path()).arg("exec");
        if let Some(cwd) = &opts.cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        for e in &opts.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(u) = &opts.user {
            cmd.arg("--user").arg(u);
        }
        if let Some(p) = &opts.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        if opts.no_new_privs {
            cmd.arg("--no-new-privs");
        }
        if opts.tty {
            use std::io::IsTerminal;
            if opts.stdio != ExecStdio::Inherit
                || !(std::io::stdin().is_terminal()
                    || std::io::stdout().is_terminal()
                    || std::io::stderr().is_terminal())
            {
                return Err(OciError::InvalidArgument(
                    "exec with a terminal (-t) needs a terminal on stdin, stdout or stderr: the runtime runs it in the foreground"
                        .into(),
                ));
            }
        }
        cmd.arg(if opts.tty {
            "--tty=true"
        } else {
            "--tty=false"
        })
        .arg(id)
        .args(&opts.args);
        let (stdout, stderr, status) = match opts.stdio {
            ExecStdio::Piped => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let out = cmd
                    .output()
                    .map_err(OciError::spawn(id, &self.cfg.runtime_path))?;
                (out.stdout, out.stderr, out.status)
            }
            ExecStdio::Inherit | ExecStdio::Null => {
                if opts.stdio == ExecStdio::Null {
                    cmd.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
                let status = cmd
                    .status()
                    .map_err(OciError::spawn(id, &self.cfg.runtime_path))?;
                (Vec::new(), Vec::new(), status)
            }
        };
        let log_text = std::fs::read_to_string(log.path()).unwrap_or_default();
        if let Some(msg) = last_error_in_json_log(&log_text) {
            if msg.contains("does not exist") {
                return Err(OciError::NotFound {
                    id: id.to_string(),
                    runtime: self.cfg.runtime_path.clone(),
                });
            }
            return Err(OciError::ExecFailed {
                id: id.to_string(),
                message: msg,
            });
        }
        let exit_code = match status.code() {
            Some(c) => c,
            None => {
                use std::os::unix::process::ExitStatusExt;
                128 + status.signal().unwrap_or(0)
            }
        };
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_messages() {
        assert_eq!(
            runtime_message_from_stderr(
                "time=\"2026\" level=error msg=\"container does not exist\"\n"
            ),
            "container does not exist"
        );
        assert_eq!(
            runtime_message_from_stderr(
                "{\"level\":\"error\",\"msg\":\"boom \\\"x\\\"\",\"time\":\"t\"}\n"
            ),
            "boom \"x\""
        );
        assert_eq!(
            runtime_message_from_stderr("plain failure\n\n"),
            "plain failure"
        );
    }
}
