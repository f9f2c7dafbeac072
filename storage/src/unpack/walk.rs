//! The tar walk: applying each entry of a layer to the destination directory.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use tar::EntryType;

use super::safepath::{is_real_dir, resolve_dir, resolve_leaf, Missing, RelPath};
use super::{whiteout, LayerStats, WhiteoutMode};
use crate::error::{Result, StorageError};

/// Prefix of PAX records that carry extended attributes.
const PAX_XATTR: &str = "SCHILY.xattr.";

/// Metadata of one entry, from its header and PAX records.
pub(crate) struct Meta {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

/// State of one layer's unpack.
pub(crate) struct Unpacker<'a> {
    pub(crate) root: &'a Path,
    pub(crate) mode: WhiteoutMode,
    pub(crate) stats: LayerStats,
    /// Real (symlink-free) paths written by this layer, with their ancestors: an opaque marker keeps them.
    pub(crate) written: HashSet<RelPath>,
    /// Directories whose mtime is set once the walk is over (creating their contents changes it).
    dir_times: Vec<(RelPath, String, i64)>,
}

impl<'a> Unpacker<'a> {
    pub(crate) fn new(root: &'a Path, mode: WhiteoutMode) -> Self {
        Unpacker {
            root,
            mode,
            stats: LayerStats::default(),
            written: HashSet::new(),
            dir_times: Vec::new(),
        }
    }

    /// Records `real` (and its ancestors) as written by this layer.
    pub(crate) fn record(&mut self, real: &RelPath) {
        for i in 1..=real.0.len() {
            self.written.insert(RelPath(real.0[..i].to_vec()));
        }
    }

    /// Applies one tar entry.
    pub(crate) fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = RelPath::normalise(&raw, &name)?;
        let kind = entry.header().entry_type();
        let meta = read_meta(entry, &name)?;
        self.stats.entries += 1;

        if rel
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(whiteout::PREFIX))
        {
            return whiteout::apply(self, &rel, &name, &meta);
        }
        if rel.0.is_empty() {
            // The root's own entry ("./"): its mode and owner are the caller's to choose (containers/storage
            // keeps the layer dir at 0555), so it is not applied.
            if kind.is_dir() {
                return Ok(());
            }
            return Err(StorageError::unsafe_entry(
                &name,
                "a non-directory entry names the layer root",
            ));
        }
        let real = resolve_leaf(self.root, &rel, &name)?;
        let path = real.under(self.root);
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                prepare_leaf(&path, &name, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(|e| apply_err("create file", &name, &path, e))?;
                let n = io::copy(entry, &mut file).map_err(|e| StorageError::Read {
                    what: format!("entry {name:?}"),
                    source: e,
                })?;
                self.stats.bytes += n;
                set_owner_mode(&path, &name, &meta, true)?;
                set_xattrs(&path, &name, &meta)?;
                set_mtime(&path, &name, meta.mtime)?;
                drop(file);
            }
            EntryType::Directory => {
                if !prepare_leaf(&path, &name, true)? {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(|e| apply_err("mkdir", &name, &path, e))?;
                }
                set_owner_mode(&path, &name, &meta, true)?;
                set_xattrs(&path, &name, &meta)?;
                self.dir_times
                    .push((real.clone(), name.clone(), meta.mtime));
            }
            EntryType::Symlink => {
                let target = link_name(entry, &name)?;
                prepare_leaf(&path, &name, false)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| apply_err("create symlink", &name, &path, e))?;
                set_owner_mode(&path, &name, &meta, false)?;
                set_xattrs(&path, &name, &meta)?;
                set_mtime(&path, &name, meta.mtime)?;
            }
            EntryType::Link => self.hard_link(entry, &name, &path)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let h = entry.header();
                        let major = h.device_major().ok().flatten().unwrap_or(0);
                        let minor = h.device_minor().ok().flatten().unwrap_or(0);
                        let ft = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                };
                prepare_leaf(&path, &name, false)?;
                make_node(&path, &name, ft, dev)?;
                set_owner_mode(&path, &name, &meta, true)?;
                set_xattrs(&path, &name, &meta)?;
                set_mtime(&path, &name, meta.mtime)?;
            }
            EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(StorageError::UnsupportedEntry {
                    entry: name,
                    kind: format!("{:?}", other),
                });
            }
        }
        self.record(&real);
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
    ) -> Result<()> {
        let raw_target = link_name(entry, name)?;
        let target_name = String::from_utf8_lossy(&raw_target).into_owned();
        let bad = |reason: String| StorageError::BadHardLink {
            entry: name.to_owned(),
            target: target_name.clone(),
            reason,
        };
        let target =
            RelPath::normalise(&raw_target, &target_name).map_err(|e| bad(e.to_string()))?;
        let leaf = target
            .file_name()
            .ok_or_else(|| bad("target is the layer root".into()))?
            .to_owned();
        let parent = resolve_dir(self.root, &target.parent(), &target_name, Missing::Absent)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("target does not exist in this layer or below".into()))?;
        let target_path = parent.join(&leaf).under(self.root);
        match fs::symlink_metadata(&target_path) {
            Ok(m) if m.is_dir() => return Err(bad("target is a directory".into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(bad("target does not exist in this layer or below".into()))
            }
            Err(e) => return Err(apply_err("stat hard link target", name, &target_path, e)),
        }
        if target_path == path {
            return Ok(());
        }
        prepare_leaf(path, name, false)?;
        // linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        fs::hard_link(&target_path, path).map_err(|e| apply_err("create hard link", name, path, e))
    }

    /// Applies the directories' mtimes, deepest first, once all their contents exist.
    pub(crate) fn finish(&mut self) -> Result<()> {
        for (real, name, mtime) in self.dir_times.drain(..).rev() {
            // A later entry of the same layer may have removed the directory or replaced it (or an ancestor) by
            // something else, possibly a symlink: only a path that is still directories all the way is touched.
            if is_real_dir(self.root, &real) {
                set_mtime(&real.under(self.root), &name, mtime)?;
            }
        }
        Ok(())
    }
}

