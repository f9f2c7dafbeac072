//! `save` and `load`: images to and from docker-archive and oci-archive tarballs.
//!
//! * **docker-archive**, as podman and docker write it: `manifest.json`
//!   (`[{"Config":"<id>.json","RepoTags":[…],"Layers":["<diff_id hex>.tar",…]}]`), the config file as stored and
//!   each layer as an **uncompressed** tar (the stored blob decompressed on the fly; its sha256 is the diff ID).
//!   Entries are mode 0444, owned by root, mtime 0, as `podman save` writes them.
//! * **oci-archive**: `oci-layout`, `index.json` (one entry per name, with the full name in the
//!   `org.opencontainers.image.ref.name` annotation, as podman writes it) and `blobs/sha256/<hex>`: the stored
//!   manifest, config and layer blobs byte for byte, so every digest is unchanged.
//!
//! Both directions stream: a layer is never held in memory. [`Store::load`] reads the outer tar once, storing
//! each regular file in the blob store (which hashes it) and remembering name → digest, then builds the images
//! from the stored blobs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::error::{ImageError, ImageResult};
use super::import::{layer_media_type, OCI_LAYER_GZIP, OCI_LAYER_TAR};
use super::names::{self, name_matches, normalize_name};
use super::pull::now;
use super::record::Image;
use super::Store;
use crate::layers::{Layer, LayerError};
use crate::registry::manifest::{
    is_index, parse_json, resolve_platform, Descriptor, ImageConfig, ImageIndex, ImageManifest,
    Platform, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::registry::Reference;
use crate::{BlobInfo, Digest, StorageError};

/// The docker-archive's list of images.
const MANIFEST_JSON: &str = "manifest.json";
/// The OCI layout marker file.
const OCI_LAYOUT: &str = "oci-layout";
/// The OCI layout's index.
const INDEX_JSON: &str = "index.json";
/// The OCI layout version written and accepted.
const OCI_LAYOUT_VERSION: &str = "1.0.0";
/// The annotation holding an image's name in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Docker media type of an uncompressed layer (what a docker-archive holds).
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// How many symlinks or hard links are followed to find an archive entry's content.
const MAX_LINKS: usize = 16;

/// The layout of an image archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` / `podman save --format docker-archive`: `manifest.json`, configs, uncompressed layers.
    DockerArchive,
    /// `podman save --format oci-archive`: an OCI image layout (`oci-layout`, `index.json`, `blobs/`) in a tar.
    OciArchive,
}

/// One element of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    /// The config's file name in the archive.
    config: String,
    /// The image's names (`null` when it has none, as docker writes it).
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    /// The layer files, base first.
    layers: Vec<String>,
}

/// The `oci-layout` file.
#[derive(Debug, Serialize, Deserialize)]
struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

impl Store {
    /// Writes the images named by `images` (names or IDs) to `out` as a tar archive in `format`.
    ///
    /// An image given by a name is saved under the names that query matches; one given by ID under all its
    /// names. The same image named twice is written once with both names. Layers and blobs shared by several
    /// images are written once.
    pub fn save(&self, images: &[&str], format: ArchiveFormat, out: impl Write) -> ImageResult<()> {
        if images.is_empty() {
            return Err(ImageError::InvalidName {
                name: String::new(),
                reason: "no image given to save".into(),
            });
        }
        let records = self.images()?;
        let mut picked: Vec<(Image, Vec<String>)> = Vec::new();
        for query in images {
            let image = names::find(&records, query)?;
            let tags = names_for(image, query);
            match picked.iter_mut().find(|(i, _)| i.id == image.id) {
                Some((_, have)) => {
                    for t in tags {
                        if !have.contains(&t) {
                            have.push(t);
                        }
                    }
                }
                None => picked.push((image.clone(), tags)),
            }
        }
        let mut tar = tar::Builder::new(out);
        match format {
            ArchiveFormat::DockerArchive => self.write_docker_archive(&mut tar, &picked)?,
            ArchiveFormat::OciArchive => self.write_oci_archive(&mut tar, &picked)?,
        }
        let mut out = tar
            .into_inner()
            .map_err(|e| write_err("end of archive", e))?;
        out.flush().map_err(|e| write_err("end of archive", e))?;
        tracing::info!(images = ?images, ?format, "saved images");
        Ok(())
    }

