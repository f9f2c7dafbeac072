//! The image store: image records over the blob store and the layer store, and the ways images arrive
//! (registry pulls, `import`, `load` of an archive) and leave (`push`, `save`, removal, garbage collection).
//!
//! # On disk
//!
//! * `<graph_root>/blobs/sha256/<hex>`: every manifest, config and layer blob an image references, kept so
//!   that `push` and `save` write the image byte for byte as it came.
//! * `<graph_root>/<driver>-layers/…`: the unpacked layers ([`LayerStore`]).
//! * `<graph_root>/images/images.json`: the [`Image`] records, rewritten atomically under the exclusive
//!   `flock` on `images.lock`.
//!
//! # Consistency
//!
//! An image is recorded only after its manifest, config and every layer are stored, so a killed pull leaves at
//! most blobs and layers that no image owns. Work that adds such not-yet-owned content (pull, import, load)
//! holds `work.lock` shared; [`Store::gc`] removes unowned blobs and layers only when it can take that lock
//! exclusively without waiting, so it never takes the content of a pull in progress. The collection runs after
//! each pull, import or load, not before: a pull run again after a kill first reuses the blobs and layers the killed
//! one left, then what is still unowned goes. Two pulls of the same image end with one record: the second finds
//! the ID and adds its name.

mod archive;
mod error;
mod import;
pub(crate) mod names;
mod pull;
mod push;
mod record;
mod wipe;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use archive::{ArchiveFormat, REF_NAME_ANNOTATION};
pub use error::{ImageError, ImageResult};
pub use import::ImportOptions;
pub use names::{normalize_name, LOCAL_REGISTRY};
pub use pull::{PullEvent, PullOptions};
pub use record::Image;
use record::{flock, FileLock, ImageMeta};
pub use wipe::remove_store;

use crate::layers::{Layer, LayerError, LayerStore};
use crate::registry::manifest::{parse_json, ImageConfig, ImageManifest};
use crate::{BlobStore, Digest, Driver};

/// Where a [`Store`] keeps its files and which driver it uses.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Persistent state (`graph_root`, podman's `/var/lib/containers/storage`).
    pub graph_root: PathBuf,
    /// Mount bookkeeping, wiped by a reboot (`run_root`).
    pub run_root: PathBuf,
    /// The storage driver; `None` picks overlay where the kernel can, else vfs ([`Driver::detect`]).
    pub driver: Option<Driver>,
}

/// Images, their layers and blobs, and container layers on top of them.
#[derive(Debug, Clone)]
pub struct Store {
    graph_root: PathBuf,
    blobs: BlobStore,
    layers: LayerStore,
    meta: ImageMeta,
}

