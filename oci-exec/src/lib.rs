//! `rpod-oci`: rpod's OCI runtime layer.
//!
//! This crate **owns**:
//! * finding the binaries it drives ([`find_binary`], [`Binary`]), choosing the
//!   OCI runtime and checking it suits the host ([`choose_runtime`],
//!   [`host_cgroup_mode`]; crun is refused on cgroups v1/hybrid);
//! * OCI spec generation with the `oci-spec` builders ([`SpecInput`],
//!   [`generate_spec`], atomic [`write_spec`]);
//! * the conmon protocol (`--api-version 1`: sync/start pipes, one JSON
//!   report line) and every runtime operation (create, start, kill, stop,
//!   delete, state, pause, resume, exec) in [`OciRuntime`];
//! * conmon exit files and waiting for them through one process-wide inotify
//!   watcher ([`wait_exit`], [`read_exit_file`]);
//! * k8s-file logs ([`read_log`], [`follow_log`]) and conmon's attach socket ([`AttachConn`]);
//! * exit-code mapping for the CLI ([`exit_code_for_create_error`]).
//!
//! It does **not** own container records, locks, configuration discovery or
//! networking: the facade composes those with this crate. It depends on no
//! other rpod crate.
//!
//! Typical sequence: [`write_spec_for`] into the bundle, [`OciRuntime::create`]
//! (conmon + `runc create`), [`OciRuntime::start`], [`OciRuntime::wait_exit`],
//! [`OciRuntime::delete`].

mod attach;
mod cgroup;
mod conmon;
mod error;
mod exitcode;
mod exitfile;
mod logs;
mod ocicli;
mod rlimit;
mod runtime;
mod select;
mod spec;
mod sys;
mod user;
mod watch;

pub use attach::{resize_terminal, AttachConn, AttachOutput};
pub use cgroup::{
    cgroup_mode_from_mounts, cgroup_path, host_cgroup_mode, CgroupManager, CgroupMode,
    DEFAULT_CGROUPFS_PARENT, DEFAULT_SYSTEMD_PARENT,
};
pub use conmon::{
    CreateOptions, Created, DEFAULT_CONMON_PATH, DEFAULT_CREATE_TIMEOUT, FIRST_EXTRA_FD,
};
pub use error::{OciError, Result};
pub use exitcode::{
    exit_code_for_create_error, EXIT_COMMAND_CANNOT_INVOKE, EXIT_COMMAND_NOT_FOUND,
    EXIT_RPOD_FAILURE,
};
pub use exitfile::{
    exit_file_path, parse_exit_code, read_exit_file, retire_exit_file, wait_exit, wait_exit_info,
    ExitInfo,
};
pub use logs::{
    follow_log, format_entry, parse_log_line, parse_log_text, parse_rfc3339_nanos, read_log,
    LogEntry, LogJoiner, LogOptions, LogRecord, LogStream,
};
pub use ocicli::{
    last_error_in_json_log, runtime_message_from_stderr, ExecOptions, ExecOutput, ExecStdio,
    RuntimeState, RuntimeStatus, DEFAULT_RUNTIME_PATH, KILL_TIMEOUT,
};
pub use rlimit::{clamp_rlimit, Rlimit};
pub use runtime::{process_alive, OciRuntime, RuntimeConfig};
pub use select::{
    check_runtime_suitable, choose_runtime, choose_runtime_for_mode, find_binary, Binary,
    RuntimeChoice,
};
pub use spec::{
    generate_spec, write_spec, write_spec_for, Namespaces, NsMode, SpecInput, UserMount,
    DEFAULT_CAPABILITIES, DEFAULT_PATH_ENV, DEFAULT_SHM_SIZE, MASKED_PATHS, READONLY_PATHS,
};
pub use user::{resolve_user, ResolvedUser};

/// Re-export of the `oci-spec` runtime types used in this API.
pub use oci_spec::runtime::Spec;