    fn write_docker_archive<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        picked: &[(Image, Vec<String>)],
    ) -> ImageResult<()> {
        let mut written: BTreeSet<String> = BTreeSet::new();
        let mut entries = Vec::with_capacity(picked.len());
        for (image, tags) in picked {
            let config_bytes = self.blob_bytes(&image.config_digest())?;
            let config: ImageConfig =
                parse_json(&config_bytes, &format!("config of image {}", image.id))?;
            if config.rootfs.diff_ids.len() != image.layers.len()
                || image.blobs.len() != image.layers.len()
            {
                return Err(ImageError::InvalidImage {
                    image: image.id.clone(),
                    reason: format!(
                        "it has {} layers and {} layer blobs but its config lists {} diff IDs",
                        image.layers.len(),
                        image.blobs.len(),
                        config.rootfs.diff_ids.len()
                    ),
                });
            }
            let config_name = format!("{}.json", image.id);
            if written.insert(config_name.clone()) {
                append(
                    tar,
                    &config_name,
                    config_bytes.len() as u64,
                    0o444,
                    0,
                    config_bytes.as_slice(),
                )?;
            }
            let mut layer_names = Vec::with_capacity(image.layers.len());
            for ((layer_id, blob), diff_id) in image
                .layers
                .iter()
                .zip(&image.blobs)
                .zip(&config.rootfs.diff_ids)
            {
                let diff_id = Digest::parse(diff_id)?;
                let name = format!("{}.tar", diff_id.hex());
                if written.insert(name.clone()) {
                    let layer = self.layers.get(layer_id)?;
                    if layer.diff_id.as_deref() != Some(diff_id.to_string().as_str()) {
                        return Err(ImageError::InvalidImage {
                            image: image.id.clone(),
                            reason: format!(
                                "its config gives diff ID {diff_id} where its layer {layer_id} has {}",
                                layer.diff_id.as_deref().unwrap_or("none")
                            ),
                        });
                    }
                    let blob = Digest::parse(blob)?;
                    let path = self.blobs.path(&blob);
                    let file = self.blobs.open_blob(&blob)?;
                    let (stream, _) = crate::unpack::decompress(BufReader::new(file))?;
                    let reader = CheckedReader {
                        inner: stream,
                        path,
                        expected_size: layer.size,
                        expected: diff_id,
                        size: 0,
                        hasher: sha2::Sha256::new(),
                        checked: false,
                    };
                    append(tar, &name, layer.size, 0o444, 0, reader)?;
                }
                layer_names.push(name);
            }
            entries.push(DockerArchiveEntry {
                config: config_name,
                repo_tags: (!tags.is_empty()).then(|| tags.clone()),
                layers: layer_names,
            });
        }
        let manifest = serde_json::to_vec(&entries).map_err(|e| ImageError::InvalidImage {
            image: MANIFEST_JSON.into(),
            reason: format!("cannot encode: {e}"),
        })?;
        append(
            tar,
            MANIFEST_JSON,
            manifest.len() as u64,
            0o444,
            0,
            manifest.as_slice(),
        )
    }

    fn write_oci_archive<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        picked: &[(Image, Vec<String>)],
    ) -> ImageResult<()> {
        let mtime = now();
        let layout = serde_json::to_vec(&OciLayout {
            image_layout_version: OCI_LAYOUT_VERSION.into(),
        })
        .map_err(|e| ImageError::InvalidImage {
            image: OCI_LAYOUT.into(),
            reason: format!("cannot encode: {e}"),
        })?;
        append(
            tar,
            OCI_LAYOUT,
            layout.len() as u64,
            0o644,
            mtime,
            layout.as_slice(),
        )?;
        append_dir(tar, "blobs/", mtime)?;
        append_dir(tar, "blobs/sha256/", mtime)?;
        let mut written: BTreeSet<String> = BTreeSet::new();
        let mut index = ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: None,
        };
        for (image, tags) in picked {
            let manifest_digest = Digest::parse(&image.digest)?;
            let mut blobs = vec![
                manifest_digest.clone(),
                Digest::parse(&image.config_digest())?,
            ];
            for b in &image.blobs {
                blobs.push(Digest::parse(b)?);
            }
            let mut manifest_size = 0;
            for digest in blobs {
                let path = self.blobs.path(&digest);
                let file = self.blobs.open_blob(&digest)?;
                let size = file
                    .metadata()
                    .map_err(|e| ImageError::io("stat blob", &path, e))?
                    .len();
                if digest == manifest_digest {
                    manifest_size = size;
                }
                let name = format!("blobs/sha256/{}", digest.hex());
                if written.insert(name.clone()) {
                    let reader = CheckedReader {
                        inner: BufReader::new(file),
                        path,
                        expected_size: size,
                        expected: digest,
                        size: 0,
                        hasher: sha2::Sha256::new(),
                        checked: false,
                    };
                    append(tar, &name, size, 0o644, mtime, reader)?;
                }
            }
            let media_type = if image.manifest_type.is_empty() {
                OCI_MANIFEST.to_owned()
            } else {
                image.manifest_type.clone()
            };
            let descriptor = |name: Option<&String>| Descriptor {
                media_type: media_type.clone(),
                digest: image.digest.clone(),
                size: manifest_size,
                platform: None,
                annotations: name
                    .map(|n| BTreeMap::from([(REF_NAME_ANNOTATION.to_owned(), n.clone())])),
            };
            if tags.is_empty() {
                index.manifests.push(descriptor(None));
            }
            for t in tags {
                index.manifests.push(descriptor(Some(t)));
            }
        }
        let index = serde_json::to_vec(&index).map_err(|e| ImageError::InvalidImage {
            image: INDEX_JSON.into(),
            reason: format!("cannot encode: {e}"),
        })?;
        append(
            tar,
            INDEX_JSON,
            index.len() as u64,
            0o644,
            mtime,
            index.as_slice(),
        )
    }

    /// Loads every image of the docker-archive or oci-archive read from `input` (plain, gzip or zstd; the
    /// format is recognised by `manifest.json`, else `oci-layout` and `index.json`) and returns them.
    /// `path_for_errors` names the archive in errors.
    ///
    /// The archive's files are stored as blobs in one pass; the ones no loaded image references (such as
    /// `manifest.json`) are removed afterwards. Layers already in the store are not unpacked again. On an error,
    /// images loaded before it stay. Afterwards, as after a pull or import, what no image owns (what the failed
    /// image added, what an earlier killed load left) is collected when no other work runs.
    pub fn load(&self, input: impl Read, path_for_errors: &Path) -> ImageResult<Vec<Image>> {
        let work = self.work()?;
        let before: BTreeSet<Digest> = self.blobs.list()?.into_iter().collect();
        let mut loader = Loader {
            store: self,
            path: path_for_errors.to_owned(),
            files: BTreeMap::new(),
            links: BTreeMap::new(),
            added: BTreeSet::new(),
            used: BTreeSet::new(),
        };
        let result = loader.run(input, &before);
        drop(work);
        // Archive files that are no image's content (manifest.json, index.json, legacy v1 files): nothing else
        // can be using them, so they go now, even while other work runs.
        let metadata: Vec<Digest> = loader.added.difference(&loader.used).cloned().collect();
        if let Err(e) = self.remove_unowned_blobs(&metadata) {
            tracing::warn!(error = %e, archive = %path_for_errors.display(), "cannot remove the archive's leftover blobs");
        }
        // Then what no image owns: the layers and blobs of a failed image, and what an earlier killed load left
        // that this one did not reuse (its archive files, stored before this load's `before`), as after a pull
        // or import; unless a pull, import or load is under way (a later gc takes them then).
        if let Err(e) = self.gc() {
            tracing::warn!(error = %e, "garbage collection after a load failed");
        }
        result
    }
}

