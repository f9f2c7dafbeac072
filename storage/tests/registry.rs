//! The registry client against a real `docker-registry` (distribution 2.8) on loopback, plus skopeo interop.
//! Every test skips with a message when `docker-registry` is not installed (`cargo xtask deps` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::registry::{have, Registry};

use rpod_storage::registry::manifest::{self, ImageIndex, ImageManifest, Platform};
use rpod_storage::registry::{resolve_platform, Client, ClientOptions, RegistryError};
use rpod_storage::{BlobStore, Digest};

/// A one-layer test image: (layer gzip, config JSON, OCI manifest JSON).
struct TestImage {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn test_image(arch: &str) -> TestImage {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("etc/hello", &b"hello\n"[..]),
        ("bin/tool", b"#!/bin/sh\necho hi\n"),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, name, body).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let layer = gz.finish().unwrap();
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/bin/tool"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        Digest::of_bytes(&raw)
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        manifest::OCI_MANIFEST,
        manifest::OCI_CONFIG,
        Digest::of_bytes(&config),
        config.len(),
        manifest::OCI_LAYER_GZIP,
        Digest::of_bytes(&layer),
        layer.len()
    )
    .into_bytes();
    TestImage {
        layer,
        config,
        manifest,
    }
}

/// Pushes the image's blobs and manifest under `repo:tag`; returns the manifest digest.
fn push(client: &Client, repo: &str, tag: &str, img: &TestImage) -> Digest {
    for blob in [&img.layer, &img.config] {
        client
            .push_blob(repo, &Digest::of_bytes(blob), &blob[..], blob.len() as u64)
            .unwrap();
    }
    client
        .put_manifest(repo, tag, manifest::OCI_MANIFEST, &img.manifest)
        .unwrap()
}

/// Pulls `repo:reference` (a single manifest) and all its blobs into `store`.
fn pull(
    client: &Client,
    repo: &str,
    reference: &str,
    store: &BlobStore,
) -> Result<Digest, RegistryError> {
    let m = client.get_manifest(repo, reference)?;
    let parsed: ImageManifest = manifest::parse_json(&m.bytes, "manifest")?;
    client.fetch_blob(repo, &parsed.config.digest()?, store)?;
    for layer in &parsed.layers {
        client.fetch_blob(repo, &layer.digest()?, store)?;
    }
    Ok(m.digest)
}

fn store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn push_then_pull_round_trip() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let client = reg.client(None);
    client.ping().unwrap();
    let img = test_image("amd64");
    let digest = push(&client, "rpod/small", "v1", &img);
    assert_eq!(digest, Digest::of_bytes(&img.manifest));
    // A second push finds every blob already there.
    assert!(!client
        .push_blob(
            "rpod/small",
            &Digest::of_bytes(&img.layer),
            &img.layer[..],
            img.layer.len() as u64
        )
        .unwrap());

    let m = client.get_manifest("rpod/small", "v1").unwrap();
    assert_eq!(
        (m.media_type.as_str(), &m.digest, &m.bytes),
        (manifest::OCI_MANIFEST, &digest, &img.manifest)
    );
    assert_eq!(
        client
            .get_manifest("rpod/small", &digest.to_string())
            .unwrap(),
        m
    );

    let (_dir, store) = store();
    assert_eq!(pull(&client, "rpod/small", "v1", &store).unwrap(), digest);
    let mut want = vec![Digest::of_bytes(&img.layer), Digest::of_bytes(&img.config)];
    want.sort();
    assert_eq!(store.list().unwrap(), want);
    let config: rpod_storage::registry::ImageConfig = manifest::parse_json(
        &std::fs::read(store.path(&Digest::of_bytes(&img.config))).unwrap(),
        "config",
    )
    .unwrap();
    assert_eq!(config.architecture, "amd64");
    // Resumed pull: blobs present in the store are not fetched again, even if the registry lost them.
    std::fs::remove_file(reg.blob_data(&Digest::of_bytes(&img.layer))).unwrap();
    pull(&client, "rpod/small", "v1", &store).unwrap();
}

#[test]
fn basic_auth() {
    let Some(reg) = Registry::start(Some(("rpod", "s3cret"))) else {
        return;
    };
    let img = test_image("amd64");
    let good = reg.client(Some(("rpod", "s3cret")));
    good.ping().unwrap();
    let digest = push(&good, "rpod/auth", "v1", &img);
    let (_dir, store) = store();
    assert_eq!(pull(&good, "rpod/auth", "v1", &store).unwrap(), digest);

    let err = reg
        .client(Some(("rpod", "wrong")))
        .get_manifest("rpod/auth", "v1")
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("wrong username or password"),
        "{err}"
    );
    let err = reg
        .client(None)
        .get_manifest("rpod/auth", "v1")
        .unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err}");
    assert!(err.to_string().contains("authentication required"), "{err}");
}

