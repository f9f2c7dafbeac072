//! CNI configuration: loading `.conflist`, `.conf` and `.json` files and reading what the
//! runtime needs out of them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::NetError;

/// The CNI specification versions this crate accepts in configuration files.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Where host-local keeps its leases when the configuration names no `dataDir`.
pub const HOST_LOCAL_DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One CNI network: a configuration list (a `.conf` file is turned into a list of one plugin).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name.
    pub name: String,
    /// The list's `cniVersion`.
    pub cni_version: String,
    /// Each plugin object as in the file.
    pub plugins: Vec<Value>,
    /// The list's `disableCheck`.
    pub disable_check: bool,
    /// The file it came from.
    pub path: PathBuf,
    /// The whole list (a `.conf` is turned into `{cniVersion,name,plugins:[obj]}`).
    pub raw: Value,
}

/// Parse "a.b.c" into a comparable tuple (None if malformed).
pub(crate) fn version_tuple(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

fn invalid(path: &Path, msg: impl Into<String>) -> NetError {
    NetError::ConfigInvalid {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl NetworkConfigList {
    /// Parse a configuration file's contents. `path` decides nothing but is kept for messages;
    /// an object with a `plugins` key is a list, any other object a single plugin.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, NetError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| NetError::ConfigParse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            msg: e.to_string(),
        })?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(path, "top level is not a JSON object"))?;
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(invalid(path, "missing network name")),
            Some(_) => return Err(invalid(path, "\"name\" is not a string")),
        };
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) => s.clone(),
            None => return Err(invalid(path, "missing cniVersion")),
            Some(_) => return Err(invalid(path, "\"cniVersion\" is not a string")),
        };
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(invalid(
                path,
                format!(
                    "unsupported cniVersion \"{cni_version}\" (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let (plugins, raw) = if let Some(p) = obj.get("plugins") {
            let arr = p
                .as_array()
                .ok_or_else(|| invalid(path, "\"plugins\" is not an array"))?;
            (arr.clone(), v.clone())
        } else {
            let mut plugin: Map<String, Value> = obj.clone();
            plugin.remove("cniVersion");
            plugin.remove("name");
            let plugin = Value::Object(plugin);
            let raw = json!({"cniVersion": cni_version, "name": name, "plugins": [plugin.clone()]});
            (vec![plugin], raw)
        };
        if plugins.is_empty() {
            return Err(invalid(path, format!("network \"{name}\" has no plugins")));
        }
        for (i, p) in plugins.iter().enumerate() {
            match p.get("type") {
                Some(Value::String(t)) if !t.is_empty() => {}
                _ => {
                    return Err(invalid(
                        path,
                        format!("plugin {} of network \"{name}\" is missing \"type\"", i + 1),
                    ))
                }
            }
        }
        let disable_check = match obj.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            Some(_) => return Err(invalid(path, "\"disableCheck\" is not a boolean")),
        };
        Ok(NetworkConfigList {
            name,
            cni_version,
            plugins,
            disable_check,
            path: path.to_path_buf(),
            raw,
        })
    }

    /// The `type` of each plugin, in order.
    pub fn plugin_types(&self) -> Vec<String> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// The host bridge of the first `bridge` plugin (the plugin's default `cni0` when the key is absent).
    pub fn bridge_name(&self) -> Option<String> {
        self.plugins
            .iter()
            .find(|p| p.get("type").and_then(Value::as_str) == Some("bridge"))
            .map(|p| {
                p.get("bridge")
                    .and_then(Value::as_str)
                    .unwrap_or("cni0")
                    .to_string()
            })
    }

    fn ipam_values(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.plugins {
            let Some(ipam) = p.get("ipam") else { continue };
            if let Some(ranges) = ipam.get("ranges").and_then(Value::as_array) {
                for set in ranges {
                    for r in set.as_array().into_iter().flatten() {
                        if let Some(s) = r.get(key).and_then(Value::as_str) {
                            out.push(s.to_string());
                        }
                    }
                }
            }
            if let Some(s) = ipam.get(key).and_then(Value::as_str) {
                out.push(s.to_string());
            }
        }
        out
    }

    /// Subnets of the IPAM configuration (`ipam.ranges[][].subnet` and `ipam.subnet`).
    pub fn subnets(&self) -> Vec<String> {
        self.ipam_values("subnet")
    }

    /// Gateways of the IPAM configuration (`ipam.ranges[][].gateway` and `ipam.gateway`).
    pub fn gateways(&self) -> Vec<String> {
        self.ipam_values("gateway")
    }

    /// The type of the first plugin ("bridge", "macvlan", …).
    pub fn driver(&self) -> String {
        self.plugin_types().into_iter().next().unwrap_or_default()
    }

    /// For host-local IPAM only: the directory holding this network's leases
    /// (`<ipam.dataDir or /var/lib/cni/networks>/<network name>`).
    pub fn ipam_data_dir(&self) -> Option<PathBuf> {
        self.plugins.iter().find_map(|p| {
            let ipam = p.get("ipam")?;
            if ipam.get("type").and_then(Value::as_str) != Some("host-local") {
                return None;
            }
            let base = ipam
                .get("dataDir")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(HOST_LOCAL_DEFAULT_DATA_DIR);
            Some(Path::new(base).join(&self.name))
        })
    }
}

