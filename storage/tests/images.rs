//! The image store against a real `docker-registry` on loopback: pulls, shared layers, names, deletion, gc,
//! concurrent pulls, tampered blobs, platforms, import and push. Needs root and `docker-registry`; skips
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::image::{three_layers, tree, TestImage, TestStore};
use common::registry::Registry;
use rpod_storage::images::{ImportOptions, PullOptions};
use rpod_storage::registry::manifest::{self, Platform};
use rpod_storage::registry::{ClientOptions, Reference, RegistryError};
use rpod_storage::{Digest, Driver, Image, ImageError, Store, StoreOptions};

fn setup() -> Option<Registry> {
    if !common::is_root() {
        eprintln!("SKIP: needs root");
        return None;
    }
    Registry::start(None)
}

fn options() -> PullOptions {
    PullOptions {
        client: client_options(),
        platform: None,
    }
}

fn client_options() -> ClientOptions {
    ClientOptions {
        insecure_http: true,
        ..ClientOptions::default()
    }
}

fn reference(reg: &Registry, name: &str) -> Reference {
    Reference::parse(&format!("{}/{name}", reg.addr)).unwrap()
}

fn pull(store: &Store, reg: &Registry, name: &str) -> Result<Image, ImageError> {
    store.pull(&reference(reg, name), &options(), &|_| {})
}

fn files(store: &Store, image: &Image) -> std::collections::BTreeMap<String, String> {
    tree(&store.layers().layer_dir(image.top_layer().unwrap()))
}

fn blob_count(store: &Store) -> usize {
    store.blobs().list().unwrap().len()
}

