//! Finding and executing CNI plugin binaries (the CNI exec protocol, protocols.md §3.1).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

use crate::NetError;

/// The PATH given to plugins (bridge, portmap and firewall exec `iptables`).
pub const PLUGIN_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where plugins are looked up, in order.
#[derive(Debug, Clone)]
pub struct PluginExec {
    /// Plugin directories (CNI_PATH), searched in order.
    pub plugin_dirs: Vec<PathBuf>,
}

/// The per-call environment of one plugin run.
#[derive(Debug, Clone)]
pub(crate) struct Invocation<'a> {
    /// ADD, DEL, CHECK.
    pub command: &'a str,
    /// CNI_CONTAINERID.
    pub container_id: &'a str,
    /// CNI_NETNS.
    pub netns: &'a Path,
    /// CNI_IFNAME.
    pub ifname: &'a str,
    /// CNI_ARGS.
    pub args: &'a str,
}

/// Build the stdin config of one plugin, as libcni does: the plugin object plus the list's
/// `name` and `cniVersion`, `prevResult` when there is one, and `runtimeConfig` holding only
/// the capabilities the plugin declares true and the caller supplies.
pub(crate) fn plugin_stdin(
    plugin: &Value,
    network: &str,
    cni_version: &str,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut obj = plugin.as_object().cloned().unwrap_or_default();
    obj.insert("name".into(), json!(network));
    obj.insert("cniVersion".into(), json!(cni_version));
    if let Some(p) = prev {
        obj.insert("prevResult".into(), p.clone());
    }
    let declared: Vec<String> = plugin
        .get("capabilities")
        .and_then(Value::as_object)
        .map(|caps| {
            caps.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut rc = Map::new();
    for cap in declared {
        if let Some(v) = capability_args.get(&cap) {
            rc.insert(cap, v.clone());
        }
    }
    if !rc.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(rc));
    }
    Value::Object(obj)
}

/// Turn a failed plugin's output into the error the user sees.
pub(crate) fn plugin_failure(
    network: &str,
    plugin: &str,
    command: &str,
    status: &str,
    stdout: &[u8],
    stderr: &[u8],
) -> NetError {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let (Some(code), Some(msg)) = (
            v.get("code").and_then(Value::as_u64),
            v.get("msg").and_then(Value::as_str),
        ) {
            return NetError::Plugin {
                network: network.to_string(),
                plugin: plugin.to_string(),
                command: command.to_string(),
                code: u32::try_from(code).unwrap_or(u32::MAX),
                msg: msg.to_string(),
                details: v
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            };
        }
    }
    let mut detail = status.to_string();
    let out = String::from_utf8_lossy(stdout);
    let err = String::from_utf8_lossy(stderr);
    if !err.trim().is_empty() {
        detail.push_str(&format!("; stderr: {}", err.trim()));
    }
    if !out.trim().is_empty() {
        detail.push_str(&format!("; stdout: {}", out.trim()));
    }
    if err.trim().is_empty() && out.trim().is_empty() {
        detail.push_str(" with no output");
    }
    NetError::PluginExec {
        network: network.to_string(),
        plugin: plugin.to_string(),
        command: command.to_string(),
        detail,
    }
}

impl PluginExec {
    /// Plugins are looked up in `plugin_dirs`, in order.
    pub fn new(plugin_dirs: Vec<PathBuf>) -> Self {
        PluginExec { plugin_dirs }
    }

