//! Helpers shared by the integration tests: building layer tars in memory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use tar::{EntryType, Header};

/// Default mtime of generated entries.
pub const MTIME: u64 = 1_600_000_000;

/// A layer tar under construction. Names are written raw into the header, so hostile names are possible.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// Adds an entry; `f` may adjust the header (owner, mtime, device numbers) before the checksum.
    pub fn add(
        &mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
        f: impl FnOnce(&mut Header),
    ) -> &mut Self {
        let mut h = header(name, kind, mode, link, data.len() as u64);
        f(&mut h);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// Adds an entry whose content comes from a reader of `size` bytes (streamed into the builder).
    pub fn add_reader(&mut self, name: &str, size: u64, data: impl Read) -> &mut Self {
        let mut h = header(name, EntryType::Regular, 0o644, "", size);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.add(name, EntryType::Regular, 0o644, "", data, |_| {})
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.add(name, EntryType::Directory, 0o755, "", b"", |_| {})
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(name, EntryType::Symlink, 0o777, target, b"", |_| {})
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(name, EntryType::Link, 0o644, target, b"", |_| {})
    }

    /// `.wh.NAME` as written by containers/image: a regular file of mode 0.
    pub fn whiteout(&mut self, dir: &str, name: &str) -> &mut Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.add(&path, EntryType::Regular, 0, "", b"", |_| {})
    }

    /// The opaque marker of `dir`: mode 0755 and mtime 0, as observed.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.add(
            &format!("{dir}/.wh..wh..opq"),
            EntryType::Regular,
            0o755,
            "",
            b"",
            |h| h.set_mtime(0),
        )
    }

    /// Adds PAX records that apply to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn header(name: &str, kind: EntryType, mode: u32, link: &str, size: u64) -> Header {
    let mut h = Header::new_ustar();
    let old = h.as_old_mut();
    assert!(name.len() < 100 && link.len() < 100);
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// A reader that hands out at most `chunk` bytes per call.
pub struct Chunked<R> {
    pub inner: R,
    pub chunk: usize,
}

impl<R: Read> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk);
        self.inner.read(&mut buf[..n])
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub mod image;
pub mod registry;