/// Layer directories on disk (vfs), temp ones included.
fn layer_dirs(graph: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(graph.join("vfs/dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn pull_share_tag_delete_and_gc() {
    let Some(reg) = setup() else { return };
    let client = reg.client(None);
    let (a, b) = (three_layers("a"), three_layers("b"));
    let digest_a = a.push(&client, "rpod/a", "1");
    b.push(&client, "rpod/b", "1");
    let s = TestStore::new(Driver::Vfs);
    let store = &s.store;

    let events = std::sync::Mutex::new(Vec::new());
    let ia = store
        .pull(&reference(&reg, "rpod/a:1"), &options(), &|e| {
            events.lock().unwrap().push(e)
        })
        .unwrap();
    assert_eq!(ia.id, a.id());
    assert_eq!(ia.digest, digest_a.to_string());
    assert_eq!(ia.names, [format!("{}/rpod/a:1", reg.addr)]);
    assert_eq!(ia.layers.len(), 3);
    assert_eq!(events.lock().unwrap().len(), 5, "{events:?}");
    let fa = files(store, &ia);
    assert_eq!(fa.get("etc/new").map(String::as_str), Some("new\n"));
    assert_eq!(fa.get("top").map(String::as_str), Some("a"));
    assert!(!fa.contains_key("etc/gone") && !fa.contains_key("data/a"));

    // b shares the two lower layers: stored once.
    let ib = pull(store, &reg, "rpod/b:1").unwrap();
    assert_eq!(ib.layers[..2], ia.layers[..2]);
    assert_eq!(store.layers().layers().unwrap().len(), 4);
    assert_eq!(blob_count(store), 4 + 2 + 2);
    // Pulling again changes nothing.
    assert_eq!(pull(store, &reg, "rpod/a:1").unwrap(), ia);
    assert_eq!(store.images().unwrap().len(), 2);

    // Names.
    store.tag("rpod/a:1", "mine").unwrap();
    assert_eq!(store.lookup("mine").unwrap().id, ia.id);
    assert_eq!(store.lookup("localhost/mine:latest").unwrap().id, ia.id);
    assert_eq!(store.lookup(&ia.id[..8]).unwrap().id, ia.id);
    assert_eq!(
        store
            .lookup(&format!("{}/rpod/a@{digest_a}", reg.addr))
            .unwrap()
            .id,
        ia.id
    );
    store.tag(&ib.id, "mine").unwrap();
    assert_eq!(store.lookup("mine").unwrap().id, ib.id, "the name moved");
    assert_eq!(store.lookup(&ia.id).unwrap().names.len(), 1);
    store.untag("mine", Some("mine")).unwrap();
    assert!(matches!(
        store.lookup("mine"),
        Err(ImageError::NotFound { .. })
    ));
    assert!(matches!(
        store.untag(&ib.id, Some("nope")),
        Err(ImageError::NotFound { .. })
    ));

    // A container on b: b cannot go; a can (its top is not b's).
    let container = store.create_container_layer(&ib).unwrap();
    assert!(matches!(
        store.delete(&ib.id),
        Err(ImageError::InUse { .. })
    ));
    let removed = store.delete("rpod/a:1").unwrap();
    assert_eq!(removed.id, ia.id);
    assert_eq!(store.images().unwrap().len(), 1);
    // a's top layer, its top blob, config and manifest went; the shared ones stayed.
    assert_eq!(store.layers().layers().unwrap().len(), 3 + 1);
    assert_eq!(blob_count(store), 3 + 1 + 1);
    assert_eq!(files(store, &ib).get("top").map(String::as_str), Some("b"));
    store.delete_container_layer(&container.id).unwrap();
    store.delete_container_layer(&container.id).unwrap();
    store.delete(&ib.id).unwrap();
    assert!(store.images().unwrap().is_empty());
    assert!(store.layers().layers().unwrap().is_empty());
    assert_eq!(blob_count(store), 0);

    // gc: an orphan blob and an orphan layer go, a pulled image stays.
    let ia = pull(store, &reg, "rpod/a:1").unwrap();
    store.blobs().put_unverified(&b"orphan"[..]).unwrap();
    let mut t = common::Layer::new();
    t.file("orphan", b"x");
    let orphan = store
        .layers()
        .create_layer_from_blob(None, t.finish().as_slice())
        .unwrap();
    assert!(store.gc().unwrap());
    assert!(matches!(
        store.layers().get(&orphan.id),
        Err(rpod_storage::LayerError::NotFound { .. })
    ));
    assert_eq!(blob_count(store), 3 + 1 + 1);
    assert_eq!(store.layers().layers().unwrap().len(), 3);
    assert_eq!(files(store, &ia).get("top").map(String::as_str), Some("a"));
    assert_eq!(layer_dirs(s.graph.path()).len(), 3);
}

#[test]
fn concurrent_pulls_of_one_image_record_it_once() {
    concurrent_pulls(Driver::Vfs, "c");
}

#[test]
fn concurrent_overlay_pulls_of_one_image_record_it_once() {
    concurrent_pulls(Driver::Overlay, "co");
}

fn concurrent_pulls(driver: Driver, name: &str) {
    let Some(reg) = setup() else { return };
    let img = three_layers(name);
    img.push(&reg.client(None), &format!("rpod/{name}"), "1");
    let s = TestStore::new(driver);
    let opts = StoreOptions {
        graph_root: s.graph.path().to_owned(),
        run_root: s.run.path().to_owned(),
        driver: Some(driver),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let opts = opts.clone();
                let reg = &reg;
                scope.spawn(move || {
                    // Each thread opens its own store, as another process would.
                    let store = Store::open(&opts).unwrap();
                    pull(&store, reg, &format!("rpod/{name}:1")).unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().id, img.id());
        }
    });
    let images = s.store.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].names, [format!("{}/rpod/{name}:1", reg.addr)]);
    assert_eq!(s.store.layers().layers().unwrap().len(), 3);
    if driver == Driver::Vfs {
        assert_eq!(layer_dirs(s.graph.path()).len(), 3);
    } else {
        // Three layers and the short-link directory, no temp directory left.
        assert_eq!(
            std::fs::read_dir(s.graph.path().join("overlay"))
                .unwrap()
                .count(),
            4
        );
        let merged = s
            .store
            .layers()
            .mount(images[0].top_layer().unwrap())
            .unwrap();
        assert!(merged.join("etc").exists() || std::fs::read_dir(&merged).unwrap().count() > 0);
        s.store
            .layers()
            .unmount(images[0].top_layer().unwrap())
            .unwrap();
    }
}

