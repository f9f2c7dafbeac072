//! The content-addressed blob store: `<root>/blobs/sha256/<hex>`.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::digest::Digest;
use crate::error::{Result, StorageError};

/// Mode of a stored blob: blobs are immutable once written.
const BLOB_MODE: u32 = 0o444;
/// Mode of the store's directories.
const DIR_MODE: u32 = 0o700;
/// Prefix of in-progress writes in the blob directory; such files are never listed.
const TEMP_PREFIX: &str = ".tmp-";
/// Size of the copy buffer used while hashing: the blob is never held in memory.
const CHUNK: usize = 64 * 1024;

/// A content-addressed store of blobs (layers, configs, manifests), one file per sha256 digest.
///
/// A blob is written to a temporary file beside its final name while its digest is computed, then verified,
/// fsynced and renamed into place, so a blob present under its name always has that content. Concurrent writers
/// of the same digest are safe (the last rename wins with identical content).
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// A blob being written ([`BlobStore::writer`]).
#[derive(Debug)]
pub struct BlobWriter {
    file: io::BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
    hasher: sha2::Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A reader that copies every byte it reads into a writer (a blob being stored while it is unpacked).
#[derive(Debug)]
pub struct Tee<R, W> {
    reader: R,
    writer: W,
}

impl<R: Read, W: Write> Tee<R, W> {
    /// Reads from `reader`, copying into `writer`.
    pub fn new(reader: R, writer: W) -> Self {
        Tee { reader, writer }
    }

    /// Reads the rest of the stream (copying it), so the writer holds the whole blob.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// The writer back.
    pub fn into_writer(self) -> W {
        self.writer
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// What [`BlobStore::put`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl BlobStore {
    /// Opens (creating if needed, mode 0700) the store under `root`; blobs live in `<root>/blobs/sha256/`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let dir = root.as_ref().join("blobs").join(Digest::ALGORITHM);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(|e| StorageError::io("create blob directory", &dir, e))?;
        Ok(BlobStore { dir })
    }

    /// Where the blob with this digest is (or would be) stored.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn has(&self, digest: &Digest) -> Result<bool> {
        let path = self.path(digest);
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("stat blob", path, e)),
        }
    }

    /// Opens the blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::BlobNotFound {
                digest: digest.to_string(),
                path,
            },
            _ => StorageError::io("open blob", path, e),
        })
    }

    /// Stores the bytes of `reader`, which must hash to `expected`.
    ///
    /// On a mismatch nothing is left in the store and the error names both digests.
    pub fn put(&self, reader: impl Read, expected: &Digest) -> Result<BlobInfo> {
        self.write(reader, Some(expected))
    }

    /// Stores the bytes of `reader` under whatever digest they have (for blobs produced locally).
    pub fn put_unverified(&self, reader: impl Read) -> Result<BlobInfo> {
        self.write(reader, None)
    }

    fn write(&self, mut reader: impl Read, expected: Option<&Digest>) -> Result<BlobInfo> {
        let mut w = self.writer()?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(StorageError::Read {
                        what: "blob stream".into(),
                        source: e,
                    })
                }
            };
            w.write_all(&buf[..n])
                .map_err(|e| StorageError::io("write", &w.path, e))?;
        }
        self.commit(w, expected)
    }

    /// A writer of a new blob whose bytes are hashed as they are written; [`commit`](Self::commit) verifies
    /// and stores it. Dropped uncommitted, it leaves nothing. Lets a blob be stored while another reader (an
    /// unpacker) consumes the same stream: see [`Tee`].
    pub fn writer(&self) -> Result<BlobWriter> {
        // NamedTempFile removes the file when dropped, which covers every early return.
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| StorageError::io("create temporary blob in", &self.dir, e))?;
        let path = tmp.path().to_owned();
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(CHUNK, tmp),
            path,
            hasher: sha2::Sha256::new(),
            size: 0,
        })
    }

    /// Stores what `w` received under its digest, which must be `expected` when given (on a mismatch nothing
    /// is stored and the error names both digests).
    pub fn commit(&self, w: BlobWriter, expected: Option<&Digest>) -> Result<BlobInfo> {
        let BlobWriter {
            file,
            path: tmp_path,
            hasher,
            size,
        } = w;
        let digest = Digest::from_hasher(hasher);
        if let Some(expected) = expected {
            if *expected != digest {
                tracing::warn!(%expected, actual = %digest, "blob digest mismatch, discarding");
                return Err(StorageError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let tmp = file
            .into_inner()
            .map_err(|e| StorageError::io("write", &tmp_path, e.into_error()))?;
        let f = tmp.as_file();
        f.set_permissions(Permissions::from_mode(BLOB_MODE))
            .map_err(|e| StorageError::io("chmod", &tmp_path, e))?;
        f.sync_all()
            .map_err(|e| StorageError::io("fsync", &tmp_path, e))?;
        let dest = self.path(&digest);
        tmp.persist(&dest)
            .map_err(|e| StorageError::io("rename into place", &dest, e.error))?;
        sync_dir(&self.dir)?;
        tracing::debug!(%digest, size, "stored blob");
        Ok(BlobInfo { digest, size })
    }

    /// Removes the blob; returns whether it was present.
    pub fn remove(&self, digest: &Digest) -> Result<bool> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("remove blob", path, e)),
        }
    }

    /// Removes the temporary files of interrupted writes (a writer killed before its rename leaves its
    /// `.tmp-*` file behind). Only for a caller that knows no write is under way (the image store calls it
    /// holding its work lock exclusively). Returns how many were removed.
    pub fn remove_temp_files(&self) -> Result<usize> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| StorageError::io("read", &self.dir, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("read", &self.dir, e))?;
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("remove temporary blob", entry.path(), e)),
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// The digests of all stored blobs, sorted. Temporary files and foreign names are ignored.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(|e| StorageError::io("read", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("read", &self.dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match Digest::from_hex(&name) {
                Ok(d) => out.push(d),
                Err(_) if name.starts_with(TEMP_PREFIX) => {}
                Err(_) => tracing::debug!(name, "ignoring foreign file in blob directory"),
            }
        }
        out.sort();
        Ok(out)
    }
}

/// fsyncs a directory so that a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}
