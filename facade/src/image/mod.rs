//! Images: the image store (`rpod-storage`) opened on first use, and the verbs on it — `pull`
//! (pull.rs), `images`/`image inspect`, `tag`/`untag`, `rmi`/`image prune`, `import`, `load`/
//! `save`/`push`, `mount`/`umount` of a container — plus the container side: the image root
//! filesystem ([`ImageRootfs`]) and how an image config becomes a container's defaults
//! (apply.rs).

pub(crate) mod apply;
mod pull;
mod rootfs;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use rpod_storage::images::ImportOptions;
use rpod_storage::{Image, ImageError, Store, StoreOptions};
use serde::Serialize;

pub use pull::{PullPolicy, PullSpec};
pub use rootfs::ImageRootfs;

use crate::error::RuntimeError;
use crate::Runtime;

/// The image store, opened the first time something needs it (most commands never do).
#[derive(Debug)]
pub(crate) struct StoreHandle {
    pub(crate) options: StoreOptions,
    cell: Mutex<Option<Store>>,
}

impl StoreHandle {
    pub(crate) fn new(options: StoreOptions) -> Self {
        StoreHandle {
            options,
            cell: Mutex::new(None),
        }
    }

    /// The store (cheap to clone: it is paths).
    pub(crate) fn get(&self) -> Result<Store, RuntimeError> {
        let mut cell = self.cell.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cell.as_ref() {
            return Ok(s.clone());
        }
        let store = Store::open(&self.options).map_err(image_err)?;
        *cell = Some(store.clone());
        Ok(store)
    }
}

pub(crate) fn image_err(e: ImageError) -> RuntimeError {
    RuntimeError::Image(Box::new(e))
}

pub(crate) fn layer_err(e: rpod_storage::LayerError) -> RuntimeError {
    image_err(ImageError::Layer(e))
}

/// A line of `rpod images`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// Full image ID.
    pub id: String,
    /// Its names (`registry/repo:tag`).
    pub names: Vec<String>,
    /// The manifest digest.
    pub digest: String,
    /// Creation time from the config (Unix seconds), else when it was stored.
    pub created: i64,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Containers created from it.
    pub containers: usize,
    /// Whether it has no name.
    pub dangling: bool,
}

/// `rpod image inspect`: what podman prints, in its field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// Full image ID.
    pub id: String,
    /// The manifest digest.
    pub digest: String,
    /// Names as `registry/repo:tag`.
    pub repo_tags: Vec<String>,
    /// Names as `registry/repo@digest`.
    pub repo_digests: Vec<String>,
    /// Creation time (RFC 3339) from the config.
    pub created: String,
    /// The runtime config (Entrypoint, Cmd, Env, …) as the image has it.
    pub config: serde_json::Value,
    /// Architecture.
    pub architecture: String,
    /// OS.
    pub os: String,
    /// Uncompressed size.
    pub size: u64,
    /// The layers as podman shows them: `{"Type": "layers", "Layers": [diff IDs]}`.
    #[serde(rename = "RootFS")]
    pub root_fs: serde_json::Value,
    /// The storage driver and its layer IDs.
    pub graph_driver: BTreeMap<String, serde_json::Value>,
    /// The stored manifest's media type.
    pub manifest_type: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

impl Runtime {
    /// The image store of this runtime's graph and run roots.
    pub fn image_store(&self) -> Result<Store, RuntimeError> {
        self.images.get()
    }

    /// The image `name` names (name, short name, `name@digest`, ID or unique ID prefix).
    pub fn lookup_image(&self, name: &str) -> Result<Image, RuntimeError> {
        self.image_store()?.lookup(name).map_err(image_err)
    }

    /// Every image with how many containers use it, oldest first.
    pub fn list_images(&self) -> Result<Vec<ImageSummary>, RuntimeError> {
        let store = self.image_store()?;
        let users = self.image_users()?;
        Ok(store
            .images()
            .map_err(image_err)?
            .into_iter()
            .map(|i| ImageSummary {
                containers: users.get(&i.id).map_or(0, Vec::len),
                created: i
                    .created
                    .as_deref()
                    .and_then(|c| c.parse::<jiff::Timestamp>().ok())
                    .map_or(i.added as i64, |t| t.as_second()),
                dangling: i.is_dangling(),
                id: i.id,
                names: i.names,
                digest: i.digest,
                size: i.size,
            })
            .collect())
    }

