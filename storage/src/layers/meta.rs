//! The layer store's files: the record file, the mount counts, the store lock and small file helpers.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LayerError, LayerResult};

/// Mode of the store's metadata files.
const FILE_MODE: u32 = 0o600;
/// Mode of the store's directories.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Version written into the record file; a newer one is refused rather than misread.
const FORMAT_VERSION: u32 = 1;

/// One recorded layer, as kept in `layers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The layer ID: the OCI chain ID hex for image layers, a random 64-hex ID for container layers.
    pub id: String,
    /// The parent layer's ID (`None` for a base layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// sha256 of the uncompressed layer tar (`None` for a container layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    /// sha256 of the blob as read (compressed or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_digest: Option<String>,
    /// Size of the uncompressed layer tar in bytes (0 for a container layer).
    pub size: u64,
    /// Size of the blob as read.
    #[serde(default)]
    pub compressed_size: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Whether this is a writable container layer (mounted with its own upper directory).
    #[serde(default)]
    pub rw: bool,
    /// Names given to the layer by callers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Free-form flags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, String>,
    /// Driver-specific name: the overlay short link name (`l/<link>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    layers: Vec<Layer>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MountFile {
    mounts: BTreeMap<String, u32>,
}

/// Paths of the store's metadata.
#[derive(Debug, Clone)]
pub(crate) struct MetaPaths {
    /// `<graph_root>/<driver>-layers`.
    pub dir: PathBuf,
    /// `<run_root>/<driver>-layers`.
    pub run_dir: PathBuf,
}

impl MetaPaths {
    fn records(&self) -> PathBuf {
        self.dir.join("layers.json")
    }

    fn mounts(&self) -> PathBuf {
        self.run_dir.join("mounts.json")
    }

    /// Takes the store lock (an exclusive `flock` on `<dir>/layers.lock`), blocking until it is free.
    pub fn lock(&self) -> LayerResult<StoreLock> {
        let path = self.dir.join("layers.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| LayerError::io("open lock file", &path, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| LayerError::io("lock", &path, e.into()))?;
        Ok(StoreLock { _file: file })
    }

    /// Reads all layer records (an absent file is an empty store).
    pub fn load(&self, _lock: &StoreLock) -> LayerResult<Vec<Layer>> {
        let path = self.records();
        match read_records::<RecordFile>(&path, |f| f.version, FORMAT_VERSION) {
            Ok(file) => Ok(file.map(|f| f.layers).unwrap_or_default()),
            Err(RecordError::Json(source)) => Err(LayerError::Metadata { path, source }),
            Err(RecordError::Io(e)) => Err(LayerError::io("read", path, e)),
        }
    }

    /// Replaces the record file atomically.
    pub fn save(&self, _lock: &StoreLock, layers: &[Layer]) -> LayerResult<()> {
        let path = self.records();
        let file = RecordFile {
            version: FORMAT_VERSION,
            layers: layers.to_vec(),
        };
        let data = serde_json::to_vec_pretty(&file).map_err(|source| LayerError::Metadata {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &data)
    }

    /// The mount counts; a missing file (run root wiped by a reboot) means nothing is mounted.
    pub fn load_mounts(&self, _lock: &StoreLock) -> LayerResult<BTreeMap<String, u32>> {
        let path = self.mounts();
        match fs::read(&path) {
            Ok(d) => serde_json::from_slice::<MountFile>(&d)
                .map(|m| m.mounts)
                .map_err(|source| LayerError::Metadata { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(LayerError::io("read", path, e)),
        }
    }

    /// Replaces the mount counts atomically (zero counts are dropped).
    pub fn save_mounts(
        &self,
        _lock: &StoreLock,
        mut mounts: BTreeMap<String, u32>,
    ) -> LayerResult<()> {
        mounts.retain(|_, n| *n > 0);
        create_dir(&self.run_dir)?;
        let path = self.mounts();
        let data = serde_json::to_vec_pretty(&MountFile { mounts }).map_err(|source| {
            LayerError::Metadata {
                path: path.clone(),
                source,
            }
        })?;
        // The run root does not outlive a boot (tmpfs): atomic, but not synced.
        write_atomic_with(&path, &data, false)
    }
}

/// Why a record file could not be read.
pub(crate) enum RecordError {
    /// Reading failed, or the file's format version is newer than this code knows.
    Io(io::Error),
    /// The file is not the JSON expected.
    Json(serde_json::Error),
}

/// Reads a JSON record file whose format version `version_of` gives; `Ok(None)` when it does not
/// exist. A version above `known` is refused rather than misread.
pub(crate) fn read_records<T: serde::de::DeserializeOwned>(
    path: &Path,
    version_of: impl Fn(&T) -> u32,
    known: u32,
) -> Result<Option<T>, RecordError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RecordError::Io(e)),
    };
    let file: T = serde_json::from_slice(&data).map_err(RecordError::Json)?;
    let version = version_of(&file);
    if version > known {
        return Err(RecordError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("format version {version} is newer than {known}"),
        )));
    }
    Ok(Some(file))
}

/// The held store lock; released when dropped (the `flock` goes with the file descriptor).
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

/// Creates `dir` and its parents with mode 0700 if missing.
pub(crate) fn create_dir(dir: &Path) -> LayerResult<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| LayerError::io("create directory", dir, e))
}

/// Writes `data` to `path` through a temp file beside it (mode 0600), fsynced, renamed, directory fsynced.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> LayerResult<()> {
    write_atomic_with(path, data, true)
}

/// [`write_atomic`], with the fsyncs only when `sync` (files of the run root need atomicity, not
/// durability).
pub(crate) fn write_atomic_with(path: &Path, data: &[u8], sync: bool) -> LayerResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(|e| LayerError::io("create temporary file in", dir, e))?;
    tmp.write_all(data)
        .and_then(|()| {
            if sync {
                tmp.as_file().sync_all()
            } else {
                Ok(())
            }
        })
        .map_err(|e| LayerError::io("write", tmp.path().to_owned(), e))?;
    tmp.persist(path)
        .map_err(|e| LayerError::io("rename into place", path, e.error))?;
    if sync {
        sync_dir(dir)
    } else {
        Ok(())
    }
}

/// fsyncs a directory so that a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> LayerResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LayerError::io("fsync directory", dir, e))
}

/// `n` random bytes.
pub(crate) fn random_bytes<const N: usize>() -> LayerResult<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| LayerError::Random(e.to_string()))?;
    Ok(buf)
}

/// A random 64-hex ID (container layers, temp names).
pub(crate) fn random_id() -> LayerResult<String> {
    Ok(random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether `s` looks like a layer ID (64 lowercase hex digits), i.e. may name a layer directory.
pub(crate) fn is_layer_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
