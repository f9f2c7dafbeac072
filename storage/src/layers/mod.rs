//! The layer store: unpacked image layers and container layers, their records, and mount counts.
//!
//! # On disk
//!
//! * `<graph_root>/<driver>-layers/layers.json`: the layer records ([`Layer`]), rewritten atomically (temp file,
//!   fsync, rename, directory fsync) while `layers.lock` beside it is held with an exclusive `flock`. Every
//!   operation re-reads the records under that lock, so several processes can share a store.
//! * `<run_root>/<driver>-layers/mounts.json`: how many times each layer is mounted. The run root is expected on
//!   a tmpfs: after a reboot the file is gone and every count is 0.
//! * The layer files, laid out by the [`Driver`].
//!
//! # Atomicity and leftovers
//!
//! A layer is built in a temp directory `.tmp-<random>` in the driver home, held with an `flock` by its builder,
//! and only when its blob has been fully unpacked and synced is it renamed to its ID and recorded, both under the
//! store lock. So a failed unpack or a killed process never leaves a recorded half layer. [`LayerStore::open`]
//! removes, under the store lock, temp directories no live process holds, layer directories without a record
//! (a crash between the rename and the record) and dangling overlay short links.
//!
//! Image layer IDs are OCI chain IDs ([`chain_id`]), so a layer shared by several images is stored once: when two
//! builders race on the same layer, the second to commit finds the record, drops its copy and returns the first.

pub(crate) mod error;
pub(crate) mod meta;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::driver::{Driver, DriverHome};
use crate::Digest;

pub use error::{LayerError, LayerResult};
pub use meta::Layer;
use meta::MetaPaths;

/// A store of layers under a graph root (persistent) and a run root (wiped at reboot), using one driver.
#[derive(Debug, Clone)]
pub struct LayerStore {
    meta: MetaPaths,
    home: DriverHome,
}

/// The OCI chain ID of a layer with diff ID `diff_id` on top of the layer whose chain ID is `parent`:
/// `diff_id` itself for a base layer, else `sha256(parent + " " + diff_id)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of_bytes(format!("{p} {diff_id}").as_bytes()),
    }
}

impl LayerStore {
    /// Opens (creating if needed) the store of `driver` under `graph_root` and `run_root`, and removes leftovers
    /// of interrupted work. Use [`Driver::detect`] to choose the driver automatically.
    pub fn open(
        graph_root: impl AsRef<Path>,
        run_root: impl AsRef<Path>,
        driver: Driver,
    ) -> LayerResult<Self> {
        let graph_root = graph_root.as_ref();
        let dir_name = format!("{}-layers", driver.name());
        let meta = MetaPaths {
            dir: graph_root.join(&dir_name),
            run_dir: run_root.as_ref().join(&dir_name),
        };
        meta::create_dir(&meta.dir)?;
        let home = DriverHome::open(driver, graph_root)?;
        let store = LayerStore { meta, home };
        let lock = store.meta.lock()?;
        let layers = store.meta.load(&lock)?;
        let known: BTreeSet<&str> = layers.iter().map(|l| l.id.as_str()).collect();
        store.home.cleanup(&known)?;
        tracing::debug!(root = %graph_root.display(), driver = driver.name(), layers = layers.len(), "opened layer store");
        Ok(store)
    }

    /// The store's driver.
    pub fn driver(&self) -> Driver {
        self.home.driver
    }

    /// All recorded layers.
    pub fn layers(&self) -> LayerResult<Vec<Layer>> {
        let lock = self.meta.lock()?;
        self.meta.load(&lock)
    }

    /// The layer with this ID.
    pub fn get(&self, id: &str) -> LayerResult<Layer> {
        let lock = self.meta.lock()?;
        find(&self.meta.load(&lock)?, id).cloned()
    }

