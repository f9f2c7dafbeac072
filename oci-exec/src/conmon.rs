//! The conmon protocol (`--api-version 1`): conmon's arguments, the sync and
//! start pipes, pid files, exit-command wiring, and [`OciRuntime::create`]
//! through conmon (which runs `runtime create` and reports one JSON line).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cgroup::CgroupManager;
use crate::error::{OciError, Result};
use crate::exitfile;
use crate::ocicli::{last_error_in_json_log, runtime_message_from_stderr};
use crate::runtime::{status_text, OciRuntime};
use crate::sys::ChildFds;

/// Default time to wait for conmon's create report (libpod's `ContainerCreateTimeout`).
pub const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(240);
/// Default conmon path.
pub const DEFAULT_CONMON_PATH: &str = "/usr/bin/conmon";

/// The fd number conmon receives the first of [`CreateOptions::extra_fds`] at (after the sync
/// pipe at 3 and the start pipe at 4).
pub const FIRST_EXTRA_FD: RawFd = 5;

/// Per-container parameters for [`OciRuntime::create`].
#[derive(Debug, Clone)]
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
    /// Descriptors conmon inherits and holds while the container lives, e.g. the sockets of
    /// reserved host ports (libpod's port reservation). They land in conmon at
    /// [`FIRST_EXTRA_FD`], `FIRST_EXTRA_FD + 1`, ... without close-on-exec; libpod passes them
    /// as `ExtraFiles` with no flag naming them, and conmon closes every fd >= 3 after writing
    /// the exit file, which releases them. The caller keeps its own references (and may drop
    /// them once [`OciRuntime::create`] returned).
    pub extra_fds: Vec<Arc<OwnedFd>>,
}

impl PartialEq for CreateOptions {
    /// Equal when every field is; extra descriptors compare by identity (the same open
    /// descriptor), since two descriptors have no other meaningful equality.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.bundle == other.bundle
            && self.pid_file == other.pid_file
            && self.conmon_pid_file == other.conmon_pid_file
            && self.log_path == other.log_path
            && self.exit_command == other.exit_command
            && self.stdin == other.stdin
            && self.terminal == other.terminal
            && self.extra_fds.len() == other.extra_fds.len()
            && self
                .extra_fds
                .iter()
                .zip(&other.extra_fds)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for CreateOptions {}

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
            extra_fds: Vec::new(),
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

fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
}

impl OciRuntime {
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
        let mut mapping: Vec<(&OwnedFd, RawFd)> = vec![(&sync_w, 3), (&start_r, 4)];
        for (fd, target) in opts.extra_fds.iter().zip(FIRST_EXTRA_FD..) {
            mapping.push((fd.as_ref(), target));
        }
        let child_fds = ChildFds::new(&mapping)
            .map_err(|e| OciError::sys("duplicating descriptors for conmon", e))?;

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
        let mut child = spawned.map_err(OciError::spawn(id, &self.cfg.conmon_path))?;

        let mut start = File::from(start_w);
        // If conmon already died, the write fails with EPIPE; the sync read reports it.
        let _ = start.write_all(&[0u8]);
        drop(start);

        let status = child
            .wait()
            .map_err(OciError::spawn(id, &self.cfg.conmon_path))?;

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

    /// After a create timed out: kill conmon (from its pid file) and force-delete the container.
    fn kill_conmon_and_delete(&self, opts: &CreateOptions) {
        if let Some(pid) = read_pid_file(&opts.conmon_pid_file()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.delete(&opts.id, true);
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
    use crate::runtime::RuntimeConfig;

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
