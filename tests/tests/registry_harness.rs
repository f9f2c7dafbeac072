//! The image-test harness itself (`common::registry`), against the real docker-registry and
//! skopeo on loopback: registries with and without auth come up and go away with their
//! process, the standard image is a valid OCI layout that skopeo pushes and inspects with its
//! three layers, credentials are enforced, direct HTTP pushes and blob corruption work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;

use common::registry::{
    inspect, push, push_http, sha256_digest, standard_builder, standard_image, strings,
    try_inspect, try_push, Compression, ImageBuilder, ImageConfig, LayerTar, Registry, Skopeo,
    OCI_LAYER_GZIP, OCI_LAYER_ZSTD, STANDARD_TAG,
};

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn decompress(media_type: &str, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match media_type {
        OCI_LAYER_GZIP => {
            flate2::read::GzDecoder::new(blob)
                .read_to_end(&mut out)
                .expect("gunzip");
        }
        OCI_LAYER_ZSTD => out = zstd::stream::decode_all(blob).expect("unzstd"),
        _ => out = blob.to_vec(),
    }
    out
}

/// `(path, entry type, mode, link name)` of every entry of `tar`.
fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, u32, Option<String>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .expect("tar entries")
        .map(|e| {
            let e = e.expect("tar entry");
            let h = e.header();
            (
                e.path().expect("path").display().to_string(),
                h.entry_type(),
                h.mode().expect("mode"),
                e.link_name()
                    .expect("link name")
                    .map(|l| l.display().to_string()),
            )
        })
        .collect()
}

#[test]
fn standard_image_is_a_valid_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let img = standard_image(dir.path());
    assert_eq!(img.layers.len(), 3);
    assert_eq!(img.layers[0].media_type, OCI_LAYER_GZIP);
    assert_eq!(img.layers[1].media_type, OCI_LAYER_GZIP);
    assert_eq!(img.layers[2].media_type, OCI_LAYER_ZSTD);

    // Blobs are stored under their digest; diff IDs are the uncompressed tars' digests.
    for l in &img.layers {
        let stored = std::fs::read(
            dir.path()
                .join("blobs/sha256")
                .join(&l.digest()["sha256:".len()..]),
        )
        .unwrap();
        assert_eq!(sha256_digest(&stored), l.digest());
        assert_eq!(
            sha256_digest(&decompress(&l.media_type, &stored)),
            l.diff_id
        );
    }
    let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(img.diff_ids())
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        img.manifest_digest.as_str()
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        STANDARD_TAG
    );

    // Layer contents.
    let l1 = entries(&decompress(&img.layers[0].media_type, &img.layers[0].blob));
    assert!(l1
        .iter()
        .any(|(p, t, m, _)| p == "bin/busybox" && t.is_file() && m & 0o111 != 0));
    assert!(l1
        .iter()
        .any(|(p, t, _, l)| p == "bin/sh" && t.is_symlink() && l.as_deref() == Some("busybox")));
    let l2 = entries(&decompress(&img.layers[1].media_type, &img.layers[1].blob));
    let names: Vec<&str> = l2.iter().map(|(p, ..)| p.as_str()).collect();
    for want in [".wh.gone.txt", "opq/.wh..wh..opq", "opq/c", "data/keep.txt"] {
        assert!(names.contains(&want), "{want} not in layer 2: {names:?}");
    }
    assert!(l2.iter().any(|(p, t, _, l)| p == "data/hard"
        && *t == tar::EntryType::Link
        && l.as_deref() == Some("data/keep.txt")));
    assert!(l2.iter().any(|(p, t, _, l)| p == "data/link"
        && t.is_symlink()
        && l.as_deref() == Some("keep.txt")));
    assert!(l2
        .iter()
        .any(|(p, _, m, _)| p == "data/suid" && m & 0o7777 == 0o4755));
    let l3 = entries(&decompress(&img.layers[2].media_type, &img.layers[2].blob));
    assert!(l3.iter().any(|(p, ..)| p == "etc/motd"));

    // skopeo reads the layout too.
    let out = Skopeo::new()
        .cmd()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", dir.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, img.manifest);
}

