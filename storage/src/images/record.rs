//! The image records (`<graph_root>/images/images.json`) and the locks beside them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{ImageError, ImageResult};

/// Version written into the record file; a newer one is refused rather than misread.
const FORMAT_VERSION: u32 = 1;

/// One image, as kept in `images.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The image ID: the hex of its config's sha256 (what podman shows, shortened to 12).
    pub id: String,
    /// Its names, fully qualified `registry/repository:tag` (`localhost/…` for local ones).
    #[serde(default)]
    pub names: Vec<String>,
    /// The digest of the manifest it was stored with (`sha256:…`).
    pub digest: String,
    /// Every manifest or index digest it is known by (pulls by digest find it again).
    #[serde(default)]
    pub digests: Vec<String>,
    /// The stored manifest's media type.
    pub manifest_type: String,
    /// The digests of the stored layer blobs (as in the manifest), base first.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Its layers' IDs (chain IDs), base first.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Creation time from the config (RFC 3339), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was stored, seconds since the Unix epoch.
    #[serde(default)]
    pub added: u64,
    /// Sum of the uncompressed layer sizes in bytes.
    #[serde(default)]
    pub size: u64,
}

impl Image {
    /// The record of an image whose config blob is `config`, stored with the manifest `manifest`
    /// (`digest`, `manifest_type`) and unpacked into `layers` (base first), added now, without names.
    pub(crate) fn assemble(
        config: &crate::Digest,
        digest: String,
        manifest_type: String,
        manifest: &crate::registry::manifest::ImageManifest,
        layers: Vec<crate::Layer>,
        created: Option<String>,
    ) -> Image {
        Image {
            id: config.hex().to_owned(),
            names: Vec::new(),
            digest,
            digests: Vec::new(),
            manifest_type,
            blobs: manifest.layers.iter().map(|d| d.digest.clone()).collect(),
            size: layers.iter().map(|l| l.size).sum(),
            layers: layers.into_iter().map(|l| l.id).collect(),
            created,
            added: super::pull::now(),
        }
    }

    /// The top layer, on which container layers are created (`None` for an image without layers).
    pub fn top_layer(&self) -> Option<&str> {
        self.layers.last().map(String::as_str)
    }

    /// The config digest, `sha256:<id>`.
    pub fn config_digest(&self) -> String {
        format!("sha256:{}", self.id)
    }

    /// Whether the image has no name (a dangling image, what `image prune` removes).
    pub fn is_dangling(&self) -> bool {
        self.names.is_empty()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    images: Vec<Image>,
}

/// The image records' paths.
#[derive(Debug, Clone)]
pub(crate) struct ImageMeta {
    /// `<graph_root>/images`.
    pub dir: PathBuf,
}

/// A held `flock`; released when dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

/// Opens (creating) a lock file and takes `op` on it; `Ok(None)` when a non-blocking `op` would block.
pub(crate) fn flock(path: &Path, op: rustix::fs::FlockOperation) -> ImageResult<Option<FileLock>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ImageError::io("open lock file", path, e))?;
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(ImageError::io("lock", path, e.into())),
    }
}

impl ImageMeta {
    fn records(&self) -> PathBuf {
        self.dir.join("images.json")
    }

    /// Takes the image store lock (exclusive `flock` on `images.lock`), blocking.
    pub fn lock(&self) -> ImageResult<FileLock> {
        flock(
            &self.dir.join("images.lock"),
            rustix::fs::FlockOperation::LockExclusive,
        )?
        .ok_or_else(|| {
            ImageError::io(
                "lock",
                self.dir.join("images.lock"),
                io::Error::from(io::ErrorKind::WouldBlock),
            )
        })
    }

    /// The path of the lock that pulls, imports and loads hold shared while they add blobs and layers not yet
    /// owned by an image; garbage collection takes it exclusively (without waiting) so it never removes them.
    pub fn work_lock_path(&self) -> PathBuf {
        self.dir.join("work.lock")
    }

    /// Reads all image records (an absent file is an empty store).
    pub fn load(&self, _lock: &FileLock) -> ImageResult<Vec<Image>> {
        use crate::layers::meta::{read_records, RecordError};
        let path = self.records();
        match read_records::<RecordFile>(&path, |f| f.version, FORMAT_VERSION) {
            Ok(file) => Ok(file.map(|f| f.images).unwrap_or_default()),
            Err(RecordError::Json(source)) => Err(ImageError::Metadata { path, source }),
            Err(RecordError::Io(e)) => Err(ImageError::io("read", path, e)),
        }
    }

    /// Replaces the record file atomically.
    pub fn save(&self, _lock: &FileLock, images: &[Image]) -> ImageResult<()> {
        let path = self.records();
        let data = serde_json::to_vec_pretty(&RecordFile {
            version: FORMAT_VERSION,
            images: images.to_vec(),
        })
        .map_err(|source| ImageError::Metadata {
            path: path.clone(),
            source,
        })?;
        crate::layers::meta::write_atomic(&path, &data)?;
        Ok(())
    }
}
