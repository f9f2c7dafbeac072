//! `exec`: a process in a running container, recorded as an exec session while it runs.

use rpod_oci::{ExecOptions, ExecStdio};
use rpod_state::ContainerRecord;

use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

/// What [`Runtime::exec`] should run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User (`uid[:gid]` or a name from the container's `/etc/passwd`).
    pub user: Option<String>,
    /// Inherit this process' stdio (the CLI) instead of capturing output.
    pub inherit_stdio: bool,
    /// Give the process a terminal (`-t`); needs `inherit_stdio` and a terminal on this
    /// process's stdio.
    pub tty: bool,
}

/// The result of [`Runtime::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The process' exit code.
    pub exit_code: i32,
    /// Captured standard output (empty with inherited stdio).
    pub stdout: Vec<u8>,
    /// Captured standard error (empty with inherited stdio).
    pub stderr: Vec<u8>,
}

impl Runtime {
    /// Runs a process in a running container and returns its exit code (and output when not
    /// inherited).
    pub fn exec(&self, id_or_name: &str, spec: &ExecSpec) -> Result<ExecResult, RuntimeError> {
        // The session is recorded while it runs (libpod's exec sessions): removing the
        // container without force is refused meanwhile. Its pid is this process's, so a session
        // whose rpod died is recognised as stale.
        let session = crate::names::generate_id()?;
        let rec = self.with_container(id_or_name, |rec| {
            require(
                rec,
                rec.state.status.is_running(),
                "exec in (it is not running)",
            )?;
            rec.state.exec_sessions.insert(
                session.clone(),
                rpod_state::ExecSession {
                    command: spec.command.clone(),
                    pid: i32::try_from(std::process::id()).unwrap_or(0),
                },
            );
            self.state.save_container(&rec.config.id, &rec.state)?;
            Ok(rec.clone())
        })?;
        let result = self.exec_in(&rec, spec);
        let ended = self.with_container(&rec.config.id, |rec| {
            if rec.state.exec_sessions.remove(&session).is_some() {
                self.state.save_container(&rec.config.id, &rec.state)?;
            }
            Ok(())
        });
        match ended {
            Ok(()) => {}
            // Removed (forcibly) while the session ran.
            Err(RuntimeError::State(e)) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(container = %rec.config.id, error = %e, "ending the exec session")
            }
        }
        result
    }

    fn exec_in(&self, rec: &ContainerRecord, spec: &ExecSpec) -> Result<ExecResult, RuntimeError> {
        let user = match spec
            .user
            .as_deref()
            .or(Some(rec.config.user.as_str()).filter(|u| !u.is_empty()))
        {
            Some(u) => {
                let r = rpod_oci::resolve_user(&self.container_root(rec)?, u)?;
                Some(format!("{}:{}", r.uid, r.gid))
            }
            None => None,
        };
        let mut env = rec.config.env.clone();
        env.extend(spec.env.iter().cloned());
        let opts = ExecOptions {
            args: spec.command.clone(),
            env,
            cwd: spec
                .workdir
                .clone()
                .or_else(|| Some(rec.config.working_dir.clone()).filter(|w| !w.is_empty())),
            user,
            stdio: if spec.inherit_stdio {
                ExecStdio::Inherit
            } else {
                ExecStdio::Piped
            },
            no_new_privs: false,
            pid_file: None,
            tty: spec.tty,
        };
        let out = self.oci()?.exec(&rec.config.id, &opts)?;
        Ok(ExecResult {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
