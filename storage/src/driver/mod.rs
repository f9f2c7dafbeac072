//! Storage drivers: how a layer's files are laid out on disk and mounted.
//!
//! * [`Driver::Overlay`]: each layer keeps only its own changes in `<graph_root>/overlay/<id>/diff` (whiteouts as
//!   overlayfs represents them); a mount stacks the ancestors' `diff` directories with overlayfs, named through the
//!   short links in `<graph_root>/overlay/l/` so that deep stacks fit in the mount option page.
//! * [`Driver::Vfs`]: each layer is a full copy of its parent with its changes applied
//!   (`<graph_root>/vfs/dir/<id>`); "mounting" it is just using the directory.
//!
//! A layer is built in a temporary directory `.tmp-<random>` of the driver's home, which its builder holds an
//! exclusive `flock` on; it is renamed to its ID only when complete. Leftovers (temp directories nobody holds,
//! layer directories without a record, dangling short links) are removed by [`DriverHome::cleanup`], which the
//! layer store runs on open under its lock.

mod copy;
mod overlay;
mod vfs;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::layers::error::{LayerError, LayerResult};
use crate::layers::meta::{self, Layer};
use crate::WhiteoutMode;

/// Prefix of the temp directories in which layers are built or deleted.
const TEMP_PREFIX: &str = ".tmp-";

/// A storage driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// overlayfs: layers hold only their changes and are stacked at mount time.
    Overlay,
    /// Plain directories: each layer is a full copy of its parent plus its changes.
    Vfs,
}

impl Driver {
    /// The driver's name, used in on-disk paths (`overlay`, `vfs`).
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Vfs => "vfs",
        }
    }

    /// Picks the driver for `graph_root`: the one whose layer records already exist there, else overlay if a test
    /// overlay mount inside `graph_root` works (root, kernel support, a backing filesystem that can hold upper
    /// directories), else vfs.
    pub fn detect(graph_root: &Path) -> LayerResult<Driver> {
        for driver in [Driver::Overlay, Driver::Vfs] {
            let records = graph_root.join(format!("{}-layers", driver.name()));
            if records.join("layers.json").exists() {
                tracing::debug!(driver = driver.name(), "existing layer store found");
                return Ok(driver);
            }
        }
        meta::create_dir(graph_root)?;
        match overlay::probe(graph_root) {
            Ok(()) => Ok(Driver::Overlay),
            Err(e) => {
                tracing::info!(error = %e, "overlay test mount failed, using vfs");
                Ok(Driver::Vfs)
            }
        }
    }

    /// How whiteouts must be unpacked into this driver's layer directories.
    pub fn whiteout_mode(self) -> WhiteoutMode {
        match self {
            Driver::Overlay => WhiteoutMode::Overlay,
            Driver::Vfs => WhiteoutMode::Delete,
        }
    }
}

/// A driver bound to its home directory under a graph root.
#[derive(Debug, Clone)]
pub(crate) struct DriverHome {
    pub driver: Driver,
    /// `<graph_root>/overlay` or `<graph_root>/vfs/dir`.
    pub home: PathBuf,
}

/// A layer being built: its temp directory, held with an `flock` so that cleanup leaves it alone, and removed
/// when dropped unless committed.
#[derive(Debug)]
pub(crate) struct TempLayer {
    pub path: PathBuf,
    _lock: File,
    committed: bool,
}

impl Drop for TempLayer {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temp layer directory");
            }
        }
    }
}

impl DriverHome {
    /// The home of `driver` under `graph_root`, created if missing.
    pub fn open(driver: Driver, graph_root: &Path) -> LayerResult<Self> {
        let home = match driver {
            Driver::Overlay => graph_root.join("overlay"),
            Driver::Vfs => graph_root.join("vfs").join("dir"),
        };
        meta::create_dir(&home)?;
        if driver == Driver::Overlay {
            meta::create_dir(&home.join(overlay::LINK_DIR))?;
        }
        Ok(DriverHome { driver, home })
    }

    /// The directory of a recorded layer.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    /// Creates and locks a new temp directory (call under the store lock, so cleanup cannot race it).
    pub fn create_temp(&self) -> LayerResult<TempLayer> {
        let path = self
            .home
            .join(format!("{TEMP_PREFIX}{}", meta::random_id()?));
        fs::create_dir(&path).map_err(|e| LayerError::io("create directory", &path, e))?;
        let lock = lock_dir(&path, false)?.ok_or_else(|| {
            LayerError::io("lock", &path, io::Error::from(io::ErrorKind::WouldBlock))
        })?;
        Ok(TempLayer {
            path,
            _lock: lock,
            committed: false,
        })
    }

