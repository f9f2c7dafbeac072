//! The OCI runtime driver: creating containers through conmon (API version 1)
//! and invoking the runtime binary directly for every other operation.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Deserialize;

use crate::error::{OciError, Result};
use crate::exitfile::{self, ExitInfo};
use crate::spec::CgroupManager;
use crate::sys::ChildFds;

/// Default time to wait for conmon's create report (libpod's `ContainerCreateTimeout`).
pub const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(240);
/// Time to wait for the exit after `kill --all KILL` (libpod's `killContainerTimeout`).
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default conmon path.
pub const DEFAULT_CONMON_PATH: &str = "/usr/bin/conmon";
/// Default runtime path on this kind of host.
pub const DEFAULT_RUNTIME_PATH: &str = "/usr/sbin/runc";

/// Static configuration of the runtime driver (plain data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Path of the OCI runtime binary (runc). Any executable works, which is
    /// the fake-runtime test seam.
    pub runtime_path: PathBuf,
    /// Runtime state root (`runc --root`); `None` = the runtime's default (`/run/runc`).
    pub runtime_root: Option<PathBuf>,
    /// Path of conmon.
    pub conmon_path: PathBuf,
    /// Environment for conmon (`KEY=VALUE`, libpod's `conmon_env_vars`).
    pub conmon_env: Vec<String>,
    /// Directory conmon writes exit files into (`<tmp_dir>/exits`).
    pub exit_dir: PathBuf,
    /// cgroup manager (`-s` for conmon when systemd).
    pub cgroup_manager: CgroupManager,
    /// conmon `--log-level` (`error`, `warning`, `info`, `debug`).
    pub conmon_log_level: String,
    /// How long to wait for conmon's report after starting it.
    pub create_timeout: Duration,
    /// Pass `--no-pivot` (for rootfs on ramfs).
    pub no_pivot: bool,
    /// conmon `--log-size-max` (bytes); negative = unlimited (flag omitted).
    pub max_log_size: i64,
}

impl RuntimeConfig {
    /// Configuration with libpod's defaults for the given exit directory.
    pub fn new(exit_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            runtime_path: PathBuf::from(DEFAULT_RUNTIME_PATH),
            runtime_root: None,
            conmon_path: PathBuf::from(DEFAULT_CONMON_PATH),
            conmon_env: vec![crate::spec::DEFAULT_PATH_ENV.to_string()],
            exit_dir: exit_dir.into(),
            cgroup_manager: CgroupManager::Cgroupfs,
            conmon_log_level: "warning".to_string(),
            create_timeout: DEFAULT_CREATE_TIMEOUT,
            no_pivot: false,
            max_log_size: -1,
        }
    }
}

/// Per-container parameters for [`OciRuntime::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Container ID.
    pub id: String,
    /// Container name (conmon `-n`).
    pub name: String,
    /// Bundle directory holding `config.json` (conmon's cwd; `oom` and
    /// `oci-log` land here).
    pub bundle: PathBuf,
    /// runc pid file; default `<bundle>/pidfile`.
    pub pid_file: Option<PathBuf>,
    /// conmon pid file; default `<bundle>/conmon.pid`.
    pub conmon_pid_file: Option<PathBuf>,
    /// k8s-file log path; default `<bundle>/ctr.log`.
    pub log_path: Option<PathBuf>,
    /// Exit command argv (argv\[0\] is the binary), run by conmon after the exit.
    pub exit_command: Vec<String>,
    /// Keep stdin open through conmon (`-i`).
    pub stdin: bool,
    /// The process has a terminal (`process.terminal` in the spec): conmon `-t` (which then
    /// also carries stdin), instead of `-i`.
    pub terminal: bool,
}

impl CreateOptions {
    /// Options with default paths inside `bundle`.
    pub fn new(id: impl Into<String>, bundle: impl Into<PathBuf>) -> Self {
        let id = id.into();
        CreateOptions {
            name: id.clone(),
            id,
            bundle: bundle.into(),
            pid_file: None,
            conmon_pid_file: None,
            log_path: None,
            exit_command: Vec::new(),
            stdin: false,
            terminal: false,
        }
    }

    /// Effective runc pid file path.
    pub fn pid_file(&self) -> PathBuf {
        self.pid_file
            .clone()
            .unwrap_or_else(|| self.bundle.join("pidfile"))
    }

