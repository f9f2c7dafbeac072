//! `pull`: a registry image into the store, layers fetched in parallel and unpacked in order as they arrive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::error::{ImageError, ImageResult};
use super::record::Image;
use super::Store;
use crate::registry::manifest::{
    is_index, parse_json, resolve_platform, ImageConfig, ImageIndex, ImageManifest, Platform,
    DOCKER_CONFIG, OCI_CONFIG,
};
use crate::registry::{Client, ClientOptions, Reference};
use crate::Digest;

/// How many blobs are downloaded at once.
const PARALLEL_FETCHES: usize = 4;

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// How to talk to the registry (TLS, plain HTTP, credentials).
    pub client: ClientOptions,
    /// The platform to pick from an index; the host's when `None`.
    pub platform: Option<Platform>,
}

/// What a pull reports as it goes (for progress output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest was resolved (after any index) to this digest.
    Resolved {
        /// The image manifest's digest.
        manifest: String,
    },
    /// A blob is being fetched (or was found in the store: `skipped`).
    Blob {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
        /// Whether it was already stored.
        skipped: bool,
    },
    /// The config was stored: what follows is the image ID.
    Config {
        /// The config digest.
        digest: String,
    },
}

impl Store {
    /// Pulls `reference` (which must be qualified with its registry) and records the image under its name
    /// (the reference with its tag; a pull by digest alone adds no name). Returns the image.
    ///
    /// Blobs already stored are not fetched again and layers already unpacked are not unpacked again, so a
    /// pull interrupted and run again resumes. Nothing is recorded unless everything arrived and verified.
    pub fn pull(
        &self,
        reference: &Reference,
        options: &PullOptions,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> ImageResult<Image> {
        let (Some(host), true) = (reference.api_host(), reference.is_qualified()) else {
            return Err(ImageError::InvalidName {
                name: reference.to_string(),
                reason: "a pull needs a registry in the name".into(),
            });
        };
        self.with_work(|| self.pull_locked(reference, host, options, progress))
    }

    fn pull_locked(
        &self,
        reference: &Reference,
        host: &str,
        options: &PullOptions,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> ImageResult<Image> {
        let client = Client::new(host, options.client.clone())?;
        let repo = reference.repository.as_str();
        let name = reference.to_string();
        let mut manifest = client.get_manifest(repo, &reference.reference())?;
        let mut digests = vec![manifest.digest.to_string()];
        if is_index(&manifest.media_type) {
            let index: ImageIndex = parse_json(&manifest.bytes, &format!("index of {name}"))?;
            let want = options.platform.clone().unwrap_or_else(Platform::host);
            let entry = resolve_platform(&index, &name, &want)?;
            manifest = client.get_manifest(repo, &entry.digest()?.to_string())?;
            digests.push(manifest.digest.to_string());
        }
        progress(PullEvent::Resolved {
            manifest: manifest.digest.to_string(),
        });
        let parsed: ImageManifest = parse_json(&manifest.bytes, &format!("manifest of {name}"))?;
        let config_type = parsed.config.media_type.as_str();
        if !config_type.is_empty() && config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
            return Err(ImageError::InvalidImage {
                image: name,
                reason: format!("its config has media type {config_type}: not a container image"),
            });
        }
        let config_digest = parsed.config.digest()?;
        client.fetch_blob(repo, &config_digest, &self.blobs)?;
        progress(PullEvent::Config {
            digest: config_digest.to_string(),
        });
        let config: ImageConfig = parse_json(
            &self.blob_bytes(&config_digest.to_string())?,
            &format!("config of {name}"),
        )?;
        check_layers(&name, &parsed, &config)?;
        // The manifest blob last of the metadata: it is what the record points at.
        self.blobs
            .put(manifest.bytes.as_slice(), &manifest.digest)?;

        let blob_digests = parsed
            .layers
            .iter()
            .map(|d| d.digest().map_err(ImageError::from))
            .collect::<ImageResult<Vec<Digest>>>()?;
        let layers =
            self.fetch_and_unpack(&client, repo, &parsed, &blob_digests, &config, progress)?;
        let image = Image {
            names: reference
                .tag
                .as_ref()
                .map(|_| {
                    let mut r = reference.clone();
                    r.digest = None;
                    vec![r.to_string()]
                })
                .unwrap_or_default(),
            digests,
            ..Image::assemble(
                &config_digest,
                manifest.digest.to_string(),
                manifest.media_type.clone(),
                &parsed,
                layers,
                config.created.clone(),
            )
        };
        self.record(image)
    }

    /// Downloads the layer blobs on up to [`PARALLEL_FETCHES`] threads. With overlay, the same threads
    /// unpack each layer as soon as its blob is there (a layer's files do not depend on its parent's),
    /// and this thread records them base first; with vfs (a layer starts as a copy of its parent) this
    /// thread unpacks them in order as they arrive. Layers already stored are neither fetched for
    /// unpacking nor unpacked again.
    fn fetch_and_unpack(
        &self,
        client: &Client,
        repo: &str,
        manifest: &ImageManifest,
        digests: &[Digest],
        config: &ImageConfig,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> ImageResult<Vec<crate::layers::Layer>> {
        let diff_ids = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d).map_err(ImageError::from))
            .collect::<ImageResult<Vec<Digest>>>()?;
        // Chain IDs are known up front: a layer already stored is found before anything is read.
        let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
        for d in &diff_ids {
            chain.push(crate::layers::chain_id(chain.last(), d));
        }
        let detached = self.layers.unpacks_detached();
        let next = AtomicUsize::new(0);
        type Arrival = ImageResult<Option<crate::layers::PreparedLayer>>;
        let (tx, rx) = mpsc::channel::<(usize, Arrival)>();
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_FETCHES.min(digests.len()) {
                let tx = tx.clone();
                let next = &next;
                let (diff_ids, chain) = (&diff_ids, &chain);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(digest) = digests.get(i) else { break };
                    let stored = self.layers.get(chain[i].hex()).is_ok();
                    let skipped = stored || self.blobs.has(digest).unwrap_or(false);
                    progress(PullEvent::Blob {
                        digest: digest.to_string(),
                        size: manifest.layers[i].size,
                        skipped,
                    });
                    let result: Arrival = if detached && !stored && !skipped {
                        self.stream_layer(client, repo, digest, &diff_ids[i])
                            .map(Some)
                    } else {
                        client
                            .fetch_blob(repo, digest, &self.blobs)
                            .map_err(ImageError::from)
                            .and_then(|_| {
                                if !detached || stored {
                                    return Ok(None);
                                }
                                let file = self.blobs.open_blob(digest)?;
                                Ok(Some(self.layers.prepare_layer(
                                    std::io::BufReader::new(file),
                                    &diff_ids[i],
                                )?))
                            })
                    };
                    let failed = result.is_err();
                    if tx.send((i, result)).is_err() || failed {
                        // Stop taking new blobs after a failure: the pull is over.
                        next.store(usize::MAX / 2, Ordering::SeqCst);
                        break;
                    }
                });
            }
            drop(tx);
            let stop = || next.store(usize::MAX / 2, Ordering::SeqCst);
            let mut arrived: BTreeMap<usize, Option<crate::layers::PreparedLayer>> =
                BTreeMap::new();
            let mut layers: Vec<crate::layers::Layer> = Vec::with_capacity(digests.len());
            while layers.len() < digests.len() {
                let i = layers.len();
                let Some(prepared) = arrived.remove(&i) else {
                    match rx.recv() {
                        Ok((k, Ok(p))) => {
                            arrived.insert(k, p);
                        }
                        Ok((_, Err(e))) => {
                            stop();
                            return Err(e);
                        }
                        Err(_) => return Err(unreachable_err(repo)),
                    }
                    continue;
                };
                let parent = layers.last().map(|l| l.id.clone());
                let layer = match prepared {
                    Some(p) => self.layers.commit_prepared(parent.as_deref(), p),
                    None => {
                        let file = self.blobs.open_blob(&digests[i])?;
                        self.layers.create_layer_verified(
                            parent.as_deref(),
                            std::io::BufReader::new(file),
                            &diff_ids[i],
                        )
                    }
                }
                .inspect_err(|_| stop())?;
                layers.push(layer);
            }
            Ok(layers)
        })
    }
}