    /// Fills a temp layer so that it is ready to receive the layer's changes (overlay: empty `diff`, `work`,
    /// `merged` and a short link name; vfs: a copy of the parent). Returns where to unpack.
    pub fn populate(&self, tmp: &TempLayer, parent: Option<&Layer>) -> LayerResult<PathBuf> {
        match self.driver {
            Driver::Overlay => overlay::populate(&tmp.path),
            Driver::Vfs => vfs::populate(&tmp.path, parent.map(|p| self.layer_dir(&p.id))),
        }
    }

    /// The driver-specific name chosen in `populate` (the overlay short link).
    pub fn link_of(&self, tmp: &TempLayer) -> LayerResult<Option<String>> {
        match self.driver {
            Driver::Overlay => overlay::read_link(&tmp.path).map(Some),
            Driver::Vfs => Ok(None),
        }
    }

    /// Moves a complete temp layer into place as layer `id` (call under the store lock). `ancestors` are the
    /// layer's ancestors, nearest first.
    pub fn commit(&self, mut tmp: TempLayer, id: &str, ancestors: &[&Layer]) -> LayerResult<()> {
        if self.driver == Driver::Overlay {
            overlay::write_lower(&tmp.path, ancestors)?;
        }
        let dest = self.layer_dir(id);
        fs::rename(&tmp.path, &dest).map_err(|e| LayerError::io("rename into place", &dest, e))?;
        tmp.committed = true;
        if self.driver == Driver::Overlay {
            overlay::link(&self.home, id)?;
        }
        meta::sync_dir(&self.home)
    }

    /// Mounts the layer and returns the mount point (vfs: the layer directory itself).
    pub fn mount(&self, layer: &Layer, ancestors: &[&Layer]) -> LayerResult<PathBuf> {
        match self.driver {
            Driver::Overlay => overlay::mount(&self.home, layer, ancestors),
            Driver::Vfs => Ok(self.layer_dir(&layer.id)),
        }
    }

    /// Unmounts the layer (vfs: nothing to do).
    pub fn unmount(&self, id: &str) -> LayerResult<()> {
        match self.driver {
            Driver::Overlay => overlay::unmount(&self.layer_dir(id)),
            Driver::Vfs => Ok(()),
        }
    }

    /// Removes a layer's files: first renamed to a temp name (so a crash leaves only a leftover), then deleted.
    pub fn remove(&self, layer: &Layer) -> LayerResult<()> {
        if let Some(link) = &layer.link {
            let path = self.home.join(overlay::LINK_DIR).join(link);
            remove_if_exists(&path)?;
        }
        let dir = self.layer_dir(&layer.id);
        if self.driver == Driver::Overlay {
            // A mount whose count was lost (run root wiped without a reboot) would make the removal fail.
            overlay::unmount(&dir)?;
        }
        let doomed = self.home.join(format!("{TEMP_PREFIX}del-{}", layer.id));
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LayerError::io("rename for removal", &dir, e)),
        }
        fs::remove_dir_all(&doomed).map_err(|e| LayerError::io("remove", &doomed, e))
    }

    /// Removes leftovers of interrupted work (call under the store lock): temp directories no live builder
    /// holds, layer directories without a record, and short links that point nowhere.
    pub fn cleanup(&self, known: &BTreeSet<&str>) -> LayerResult<()> {
        let entries =
            fs::read_dir(&self.home).map_err(|e| LayerError::io("read", &self.home, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LayerError::io("read", &self.home, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let leftover = if name.starts_with(TEMP_PREFIX) {
                // A builder still running holds the lock; one that died released it with its process.
                lock_dir(&path, true)?.is_some()
            } else {
                meta::is_layer_id(&name) && !known.contains(name.as_str())
            };
            if leftover {
                tracing::info!(path = %path.display(), "removing leftover layer directory");
                if self.driver == Driver::Overlay {
                    // A merged directory of a crashed process may still be mounted.
                    let _ = overlay::unmount(&path);
                }
                fs::remove_dir_all(&path)
                    .map_err(|e| LayerError::io("remove leftover", &path, e))?;
            }
        }
        if self.driver == Driver::Overlay {
            overlay::remove_dangling_links(&self.home)?;
        }
        Ok(())
    }
}

/// Takes an exclusive `flock` on a directory; with `try_only`, returns `None` instead of waiting if it is held.
fn lock_dir(path: &Path, try_only: bool) -> LayerResult<Option<File>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LayerError::io("open", path, e)),
    };
    let op = if try_only {
        rustix::fs::FlockOperation::NonBlockingLockExclusive
    } else {
        rustix::fs::FlockOperation::LockExclusive
    };
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(LayerError::io("lock", path, e.into())),
    }
}

fn remove_if_exists(path: &Path) -> LayerResult<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LayerError::io("remove", path, e)),
    }
}