    /// The directory holding the layer's own files: overlay `<id>/diff`, vfs the full tree.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        match self.home.driver {
            Driver::Overlay => self.home.layer_dir(id).join("diff"),
            Driver::Vfs => self.home.layer_dir(id),
        }
    }

    /// Unpacks the layer blob read from `reader` (gzip, zstd or plain tar) on top of `parent` and records it
    /// under its chain ID, with its diff ID and compressed digest computed in the same pass. If that layer
    /// already exists (same parent, same content), the existing record is returned and nothing is added.
    pub fn create_layer_from_blob(
        &self,
        parent: Option<&str>,
        reader: impl Read,
    ) -> LayerResult<Layer> {
        self.create_from_blob(parent, reader, None)
    }

    /// [`create_layer_from_blob`](Self::create_layer_from_blob) for a layer whose diff ID is known (from the
    /// image config): a blob whose uncompressed tar hashes otherwise is refused with
    /// [`LayerError::DiffIdMismatch`] and nothing is recorded. If the layer (its chain ID) exists already, it is
    /// returned without reading `reader`.
    pub fn create_layer_verified(
        &self,
        parent: Option<&str>,
        reader: impl Read,
        diff_id: &Digest,
    ) -> LayerResult<Layer> {
        let id = chain_id(parent_chain(parent)?.as_ref(), diff_id);
        if let Ok(layer) = self.get(id.hex()) {
            tracing::debug!(id = layer.id, "layer present, not unpacking");
            return Ok(layer);
        }
        self.create_from_blob(parent, reader, Some(diff_id))
    }

    /// Whether layers can be unpacked before their parent exists ([`prepare_layer`](Self::prepare_layer)):
    /// overlay keeps each layer's changes apart, vfs copies the parent first.
    pub fn unpacks_detached(&self) -> bool {
        self.home.driver == Driver::Overlay
    }

    /// Unpacks a layer blob into a temp directory without its parent (overlay only: see
    /// [`unpacks_detached`](Self::unpacks_detached)), checking its diff ID against `expected`, so that several
    /// layers of an image can be unpacked at once; [`commit_prepared`](Self::commit_prepared) then records them
    /// base first. A prepared layer that is dropped uncommitted is removed.
    pub fn prepare_layer(
        &self,
        reader: impl Read,
        expected: &Digest,
    ) -> LayerResult<PreparedLayer> {
        if !self.unpacks_detached() {
            return Err(LayerError::io(
                "unpack detached",
                self.home.layer_dir(""),
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the vfs driver needs the parent layer first",
                ),
            ));
        }
        let tmp = {
            let _lock = self.meta.lock()?;
            self.home.create_temp()?
        };
        let target = self.home.populate(&tmp, None)?;
        let mut blob = CountingHash::new(reader);
        let (stats, diff_id, size) = crate::unpack::unpack_layer_hashed(
            &mut blob,
            &target,
            self.home.driver.whiteout_mode(),
        )
        .map_err(|source| LayerError::Unpack {
            parent: None,
            source,
        })?;
        io::copy(&mut blob, &mut io::sink())
            .map_err(|e| LayerError::io("read blob after layer", &tmp.path, e))?;
        if *expected != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.to_string(),
                actual: diff_id.to_string(),
            });
        }
        sync_fs(&tmp.path)?;
        let (compressed_digest, compressed_size) = blob.finish();
        let link = self.home.link_of(&tmp)?;
        tracing::debug!(%diff_id, ?stats, "unpacked detached layer");
        Ok(PreparedLayer {
            tmp,
            diff_id,
            compressed_digest,
            size,
            compressed_size,
            link,
        })
    }

    /// Records a [`prepared`](Self::prepare_layer) layer on top of `parent` under its chain ID (or returns the
    /// existing layer with that ID, dropping the prepared copy).
    pub fn commit_prepared(
        &self,
        parent: Option<&str>,
        prepared: PreparedLayer,
    ) -> LayerResult<Layer> {
        let id = chain_id(parent_chain(parent)?.as_ref(), &prepared.diff_id)
            .hex()
            .to_owned();
        let layer = Layer {
            id,
            parent: parent.map(str::to_owned),
            diff_id: Some(prepared.diff_id.to_string()),
            compressed_digest: Some(prepared.compressed_digest.to_string()),
            size: prepared.size,
            compressed_size: prepared.compressed_size,
            created: now(),
            rw: false,
            names: Vec::new(),
            flags: BTreeMap::new(),
            link: prepared.link,
        };
        self.finish(prepared.tmp, layer)
    }

    fn create_from_blob(
        &self,
        parent: Option<&str>,
        reader: impl Read,
        expected: Option<&Digest>,
    ) -> LayerResult<Layer> {
        let (tmp, parent_layer) = self.start(parent)?;
        let target = self.home.populate(&tmp, parent_layer.as_ref())?;
        let mut blob = CountingHash::new(reader);
        let (stats, diff_id, size) = crate::unpack::unpack_layer_hashed(
            &mut blob,
            &target,
            self.home.driver.whiteout_mode(),
        )
        .map_err(|source| LayerError::Unpack {
            parent: parent.map(str::to_owned),
            source,
        })?;
        // Drain whatever follows the compressed stream so the compressed digest covers the whole blob.
        io::copy(&mut blob, &mut io::sink())
            .map_err(|e| LayerError::io("read blob after layer", &tmp.path, e))?;
        if let Some(expected) = expected.filter(|e| **e != diff_id) {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.to_string(),
                actual: diff_id.to_string(),
            });
        }
        sync_fs(&tmp.path)?;
        let id = chain_id(parent_chain(parent)?.as_ref(), &diff_id)
            .hex()
            .to_owned();
        let (compressed_digest, compressed_size) = blob.finish();
        let layer = Layer {
            id,
            parent: parent.map(str::to_owned),
            diff_id: Some(diff_id.to_string()),
            compressed_digest: Some(compressed_digest.to_string()),
            size,
            compressed_size,
            created: now(),
            rw: false,
            names: Vec::new(),
            flags: BTreeMap::new(),
            link: self.home.link_of(&tmp)?,
        };
        tracing::debug!(id = layer.id, ?stats, "unpacked layer");
        self.finish(tmp, layer)
    }

    /// Creates an empty writable layer on top of `parent` for a container, under a random ID.
    pub fn create_rw_layer(&self, parent: Option<&str>) -> LayerResult<Layer> {
        self.create_rw_layer_named(parent, &[])
    }

    /// [`create_rw_layer`](Self::create_rw_layer) with names, recorded in the same write (names another layer
    /// holds move to this one, as [`set_names`](Self::set_names)).
    pub fn create_rw_layer_named(
        &self,
        parent: Option<&str>,
        names: &[String],
    ) -> LayerResult<Layer> {
        let (tmp, parent_layer) = self.start(parent)?;
        self.home.populate(&tmp, parent_layer.as_ref())?;
        // An overlay container layer is empty directories: the rename and directory fsync in commit make it
        // durable, no filesystem-wide sync is needed. A vfs one is a copy of its parent's files.
        if self.home.driver == Driver::Vfs {
            sync_fs(&tmp.path)?;
        }
        let layer = Layer {
            id: meta::random_id()?,
            parent: parent.map(str::to_owned),
            diff_id: None,
            compressed_digest: None,
            size: 0,
            compressed_size: 0,
            created: now(),
            rw: true,
            names: names.to_vec(),
            flags: BTreeMap::new(),
            link: self.home.link_of(&tmp)?,
        };
        self.finish(tmp, layer)
    }

    /// Checks the parent and creates a locked temp directory, under the store lock.
    fn start(
        &self,
        parent: Option<&str>,
    ) -> LayerResult<(crate::driver::TempLayer, Option<Layer>)> {
        let lock = self.meta.lock()?;
        let layers = self.meta.load(&lock)?;
        let parent = parent.map(|p| find(&layers, p).cloned()).transpose()?;
        Ok((self.home.create_temp()?, parent))
    }

    /// Moves the built layer into place and records it, unless a layer with its ID exists already.
    fn finish(&self, tmp: crate::driver::TempLayer, layer: Layer) -> LayerResult<Layer> {
        let lock = self.meta.lock()?;
        let mut layers = self.meta.load(&lock)?;
        if let Ok(existing) = find(&layers, &layer.id) {
            tracing::debug!(id = layer.id, "layer exists already, dropping the new copy");
            return Ok(existing.clone());
        }
        let ancestors = ancestors(&layers, layer.parent.as_deref())?;
        self.home.commit(tmp, &layer.id, &ancestors)?;
        for other in &mut layers {
            other.names.retain(|n| !layer.names.contains(n));
        }
        layers.push(layer.clone());
        self.meta.save(&lock, &layers)?;
        tracing::info!(id = layer.id, parent = ?layer.parent, rw = layer.rw, "created layer");
        Ok(layer)
    }

    /// Gives the layer exactly these names; a name held by another layer moves to this one.
    pub fn set_names(&self, id: &str, names: &[String]) -> LayerResult<Layer> {
        let lock = self.meta.lock()?;
        let mut layers = self.meta.load(&lock)?;
        find(&layers, id)?;
        for layer in &mut layers {
            if layer.id == id {
                layer.names = names.to_vec();
            } else {
                layer.names.retain(|n| !names.contains(n));
            }
        }
        self.meta.save(&lock, &layers)?;
        find(&layers, id).cloned()
    }

    /// The layer with this name, or this ID.
    pub fn lookup(&self, name_or_id: &str) -> LayerResult<Layer> {
        let lock = self.meta.lock()?;
        let layers = self.meta.load(&lock)?;
        layers
            .iter()
            .find(|l| l.names.iter().any(|n| n == name_or_id))
            .map_or_else(|| find(&layers, name_or_id).cloned(), |l| Ok(l.clone()))
    }

    /// Mounts the layer (or counts one more user if it is mounted) and returns its root: an overlay mount point
    /// (read-write for a container layer, read-only for an image layer), or the vfs directory.
    pub fn mount(&self, id: &str) -> LayerResult<PathBuf> {
        let lock = self.meta.lock()?;
        let layers = self.meta.load(&lock)?;
        let layer = find(&layers, id)?;
        let mut mounts = self.meta.load_mounts(&lock)?;
        let count = mounts.get(id).copied().unwrap_or(0);
        let path = if count == 0 {
            // A mount left by a process whose count was lost (run root wiped without a reboot) is dropped first,
            // so mounts never stack.
            self.home.unmount(id)?;
            let ancestors = ancestors(&layers, layer.parent.as_deref())?;
            self.home.mount(layer, &ancestors)?
        } else {
            self.mount_point(id)
        };
        mounts.insert(id.to_owned(), count.saturating_add(1));
        if let Err(e) = self.meta.save_mounts(&lock, mounts) {
            if count == 0 {
                let _ = self.home.unmount(id);
            }
            return Err(e);
        }
        Ok(path)
    }

    /// Drops one user of the layer's mount, unmounting it when none is left; returns the remaining count.
    pub fn unmount(&self, id: &str) -> LayerResult<u32> {
        let lock = self.meta.lock()?;
        find(&self.meta.load(&lock)?, id)?;
        let mut mounts = self.meta.load_mounts(&lock)?;
        let count = mounts.get(id).copied().unwrap_or(0);
        if count == 0 {
            return Err(LayerError::NotMounted { id: id.to_owned() });
        }
        if count == 1 {
            self.home.unmount(id)?;
        }
        mounts.insert(id.to_owned(), count - 1);
        self.meta.save_mounts(&lock, mounts)?;
        Ok(count - 1)
    }

    /// How many users have the layer mounted (0 after a reboot wiped the run root).
    pub fn mount_count(&self, id: &str) -> LayerResult<u32> {
        let lock = self.meta.lock()?;
        Ok(self.meta.load_mounts(&lock)?.get(id).copied().unwrap_or(0))
    }

    /// Deletes the layer's record and files. Refused while it is mounted or another layer is built on it.
    pub fn delete_layer(&self, id: &str) -> LayerResult<()> {
        let lock = self.meta.lock()?;
        let mut layers = self.meta.load(&lock)?;
        let layer = find(&layers, id)?.clone();
        if let Some(&mounts) = self.meta.load_mounts(&lock)?.get(id).filter(|n| **n > 0) {
            return Err(LayerError::Mounted {
                id: id.to_owned(),
                mounts,
            });
        }
        if let Some(child) = layers.iter().find(|l| l.parent.as_deref() == Some(id)) {
            return Err(LayerError::HasChildren {
                id: id.to_owned(),
                child: child.id.clone(),
            });
        }
        // Record first: a crash after this leaves only files without a record, which open() removes.
        layers.retain(|l| l.id != id);
        self.meta.save(&lock, &layers)?;
        self.home.remove(&layer)?;
        tracing::info!(id, "deleted layer");
        Ok(())
    }

    /// Where the layer is (or would be) mounted: the overlay `merged` directory, or the vfs directory.
    pub fn mount_point(&self, id: &str) -> PathBuf {
        match self.home.driver {
            Driver::Overlay => self.home.layer_dir(id).join("merged"),
            Driver::Vfs => self.home.layer_dir(id),
        }
    }
}

