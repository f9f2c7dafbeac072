//! `push`: a stored image to a registry, byte for byte.

use std::io::BufReader;

use super::error::{ImageError, ImageResult};
use super::Store;
use crate::registry::manifest::OCI_MANIFEST;
use crate::registry::{Client, ClientOptions, Reference};
use crate::Digest;

impl Store {
    /// Pushes `image` (a name or ID) to `dest`, which must name its registry: each layer blob as stored, the
    /// config, then the stored manifest unchanged under `dest`'s tag, so the pushed manifest digest is the
    /// image's [`digest`](super::Image::digest). Blobs the repository has already are not uploaded again.
    /// A `dest` with a digest must carry the image's own. Returns the manifest digest.
    pub fn push(
        &self,
        image: &str,
        dest: &Reference,
        options: &ClientOptions,
    ) -> ImageResult<Digest> {
        let (Some(host), true) = (dest.api_host(), dest.is_qualified()) else {
            return Err(ImageError::InvalidName {
                name: dest.to_string(),
                reason: "a push needs a registry in the destination".into(),
            });
        };
        let image = self.lookup(image)?;
        let manifest_digest = Digest::parse(&image.digest)?;
        if let Some(d) = dest.digest.as_ref().filter(|d| **d != manifest_digest) {
            return Err(ImageError::InvalidName {
                name: dest.to_string(),
                reason: format!("the image's manifest is {manifest_digest}, not {d}"),
            });
        }
        let manifest = self.blob_bytes(&image.digest)?;
        let client = Client::new(host, options.clone())?;
        let repo = dest.repository.as_str();
        let mut blobs = image
            .blobs
            .iter()
            .map(|b| Digest::parse(b).map_err(ImageError::from))
            .collect::<ImageResult<Vec<Digest>>>()?;
        blobs.push(Digest::parse(&image.config_digest())?);
        for digest in &blobs {
            let path = self.blobs.path(digest);
            let file = self.blobs.open_blob(digest)?;
            let size = file
                .metadata()
                .map_err(|e| ImageError::io("stat blob", &path, e))?
                .len();
            let uploaded = client.push_blob(repo, digest, BufReader::new(file), size)?;
            tracing::debug!(%digest, size, uploaded, "pushed blob");
        }
        let media_type = if image.manifest_type.is_empty() {
            OCI_MANIFEST
        } else {
            image.manifest_type.as_str()
        };
        let pushed = client.put_manifest(repo, &dest.reference(), media_type, &manifest)?;
        tracing::info!(image = image.id, dest = %dest, digest = %pushed, "pushed image");
        Ok(pushed)
    }
}
