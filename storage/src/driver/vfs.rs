//! The vfs driver: every layer is a full directory tree, a copy of its parent with its own changes applied.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layers::error::{LayerError, LayerResult};

/// Copies the parent's tree into the temp layer (if there is a parent) and returns the directory to unpack into.
///
/// The copy is made by `cp -a --reflink=auto` (GNU coreutils), which keeps owners, modes, timestamps, hard
/// links, device nodes and extended attributes (including `trusted.*` as root), and shares extents where the
/// filesystem allows.
pub(crate) fn populate(dir: &Path, parent: Option<PathBuf>) -> LayerResult<PathBuf> {
    let Some(parent) = parent else {
        return Ok(dir.to_owned());
    };
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", "-T"])
        .arg(&parent)
        .arg(dir)
        .output()
        .map_err(|e| LayerError::io("run cp to copy parent layer", &parent, e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(LayerError::io(
            "copy parent layer",
            parent,
            std::io::Error::other(format!("cp {}: {msg}", out.status)),
        ));
    }
    Ok(dir.to_owned())
}
