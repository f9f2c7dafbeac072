//! The crate's error type.

use std::path::PathBuf;

/// Every failure of this crate, with the context an end user needs to act on it
/// (file and line, network, plugin, directories searched, errno).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A file-system operation failed.
    #[error("{what} {path}: {source}", path = path.display())]
    Io {
        /// What was being done ("reading", "creating directory", …).
        what: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CNI configuration file is not valid JSON.
    #[error("invalid CNI configuration {path}:{line}:{column}: {msg}", path = path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// The parser's message.
        msg: String,
    },
    /// A CNI configuration file is JSON but not a valid network configuration.
    #[error("invalid CNI configuration {path}: {msg}", path = path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// No configuration file defines the network.
    #[error("network \"{name}\" not found in {dir}{}", invalid_note(invalid), dir = dir.display())]
    NetworkNotFound {
        /// The network name asked for.
        name: String,
        /// The configuration directory searched.
        dir: PathBuf,
        /// Descriptions of the files in that directory that failed to load.
        invalid: Vec<String>,
    },
    /// A plugin binary is in none of the plugin directories.
    #[error("CNI plugin \"{plugin}\" not found in {}", join_paths(dirs))]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// A plugin exited non-zero and printed a CNI error object.
    #[error(
        "network \"{network}\": plugin \"{plugin}\" ({command}) failed: {msg}{} [code {code}]",
        details_note(details)
    )]
    Plugin {
        /// The network name.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The CNI command (ADD, DEL, CHECK, VERSION).
        command: String,
        /// The CNI error code.
        code: u32,
        /// The plugin's `msg`, verbatim.
        msg: String,
        /// The plugin's `details`, verbatim (may be empty).
        details: String,
    },
    /// A plugin could not be run, crashed, was killed, or printed something that is not a CNI answer.
    #[error("network \"{network}\": plugin \"{plugin}\" ({command}) failed: {detail}")]
    PluginExec {
        /// The network name.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: String,
        /// What happened (exit status, stderr/stdout text, spawn error).
        detail: String,
    },
    /// One or more steps of a network teardown failed (every step was still attempted).
    #[error("network teardown of container {container_id} failed: {}", errors.join("; "))]
    Teardown {
        /// The container.
        container_id: String,
        /// Every failed step's message.
        errors: Vec<String>,
    },
    /// A `-p/--publish` specification is malformed.
    #[error("invalid port specification \"{spec}\": {reason}")]
    InvalidPort {
        /// The specification as given.
        spec: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A host port could not be reserved because something else holds it.
    #[error(
        "host port {}:{port}/{protocol} is already in use: {source}",
        display_host(host_ip)
    )]
    PortInUse {
        /// The host address (empty = all addresses).
        host_ip: String,
        /// The port.
        port: u16,
        /// tcp or udp.
        protocol: String,
        /// The bind error.
        source: std::io::Error,
    },
    /// An invalid network request or option (network create, `--ip`, `--add-host`, subnet, …).
    #[error("{msg}")]
    InvalidNetwork {
        /// What is wrong.
        msg: String,
    },
    /// A network of that name already exists.
    #[error("network \"{name}\" already exists ({path})", path = path.display())]
    NetworkExists {
        /// The name.
        name: String,
        /// The file that defines it.
        path: PathBuf,
    },
    /// A network-namespace operation failed.
    #[error("{what} {path}: {errno}", path = path.display())]
    Netns {
        /// What was being done.
        what: String,
        /// The namespace file.
        path: PathBuf,
        /// The system error.
        errno: nix::errno::Errno,
    },
    /// CHECK needs the cached ADD result and there is none.
    #[error("network \"{network}\": no cached CNI result for container {container_id} interface {ifname}")]
    NoCachedResult {
        /// Network name.
        network: String,
        /// Container ID.
        container_id: String,
        /// Interface name.
        ifname: String,
    },
    /// A firewall command failed.
    #[error("firewall ({backend}): {msg}")]
    Firewall {
        /// The backend name.
        backend: String,
        /// The command and its output.
        msg: String,
    },
}

impl NetError {
    /// Shorthand for [`NetError::Io`].
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }
}

fn invalid_note(invalid: &[String]) -> String {
    if invalid.is_empty() {
        String::new()
    } else {
        format!(" (files that failed to load: {})", invalid.join("; "))
    }
}

fn details_note(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

fn join_paths(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no plugin directories configured)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn display_host(ip: &str) -> String {
    if ip.is_empty() {
        "0.0.0.0".to_string()
    } else if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}