#[test]
fn tampered_blob_fails_the_pull_and_leaves_nothing() {
    tampered_blob(Driver::Vfs);
}

#[test]
fn tampered_blob_fails_an_overlay_pull_and_leaves_nothing() {
    tampered_blob(Driver::Overlay);
}

fn tampered_blob(driver: Driver) {
    let Some(reg) = setup() else { return };
    let img = three_layers("t");
    img.push(&reg.client(None), "rpod/t", "1");
    // Flip one byte of the middle layer in the registry's storage (same length).
    let data = reg.blob_data(&Digest::of_bytes(&img.layers[1]));
    let mut bytes = std::fs::read(&data).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();

    let s = TestStore::new(driver);
    let err = pull(&s.store, &reg, "rpod/t:1").unwrap_err();
    assert!(
        matches!(&err, ImageError::Registry(e) if e.is_digest_mismatch()),
        "{err}"
    );
    assert!(err.to_string().contains("sha256:"), "{err}");
    assert!(s.store.images().unwrap().is_empty());
    assert!(s.store.layers().layers().unwrap().is_empty());
    let home = match driver {
        Driver::Overlay => s.graph.path().join("overlay"),
        _ => s.graph.path().join("vfs/dir"),
    };
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "l")
        .collect();
    assert!(left.is_empty(), "no partial layer: {left:?}");
    assert_eq!(blob_count(&s.store), 0);
}

#[test]
fn an_index_without_this_platform_fails() {
    let Some(reg) = setup() else { return };
    let client = reg.client(None);
    let other = if Platform::host().architecture == "arm64" {
        "s390x"
    } else {
        "arm64"
    };
    let img = TestImage::new(vec![three_layers("p").raw[0].clone()], other, "p");
    let digest = img.push(&client, "rpod/p", "arm-only");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{digest}","size":{},"platform":{{"architecture":"{other}","os":"linux"}}}}]}}"#,
        manifest::OCI_INDEX,
        manifest::OCI_MANIFEST,
        img.manifest.len()
    );
    client
        .put_manifest("rpod/p", "1", manifest::OCI_INDEX, index.as_bytes())
        .unwrap();
    let s = TestStore::new(Driver::Vfs);
    let err = pull(&s.store, &reg, "rpod/p:1").unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Registry(RegistryError::NoMatchingPlatform { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(other), "{err}");
    assert!(s.store.images().unwrap().is_empty());
    assert_eq!(blob_count(&s.store), 0);
    // Asking for that platform works.
    let opts = PullOptions {
        platform: Some(Platform {
            architecture: other.into(),
            os: "linux".into(),
            variant: None,
        }),
        ..options()
    };
    let image = s
        .store
        .pull(&reference(&reg, "rpod/p:1"), &opts, &|_| {})
        .unwrap();
    assert_eq!(image.id, img.id());
    assert!(image.digests.contains(&image.digest));
}