    /// Effective conmon pid file path.
    pub fn conmon_pid_file(&self) -> PathBuf {
        self.conmon_pid_file
            .clone()
            .unwrap_or_else(|| self.bundle.join("conmon.pid"))
    }

    /// Effective log path.
    pub fn log_path(&self) -> PathBuf {
        self.log_path
            .clone()
            .unwrap_or_else(|| self.bundle.join("ctr.log"))
    }
}

/// Result of a successful create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// Container init pid (host pid namespace).
    pub pid: i32,
    /// conmon daemon pid (from the conmon pid file), when readable.
    pub conmon_pid: Option<i32>,
}

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

/// The OCI runtime driver.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    cfg: RuntimeConfig,
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

fn status_text(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
}

fn is_gone_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not running")
        || m.contains("process already finished")
        || m.contains("no such process")
        || m.contains("container not running")
}

impl OciRuntime {
    /// Create a driver. The exit directory is created (0750) if missing.
    pub fn new(cfg: RuntimeConfig) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&cfg.exit_dir)
            .map_err(|e| OciError::io("creating exit directory", cfg.exit_dir.clone(), e))?;
        Ok(OciRuntime { cfg })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    /// Exit directory.
    pub fn exit_dir(&self) -> &Path {
        &self.cfg.exit_dir
    }

    fn runtime_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.cfg.runtime_path);
        if let Some(root) = &self.cfg.runtime_root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("--log-format=json");
        cmd
    }

    /// conmon's argv (without argv\[0\]) for a create, exactly as libpod/podman 4 passes it.
    pub fn conmon_args(&self, opts: &CreateOptions) -> Vec<String> {
        let bundle = opts.bundle.display().to_string();
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        push("--api-version");
        push("1");
        if self.cfg.cgroup_manager == CgroupManager::Systemd {
            push("-s");
        }
        push("-c");
        push(&opts.id);
        push("-u");
        push(&opts.id);
        push("-r");
        push(&self.cfg.runtime_path.display().to_string());
        push("-b");
        push(&bundle);
        push("-p");
        push(&opts.pid_file().display().to_string());
        push("-n");
        push(&opts.name);
        push("--exit-dir");
        push(&self.cfg.exit_dir.display().to_string());
        push("--full-attach");
        push("-l");
        push(&format!("k8s-file:{}", opts.log_path().display()));
        push("--log-level");
        push(&self.cfg.conmon_log_level);
        if let Some(root) = &self.cfg.runtime_root {
            push("--runtime-arg");
            push("--root");
            push("--runtime-arg");
            push(&root.display().to_string());
        }
        push("--runtime-arg");
        push("--log-format=json");
        push("--runtime-arg");
        push("--log");
        push(&format!("--runtime-arg={bundle}/oci-log"));
        push("--conmon-pidfile");
        push(&opts.conmon_pid_file().display().to_string());
        if let Some((bin, rest)) = opts.exit_command.split_first() {
            push("--exit-command");
            push(bin);
            for arg in rest {
                push("--exit-command-arg");
                push(arg);
            }
        }
        // libpod: `-t` if the process has a terminal, else `-i` if stdin is kept open.
        if opts.terminal {
            push("-t");
        } else if opts.stdin {
            push("-i");
        }
        if self.cfg.max_log_size >= 0 {
            push("--log-size-max");
            push(&self.cfg.max_log_size.to_string());
        }
        if self.cfg.no_pivot {
            push("--no-pivot");
        }
        a
    }

    /// Create the container: start conmon, which runs `runtime create`, and
    /// wait for its report. On success the container is in `created` state;
    /// call [`OciRuntime::start`] next. `<bundle>/config.json` must exist.
    pub fn create(&self, opts: &CreateOptions) -> Result<Created> {
        let id = opts.id.as_str();
        if id.is_empty() || id.contains('/') {
            return Err(OciError::InvalidArgument(format!(
                "invalid container ID {id:?}"
            )));
        }
        let oci_log = opts.bundle.join("oci-log");
        match std::fs::remove_file(&oci_log) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OciError::io("removing stale", oci_log, e)),
        }
        let _ = std::fs::remove_file(opts.bundle.join("oom"));
        exitfile::retire_exit_file(&self.cfg.exit_dir, id)?;

        let (sync_r, sync_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| OciError::sys("creating sync pipe", e))?;
        let (start_r, start_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| OciError::sys("creating start pipe", e))?;
        let child_fds = ChildFds::new(&[(&sync_w, 3), (&start_r, 4)])
            .map_err(|e| OciError::sys("duplicating pipe descriptors", e))?;

        // conmon's own stderr (before it daemonizes) goes to an anonymous file.
        let errfile = tempfile::tempfile()
            .map_err(|e| OciError::io("creating temp file in", std::env::temp_dir(), e))?;
        let errfile2 = errfile
            .try_clone()
            .map_err(|e| OciError::io("duplicating temp file", std::env::temp_dir(), e))?;
        let errfile3 = errfile
            .try_clone()
            .map_err(|e| OciError::io("duplicating temp file", std::env::temp_dir(), e))?;

        let mut cmd = Command::new(&self.cfg.conmon_path);
        cmd.args(self.conmon_args(opts))
            .current_dir(&opts.bundle)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(errfile2))
            .stderr(Stdio::from(errfile3));
        for kv in &self.cfg.conmon_env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.env("_OCI_SYNCPIPE", "3").env("_OCI_STARTPIPE", "4");
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        child_fds.install(&mut cmd);

        let spawned = cmd.spawn();
        drop(cmd);
        drop(child_fds);
        drop(sync_w);
        drop(start_r);
        let mut child = spawned.map_err(|e| OciError::Spawn {
            id: id.to_string(),
            binary: self.cfg.conmon_path.clone(),
            source: e,
        })?;

        let mut start = File::from(start_w);
        // If conmon already died, the write fails with EPIPE; the sync read reports it.
        let _ = start.write_all(&[0u8]);
        drop(start);

        let status = child.wait().map_err(|e| OciError::Spawn {
            id: id.to_string(),
            binary: self.cfg.conmon_path.clone(),
            source: e,
        })?;

        let line = match read_sync_line(sync_r, self.cfg.create_timeout) {
            Ok(l) => l,
            Err(SyncReadError::Timeout) => {
                self.kill_conmon_and_delete(opts);
                return Err(OciError::CreateTimeout {
                    id: id.to_string(),
                    conmon: self.cfg.conmon_path.clone(),
                    timeout: self.cfg.create_timeout,
                });
            }
            Err(SyncReadError::Sys(e)) => return Err(OciError::sys("reading conmon sync pipe", e)),
        };

        let oci_msg = std::fs::read_to_string(&oci_log)
            .ok()
            .and_then(|t| last_error_in_json_log(&t));
        if line.trim().is_empty() {
            let mut err_text = String::new();
            let mut ef = errfile;
            if ef.rewind().is_ok() {
                let _ = ef.read_to_string(&mut err_text);
            }
            let err_text = err_text.trim().to_string();
            let detail = match (oci_msg, err_text.is_empty()) {
                (Some(m), _) => Some(m),
                (None, false) => Some(err_text),
                (None, true) => None,
            };
            return Err(OciError::ConmonNoReport {
                id: id.to_string(),
                conmon: self.cfg.conmon_path.clone(),
                status: status_text(&status),
                detail,
            });
        }
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).map_err(|_| OciError::ConmonProtocol {
                id: id.to_string(),
                line: line.clone(),
            })?;
        let data = v
            .get("data")
            .or_else(|| v.get("pid"))
            .and_then(|d| d.as_i64())
            .ok_or_else(|| OciError::ConmonProtocol {
                id: id.to_string(),
                line: line.clone(),
            })?;
        if data <= 0 {
            let message = oci_msg
                .or_else(|| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(runtime_message_from_stderr)
                })
                .unwrap_or_else(|| format!("runtime reported failure {data} without a message"));
            // libpod deletes after any failure; runc normally keeps no state here.
            let _ = self.delete(id, true);
            return Err(OciError::CreateFailed {
                id: id.to_string(),
                runtime: self.cfg.runtime_path.clone(),
                message,
            });
        }
        let pid = i32::try_from(data).map_err(|_| OciError::ConmonProtocol {
            id: id.to_string(),
            line: line.clone(),
        })?;
        Ok(Created {
            pid,
            conmon_pid: read_pid_file(&opts.conmon_pid_file()),
        })
    }

    fn kill_conmon_and_delete(&self, opts: &CreateOptions) {
        if let Some(pid) = read_pid_file(&opts.conmon_pid_file()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.delete(&opts.id, true);
    }

    fn run(&self, id: &str, op: &'static str, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = self.runtime_cmd();
        cmd.arg(op).args(args).stdin(Stdio::null());
        let out = cmd.output().map_err(|e| OciError::Spawn {
            id: id.to_string(),
            binary: self.cfg.runtime_path.clone(),
            source: e,
        })?;
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

    /// The exit recorded by conmon, if any (see [`exitfile::read_exit_file`]).
    pub fn exit_info(&self, id: &str, bundle: Option<&Path>) -> Result<Option<ExitInfo>> {
        exitfile::read_exit_file(&self.cfg.exit_dir, id, bundle)
    }

    /// Wait for the exit file (shared inotify watcher); `None` on timeout.
    pub fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<Option<i32>> {
        exitfile::wait_exit(&self.cfg.exit_dir, id, timeout)
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
        let mut cmd = Command::new(&self.cfg.runtime_path);
        if let Some(root) = &self.cfg.runtime_root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("--log-format=json")
            .arg("--log")
            .arg(log.path())
            .arg("exec");
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
                let out = cmd.output().map_err(|e| OciError::Spawn {
                    id: id.to_string(),
                    binary: self.cfg.runtime_path.clone(),
                    source: e,
                })?;
                (out.stdout, out.stderr, out.status)
            }
            ExecStdio::Inherit | ExecStdio::Null => {
                if opts.stdio == ExecStdio::Null {
                    cmd.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
                let status = cmd.status().map_err(|e| OciError::Spawn {
                    id: id.to_string(),
                    binary: self.cfg.runtime_path.clone(),
                    source: e,
                })?;
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

    /// Remove conmon's per-run files (`attach`, `ctl`, `winsz`, `oom`) from
    /// the bundle and retire the exit file to `<id>-old` (libpod's
    /// `removeConmonFiles`).
    pub fn remove_conmon_files(&self, id: &str, bundle: &Path) -> Result<()> {
        for f in ["attach", "ctl", "winsz", "oom"] {
            let p = bundle.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OciError::io("removing", p, e)),
            }
        }
        exitfile::retire_exit_file(&self.cfg.exit_dir, id)
    }

    /// Read conmon's pid from its pid file.
    pub fn conmon_pid(&self, opts: &CreateOptions) -> Option<i32> {
        read_pid_file(&opts.conmon_pid_file())
    }
}

/// Whether process `pid` exists and is not a zombie (e.g. to notice a conmon
/// that died without writing an exit file after [`OciRuntime::wait_exit`]
/// timed out).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

enum SyncReadError {
    Timeout,
    Sys(nix::errno::Errno),
}

/// Read one line (up to `\n` or EOF) from the sync pipe within `timeout`.
fn read_sync_line(fd: OwnedFd, timeout: Duration) -> std::result::Result<String, SyncReadError> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(fd);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if buf.contains(&b'\n') {
            break;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(SyncReadError::Timeout);
        }
        let ms = PollTimeout::try_from(remaining.as_millis().clamp(1, i32::MAX as u128))
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SyncReadError::Sys(e)),
        }
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(SyncReadError::Sys(nix::errno::Errno::from_raw(
                    e.raw_os_error().unwrap_or(0),
                )))
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").to_string())
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

    #[test]
    fn conmon_argv() {
        let mut cfg = RuntimeConfig::new("/run/x/exits");
        cfg.max_log_size = 1000;
        let rt = OciRuntime { cfg };
        let mut o = CreateOptions::new("abc", "/b");
        o.exit_command = vec!["/bin/rpod".into(), "cleanup".into(), "abc".into()];
        let a = rt.conmon_args(&o).join(" ");
        assert_eq!(
            a,
            "--api-version 1 -c abc -u abc -r /usr/sbin/runc -b /b -p /b/pidfile -n abc --exit-dir /run/x/exits \
--full-attach -l k8s-file:/b/ctr.log --log-level warning --runtime-arg --log-format=json --runtime-arg --log \
--runtime-arg=/b/oci-log --conmon-pidfile /b/conmon.pid --exit-command /bin/rpod --exit-command-arg cleanup \
--exit-command-arg abc --log-size-max 1000"
        );
    }
}