/// The names to save `image` under when the user named it `query`.
fn names_for(image: &Image, query: &str) -> Vec<String> {
    if let Ok(r) = Reference::parse(query) {
        if r.digest.is_none() {
            let hits: Vec<String> = image
                .names
                .iter()
                .filter(|n| name_matches(n, &r))
                .cloned()
                .collect();
            if !hits.is_empty() {
                return hits;
            }
        }
    }
    image.names.clone()
}

fn write_err(entry: &str, source: io::Error) -> ImageError {
    ImageError::ArchiveWrite {
        entry: entry.to_owned(),
        source,
    }
}

/// Appends a regular file of `size` bytes read from `data`, owned by root.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mode: u32,
    mtime: u64,
    data: impl Read,
) -> ImageResult<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    tar.append_data(&mut header, name, data)
        .map_err(|e| write_err(name, e))
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str, mtime: u64) -> ImageResult<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    tar.append_data(&mut header, name, io::empty())
        .map_err(|e| write_err(name, e))
}

/// Passes a stored blob (or its decompressed stream) into the archive, failing unless it has exactly the
/// announced size and digest: the tar header was written with that size, so a short or long stream would
/// corrupt the archive, and a blob that changed on disk must not be passed on under its old digest.
struct CheckedReader<R> {
    inner: R,
    path: PathBuf,
    expected_size: u64,
    expected: Digest,
    size: u64,
    hasher: sha2::Sha256,
    checked: bool,
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading blob {}: {e}", self.path.display()),
            )
        })?;
        let chunk = buf.get(..n).unwrap_or_default();
        self.size += n as u64;
        if self.size > self.expected_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than the {} bytes recorded",
                    self.path.display(),
                    self.expected_size
                ),
            ));
        }
        self.hasher.update(chunk);
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
            if self.size != self.expected_size || actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} gives {} bytes with digest {actual}, expected {} bytes with digest {}",
                        self.path.display(),
                        self.size,
                        self.expected_size,
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// The state of one `load`.
struct Loader<'a> {
    store: &'a Store,
    path: PathBuf,
    /// Regular files of the archive: clean name → stored blob.
    files: BTreeMap<String, BlobInfo>,
    /// Symlinks and hard links: clean name → clean target name.
    links: BTreeMap<String, String>,
    /// Blobs this load stored that were not in the store before.
    added: BTreeSet<Digest>,
    /// Blobs used as an image's manifest, config or layer.
    used: BTreeSet<Digest>,
}