#[test]
fn import_gives_a_one_layer_image_and_push_round_trips() {
    let Some(reg) = setup() else { return };
    let mut t = common::Layer::new();
    t.dir("etc/")
        .file("etc/os-release", b"ID=test\n")
        .symlink("etc/link", "os-release");
    let tarball = common::gzip(&t.finish());
    let s = TestStore::new(Driver::Vfs);
    let image = s
        .store
        .import(
            tarball.as_slice(),
            &ImportOptions {
                name: Some("imp".into()),
                message: Some("hi".into()),
                ..ImportOptions::default()
            },
        )
        .unwrap();
    assert_eq!(image.names, ["localhost/imp:latest"]);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.blobs, [Digest::of_bytes(&tarball).to_string()]);
    let f = files(&s.store, &image);
    assert_eq!(
        f.get("etc/os-release").map(String::as_str),
        Some("ID=test\n")
    );
    assert_eq!(f.get("etc/link").map(String::as_str), Some("-> os-release"));
    let config = s.store.config(&image).unwrap();
    assert_eq!(
        config.rootfs.diff_ids,
        [image.layers[0].clone()].map(|l| format!("sha256:{l}"))
    );

    // Push: the stored manifest as is, so the digest is the image's.
    let dest = reference(&reg, "rpod/imp:v1");
    let pushed = s.store.push("imp", &dest, &client_options()).unwrap();
    assert_eq!(pushed.to_string(), image.digest);
    // Pushing again uploads nothing new and gives the same digest.
    assert_eq!(
        s.store.push(&image.id, &dest, &client_options()).unwrap(),
        pushed
    );
    let fresh = TestStore::new(Driver::Vfs);
    let back = pull(&fresh.store, &reg, "rpod/imp:v1").unwrap();
    assert_eq!(
        (back.id.as_str(), back.digest.as_str()),
        (image.id.as_str(), image.digest.as_str())
    );
    assert_eq!(files(&fresh.store, &back), f);

    // An image loaded from a docker-archive (uncompressed layers) pushes and pulls back too.
    let mut archive = Vec::new();
    s.store
        .save(
            &["imp"],
            rpod_storage::images::ArchiveFormat::DockerArchive,
            &mut archive,
        )
        .unwrap();
    let loaded_store = TestStore::new(Driver::Vfs);
    let loaded = loaded_store
        .store
        .load(archive.as_slice(), std::path::Path::new("imp.tar"))
        .unwrap();
    let dest = reference(&reg, "rpod/imp:docker");
    let pushed = loaded_store
        .store
        .push(&loaded[0].id, &dest, &client_options())
        .unwrap();
    assert_eq!(pushed.to_string(), loaded[0].digest);
    let again = TestStore::new(Driver::Vfs);
    let back = pull(&again.store, &reg, "rpod/imp:docker").unwrap();
    assert_eq!(back.id, image.id);
    assert_eq!(files(&again.store, &back), f);

    // A destination without a registry, or with another digest, is refused.
    assert!(matches!(
        s.store.push(
            "imp",
            &Reference::parse("rpod/imp").unwrap(),
            &client_options()
        ),
        Err(ImageError::InvalidName { .. })
    ));
    let wrong =
        Reference::parse(&format!("{}/rpod/imp@sha256:{}", reg.addr, "0".repeat(64))).unwrap();
    assert!(matches!(
        s.store.push("imp", &wrong, &client_options()),
        Err(ImageError::InvalidName { .. })
    ));
    let _ = std::io::stderr().flush();
}

#[test]
fn a_pull_resumes_from_what_a_killed_pull_left_and_then_nothing_is_orphaned() {
    let Some(reg) = setup() else { return };
    let img = three_layers("r");
    img.push(&reg.client(None), "rpod/r", "1");
    let s = TestStore::new(Driver::Vfs);
    // What a pull killed after two downloads and one unpack leaves: blobs and a layer no image
    // owns, plus an unrelated orphan blob.
    let layer_blobs: Vec<(Digest, Vec<u8>)> = img
        .blobs()
        .into_iter()
        .filter(|(_, b)| !b.starts_with(b"{"))
        .map(|(d, b)| (d, b.to_vec()))
        .collect();
    assert!(layer_blobs.len() >= 2);
    for (d, b) in layer_blobs.iter().take(2) {
        s.store.blobs().put(b.as_slice(), d).unwrap();
    }
    let orphan = s
        .store
        .blobs()
        .put_unverified(&b"orphan"[..])
        .unwrap()
        .digest;
    let skipped = std::sync::Mutex::new(Vec::new());
    let image = s
        .store
        .pull(&reference(&reg, "rpod/r:1"), &options(), &|e| {
            if let rpod_storage::images::PullEvent::Blob {
                digest,
                skipped: true,
                ..
            } = e
            {
                skipped.lock().unwrap().push(digest);
            }
        })
        .unwrap();
    // The two downloaded blobs were not fetched again.
    assert_eq!(skipped.lock().unwrap().len(), 2);
    assert_eq!(image.id, img.id());
    // Afterwards only the image's blobs are left (manifest, config, layers).
    assert!(!s.store.blobs().has(&orphan).unwrap());
    assert_eq!(blob_count(&s.store), 2 + image.blobs.len());
}