/// A layer unpacked by [`LayerStore::prepare_layer`], waiting for [`LayerStore::commit_prepared`].
#[derive(Debug)]
pub struct PreparedLayer {
    tmp: crate::driver::TempLayer,
    diff_id: Digest,
    compressed_digest: Digest,
    size: u64,
    compressed_size: u64,
    link: Option<String>,
}

/// The chain ID of a parent layer given by its ID.
fn parent_chain(parent: Option<&str>) -> LayerResult<Option<Digest>> {
    parent
        .map(Digest::from_hex)
        .transpose()
        .map_err(|_| LayerError::NotFound {
            id: parent.unwrap_or_default().to_owned(),
        })
}

fn find<'a>(layers: &'a [Layer], id: &str) -> LayerResult<&'a Layer> {
    layers
        .iter()
        .find(|l| l.id == id)
        .ok_or_else(|| LayerError::NotFound { id: id.to_owned() })
}

/// The chain from `parent` down to the base layer, nearest first.
fn ancestors<'a>(layers: &'a [Layer], parent: Option<&str>) -> LayerResult<Vec<&'a Layer>> {
    let mut out = Vec::new();
    let mut next = parent.map(str::to_owned);
    while let Some(id) = next.as_deref() {
        let layer = find(layers, id)?;
        if out.len() > layers.len() {
            return Err(LayerError::NotFound {
                id: format!("{id} (parent cycle)"),
            });
        }
        out.push(layer);
        next = layer.parent.clone();
    }
    Ok(out)
}

/// Flushes the filesystem holding `path`: the unpacker does not fsync files one by one.
fn sync_fs(path: &Path) -> LayerResult<()> {
    let dir = File::open(path).map_err(|e| LayerError::io("open", path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| LayerError::io("syncfs", path, e.into()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Hashes and counts the blob bytes as they are read.
struct CountingHash<R> {
    inner: R,
    hasher: sha2::Sha256,
    size: u64,
}

impl<R: Read> CountingHash<R> {
    fn new(inner: R) -> Self {
        CountingHash {
            inner,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            size: 0,
        }
    }

    fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.size)
    }
}

impl<R: Read> Read for CountingHash<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, buf.get(..n).unwrap_or_default());
        self.size += n as u64;
        Ok(n)
    }
}