impl Store {
    /// Opens (creating if needed) the store and removes leftovers of interrupted layer work.
    pub fn open(options: &StoreOptions) -> ImageResult<Self> {
        let driver = match options.driver {
            Some(d) => d,
            None => Driver::detect(&options.graph_root)?,
        };
        // The image records name layers of one driver: a store whose layers were made with the
        // other is refused (as containers/storage does) rather than shown with missing layers.
        for other in [Driver::Overlay, Driver::Vfs]
            .into_iter()
            .filter(|d| *d != driver)
        {
            let records = options
                .graph_root
                .join(format!("{}-layers", other.name()))
                .join("layers.json");
            let holds_layers = std::fs::read(&records)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v.get("layers")
                        .and_then(|l| l.as_array())
                        .map(|l| !l.is_empty())
                })
                .unwrap_or(false);
            if holds_layers {
                return Err(ImageError::DriverMismatch {
                    root: options.graph_root.clone(),
                    recorded: other.name(),
                    requested: driver.name(),
                });
            }
        }
        crate::layers::meta::create_dir(&options.graph_root)?;
        let blobs = BlobStore::open(&options.graph_root)?;
        let layers = LayerStore::open(&options.graph_root, &options.run_root, driver)?;
        let meta = ImageMeta {
            dir: options.graph_root.join("images"),
        };
        crate::layers::meta::create_dir(&meta.dir)?;
        Ok(Store {
            graph_root: options.graph_root.clone(),
            blobs,
            layers,
            meta,
        })
    }

    /// The graph root.
    pub fn graph_root(&self) -> &Path {
        &self.graph_root
    }

    /// The storage driver in use.
    pub fn driver(&self) -> Driver {
        self.layers.driver()
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The layer store.
    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }

    /// All images, oldest first.
    pub fn images(&self) -> ImageResult<Vec<Image>> {
        let lock = self.meta.lock()?;
        self.meta.load(&lock)
    }

    /// The image `name` names: a full ID (or `sha256:<id>`), a name (qualified or short, e.g. `busybox` for
    /// `docker.io/library/busybox:latest`), `name@digest`, or a unique ID prefix of at least 3 digits.
    pub fn lookup(&self, name: &str) -> ImageResult<Image> {
        let lock = self.meta.lock()?;
        names::find(&self.meta.load(&lock)?, name).cloned()
    }

    /// The image's config, read from its stored blob.
    pub fn config(&self, image: &Image) -> ImageResult<ImageConfig> {
        let bytes = self.blob_bytes(&image.config_digest())?;
        parse_json(&bytes, &format!("config of image {}", image.id)).map_err(Into::into)
    }

    /// The image's manifest, as stored.
    pub fn manifest(&self, image: &Image) -> ImageResult<(ImageManifest, Vec<u8>)> {
        let bytes = self.blob_bytes(&image.digest)?;
        let manifest = parse_json(&bytes, &format!("manifest of image {}", image.id))?;
        Ok((manifest, bytes))
    }

    /// The bytes of a stored blob (manifests and configs; never a layer).
    pub fn blob_bytes(&self, digest: &str) -> ImageResult<Vec<u8>> {
        let digest = Digest::parse(digest)?;
        let path = self.blobs.path(&digest);
        std::fs::read(&path).map_err(|e| ImageError::io("read blob", path, e))
    }

    /// Adds `name` (normalised: `foo` → `localhost/foo:latest`) to the image; another image holding that
    /// name loses it (and becomes dangling if it was its last).
    pub fn tag(&self, image: &str, name: &str) -> ImageResult<Image> {
        let name = normalize_name(name)?;
        let lock = self.meta.lock()?;
        let mut images = self.meta.load(&lock)?;
        let id = names::find(&images, image)?.id.clone();
        for i in &mut images {
            if i.id == id {
                if !i.names.contains(&name) {
                    i.names.push(name.clone());
                }
            } else {
                i.names.retain(|n| *n != name);
            }
        }
        self.meta.save(&lock, &images)?;
        tracing::info!(id, name, "tagged image");
        names::find(&images, &id).cloned()
    }

    /// Removes `name` from the image (all its names when `name` is `None`).
    pub fn untag(&self, image: &str, name: Option<&str>) -> ImageResult<Image> {
        let name = name.map(normalize_name).transpose()?;
        let lock = self.meta.lock()?;
        let mut images = self.meta.load(&lock)?;
        let id = names::find(&images, image)?.id.clone();
        for i in images.iter_mut().filter(|i| i.id == id) {
            match &name {
                Some(n) => {
                    if !i.names.contains(n) {
                        return Err(ImageError::NotFound {
                            name: format!("{n} (a name of image {image})"),
                        });
                    }
                    i.names.retain(|x| x != n);
                }
                None => i.names.clear(),
            }
        }
        self.meta.save(&lock, &images)?;
        names::find(&images, &id).cloned()
    }

    /// Records a new image, or merges names and digests into the record with the same ID.
    pub(crate) fn record(&self, new: Image) -> ImageResult<Image> {
        let lock = self.meta.lock()?;
        let mut images = self.meta.load(&lock)?;
        // A name moves to the newest image that claims it.
        for i in images.iter_mut().filter(|i| i.id != new.id) {
            i.names.retain(|n| !new.names.contains(n));
        }
        let out = match images.iter_mut().find(|i| i.id == new.id) {
            Some(existing) => {
                for n in &new.names {
                    if !existing.names.contains(n) {
                        existing.names.push(n.clone());
                    }
                }
                for d in new.digests.iter().chain(std::iter::once(&new.digest)) {
                    if !existing.digests.contains(d) {
                        existing.digests.push(d.clone());
                    }
                }
                existing.clone()
            }
            None => {
                images.push(new.clone());
                new
            }
        };
        self.meta.save(&lock, &images)?;
        tracing::info!(id = out.id, names = ?out.names, "recorded image");
        Ok(out)
    }

    /// Creates a writable container layer on top of the image's top layer (an empty one for an image
    /// without layers).
    pub fn create_container_layer(&self, image: &Image) -> ImageResult<Layer> {
        Ok(self.layers.create_rw_layer(image.top_layer())?)
    }

    /// [`create_container_layer`](Self::create_container_layer) named `name` (the container's ID), in one
    /// record write.
    pub fn create_named_container_layer(&self, image: &Image, name: &str) -> ImageResult<Layer> {
        Ok(self
            .layers
            .create_rw_layer_named(image.top_layer(), &[name.to_owned()])?)
    }

    /// Deletes a container layer (unmounting it first if a count was left) — missing is fine.
    pub fn delete_container_layer(&self, id: &str) -> ImageResult<()> {
        match self.layers.get(id) {
            Ok(layer) if !layer.rw => {
                return Err(ImageError::InvalidImage {
                    image: id.to_owned(),
                    reason: "not a container layer".into(),
                })
            }
            Ok(_) => {}
            Err(LayerError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        // Another remover may race this one (a pod removal and the sweep of orphaned layers):
        // the layer gone meanwhile is fine.
        while self.layers.mount_count(id)? > 0 {
            match self.layers.unmount(id) {
                Ok(_) => {}
                Err(LayerError::NotFound { .. }) => return Ok(()),
                Err(LayerError::NotMounted { .. }) => break,
                Err(e) => return Err(e.into()),
            }
        }
        match self.layers.delete_layer(id) {
            Ok(()) | Err(LayerError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the image record, then its layers and blobs that no other image uses. Refused with
    /// [`ImageError::InUse`] while a container layer sits on its top layer.
    pub fn delete(&self, image: &str) -> ImageResult<Image> {
        let lock = self.meta.lock()?;
        let mut images = self.meta.load(&lock)?;
        let removed = names::find(&images, image)?.clone();
        if let Some(top) = removed.top_layer() {
            let users = self
                .layers
                .layers()?
                .into_iter()
                .filter(|l| l.parent.as_deref() == Some(top) && l.rw)
                .count();
            let shared = images
                .iter()
                .any(|i| i.id != removed.id && i.layers.iter().any(|l| l == top));
            if users > 0 && !shared {
                return Err(ImageError::InUse {
                    id: removed.id.clone(),
                    layer: top.to_owned(),
                });
            }
        }
        images.retain(|i| i.id != removed.id);
        // Record first: a crash after this leaves only unowned layers and blobs, which gc removes.
        self.meta.save(&lock, &images)?;
        self.remove_unowned(&images, Some(&removed))?;
        tracing::info!(id = removed.id, "deleted image");
        Ok(removed)
    }

    /// Removes layers and blobs no image owns, and blob temp files (what a killed pull or removal left),
    /// unless a pull, import or load is under way (then nothing is done and `Ok(false)` is returned).
    pub fn gc(&self) -> ImageResult<bool> {
        let Some(_work) = flock(
            &self.meta.work_lock_path(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )?
        else {
            return Ok(false);
        };
        let lock = self.meta.lock()?;
        let images = self.meta.load(&lock)?;
        self.remove_unowned(&images, None)?;
        // Every blob writer holds the work lock: a temp file now is a killed writer's.
        self.blobs.remove_temp_files()?;
        Ok(true)
    }

    /// Takes the work lock shared for the duration of an operation that adds content (see the module doc).
    pub(crate) fn work(&self) -> ImageResult<FileLock> {
        // No collection before the work: what a killed pull left (blobs, layers) is what the
        // same pull run again reuses. The collection runs after (see `with_work`).
        flock(
            &self.meta.work_lock_path(),
            rustix::fs::FlockOperation::LockShared,
        )?
        .ok_or_else(|| {
            ImageError::io(
                "lock",
                self.meta.work_lock_path(),
                std::io::Error::from(std::io::ErrorKind::WouldBlock),
            )
        })
    }

    /// Removes those of `blobs` that no image references (checked under the image lock, so an image recorded
    /// meanwhile keeps its blobs).
    pub(crate) fn remove_unowned_blobs(&self, blobs: &[Digest]) -> ImageResult<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let lock = self.meta.lock()?;
        let images = self.meta.load(&lock)?;
        let owned = owned_blobs(&images);
        for d in blobs {
            if !owned.contains(&d.to_string()) {
                self.blobs.remove(d)?;
            }
        }
        Ok(())
    }

    /// Runs `f` holding the work lock (see [`work`](Self::work)). Once the lock is released, what no image
    /// owns (what `f` stored before failing, or what an earlier killed operation left and `f` did not reuse) is
    /// collected, unless other work is under way (a later collection takes it then).
    pub(crate) fn with_work<T>(&self, f: impl FnOnce() -> ImageResult<T>) -> ImageResult<T> {
        let work = self.work()?;
        let result = f();
        drop(work);
        if let Err(e) = self.gc() {
            tracing::warn!(error = %e, "garbage collection of the image store failed");
        }
        result
    }

    /// Deletes image layers and blobs not referenced by `images`. With `only`, just that image's (the rest of
    /// the store may hold another process's work in progress).
    fn remove_unowned(&self, images: &[Image], only: Option<&Image>) -> ImageResult<()> {
        let owned_layers: BTreeSet<&str> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(String::as_str))
            .collect();
        let owned_blobs = owned_blobs(images);
        // Layers, top down, so parents lose their children first.
        let candidates: Vec<String> = match only {
            Some(img) => img.layers.iter().rev().cloned().collect(),
            None => {
                let mut all = self.layers.layers()?;
                all.retain(|l| !l.rw);
                // Children before parents: deepest first. (Creation times have one-second granularity:
                // a chain unpacked within one second would come out in any order, and a parent met
                // before its child is kept as "has children".)
                let parents: std::collections::BTreeMap<&str, &str> = all
                    .iter()
                    .filter_map(|l| Some((l.id.as_str(), l.parent.as_deref()?)))
                    .collect();
                let depth = |id: &str| {
                    let mut cur = id;
                    let mut d = 0usize;
                    while let Some(p) = parents.get(cur).filter(|_| d <= parents.len()) {
                        cur = p;
                        d += 1;
                    }
                    d
                };
                let mut ordered: Vec<(usize, String)> =
                    all.iter().map(|l| (depth(&l.id), l.id.clone())).collect();
                ordered.sort_by_key(|o| std::cmp::Reverse(o.0));
                ordered.into_iter().map(|(_, id)| id).collect()
            }
        };
        for id in candidates {
            if owned_layers.contains(id.as_str()) {
                continue;
            }
            match self.layers.delete_layer(&id) {
                Ok(()) | Err(LayerError::NotFound { .. }) => {}
                Err(LayerError::HasChildren { .. }) | Err(LayerError::Mounted { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let blobs: Vec<Digest> = match only {
            Some(img) => img
                .blobs
                .iter()
                .chain([&img.digest, &img.config_digest()])
                .chain(img.digests.iter())
                .filter_map(|d| Digest::parse(d).ok())
                .collect(),
            None => self.blobs.list()?,
        };
        for d in blobs {
            if !owned_blobs.contains(&d.to_string()) {
                self.blobs.remove(&d)?;
            }
        }
        Ok(())
    }
}

/// Every blob digest the images reference: manifests, configs, layer blobs.
fn owned_blobs(images: &[Image]) -> BTreeSet<String> {
    images
        .iter()
        .flat_map(|i| {
            i.blobs
                .iter()
                .cloned()
                .chain([i.digest.clone(), i.config_digest()])
                .chain(i.digests.iter().cloned())
        })
        .collect()
}
