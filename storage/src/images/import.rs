//! `import`: a root filesystem tarball becomes a one-layer image (podman's `import`).

use std::io::{BufReader, Read};

use super::error::{ImageError, ImageResult};
use super::names::normalize_name;
use super::pull::now;
use super::record::Image;
use super::Store;
use crate::registry::manifest::{
    ContainerConfig, Descriptor, ImageConfig, ImageManifest, Platform, RootFs, OCI_CONFIG,
    OCI_MANIFEST,
};

/// OCI layer media types by compression.
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// What `import` gives the new image.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Its name (`foo` → `localhost/foo:latest`); `None` leaves it dangling, as podman does.
    pub name: Option<String>,
    /// Its runtime config (`--change CMD=…`, `ENV`, …).
    pub config: ContainerConfig,
    /// The history comment (`--message`).
    pub message: Option<String>,
}

/// The OCI layer media type of a blob, from its first bytes.
pub(crate) fn layer_media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        OCI_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER_TAR
    }
}

impl Store {
    /// Stores the tarball read from `reader` (plain, gzip or zstd) as the only layer of a new image with an
    /// OCI manifest and a config for this host's platform.
    pub fn import(&self, reader: impl Read, options: &ImportOptions) -> ImageResult<Image> {
        let name = options.name.as_deref().map(normalize_name).transpose()?;
        self.with_work(|| self.import_locked(reader, name, options))
    }

    fn import_locked(
        &self,
        reader: impl Read,
        name: Option<String>,
        options: &ImportOptions,
    ) -> ImageResult<Image> {
        // One pass: the tarball is stored as a blob while it is unpacked.
        let mut tee = crate::Tee::new(BufReader::new(reader), self.blobs.writer()?);
        let layer = self.layers.create_layer_from_blob(None, &mut tee)?;
        let blob = self.blobs.commit(tee.into_writer(), None)?;
        let mut head = Vec::with_capacity(4);
        self.blobs
            .open_blob(&blob.digest)?
            .take(4)
            .read_to_end(&mut head)
            .map_err(|e| ImageError::io("read blob", self.blobs.path(&blob.digest), e))?;
        let diff_id = layer
            .diff_id
            .clone()
            .ok_or_else(|| ImageError::InvalidImage {
                image: blob.digest.to_string(),
                reason: "the imported layer has no diff ID".into(),
            })?;
        let host = Platform::host();
        let created = jiff::Timestamp::now().to_string();
        let created_by = format!(
            "/bin/sh -c #(nop) ADD file:{} in /",
            diff_id.strip_prefix("sha256:").unwrap_or(&diff_id)
        );
        let mut config = serde_json::to_value(ImageConfig {
            architecture: host.architecture,
            os: host.os,
            variant: None,
            created: Some(created.clone()),
            config: Some(options.config.clone()),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
        })
        .map_err(|e| json_err(&blob.digest.to_string(), &e))?;
        if let Some(obj) = config.as_object_mut() {
            let mut entry = serde_json::json!({
                "created": created,
                "created_by": created_by,
            });
            if let (Some(m), Some(e)) = (&options.message, entry.as_object_mut()) {
                e.insert("comment".into(), m.clone().into());
            }
            obj.insert("history".into(), serde_json::Value::Array(vec![entry]));
        }
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| json_err(&blob.digest.to_string(), &e))?;
        let config_info = self.blobs.put_unverified(config_bytes.as_slice())?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: OCI_CONFIG.into(),
                digest: config_info.digest.to_string(),
                size: config_info.size,
                platform: None,
                annotations: None,
            },
            layers: vec![Descriptor {
                media_type: layer_media_type(&head).into(),
                digest: blob.digest.to_string(),
                size: blob.size,
                platform: None,
                annotations: None,
            }],
            annotations: None,
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| json_err(&blob.digest.to_string(), &e))?;
        let manifest_info = self.blobs.put_unverified(manifest_bytes.as_slice())?;
        self.record(Image {
            id: config_info.digest.hex().to_owned(),
            names: name.into_iter().collect(),
            digest: manifest_info.digest.to_string(),
            digests: Vec::new(),
            manifest_type: OCI_MANIFEST.into(),
            blobs: vec![blob.digest.to_string()],
            layers: vec![layer.id.clone()],
            created: config
                .get("created")
                .and_then(|c| c.as_str())
                .map(str::to_owned),
            added: now(),
            size: layer.size,
        })
    }
}

fn json_err(image: &str, e: &serde_json::Error) -> ImageError {
    ImageError::InvalidImage {
        image: image.to_owned(),
        reason: format!("cannot encode its metadata: {e}"),
    }
}
