//! The vfs driver: every layer is a full directory tree, a copy of its parent with its own changes applied.

use std::path::{Path, PathBuf};

use super::copy::copy_tree;
use crate::layers::error::LayerResult;

/// Copies the parent's tree into the temp layer (if there is a parent) and returns the directory to unpack into.
pub(crate) fn populate(dir: &Path, parent: Option<PathBuf>) -> LayerResult<PathBuf> {
    if let Some(parent) = parent {
        copy_tree(&parent, dir)?;
    }
    Ok(dir.to_owned())
}