impl Store {
    /// Downloads a layer blob and unpacks it in the same pass (overlay), storing the blob as it goes: one
    /// read of the network stream, no read back. The blob's digest is checked before anything is kept; when
    /// the unpacker stops early on a damaged stream, the rest is still read so that a digest mismatch (the
    /// cause) is what is reported.
    fn stream_layer(
        &self,
        client: &Client,
        repo: &str,
        digest: &Digest,
        diff_id: &Digest,
    ) -> ImageResult<crate::layers::PreparedLayer> {
        let body = client.blob_reader(repo, digest)?;
        let mut tee = crate::Tee::new(
            std::io::BufReader::with_capacity(256 * 1024, body),
            self.blobs.writer()?,
        );
        let prepared = self.layers.prepare_layer(&mut tee, diff_id);
        if prepared.is_err() && tee.drain().is_err() {
            // The stream itself broke (a network error): that is the error to report.
            return prepared.map_err(Into::into);
        }
        let committed = self
            .blobs
            .commit(tee.into_writer(), Some(digest))
            .map_err(|e| ImageError::Registry(e.into()));
        match (committed, prepared) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
            (Ok(_), Ok(p)) => Ok(p),
        }
    }
}

fn unreachable_err(repo: &str) -> ImageError {
    ImageError::InvalidImage {
        image: repo.to_owned(),
        reason: "a layer download ended without a result".into(),
    }
}

/// The manifest's layers and the config's diff IDs must pair up.
pub(crate) fn check_layers(
    name: &str,
    manifest: &ImageManifest,
    config: &ImageConfig,
) -> ImageResult<()> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(ImageError::InvalidImage {
            image: name.to_owned(),
            reason: format!(
                "its manifest lists {} layers but its config {} diff IDs",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    for d in &config.rootfs.diff_ids {
        Digest::parse(d)?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