    /// The first executable regular file called `plugin_type` in the plugin directories.
    pub fn find(&self, plugin_type: &str) -> Result<PathBuf, NetError> {
        if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type == ".." {
            return Err(NetError::InvalidNetwork {
                msg: format!("invalid CNI plugin type \"{plugin_type}\""),
            });
        }
        for dir in &self.plugin_dirs {
            let p = dir.join(plugin_type);
            if let Ok(md) = std::fs::metadata(&p) {
                if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                    return Ok(p);
                }
            }
        }
        Err(NetError::PluginNotFound {
            plugin: plugin_type.to_string(),
            dirs: self.plugin_dirs.clone(),
        })
    }

    fn cni_path(&self) -> String {
        self.plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The CNI versions a plugin supports (`CNI_COMMAND=VERSION`).
    pub fn version(&self, plugin_type: &str) -> Result<Vec<String>, NetError> {
        let stdin = json!({"cniVersion": "1.0.0"});
        let inv = Invocation {
            command: "VERSION",
            container_id: "",
            netns: Path::new(""),
            ifname: "",
            args: "",
        };
        let out = self.exec("", plugin_type, &stdin, &inv)?;
        let list = out
            .as_ref()
            .and_then(|v| v.get("supportedVersions"))
            .and_then(Value::as_array)
            .ok_or_else(|| NetError::PluginExec {
                network: String::new(),
                plugin: plugin_type.to_string(),
                command: "VERSION".into(),
                detail: "answer has no supportedVersions".into(),
            })?;
        Ok(list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect())
    }

    /// Run one plugin with `stdin` as its configuration. Returns the parsed stdout for ADD and
    /// VERSION, `None` for DEL and CHECK.
    pub(crate) fn exec(
        &self,
        network: &str,
        plugin_type: &str,
        stdin: &Value,
        inv: &Invocation<'_>,
    ) -> Result<Option<Value>, NetError> {
        let bin = self.find(plugin_type)?;
        let exec_err = |detail: String| NetError::PluginExec {
            network: network.to_string(),
            plugin: plugin_type.to_string(),
            command: inv.command.to_string(),
            detail,
        };
        let input = serde_json::to_vec(stdin).map_err(|e| exec_err(e.to_string()))?;
        tracing::debug!(
            network,
            plugin = plugin_type,
            command = inv.command,
            container = inv.container_id,
            ifname = inv.ifname,
            "running CNI plugin"
        );
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("CNI_COMMAND", inv.command)
            .env("CNI_CONTAINERID", inv.container_id)
            .env("CNI_NETNS", inv.netns)
            .env("CNI_IFNAME", inv.ifname)
            .env("CNI_ARGS", inv.args)
            .env("CNI_PATH", self.cni_path())
            .env("PATH", PLUGIN_PATH_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // ETXTBSY: a binary just written may briefly be held open by a concurrent fork
        // elsewhere in this process; retry a few times.
        let mut attempt = 0;
        let mut child = loop {
            match cmd.spawn() {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5 * attempt));
                }
                Err(e) => return Err(exec_err(format!("cannot execute {}: {e}", bin.display()))),
            }
        };
        // Feed stdin from a thread so a plugin that writes before reading cannot deadlock us.
        let writer = child.stdin.take().map(|mut w| {
            std::thread::spawn(move || {
                // EPIPE (the plugin exited without reading) shows up in its exit status instead.
                let _ = w.write_all(&input);
            })
        });
        let mut stderr_pipe = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = stderr_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let mut stdout = Vec::new();
        if let Some(mut p) = child.stdout.take() {
            if let Err(e) = p.read_to_end(&mut stdout) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(exec_err(format!("reading its output: {e}")));
            }
        }
        let status = child
            .wait()
            .map_err(|e| exec_err(format!("waiting for it: {e}")))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stderr = err_reader.join().unwrap_or_default();
        if !status.success() {
            let st = match (status.code(), status.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "abnormal exit".to_string(),
            };
            return Err(plugin_failure(
                network,
                plugin_type,
                inv.command,
                &st,
                &stdout,
                &stderr,
            ));
        }
        if !stderr.is_empty() {
            tracing::debug!(plugin = plugin_type, stderr = %String::from_utf8_lossy(&stderr), "CNI plugin stderr");
        }
        if matches!(inv.command, "ADD" | "VERSION") {
            let v: Value = serde_json::from_slice(&stdout).map_err(|e| {
                exec_err(format!(
                    "exited 0 but its output is not JSON ({e}): {}",
                    String::from_utf8_lossy(&stdout).trim()
                ))
            })?;
            Ok(Some(v))
        } else {
            Ok(None)
        }
    }
}
