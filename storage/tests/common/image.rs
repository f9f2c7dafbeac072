//! Test images built in memory: gzip layers, a config with the right diff IDs and an OCI manifest, which can be
//! packed as an oci-archive or pushed to a registry.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use rpod_storage::registry::manifest::{self, Platform};
use rpod_storage::registry::Client;
use rpod_storage::{Digest, Store, StoreOptions};

/// An image: raw layer tars, their gzip blobs, the config and the manifest, as bytes.
pub struct TestImage {
    pub raw: Vec<Vec<u8>>,
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// An image of `layers` (raw tars, gzipped here) for `arch`, with `cmd` to make configs differ.
    pub fn new(layers: Vec<Vec<u8>>, arch: &str, cmd: &str) -> TestImage {
        let gz: Vec<Vec<u8>> = layers.iter().map(|l| super::gzip(l)).collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| format!("\"{}\"", Digest::of_bytes(l)))
            .collect();
        let config = format!(
            r#"{{"created":"2024-01-02T03:04:05Z","architecture":"{arch}","os":"linux","config":{{"Cmd":["{cmd}"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        )
        .into_bytes();
        let descs: Vec<String> = gz
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                    manifest::OCI_LAYER_GZIP,
                    Digest::of_bytes(l),
                    l.len()
                )
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{}]}}"#,
            manifest::OCI_MANIFEST,
            manifest::OCI_CONFIG,
            Digest::of_bytes(&config),
            config.len(),
            descs.join(",")
        )
        .into_bytes();
        TestImage {
            raw: layers,
            layers: gz,
            config,
            manifest,
        }
    }

    /// The image ID (config digest hex).
    pub fn id(&self) -> String {
        Digest::of_bytes(&self.config).hex().to_owned()
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::of_bytes(&self.manifest)
    }

    /// Every blob: (digest, bytes).
    pub fn blobs(&self) -> BTreeMap<Digest, &[u8]> {
        let mut out = BTreeMap::new();
        for b in self.layers.iter().chain([&self.config, &self.manifest]) {
            out.insert(Digest::of_bytes(b), b.as_slice());
        }
        out
    }

    /// Pushes the blobs and the manifest under `repo:tag`; returns the manifest digest.
    pub fn push(&self, client: &Client, repo: &str, tag: &str) -> Digest {
        for blob in self.layers.iter().chain([&self.config]) {
            client
                .push_blob(repo, &Digest::of_bytes(blob), &blob[..], blob.len() as u64)
                .unwrap();
        }
        client
            .put_manifest(repo, tag, manifest::OCI_MANIFEST, &self.manifest)
            .unwrap()
    }

    /// An oci-archive of this image, `ref_name` in the index annotation.
    pub fn oci_archive(&self, ref_name: Option<&str>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(super::MTIME);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#);
        for (d, data) in self.blobs() {
            add(&format!("blobs/sha256/{}", d.hex()), data);
        }
        let annotations = ref_name
            .map(|n| format!(r#","annotations":{{"org.opencontainers.image.ref.name":"{n}"}}"#))
            .unwrap_or_default();
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{}{annotations}}}]}}"#,
            manifest::OCI_MANIFEST,
            self.manifest_digest(),
            self.manifest.len()
        );
        add("index.json", index.as_bytes());
        b.into_inner().unwrap()
    }

    /// Writes this image as an OCI layout directory (for skopeo's `oci:` transport).
    pub fn write_oci_dir(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for (d, data) in self.blobs() {
            std::fs::write(blobs.join(d.hex()), data).unwrap();
        }
        std::fs::write(
            dir.join("oci-layout"),
            br#"{"imageLayoutVersion": "1.0.0"}"#,
        )
        .unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            manifest::OCI_MANIFEST,
            self.manifest_digest(),
            self.manifest.len()
        );
        std::fs::write(dir.join("index.json"), index).unwrap();
    }
}

/// A three-layer test image: a base with files and a directory, a layer that adds, replaces and whites out,
/// and a small top layer. `tag` changes the top layer so that two images can share the lower two.
pub fn three_layers(top: &str) -> TestImage {
    let mut base = super::Layer::new();
    base.dir("etc/")
        .file("etc/hello", b"hello\n")
        .file("etc/gone", b"bye\n")
        .dir("data/")
        .file("data/a", b"a\n")
        .symlink("etc/link", "hello");
    let mut mid = super::Layer::new();
    mid.dir("etc/")
        .whiteout("etc", "gone")
        .file("etc/new", b"new\n")
        .dir("data/")
        .opaque("data")
        .file("data/b", b"b\n");
    let mut topl = super::Layer::new();
    topl.file("top", top.as_bytes());
    TestImage::new(
        vec![base.finish(), mid.finish(), topl.finish()],
        &Platform::host().architecture,
        top,
    )
}

/// A store in fresh temp dirs (dropped with it).
pub struct TestStore {
    pub graph: tempfile::TempDir,
    pub run: tempfile::TempDir,
    pub store: Store,
}

impl TestStore {
    pub fn new(driver: rpod_storage::Driver) -> TestStore {
        let graph = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions {
            graph_root: graph.path().to_owned(),
            run_root: run.path().to_owned(),
            driver: Some(driver),
        })
        .unwrap();
        TestStore { graph, run, store }
    }
}

/// The files of a directory tree: relative path → (kind, content or link target), for comparisons.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else if meta.is_file() {
                out.insert(
                    rel,
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into(),
                );
            } else {
                out.insert(rel, "special".into());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
