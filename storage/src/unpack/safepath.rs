//! Path safety: normalising entry names and resolving them beneath the destination without ever letting a
//! symlink redirect a write outside it.
//!
//! Entry names are normalised lexically (`.` and empty components dropped, `a/..` cancelled). An absolute name
//! or a `..` that would climb above the root is refused. Parent directories are then resolved one component at
//! a time with `symlink_metadata`: a symlink met on the way is followed only if its target is relative and stays
//! beneath the root (an absolute target, or one that climbs out, is refused); the last component is never
//! followed. The destination is assumed to be private to the unpacker while it runs.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Mode of parent directories that a layer uses without listing them.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// How many symlinks one resolution may follow (as the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: u32 = 40;

/// A normalised path relative to the layer root: no empty, `.` or `..` components. Empty means the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct RelPath(pub(crate) Vec<OsString>);

impl RelPath {
    /// Normalises the tar name `raw` of entry `entry` (its display form for errors).
    pub(crate) fn normalise(raw: &[u8], entry: &str) -> Result<Self> {
        if raw.first() == Some(&b'/') {
            return Err(StorageError::unsafe_entry(entry, "absolute path"));
        }
        let mut parts: Vec<OsString> = Vec::new();
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if parts.pop().is_none() {
                        return Err(StorageError::unsafe_entry(
                            entry,
                            "\"..\" leads outside the layer root",
                        ));
                    }
                }
                c => parts.push(OsStr::from_bytes(c).to_owned()),
            }
        }
        Ok(RelPath(parts))
    }

    /// The path below `root`.
    pub(crate) fn under(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        p.extend(&self.0);
        p
    }

    /// The last component, or `None` for the root.
    pub(crate) fn file_name(&self) -> Option<&OsStr> {
        self.0.last().map(OsString::as_os_str)
    }

    /// The parent path (the root's parent is the root).
    pub(crate) fn parent(&self) -> RelPath {
        let mut p = self.0.clone();
        p.pop();
        RelPath(p)
    }

    /// This path with one more component.
    pub(crate) fn join(&self, name: &OsStr) -> RelPath {
        let mut p = self.0.clone();
        p.push(name.to_owned());
        RelPath(p)
    }
}

/// What to do when a directory on the way does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Create it (mode 0755, owned by the unpacker).
    Create,
    /// Report it: [`resolve_dir`] returns `Ok(None)`.
    Absent,
}

/// Resolves directory `dir` beneath `root`, following in-root relative symlinks, and returns the real (symlink
/// free) relative path of that directory. `Ok(None)` when a component is missing and `missing` is
/// [`Missing::Absent`].
pub(crate) fn resolve_dir(
    root: &Path,
    dir: &RelPath,
    entry: &str,
    missing: Missing,
) -> Result<Option<RelPath>> {
    let mut queue: VecDeque<OsString> = dir.0.iter().cloned().collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0u32;
    while let Some(comp) = queue.pop_front() {
        if comp == ".." {
            if resolved.pop().is_none() {
                return Err(StorageError::unsafe_entry(
                    entry,
                    "a symlink on its path leads outside the layer root",
                ));
            }
            continue;
        }
        if comp.is_empty() || comp == "." {
            continue;
        }
        resolved.push(comp);
        let here = RelPath(resolved.clone()).under(root);
        let meta = match fs::symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match missing {
                Missing::Absent => return Ok(None),
                Missing::Create => {
                    fs::DirBuilder::new()
                        .mode(IMPLICIT_DIR_MODE)
                        .create(&here)
                        .map_err(|e| StorageError::Apply {
                            op: "create parent directory".into(),
                            entry: entry.into(),
                            path: here,
                            source: e,
                        })?;
                    continue;
                }
            },
            Err(e) => {
                return Err(StorageError::Apply {
                    op: "stat parent".into(),
                    entry: entry.into(),
                    path: here,
                    source: e,
                })
            }
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            continue;
        }
        if !ft.is_symlink() {
            if missing == Missing::Absent {
                // Nothing can exist beneath a non-directory.
                return Ok(None);
            }
            return Err(StorageError::unsafe_entry(
                entry,
                format!("parent {} is not a directory", here.display()),
            ));
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            return Err(StorageError::unsafe_entry(
                entry,
                "too many levels of symbolic links on its path",
            ));
        }
        let target = fs::read_link(&here).map_err(|e| StorageError::Apply {
            op: "read symlink".into(),
            entry: entry.into(),
            path: here.clone(),
            source: e,
        })?;
        if target.is_absolute() {
            return Err(StorageError::unsafe_entry(
                entry,
                format!(
                    "its path goes through symlink {} to absolute {}",
                    here.display(),
                    target.display()
                ),
            ));
        }
        resolved.pop();
        let bytes = target.as_os_str().as_bytes();
        for part in bytes.split(|&b| b == b'/').rev() {
            queue.push_front(OsStr::from_bytes(part).to_owned());
        }
    }
    Ok(Some(RelPath(resolved)))
}

/// Resolves the parent of `path` (creating missing directories) and returns the real path of the entry itself,
/// whose last component is not followed.
pub(crate) fn resolve_leaf(root: &Path, path: &RelPath, entry: &str) -> Result<RelPath> {
    let name = path
        .file_name()
        .ok_or_else(|| StorageError::unsafe_entry(entry, "names the layer root"))?
        .to_owned();
    let parent = resolve_dir(root, &path.parent(), entry, Missing::Create)?.unwrap_or_default();
    Ok(parent.join(&name))
}

/// Whether every component of `rel` beneath `root` is a directory (not a symlink, not missing).
pub(crate) fn is_real_dir(root: &Path, rel: &RelPath) -> bool {
    let mut p = root.to_path_buf();
    rel.0.iter().all(|c| {
        p.push(c);
        fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<Vec<String>> {
        RelPath::normalise(s.as_bytes(), s).map(|p| {
            p.0.iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect()
        })
    }

    #[test]
    fn normalises() {
        assert_eq!(norm("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(norm("a/x/../b").unwrap(), ["a", "b"]);
        assert!(norm("./").unwrap().is_empty());
        assert!(norm("../x").is_err());
        assert!(norm("/abs").is_err());
        assert!(norm("a/../../x").is_err());
    }
}
