//! Host network links rpod made: removing a network's bridge (`rpod network rm`).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::NetError;

/// Deletes the host link `name` (a network's bridge) if it exists, with `ip link delete`.
/// A missing link is not an error.
pub fn remove_bridge(name: &str) -> Result<(), NetError> {
    if name.is_empty() || name.contains('/') || name.len() > 15 {
        return Err(NetError::InvalidNetwork {
            msg: format!("invalid interface name {name:?}"),
        });
    }
    if !Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    let out = Command::new("ip")
        .args(["link", "delete", "dev", name])
        .env("PATH", crate::PLUGIN_PATH_ENV)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetError::io("running `ip link delete` for", Path::new(name), e))?;
    if out.status.success() || !Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    Err(NetError::InvalidNetwork {
        msg: format!(
            "deleting bridge {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}
