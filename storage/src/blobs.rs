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
        // NamedTempFile removes the file when dropped, which covers every early return below.
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| StorageError::io("create temporary blob in", &self.dir, e))?;
        let tmp_path = tmp.path().to_owned();
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
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
            let chunk = &buf[..n];
            hasher.update(chunk);
            tmp.write_all(chunk)
                .map_err(|e| StorageError::io("write", &tmp_path, e))?;
            size += n as u64;
        }
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
        let file = tmp.as_file();
        file.set_permissions(Permissions::from_mode(BLOB_MODE))
            .map_err(|e| StorageError::io("chmod", &tmp_path, e))?;
        file.sync_all()
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