/// The networks of one configuration directory.
#[derive(Debug, Default)]
pub struct ConfigDir {
    /// The directory.
    pub dir: PathBuf,
    /// Valid networks, in lexical order of their files; on duplicate names the first wins.
    pub networks: Vec<NetworkConfigList>,
    /// Files that failed to load.
    pub invalid: Vec<NetError>,
}

fn error_path(e: &NetError) -> Option<&Path> {
    match e {
        NetError::Io { path, .. }
        | NetError::ConfigParse { path, .. }
        | NetError::ConfigInvalid { path, .. } => Some(path),
        _ => None,
    }
}

fn clone_config_error(e: &NetError) -> NetError {
    match e {
        NetError::ConfigParse {
            path,
            line,
            column,
            msg,
        } => NetError::ConfigParse {
            path: path.clone(),
            line: *line,
            column: *column,
            msg: msg.clone(),
        },
        NetError::ConfigInvalid { path, msg } => NetError::ConfigInvalid {
            path: path.clone(),
            msg: msg.clone(),
        },
        other => NetError::ConfigInvalid {
            path: error_path(other).map(Path::to_path_buf).unwrap_or_default(),
            msg: other.to_string(),
        },
    }
}

impl ConfigDir {
    /// Load `*.conflist`, `*.conf` and `*.json` from `dir` in lexical order. A missing
    /// directory is empty; a file that fails goes to `invalid`; on duplicate names the first wins.
    pub fn load(dir: &Path) -> Result<ConfigDir, NetError> {
        let mut cd = ConfigDir {
            dir: dir.to_path_buf(),
            ..ConfigDir::default()
        };
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cd),
            Err(e) => return Err(NetError::io("reading CNI configuration directory", dir, e)),
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| NetError::io("reading directory", dir, e))?;
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "conflist" | "conf" | "json") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let loaded = fs::read(&path)
                .map_err(|e| NetError::io("reading", &path, e))
                .and_then(|b| NetworkConfigList::from_bytes(&path, &b));
            match loaded {
                Ok(net) => {
                    if let Some(first) = cd.networks.iter().find(|n| n.name == net.name) {
                        tracing::warn!(
                            network = %net.name,
                            ignored = %path.display(),
                            used = %first.path.display(),
                            "duplicate CNI network name; the first file wins"
                        );
                    } else {
                        cd.networks.push(net);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "skipping invalid CNI configuration file");
                    cd.invalid.push(e);
                }
            }
        }
        Ok(cd)
    }

    /// The network called `name`. If a file that failed to load is the one for that name
    /// (its stem or its `name` key), that file's error is returned instead of "not found".
    pub fn get(&self, name: &str) -> Result<&NetworkConfigList, NetError> {
        if let Some(n) = self.networks.iter().find(|n| n.name == name) {
            return Ok(n);
        }
        for e in &self.invalid {
            let Some(path) = error_path(e) else { continue };
            let stem_matches = path.file_stem().and_then(|s| s.to_str()) == Some(name);
            let name_matches = || {
                fs::read(path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
                    .as_deref()
                    == Some(name)
            };
            if stem_matches || name_matches() {
                return Err(clone_config_error(e));
            }
        }
        Err(NetError::NetworkNotFound {
            name: name.to_string(),
            dir: self.dir.clone(),
            invalid: self.invalid.iter().map(ToString::to_string).collect(),
        })
    }

    /// The network called `name`, if loaded (the caller decides whether to write one).
    pub fn default_network(&self, name: &str) -> Option<&NetworkConfigList> {
        self.networks.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