impl Loader<'_> {
    fn bad(&self, reason: impl Into<String>) -> ImageError {
        ImageError::Archive {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn run(&mut self, input: impl Read, before: &BTreeSet<Digest>) -> ImageResult<Vec<Image>> {
        self.read_entries(input, before)?;
        if self.resolve(MANIFEST_JSON).is_some() {
            self.load_docker()
        } else if self.resolve(INDEX_JSON).is_some() {
            self.load_oci()
        } else {
            Err(self.bad(format!(
                "neither {MANIFEST_JSON} (docker-archive) nor {OCI_LAYOUT} and {INDEX_JSON} (oci-archive) found: not an image archive"
            )))
        }
    }

    /// Stores every regular file of the tar as a blob; records links; refuses unsafe names.
    fn read_entries(&mut self, input: impl Read, before: &BTreeSet<Digest>) -> ImageResult<()> {
        let (stream, _) = crate::unpack::decompress(input).map_err(|e| self.bad(e.to_string()))?;
        let mut archive = tar::Archive::new(stream);
        let entries = archive
            .entries()
            .map_err(|e| self.bad(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.bad(format!("bad tar entry: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| self.bad(format!("bad entry name: {e}")))?
                .into_owned();
            let name = self.clean_name(&raw, &raw)?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let info =
                        self.store
                            .blobs
                            .put_unverified(&mut entry)
                            .map_err(|e| match e {
                                StorageError::Read { source, .. } => {
                                    self.bad(format!("entry {name}: {source}"))
                                }
                                other => other.into(),
                            })?;
                    if !before.contains(&info.digest) {
                        self.added.insert(info.digest.clone());
                    }
                    self.links.remove(&name);
                    self.files.insert(name, info);
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = entry
                        .link_name()
                        .map_err(|e| self.bad(format!("entry {name}: bad link target: {e}")))?
                        .ok_or_else(|| self.bad(format!("entry {name}: link without a target")))?
                        .into_owned();
                    // A symlink is relative to its directory, a hard link to the archive root.
                    let full = if kind == tar::EntryType::Symlink && target.is_relative() {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(&target)
                    } else {
                        target.clone()
                    };
                    match self.clean_name(&full, &raw) {
                        Ok(target) => {
                            self.files.remove(&name);
                            self.links.insert(name, target);
                        }
                        // A link out of the archive cannot be content of an image: ignored unless used.
                        Err(e) => {
                            tracing::debug!(error = %e, "ignoring a link leaving the archive")
                        }
                    }
                }
                tar::EntryType::Directory => {}
                other => {
                    tracing::debug!(entry = name, kind = ?other, "ignoring archive entry");
                }
            }
        }
        Ok(())
    }

    /// `raw` as a clean relative name (`./a//b` → `a/b`); `..` resolving inside the archive is allowed
    /// only in link targets (`entry` is then the link), never in entry names.
    fn clean_name(&self, raw: &Path, entry: &Path) -> ImageResult<String> {
        let is_link_target = raw != entry;
        let mut parts: Vec<&str> = Vec::new();
        for c in raw.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| {
                    self.bad(format!("entry {}: name is not UTF-8", entry.display()))
                })?),
                Component::CurDir => {}
                Component::ParentDir if is_link_target && parts.pop().is_some() => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(self.bad(format!(
                        "entry {}: {} is absolute or contains \"..\"",
                        entry.display(),
                        raw.display()
                    )))
                }
            }
        }
        Ok(parts.join("/"))
    }

    /// The stored blob of the archive file `name`, following links.
    fn resolve(&self, name: &str) -> Option<&BlobInfo> {
        let mut name = name.to_owned();
        for _ in 0..MAX_LINKS {
            if let Some(info) = self.files.get(&name) {
                return Some(info);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// The stored blob of the archive file `name` (archive metadata: not kept after the load).
    fn file(&self, name: &str) -> ImageResult<BlobInfo> {
        self.resolve(name)
            .cloned()
            .ok_or_else(|| self.bad(format!("{name} is missing")))
    }

    /// The stored blob of the archive file `name`, an image's config, manifest or layer (kept).
    fn content(&mut self, name: &str) -> ImageResult<BlobInfo> {
        let info = self.file(name)?;
        self.used.insert(info.digest.clone());
        Ok(info)
    }

    /// The OCI blob `digest`: the file `blobs/sha256/<hex>`, whose content must have that digest.
    fn oci_blob(&mut self, digest: &str) -> ImageResult<BlobInfo> {
        let digest = Digest::parse(digest).map_err(|e| self.bad(e.to_string()))?;
        let name = format!("blobs/sha256/{}", digest.hex());
        let info = self.content(&name)?;
        if info.digest != digest {
            return Err(self.bad(format!(
                "{name} does not match its digest: its content hashes to {}",
                info.digest
            )));
        }
        Ok(info)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, info: &BlobInfo, what: &str) -> ImageResult<T> {
        let bytes = self.store.blob_bytes(&info.digest.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("{what}: {e}")))
    }

    fn config(&mut self, info: &BlobInfo, what: &str) -> ImageResult<ImageConfig> {
        let config: ImageConfig = self.json(info, what)?;
        for d in &config.rootfs.diff_ids {
            Digest::parse(d).map_err(|e| self.bad(format!("{what}: {e}")))?;
        }
        Ok(config)
    }

    /// Unpacks (unless present) the layer stored as `blob` with `diff_id` on top of `parent`.
    fn layer(
        &mut self,
        parent: Option<&str>,
        blob: &BlobInfo,
        diff_id: &str,
        entry: &str,
    ) -> ImageResult<Layer> {
        let diff_id = Digest::parse(diff_id).map_err(|e| self.bad(e.to_string()))?;
        let file = self.store.blobs.open_blob(&blob.digest)?;
        let layer = self
            .store
            .layers
            .create_layer_verified(parent, BufReader::new(file), &diff_id)
            .map_err(|e| match e {
                e @ (LayerError::DiffIdMismatch { .. } | LayerError::Unpack { .. }) => {
                    self.bad(format!("layer {entry}: {e}"))
                }
                other => other.into(),
            })?;
        Ok(layer)
    }

    fn load_docker(&mut self) -> ImageResult<Vec<Image>> {
        let manifest = self.file(MANIFEST_JSON)?;
        let entries: Vec<DockerArchiveEntry> = self.json(&manifest, MANIFEST_JSON)?;
        if entries.is_empty() {
            return Err(self.bad(format!("{MANIFEST_JSON} lists no image")));
        }
        let mut out: Vec<Image> = Vec::new();
        for entry in entries {
            let config_info = self.content(&entry.config)?;
            let config = self.config(&config_info, &entry.config)?;
            if entry.layers.len() != config.rootfs.diff_ids.len() {
                return Err(self.bad(format!(
                    "{MANIFEST_JSON} lists {} layers for {} but it has {} diff IDs",
                    entry.layers.len(),
                    entry.config,
                    config.rootfs.diff_ids.len()
                )));
            }
            let names = entry
                .repo_tags
                .iter()
                .flatten()
                .map(|t| normalize_name(t))
                .collect::<ImageResult<Vec<String>>>()?;
            let mut layers: Vec<Layer> = Vec::with_capacity(entry.layers.len());
            let mut descriptors = Vec::with_capacity(entry.layers.len());
            let mut zstd = false;
            for (name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
                let blob = self.content(name)?;
                let parent = layers.last().map(|l| l.id.clone());
                layers.push(self.layer(parent.as_deref(), &blob, diff_id, name)?);
                let media_type = match layer_media_type(&self.head(&blob)?) {
                    OCI_LAYER_GZIP => DOCKER_LAYER_GZIP,
                    OCI_LAYER_TAR => DOCKER_LAYER_TAR,
                    other => {
                        zstd = true;
                        other
                    }
                };
                descriptors.push(Descriptor {
                    media_type: media_type.into(),
                    digest: blob.digest.to_string(),
                    size: blob.size,
                    platform: None,
                    annotations: None,
                });
            }
            // A Docker schema 2 manifest as containers/image makes for a docker-archive; OCI if a layer is
            // zstd, which Docker has no media type for.
            let (manifest_type, config_type) = if zstd {
                for d in &mut descriptors {
                    d.media_type = layer_media_type(&self.head_of(&d.digest)?).into();
                }
                (OCI_MANIFEST, OCI_CONFIG)
            } else {
                (DOCKER_MANIFEST, DOCKER_CONFIG)
            };
            let manifest = ImageManifest {
                schema_version: 2,
                media_type: Some(manifest_type.into()),
                config: Descriptor {
                    media_type: config_type.into(),
                    digest: config_info.digest.to_string(),
                    size: config_info.size,
                    platform: None,
                    annotations: None,
                },
                layers: descriptors,
                annotations: None,
            };
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| self.bad(format!("cannot encode a manifest: {e}")))?;
            let stored = self.store.blobs.put_unverified(bytes.as_slice())?;
            self.used.insert(stored.digest.clone());
            let image = self.store.record(Image {
                names,
                ..Image::assemble(
                    &config_info.digest,
                    stored.digest.to_string(),
                    manifest_type.into(),
                    &manifest,
                    layers,
                    config.created.clone(),
                )
            })?;
            push_unique(&mut out, image);
        }
        Ok(out)
    }

    fn load_oci(&mut self) -> ImageResult<Vec<Image>> {
        let layout_info = self.file(OCI_LAYOUT)?;
        let layout: OciLayout = self.json(&layout_info, OCI_LAYOUT)?;
        if layout.image_layout_version != OCI_LAYOUT_VERSION {
            return Err(self.bad(format!(
                "{OCI_LAYOUT}: unsupported layout version {:?}",
                layout.image_layout_version
            )));
        }
        let index_info = self.file(INDEX_JSON)?;
        let index: ImageIndex = self.json(&index_info, INDEX_JSON)?;
        if index.manifests.is_empty() {
            return Err(self.bad(format!("{INDEX_JSON} lists no image")));
        }
        let mut out: Vec<Image> = Vec::new();
        for entry in &index.manifests {
            let ref_name = entry
                .annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION));
            let names = ref_name
                .map(|n| normalize_name(n))
                .transpose()?
                .into_iter()
                .collect::<Vec<String>>();
            let what = ref_name.cloned().unwrap_or_else(|| entry.digest.clone());
            let mut digests = vec![entry.digest.clone()];
            let mut descriptor = entry.clone();
            if is_index(&entry.media_type) {
                let info = self.oci_blob(&entry.digest)?;
                let nested: ImageIndex = self.json(&info, &format!("index {}", entry.digest))?;
                descriptor = resolve_platform(&nested, &what, &Platform::host())?.clone();
                digests.push(descriptor.digest.clone());
            }
            let manifest_info = self.oci_blob(&descriptor.digest)?;
            let manifest: ImageManifest =
                self.json(&manifest_info, &format!("manifest {}", descriptor.digest))?;
            let config_type = manifest.config.media_type.as_str();
            if !config_type.is_empty() && config_type != OCI_CONFIG && config_type != DOCKER_CONFIG
            {
                return Err(self.bad(format!(
                    "{what}: its config has media type {config_type}: not a container image"
                )));
            }
            let config_info = self.oci_blob(&manifest.config.digest)?;
            let config = self.config(&config_info, &format!("config {}", config_info.digest))?;
            super::pull::check_layers(&what, &manifest, &config)?;
            let mut layers: Vec<Layer> = Vec::with_capacity(manifest.layers.len());
            for (d, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                let blob = self.oci_blob(&d.digest)?;
                let parent = layers.last().map(|l| l.id.clone());
                let name = format!("blobs/sha256/{}", blob.digest.hex());
                layers.push(self.layer(parent.as_deref(), &blob, diff_id, &name)?);
            }
            let manifest_type = [
                descriptor.media_type.as_str(),
                manifest.media_type.as_deref().unwrap_or_default(),
            ]
            .into_iter()
            .find(|t| !t.is_empty())
            .unwrap_or(OCI_MANIFEST)
            .to_owned();
            digests.retain(|d| *d != descriptor.digest);
            let image = self.store.record(Image {
                names,
                digests,
                ..Image::assemble(
                    &config_info.digest,
                    descriptor.digest.clone(),
                    manifest_type,
                    &manifest,
                    layers,
                    config.created.clone(),
                )
            })?;
            push_unique(&mut out, image);
        }
        Ok(out)
    }

    fn head(&self, blob: &BlobInfo) -> ImageResult<Vec<u8>> {
        self.head_of(&blob.digest.to_string())
    }

    /// The first bytes of a stored blob (to tell its compression).
    fn head_of(&self, digest: &str) -> ImageResult<Vec<u8>> {
        let digest = Digest::parse(digest)?;
        let path = self.store.blobs.path(&digest);
        let mut head = Vec::with_capacity(8);
        File::open(&path)
            .and_then(|f| f.take(8).read_to_end(&mut head))
            .map_err(|e| ImageError::io("read blob", &path, e))?;
        Ok(head)
    }
}

/// Adds `image` to `out`, replacing an earlier record of the same image (the later one has all names).
fn push_unique(out: &mut Vec<Image>, image: Image) {
    match out.iter_mut().find(|i| i.id == image.id) {
        Some(i) => *i = image,
        None => out.push(image),
    }
}