#[test]
fn standard_image_pushed_to_plain_registry() {
    let reg = Registry::start();
    assert!(reg.addr().starts_with("127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let img = standard_image(dir.path());
    push(&reg, dir.path(), "t/img:1", None);

    let info = inspect(&reg, "t/img:1", None);
    let layers: Vec<String> = serde_json::from_value(info["Layers"].clone()).unwrap();
    assert_eq!(layers, img.layer_digests());
    assert_eq!(info["Digest"], img.manifest_digest.as_str());
    assert_eq!(info["Os"], "linux");

    // Byte for byte what the layout holds (--preserve-digests).
    let (mt, manifest) = reg.get_manifest("t/img", "1", None).unwrap();
    assert_eq!(mt, common::registry::OCI_MANIFEST);
    assert_eq!(manifest, img.manifest);

    // Unknown tags are not there.
    let out = try_inspect(&reg, "t/img:2", None, true);
    assert!(!out.status.success());
}

#[test]
fn auth_registry_enforces_credentials() {
    let reg = Registry::start_with_auth("alice", "s3cret pass");
    assert_eq!(reg.creds(), Some(("alice", "s3cret pass")));
    let dir = tempfile::tempdir().unwrap();
    let img = standard_image(dir.path());

    let anon = try_push(&reg, dir.path(), "t/img:1", None);
    assert!(!anon.status.success(), "anonymous push accepted");
    let wrong = try_push(&reg, dir.path(), "t/img:1", Some(("alice", "nope")));
    assert!(
        !wrong.status.success(),
        "push with a wrong password accepted"
    );
    push(&reg, dir.path(), "t/img:1", reg.creds());

    let info = inspect(&reg, "t/img:1", reg.creds());
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(info["Digest"], img.manifest_digest.as_str());

    for creds in [None, Some(("alice", "wrong")), Some(("bob", "s3cret pass"))] {
        let out = try_inspect(&reg, "t/img:1", creds, false);
        assert!(!out.status.success(), "inspect with {creds:?} succeeded");
    }
    // The HTTP helpers use Basic auth.
    assert_eq!(
        reg.http("GET", "/v2/", &[], Vec::new(), None)
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        reg.http("GET", "/v2/", &[], Vec::new(), reg.creds())
            .unwrap()
            .status,
        200
    );
}

#[test]
fn custom_image_over_http_with_its_config() {
    let reg = Registry::start();
    let mut l = LayerTar::new();
    l.dir("app", 0o755).file("app/run", b"#!/bin/sh\n", 0o755);
    let config = ImageConfig {
        entrypoint: Some(strings(&["/bin/sh", "-c"])),
        cmd: Some(strings(&["echo hi"])),
        env: strings(&["A=1", "PATH=/bin"]),
        working_dir: Some("/app".into()),
        user: Some("1234:1234".into()),
        labels: [("org.example.k".to_owned(), "v".to_owned())].into(),
        stop_signal: Some("SIGINT".into()),
        ..ImageConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let img = ImageBuilder::new()
        .layer(l.finish(), Compression::None)
        .config(config)
        .write_oci_layout(dir.path(), "custom");
    let digest = push_http(&reg, &img, "t/custom", "v1", None);
    assert_eq!(digest, img.manifest_digest);

    let out = Skopeo::new()
        .cmd()
        .args(["inspect", "--config", "--tls-verify=false", "--no-creds"])
        .arg(format!("docker://{}", reg.reference("t/custom:v1")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &cfg["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo hi"]));
    assert_eq!(c["Env"], serde_json::json!(["A=1", "PATH=/bin"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1234:1234");
    assert_eq!(c["Labels"]["org.example.k"], "v");
    assert_eq!(c["StopSignal"], "SIGINT");

    // The registry refuses a blob whose digest does not match; the helper reports it.
    let err = reg
        .put_blob(
            "t/custom",
            b"some bytes",
            Some(&sha256_digest(b"other")),
            None,
        )
        .unwrap_err();
    assert!(err.contains("400") || err.contains("DIGEST"), "{err}");
}

#[test]
fn corrupt_blob_is_served_with_the_old_digest() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let img = standard_builder().write_oci_layout(dir.path(), "x");
    push(&reg, dir.path(), "t/img:1", None);
    let digest = img.layer_digests()[2].clone();
    reg.corrupt_blob(&digest);

    let got = reg
        .http(
            "GET",
            &format!("/v2/t/img/blobs/{digest}"),
            &[],
            Vec::new(),
            None,
        )
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), img.layers[2].blob.len());
    assert_ne!(sha256_digest(&got.body), digest);

    // A verifying client notices: skopeo refuses to copy the image out.
    let out_dir = tempfile::tempdir().unwrap();
    let out = Skopeo::new()
        .cmd()
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--src-no-creds",
        ])
        .arg(format!("docker://{}", reg.reference("t/img:1")))
        .arg(format!("oci:{}:x", out_dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "tampered blob copied");
    assert!(
        stderr(&out).to_lowercase().contains("digest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn registry_process_ends_with_its_guard_even_on_panic() {
    let reg = Registry::start();
    let pid = reg.pid();
    let data = reg.data_dir();
    assert!(process_alive(pid));
    drop(reg);
    assert!(!process_alive(pid), "registry {pid} survived its drop");
    assert!(!data.exists(), "{} left behind", data.display());

    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        let reg = Registry::start_with_auth("u", "p");
        tx.send((reg.pid(), reg.data_dir())).unwrap();
        panic!("test failure inside the registry's scope");
    });
    assert!(r.is_err());
    let (pid, data) = rx.recv().unwrap();
    assert!(!process_alive(pid), "registry {pid} survived a panic");
    assert!(!data.exists(), "{} left behind", data.display());
}

#[test]
fn several_registries_run_side_by_side() {
    let regs: Vec<Registry> = (0..4).map(|_| Registry::start()).collect();
    let mut addrs: Vec<&str> = regs.iter().map(Registry::addr).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 4);
}

#[test]
fn hostile_layers_keep_their_raw_names() {
    let mut l = LayerTar::new();
    l.raw(tar::EntryType::Regular, b"../escape", None, 0o644, b"x")
        .raw(tar::EntryType::Regular, b"/abs", None, 0o644, b"y")
        .symlink("evil", "/etc/shadow")
        .symlink("up", "../../..")
        .device("dev/null-ish", tar::EntryType::Char, 1, 3);
    let tar = l.finish();
    let mut a = tar::Archive::new(&tar[..]);
    let names: Vec<Vec<u8>> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    assert_eq!(
        names,
        [&b"../escape"[..], b"/abs", b"evil", b"up", b"dev/null-ish"]
    );
    // Such a layer still goes into an image and through the registry untouched.
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let img = ImageBuilder::new()
        .layer(tar, Compression::Gzip)
        .write_oci_layout(dir.path(), "evil");
    push(&reg, dir.path(), "t/evil:1", None);
    let info = inspect(&reg, "t/evil:1", None);
    assert_eq!(info["Layers"], serde_json::json!(img.layer_digests()));
}
