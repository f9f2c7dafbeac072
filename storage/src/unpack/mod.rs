//! Unpacking OCI layer blobs into a directory.
//!
//! [`unpack_layer`] reads a layer blob (gzip, zstd or plain tar, recognised by its magic bytes) as a stream and
//! applies each tar entry to a destination directory: regular files, directories, symlinks, hard links, device
//! nodes and fifos, with their permission bits (including setuid, setgid and sticky), owner, mtime and
//! `SCHILY.xattr.*` extended attributes. Whiteouts are applied per [`WhiteoutMode`].
//!
//! Every entry name is checked: absolute names, `..` that leaves the root, and paths that go through a symlink
//! out of the root (or through an absolute symlink) are refused with [`StorageError::UnsafeEntry`] naming the
//! entry; hard links must point at an existing non-directory beneath the root. Nothing is written outside the
//! destination.
//!
//! The unpacker runs as root: owners are applied as recorded (no ID mapping yet). Files are not fsynced one by
//! one; the caller syncs the filesystem when it records the layer as complete.

mod compression;
mod safepath;
mod walk;
mod whiteout;

use std::fs;
use std::io::{self, Read};
use std::path::Path;

pub(crate) use compression::decompress;
pub use compression::Compression;

use crate::error::{Result, StorageError};

/// How whiteout entries are represented in the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The destination is the layer's own overlayfs `diff` directory: `.wh.NAME` becomes a 0/0 character device
    /// and `.wh..wh..opq` the xattr `trusted.overlay.opaque=y`.
    Overlay,
    /// The destination already holds the lower layers' union (vfs-style): whiteouts delete what they name and an
    /// opaque marker empties its directory of lower contents.
    Delete,
}

/// What [`unpack_layer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries processed (whiteouts and the root entry included).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// `.wh.NAME` whiteouts applied.
    pub whiteouts: u64,
    /// Opaque directory markers applied.
    pub opaque_dirs: u64,
    /// The compression detected on the blob.
    pub compression: Option<Compression>,
}

/// Unpacks the layer blob read from `reader` into the existing directory `dest`.
///
/// The stream is read once, entry by entry, and never held in memory; after the tar's end marker the rest of
/// the stream is read too, so that a gzip trailer is checked. On error, `dest` may hold part of the layer: the
/// caller must remove it (it is the caller's directory, and only the caller knows whether it was fresh).
pub fn unpack_layer(reader: impl Read, dest: &Path, mode: WhiteoutMode) -> Result<LayerStats> {
    unpack_layer_with(reader, dest, mode, |s| s)
}

/// [`unpack_layer`] that also returns the sha256 and size of the whole decompressed (tar) stream: the layer's
/// `diff_id`, computed in the same pass.
pub(crate) fn unpack_layer_hashed(
    reader: impl Read,
    dest: &Path,
    mode: WhiteoutMode,
) -> Result<(LayerStats, crate::Digest, u64)> {
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut size = 0u64;
    let stats = unpack_layer_with(reader, dest, mode, |s| {
        Box::new(HashingRead {
            inner: s,
            hasher: &mut hasher,
            size: &mut size,
        })
    })?;
    Ok((stats, crate::Digest::from_hasher(hasher), size))
}

/// Feeds everything read through it into a sha256 and counts the bytes.
struct HashingRead<'h, R> {
    inner: R,
    hasher: &'h mut sha2::Sha256,
    size: &'h mut u64,
}

impl<R: Read> Read for HashingRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = buf.get(..n).unwrap_or_default();
        sha2::Digest::update(self.hasher, chunk);
        *self.size += n as u64;
        Ok(n)
    }
}

fn unpack_layer_with<'a>(
    reader: impl Read + 'a,
    dest: &Path,
    mode: WhiteoutMode,
    wrap: impl FnOnce(Box<dyn Read + 'a>) -> Box<dyn Read + 'a>,
) -> Result<LayerStats> {
    let meta = fs::metadata(dest).map_err(|e| StorageError::io("stat destination", dest, e))?;
    if !meta.is_dir() {
        return Err(StorageError::io(
            "unpack into",
            dest,
            io::Error::new(
                io::ErrorKind::NotADirectory,
                "destination is not a directory",
            ),
        ));
    }
    let (stream, compression) = compression::decompress(reader)?;
    let mut archive = tar::Archive::new(wrap(stream));
    let mut unpacker = walk::Unpacker::new(dest, mode);
    unpacker.stats.compression = Some(compression);
    let entries = archive.entries().map_err(|e| StorageError::Read {
        what: "stream".into(),
        source: e,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|e| StorageError::Read {
            what: "stream".into(),
            source: e,
        })?;
        unpacker.apply(&mut entry)?;
    }
    unpacker.finish()?;
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| StorageError::Read {
        what: "stream after the tar end".into(),
        source: e,
    })?;
    tracing::debug!(dest = %dest.display(), ?mode, stats = ?unpacker.stats, "unpacked layer");
    Ok(unpacker.stats)
}