    /// Image ID → the containers (IDs) created from it.
    fn image_users(&self) -> Result<BTreeMap<String, Vec<String>>, RuntimeError> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.state.view("")?.all_containers()? {
            if !c.config.image_id.is_empty() {
                users
                    .entry(c.config.image_id.clone())
                    .or_default()
                    .push(c.config.id.clone());
            }
        }
        Ok(users)
    }

    /// `rpod image inspect`.
    pub fn inspect_image(&self, name: &str) -> Result<ImageInspect, RuntimeError> {
        let store = self.image_store()?;
        let image = store.lookup(name).map_err(image_err)?;
        let raw: serde_json::Value = serde_json::from_slice(
            &store
                .blob_bytes(&image.config_digest())
                .map_err(image_err)?,
        )
        .map_err(|e| {
            image_err(ImageError::InvalidImage {
                image: image.id.clone(),
                reason: format!("its config is not JSON: {e}"),
            })
        })?;
        let text = |k: &str| raw.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        let config = raw
            .get("config")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let labels = config
            .get("Labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let repo_digests = image
            .names
            .iter()
            .filter_map(|n| n.rsplit_once(':').map(|(repo, _)| repo))
            .flat_map(|repo| {
                std::iter::once(&image.digest)
                    .chain(image.digests.iter())
                    .map(move |d| format!("{repo}@{d}"))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut graph_driver = BTreeMap::new();
        graph_driver.insert("Name".to_owned(), store.driver().name().into());
        graph_driver.insert(
            "Layers".to_owned(),
            serde_json::to_value(&image.layers).unwrap_or_default(),
        );
        Ok(ImageInspect {
            id: image.id.clone(),
            digest: image.digest.clone(),
            repo_tags: image.names.clone(),
            repo_digests,
            created: text("created"),
            architecture: text("architecture"),
            os: text("os"),
            size: image.size,
            root_fs: serde_json::json!({
                "Type": raw.pointer("/rootfs/type").cloned().unwrap_or_default(),
                "Layers": raw.pointer("/rootfs/diff_ids").cloned().unwrap_or_default(),
            }),
            config,
            graph_driver,
            manifest_type: image.manifest_type.clone(),
            labels,
        })
    }

    /// `rpod tag IMAGE NAME…`.
    pub fn tag_image(&self, image: &str, names: &[String]) -> Result<Image, RuntimeError> {
        let store = self.image_store()?;
        let mut out = store.lookup(image).map_err(image_err)?;
        for n in names {
            out = store.tag(&out.id, n).map_err(image_err)?;
        }
        Ok(out)
    }

    /// `rpod untag IMAGE [NAME…]` (every name when none is given).
    pub fn untag_image(&self, image: &str, names: &[String]) -> Result<Image, RuntimeError> {
        let store = self.image_store()?;
        let mut out = store.lookup(image).map_err(image_err)?;
        if names.is_empty() {
            return store.untag(&out.id, None).map_err(image_err);
        }
        for n in names {
            out = store.untag(&out.id, Some(n)).map_err(image_err)?;
        }
        Ok(out)
    }

    /// `rpod rmi [-f] IMAGE`: removes the image (its layers and blobs that no other image uses).
    /// An image used by containers is refused unless `force`, which removes those containers
    /// first. Returns the lines podman prints (`Untagged: …`, `Deleted: …`).
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<String>, RuntimeError> {
        let store = self.image_store()?;
        let image = store.lookup(name).map_err(image_err)?;
        let users = self.image_users()?.remove(&image.id).unwrap_or_default();
        if !users.is_empty() {
            if !force {
                return Err(RuntimeError::ImageInUse {
                    image: name.to_owned(),
                    id: image.id.clone(),
                    containers: users,
                });
            }
            let all = self.all_namespaces()?;
            for c in &users {
                all.remove_container(c, true)?;
            }
        }
        let removed = store.delete(&image.id).map_err(image_err)?;
        let mut lines: Vec<String> = removed
            .names
            .iter()
            .map(|n| format!("Untagged: {n}"))
            .collect();
        lines.push(format!("Deleted: {}", removed.id));
        Ok(lines)
    }

    /// `rpod image prune [-a]`: removes dangling images (with `all`, every image no container
    /// uses), then what interrupted pulls left. Returns the removed IDs.
    pub fn prune_images(&self, all: bool) -> Result<Vec<String>, RuntimeError> {
        let store = self.image_store()?;
        let users = self.image_users()?;
        let mut removed = Vec::new();
        // Repeat: removing an image can leave another without users only in chains, not here,
        // but one pass over a snapshot is what podman does too.
        for i in store.images().map_err(image_err)? {
            if users.contains_key(&i.id) || !(all || i.is_dangling()) {
                continue;
            }
            match store.delete(&i.id) {
                Ok(r) => removed.push(r.id),
                Err(ImageError::InUse { .. }) | Err(ImageError::NotFound { .. }) => {}
                Err(e) => return Err(image_err(e)),
            }
        }
        store.gc().map_err(image_err)?;
        Ok(removed)
    }

    /// `rpod import TARBALL [NAME]`: a root filesystem tarball (plain, gzip or zstd) becomes a
    /// one-layer image.
    pub fn import_image(
        &self,
        reader: impl Read,
        options: &ImportOptions,
    ) -> Result<Image, RuntimeError> {
        self.image_store()?
            .import(reader, options)
            .map_err(image_err)
    }

    /// `rpod save`: writes the images (names or IDs) as a docker-archive or oci-archive.
    pub fn save_images(
        &self,
        names: &[String],
        format: rpod_storage::images::ArchiveFormat,
        out: impl std::io::Write,
    ) -> Result<(), RuntimeError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.image_store()?
            .save(&names, format, out)
            .map_err(image_err)
    }

    /// `rpod load`: reads a docker-archive or oci-archive (plain or compressed) and stores its
    /// images; `path` names the archive in errors and in the signature policy check.
    pub fn load_images(
        &self,
        input: impl Read,
        path: &std::path::Path,
    ) -> Result<Vec<Image>, RuntimeError> {
        self.image_store()?.load(input, path).map_err(image_err)
    }

    /// `rpod mount CTR`: mounts the container's root filesystem (counted) and returns where.
    pub fn mount_container(&self, name: &str) -> Result<PathBuf, RuntimeError> {
        let rec = self.lookup_container(name)?;
        if rec.config.rootfs_layer.is_empty() {
            return Ok(PathBuf::from(&rec.config.rootfs));
        }
        self.image_store()?
            .layers()
            .mount(&rec.config.rootfs_layer)
            .map_err(layer_err)
    }

    /// `rpod umount CTR`: gives back one `rpod mount`.
    pub fn unmount_container(&self, name: &str) -> Result<String, RuntimeError> {
        let rec = self.lookup_container(name)?;
        if !rec.config.rootfs_layer.is_empty() {
            self.image_store()?
                .layers()
                .unmount(&rec.config.rootfs_layer)
                .map_err(layer_err)?;
        }
        Ok(rec.config.id)
    }

    /// Where a container's root filesystem is seen from the host: its `--rootfs` directory, or
    /// its layer's mount point (mounted while the container runs).
    pub(crate) fn container_root(
        &self,
        rec: &rpod_state::ContainerRecord,
    ) -> Result<PathBuf, RuntimeError> {
        if rec.config.rootfs_layer.is_empty() {
            return Ok(PathBuf::from(&rec.config.rootfs));
        }
        Ok(self
            .image_store()?
            .layers()
            .mount_point(&rec.config.rootfs_layer))
    }

    /// Deletes a removed container's writable layer (and any mount of it).
    pub(crate) fn remove_container_layer(
        &self,
        rec: &rpod_state::ContainerRecord,
    ) -> Result<(), RuntimeError> {
        if rec.config.rootfs_layer.is_empty() {
            return Ok(());
        }
        let _ = std::fs::remove_file(
            self.images
                .options
                .run_root
                .join("rpod-mounted")
                .join(&rec.config.id),
        );
        self.image_store()?
            .delete_container_layer(&rec.config.rootfs_layer)
            .map_err(image_err)
    }
}