#[test]
fn not_found_errors_name_what_was_missing() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let client = reg.client(None);
    let err = client.get_manifest("rpod/nosuch", "v9").unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound {
                kind: "manifest",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("rpod/nosuch:v9") && text.contains("MANIFEST_UNKNOWN"),
        "{text}"
    );

    let (_dir, store) = store();
    let missing = Digest::of_bytes(b"nothing");
    let err = client
        .fetch_blob("rpod/nosuch", &missing, &store)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NotFound { kind: "blob", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&missing.to_string()), "{err}");

    // A registry error body is passed through verbatim: a manifest whose blobs were never pushed.
    let img = test_image("amd64");
    let err = client
        .put_manifest("rpod/nosuch", "v1", manifest::OCI_MANIFEST, &img.manifest)
        .unwrap_err();
    match &err {
        RegistryError::Registry {
            status: 400,
            errors,
            body,
            ..
        } => {
            assert_eq!(errors[0].code, "MANIFEST_BLOB_UNKNOWN", "{body}");
            assert!(
                body.starts_with(r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN""#),
                "{body}"
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn registry_down_is_a_connection_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(
        &format!("127.0.0.1:{port}"),
        ClientOptions {
            insecure_http: true,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let err = client.ping().unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("http://127.0.0.1:{port}/v2/")),
        "{err}"
    );
}

#[test]
fn tampered_blob_is_refused_and_not_stored() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let client = reg.client(None);
    let img = test_image("amd64");
    push(&client, "rpod/tamper", "v1", &img);
    let layer = Digest::of_bytes(&img.layer);
    let mut bytes = img.layer.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let path = reg.blob_data(&layer);
    std::fs::write(&path, &bytes).unwrap();

    let (_dir, store) = store();
    let err = pull(&client, "rpod/tamper", "v1", &store).unwrap_err();
    assert!(err.is_digest_mismatch(), "{err}");
    assert!(err.to_string().contains(&layer.to_string()), "{err}");
    assert!(!store.has(&layer).unwrap());
    // Only the (intact) config made it; no temporary file is left.
    assert_eq!(store.list().unwrap(), vec![Digest::of_bytes(&img.config)]);
    assert_eq!(
        std::fs::read_dir(store.path(&layer).parent().unwrap())
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn index_without_this_platform_is_refused() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let client = reg.client(None);
    let img = test_image("arm64");
    let instance = push(&client, "rpod/multi", "arm64", &img);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{instance}","size":{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
        manifest::OCI_INDEX,
        manifest::OCI_MANIFEST,
        img.manifest.len()
    );
    client
        .put_manifest(
            "rpod/multi",
            "latest",
            manifest::OCI_INDEX,
            index.as_bytes(),
        )
        .unwrap();
    let m = client.get_manifest("rpod/multi", "latest").unwrap();
    assert!(manifest::is_index(&m.media_type));
    let parsed: ImageIndex = manifest::parse_json(&m.bytes, "index").unwrap();
    let amd64 = Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        variant: None,
    };
    let err = resolve_platform(&parsed, "rpod/multi:latest", &amd64).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no manifest for linux/amd64 in rpod/multi:latest (available: linux/arm64/v8)"
    );
    let arm = Platform {
        architecture: "arm64".into(),
        variant: Some("v8".into()),
        ..amd64
    };
    let entry = resolve_platform(&parsed, "rpod/multi:latest", &arm).unwrap();
    let (_dir, store) = store();
    assert_eq!(
        pull(&client, "rpod/multi", &entry.digest, &store).unwrap(),
        instance
    );
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn oci_layout_manifest_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn skopeo_interop() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    if !have("skopeo") {
        eprintln!("SKIP: skopeo is not installed");
        return;
    }
    let client = reg.client(None);
    let img = test_image("amd64");
    let digest = push(&client, "rpod/interop", "v1", &img);

    // What we pushed, skopeo reads back unchanged.
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let src = format!("docker://{}/rpod/interop:v1", reg.addr);
    let dst = format!("oci:{}:v1", layout.display());
    skopeo(&["copy", "--src-tls-verify=false", &src, &dst]);
    assert_eq!(oci_layout_manifest_digest(&layout), digest.to_string());

    // What skopeo pushes, we pull.
    let back = format!("docker://{}/rpod/from-skopeo:v2", reg.addr);
    skopeo(&["copy", "--dest-tls-verify=false", &dst, &back]);
    let (_dir, store) = store();
    assert_eq!(
        pull(&client, "rpod/from-skopeo", "v2", &store).unwrap(),
        digest
    );
    assert!(store.has(&Digest::of_bytes(&img.layer)).unwrap());
}
