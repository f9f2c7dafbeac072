//! A metadata-preserving copy of a directory tree, for the vfs driver's "copy the parent" step.
//!
//! Keeps regular file contents (through `std::fs::copy`, i.e. `copy_file_range`, which shares extents where the
//! filesystem can), directories, symlinks, device nodes, fifos and sockets, hard links within the tree, owners,
//! permission bits (setuid/setgid/sticky included, set after the owner), extended attributes (`trusted.*` too,
//! as root; `security.*` best effort) and access/modification times with nanoseconds.

use std::collections::HashMap;
use std::fs::{self, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

use crate::layers::error::{LayerError, LayerResult};

/// Copies the contents and metadata of directory `src` into the existing directory `dst`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> LayerResult<()> {
    let mut links = HashMap::new();
    copy_contents(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(|e| LayerError::io("stat", src, e))?;
    apply_meta(src, dst, &meta)
}

/// Hard-linked files already copied, by (device, inode) of the source.
type Links = HashMap<(u64, u64), PathBuf>;

fn copy_contents(src: &Path, dst: &Path, links: &mut Links) -> LayerResult<()> {
    let entries = fs::read_dir(src).map_err(|e| LayerError::io("read directory", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LayerError::io("read directory", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(|e| LayerError::io("stat", &from, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(|e| LayerError::io("create directory", &to, e))?;
            copy_contents(&from, &to, links)?;
            apply_meta(&from, &to, &meta)?;
            continue;
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &to).map_err(|e| LayerError::io("hard link", &to, e))?;
                continue;
            }
            links.insert(key, to.clone());
        }
        if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| LayerError::io("copy file", &to, e))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| LayerError::io("read link", &from, e))?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| LayerError::io("create symlink", &to, e))?;
        } else {
            let kind = FileType::from_raw_mode(meta.mode());
            rustix::fs::mknodat(CWD, &to, kind, Mode::empty(), meta.rdev())
                .map_err(|e| LayerError::io("mknod", &to, e.into()))?;
        }
        apply_meta(&from, &to, &meta)?;
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs, then times (last, as the others touch ctime
/// only but a later write to a directory would change its mtime: directories are finished after their contents).
fn apply_meta(from: &Path, to: &Path, meta: &Metadata) -> LayerResult<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| LayerError::io("chown", to, e))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(to, Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| LayerError::io("chmod", to, e))?;
    }
    copy_xattrs(from, to)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| LayerError::io("set times", to, e.into()))
}

fn copy_xattrs(from: &Path, to: &Path) -> LayerResult<()> {
    let xerr = |op, path: &Path, e: rustix::io::Errno| LayerError::io(op, path, io::Error::from(e));
    let len = match rustix::fs::llistxattr_query(from) {
        Ok(0) | Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Ok(n) => n,
        Err(e) => return Err(xerr("list xattrs", from, e)),
    };
    let mut names = vec![0u8; len];
    let len =
        rustix::fs::llistxattr(from, &mut names[..]).map_err(|e| xerr("list xattrs", from, e))?;
    for name in names.get(..len).unwrap_or_default().split(|b| *b == 0) {
        if name.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let size = rustix::fs::lgetxattr_query(from, name.as_str())
            .map_err(|e| xerr("get xattr", from, e))?;
        let mut value = vec![0u8; size];
        let n = rustix::fs::lgetxattr(from, name.as_str(), &mut value[..])
            .map_err(|e| xerr("get xattr", from, e))?;
        let value = value.get(..n).unwrap_or_default();
        if let Err(e) = rustix::fs::lsetxattr(to, name.as_str(), value, XattrFlags::empty()) {
            if name.starts_with("security.") {
                tracing::warn!(path = %to.display(), xattr = name, error = %e, "cannot copy security xattr, skipping");
                continue;
            }
            return Err(xerr("set xattr", to, e));
        }
    }
    Ok(())
}
