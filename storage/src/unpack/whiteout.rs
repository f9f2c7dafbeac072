//! Whiteouts (`.wh.NAME`) and opaque directory markers (`.wh..wh..opq`), applied per [`WhiteoutMode`].
//!
//! * [`WhiteoutMode::Delete`]: the destination holds the union of the lower layers (as for the vfs driver);
//!   `.wh.NAME` removes `NAME` from it, and an opaque marker removes every child of its directory that this
//!   layer did not write itself.
//! * [`WhiteoutMode::Overlay`]: the destination is this layer's own `diff` directory for overlayfs; `.wh.NAME`
//!   becomes a character device 0/0 named `NAME`, and an opaque marker becomes the xattr
//!   `trusted.overlay.opaque=y` on its directory (as containers/storage does).
//!
//! Other `.wh..wh.` names (aufs hard-link bookkeeping) are skipped.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{FileType, XattrFlags};

use super::safepath::{resolve_dir, Missing, RelPath};
use super::walk::{apply_err, make_node, prepare_leaf, set_owner_mode, Meta, Unpacker};
use super::WhiteoutMode;
use crate::error::{Result, StorageError};

/// Name prefix of a whiteout.
pub(crate) const PREFIX: &[u8] = b".wh.";
/// Name of the opaque directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";
/// Prefix of aufs metadata entries, which are not whiteouts.
const META_PREFIX: &[u8] = b".wh..wh.";
/// The overlayfs xattr marking a directory opaque.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Applies the whiteout entry `rel` (whose last component starts with `.wh.`).
pub(crate) fn apply(u: &mut Unpacker<'_>, rel: &RelPath, entry: &str, meta: &Meta) -> Result<()> {
    let base = rel
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let dir = rel.parent();
    if base == OPAQUE {
        u.stats.opaque_dirs += 1;
        return opaque(u, &dir, entry);
    }
    if base.starts_with(META_PREFIX) {
        tracing::debug!(entry, "skipping aufs metadata entry");
        return Ok(());
    }
    let target = &base[PREFIX.len()..];
    if target.is_empty() || target == b"." || target == b".." {
        return Err(StorageError::unsafe_entry(
            entry,
            "whiteout of an invalid name",
        ));
    }
    let target = std::ffi::OsStr::from_bytes(target);
    u.stats.whiteouts += 1;
    match u.mode {
        WhiteoutMode::Delete => {
            let Some(real_dir) = resolve_dir(u.root, &dir, entry, Missing::Absent)? else {
                return Ok(());
            };
            let path = real_dir.join(target).under(u.root);
            prepare_leaf(&path, entry, false)?;
            tracing::trace!(entry, path = %path.display(), "whiteout removed lower entry");
        }
        WhiteoutMode::Overlay => {
            let real_dir = resolve_dir(u.root, &dir, entry, Missing::Create)?.unwrap_or_default();
            let real = real_dir.join(target);
            let path = real.under(u.root);
            prepare_leaf(&path, entry, false)?;
            make_node(
                &path,
                entry,
                FileType::CharacterDevice,
                rustix::fs::makedev(0, 0),
            )?;
            let meta = Meta {
                mode: 0,
                uid: meta.uid,
                gid: meta.gid,
                mtime: meta.mtime,
                xattrs: Vec::new(),
            };
            set_owner_mode(&path, entry, &meta, true)?;
            u.record(&real);
        }
    }
    Ok(())
}

/// Makes directory `dir` opaque.
fn opaque(u: &mut Unpacker<'_>, dir: &RelPath, entry: &str) -> Result<()> {
    match u.mode {
        WhiteoutMode::Delete => {
            let Some(real_dir) = resolve_dir(u.root, dir, entry, Missing::Absent)? else {
                return Ok(());
            };
            let path = real_dir.under(u.root);
            let children = fs::read_dir(&path)
                .map_err(|e| apply_err("read opaque directory", entry, &path, e))?;
            for child in children {
                let child =
                    child.map_err(|e| apply_err("read opaque directory", entry, &path, e))?;
                let rel = real_dir.join(&child.file_name());
                if !u.written.contains(&rel) {
                    prepare_leaf(&rel.under(u.root), entry, false)?;
                }
            }
        }
        WhiteoutMode::Overlay => {
            let real_dir = resolve_dir(u.root, dir, entry, Missing::Create)?.unwrap_or_default();
            let path = real_dir.under(u.root);
            rustix::fs::lsetxattr(&path, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(|e| {
                apply_err(
                    "set xattr trusted.overlay.opaque",
                    entry,
                    &path,
                    io::Error::from(e),
                )
            })?;
            u.record(&real_dir);
        }
    }
    Ok(())
}