/// Reads mode, owner, mtime (PAX records override the header) and `SCHILY.xattr.*` records.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
    let read_err = |e: io::Error| StorageError::Read {
        what: format!("header of entry {name:?}"),
        source: e,
    };
    let h = entry.header();
    let old = h.as_old();
    let mut meta = Meta {
        // The mode field may include the file-type bits (Go's tar.FileInfoHeader): keep permissions only.
        mode: numeric(h.mode().map(u64::from), &old.mode).map_err(read_err)? as u32 & 0o7777,
        uid: u32::try_from(numeric(h.uid(), &old.uid).map_err(read_err)?).unwrap_or(u32::MAX),
        gid: u32::try_from(numeric(h.gid(), &old.gid).map_err(read_err)?).unwrap_or(u32::MAX),
        mtime: i64::try_from(numeric(h.mtime(), &old.mtime).map_err(read_err)?).unwrap_or(0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(read_err)? {
        for ext in exts {
            let ext = ext.map_err(read_err)?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
            };
            if let Some(xname) = key.strip_prefix(PAX_XATTR) {
                meta.xattrs.push((xname.to_owned(), value.to_vec()));
            } else if key == "uid" {
                meta.uid = num()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(meta.uid);
            } else if key == "gid" {
                meta.gid = num()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(meta.gid);
            } else if key == "mtime" {
                meta.mtime = num().unwrap_or(meta.mtime);
            }
        }
    }
    Ok(meta)
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's archive/tar does.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<Vec<u8>> {
    entry
        .link_name_bytes()
        .map(|l| l.into_owned())
        .ok_or_else(|| StorageError::unsafe_entry(name, "link entry without a link name"))
}

pub(crate) fn apply_err(op: &str, entry: &str, path: &Path, source: io::Error) -> StorageError {
    StorageError::Apply {
        op: op.to_owned(),
        entry: entry.to_owned(),
        path: path.to_owned(),
        source,
    }
}

/// Clears the way for a new entry at `path` (never following a symlink there). When `keep_dir` is set and a
/// directory is already there, it is kept (a layer re-emits a parent whose contents changed) and `true` is
/// returned. Anything else in the way is removed (recursively for a directory replaced by a non-directory).
pub(crate) fn prepare_leaf(path: &Path, entry: &str, keep_dir: bool) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(path)
                .map_err(|e| apply_err("remove directory in the way", entry, path, e))?;
        }
        Ok(_) => fs::remove_file(path)
            .map_err(|e| apply_err("remove file in the way", entry, path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(apply_err("stat", entry, path, e)),
    }
    Ok(false)
}

pub(crate) fn make_node(
    path: &Path,
    entry: &str,
    ft: FileType,
    dev: rustix::fs::Dev,
) -> Result<()> {
    rustix::fs::mknodat(CWD, path, ft, Mode::empty(), dev)
        .map_err(|e| apply_err("mknod", entry, path, io::Error::from(e)))
}

/// Sets the owner (without following a symlink), then the permission bits (after chown, which clears
/// setuid/setgid).
pub(crate) fn set_owner_mode(path: &Path, entry: &str, meta: &Meta, chmod: bool) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
        .map_err(|e| apply_err("chown", entry, path, e))?;
    if chmod {
        fs::set_permissions(path, Permissions::from_mode(meta.mode))
            .map_err(|e| apply_err("chmod", entry, path, e))?;
    }
    Ok(())
}

/// Sets the entry's xattrs. `security.*` ones are best effort (an LSM may refuse them); others must apply.
fn set_xattrs(path: &Path, entry: &str, meta: &Meta) -> Result<()> {
    for (name, value) in &meta.xattrs {
        if let Err(e) = rustix::fs::lsetxattr(path, name.as_str(), value, XattrFlags::empty()) {
            if name.starts_with("security.") {
                tracing::warn!(entry, xattr = %name, error = %e, "cannot set security xattr, skipping");
                continue;
            }
            return Err(apply_err(
                &format!("set xattr {name}"),
                entry,
                path,
                io::Error::from(e),
            ));
        }
    }
    Ok(())
}

/// Sets atime and mtime to the entry's mtime, without following a symlink.
pub(crate) fn set_mtime(path: &Path, entry: &str, mtime: i64) -> Result<()> {
    let ts = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| apply_err("set mtime", entry, path, io::Error::from(e)))
}
