//! `Store::save` and `Store::load`: docker-archive and oci-archive round trips, archives written by skopeo
//! (and podman when installed), hostile and broken archives. Needs root (layer ownership); skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::image::{three_layers, tree, TestStore};
use common::registry::have;
use rpod_storage::images::{ArchiveFormat, ImportOptions};
use rpod_storage::{Digest, Driver, Image, ImageError, Store};

fn root_or_skip() -> bool {
    if !common::is_root() {
        eprintln!("SKIP: needs root");
        return false;
    }
    true
}

/// The full root filesystem of an image (vfs: its top layer's directory).
fn rootfs(store: &Store, image: &Image) -> BTreeMap<String, String> {
    assert_eq!(store.driver(), Driver::Vfs);
    tree(&store.layers().layer_dir(image.top_layer().unwrap()))
}

/// The entries of a tar: name → bytes (regular files) or "<dir>"/"-> target".
fn entries(archive: &[u8]) -> BTreeMap<String, (tar::Header, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, (e.header().clone(), data));
    }
    out
}

/// Blobs in the store, as digest strings.
fn blobs(store: &Store) -> BTreeSet<String> {
    store
        .blobs()
        .list()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Exactly what the images reference.
fn referenced(images: &[Image]) -> BTreeSet<String> {
    images
        .iter()
        .flat_map(|i| {
            i.blobs
                .iter()
                .cloned()
                .chain([i.digest.clone(), i.config_digest()])
        })
        .collect()
}

fn save(store: &Store, names: &[&str], format: ArchiveFormat) -> Vec<u8> {
    let mut out = Vec::new();
    store.save(names, format, &mut out).unwrap();
    out
}

fn load(store: &Store, archive: &[u8]) -> Vec<Image> {
    store.load(archive, Path::new("test.tar")).unwrap()
}

#[test]
fn oci_archive_multi_layer_round_trips_in_both_formats() {
    if !root_or_skip() {
        return;
    }
    let img = three_layers("v1");
    let src = TestStore::new(Driver::Vfs);
    let loaded = load(&src.store, &img.oci_archive(Some("example.com/three:v1")));
    assert_eq!(loaded.len(), 1);
    let original = &loaded[0];
    assert_eq!(original.id, img.id());
    assert_eq!(original.names, ["example.com/three:v1"]);
    assert_eq!(original.digest, img.manifest_digest().to_string());
    assert_eq!(original.layers.len(), 3);
    let files = rootfs(&src.store, original);
    assert_eq!(files.get("etc/hello").map(String::as_str), Some("hello\n"));
    assert_eq!(files.get("etc/new").map(String::as_str), Some("new\n"));
    assert_eq!(files.get("top").map(String::as_str), Some("v1"));
    assert!(!files.contains_key("etc/gone") && !files.contains_key("data/a"));
    // Only the image's blobs remain: index.json and oci-layout were removed.
    assert_eq!(blobs(&src.store), referenced(&loaded));

    // docker-archive: the podman layout, layers uncompressed and named by diff ID.
    let docker = save(&src.store, &["three:v1"], ArchiveFormat::DockerArchive);
    let e = entries(&docker);
    let manifest: serde_json::Value = serde_json::from_slice(&e["manifest.json"].1).unwrap();
    let config_name = format!("{}.json", img.id());
    assert_eq!(manifest[0]["Config"], config_name.as_str());
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["example.com/three:v1"])
    );
    assert_eq!(e[&config_name].1, img.config);
    for (i, raw) in img.raw.iter().enumerate() {
        let name = format!("{}.tar", Digest::of_bytes(raw).hex());
        assert_eq!(manifest[0]["Layers"][i], name.as_str());
        let (h, data) = &e[&name];
        assert_eq!(data, raw, "layer {i} is the uncompressed tar");
        assert_eq!((h.mode().unwrap(), h.mtime().unwrap()), (0o444, 0));
    }
    assert_eq!(e.len(), 5);

    let dst = TestStore::new(Driver::Vfs);
    let back = load(&dst.store, &docker);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, original.id);
    assert_eq!(back[0].names, original.names);
    assert_eq!(back[0].layers, original.layers, "same chain IDs");
    assert_eq!(rootfs(&dst.store, &back[0]), files);
    assert_eq!(blobs(&dst.store), referenced(&back));
    // Its docker-archive again: identical bytes.
    assert_eq!(
        save(&dst.store, &[&back[0].id], ArchiveFormat::DockerArchive),
        docker
    );

    // oci-archive: the stored blobs byte for byte.
    let oci = save(&src.store, &[&original.id[..12]], ArchiveFormat::OciArchive);
    let e = entries(&oci);
    for (d, data) in img.blobs() {
        assert_eq!(e[&format!("blobs/sha256/{}", d.hex())].1, data);
    }
    let index: serde_json::Value = serde_json::from_slice(&e["index.json"].1).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "example.com/three:v1"
    );
    let dst = TestStore::new(Driver::Vfs);
    let back = load(&dst.store, &oci);
    assert_eq!(back[0].id, original.id);
    assert_eq!(back[0].digest, original.digest);
    assert_eq!(back[0].names, original.names);
    assert_eq!(rootfs(&dst.store, &back[0]), files);
    assert_eq!(blobs(&dst.store), referenced(&back));
}

#[test]
fn imported_image_round_trips_with_gzip_outer_archive() {
    if !root_or_skip() {
        return;
    }
    let mut t = common::Layer::new();
    t.dir("bin/")
        .file("bin/sh", b"#!fake\n")
        .file("README", b"r\n");
    let src = TestStore::new(Driver::Vfs);
    let image = src
        .store
        .import(
            common::gzip(&t.finish()).as_slice(),
            &ImportOptions {
                name: Some("imported".into()),
                ..ImportOptions::default()
            },
        )
        .unwrap();
    src.store.tag(&image.id, "other:2").unwrap();
    let files = rootfs(&src.store, &image);
    for format in [ArchiveFormat::DockerArchive, ArchiveFormat::OciArchive] {
        // By ID: every name.
        let archive = save(&src.store, &[&image.id], format);
        let dst = TestStore::new(Driver::Vfs);
        let back = dst
            .store
            .load(common::gzip(&archive).as_slice(), Path::new("x.tar.gz"))
            .unwrap();
        assert_eq!(back.len(), 1, "{format:?}");
        assert_eq!(back[0].id, image.id);
        assert_eq!(
            back[0].names,
            ["localhost/imported:latest", "localhost/other:2"]
        );
        assert_eq!(rootfs(&dst.store, &back[0]), files);
        if format == ArchiveFormat::OciArchive {
            assert_eq!(back[0].digest, image.digest);
        }
        // Loading again changes nothing.
        let again = load(&dst.store, &archive);
        assert_eq!(again, dst.store.images().unwrap());
        assert_eq!(blobs(&dst.store), referenced(&again));
    }
    // By name: only that name.
    let archive = save(&src.store, &["other:2"], ArchiveFormat::DockerArchive);
    let dst = TestStore::new(Driver::Vfs);
    assert_eq!(load(&dst.store, &archive)[0].names, ["localhost/other:2"]);
}

#[test]
fn two_images_sharing_layers_in_one_docker_archive() {
    if !root_or_skip() {
        return;
    }
    let (a, b) = (three_layers("a"), three_layers("b"));
    let src = TestStore::new(Driver::Vfs);
    load(&src.store, &a.oci_archive(Some("localhost/a:1")));
    load(&src.store, &b.oci_archive(Some("localhost/b:1")));
    let archive = save(&src.store, &["a:1", "b:1"], ArchiveFormat::DockerArchive);
    let e = entries(&archive);
    // 2 configs, 2 shared layers + 2 tops, manifest.json.
    assert_eq!(e.len(), 7);
    let dst = TestStore::new(Driver::Vfs);
    let back = load(&dst.store, &archive);
    assert_eq!(
        back.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        [a.id(), b.id()]
    );
    assert_eq!(back[0].layers[..2], back[1].layers[..2]);
    assert_eq!(dst.store.layers().layers().unwrap().len(), 4);
    assert!(matches!(
        src.store
            .save(&["nope"], ArchiveFormat::DockerArchive, Vec::new()),
        Err(ImageError::NotFound { .. })
    ));
}

/// A tar of (name, kind, data).
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn archive_err(store: &Store, archive: &[u8]) -> String {
    match store.load(archive, Path::new("bad.tar")) {
        Err(e @ ImageError::Archive { .. }) => e.to_string(),
        other => panic!("expected an archive error, got {other:?}"),
    }
}

#[test]
fn broken_and_hostile_archives_are_refused_and_leave_nothing() {
    if !root_or_skip() {
        return;
    }
    let s = TestStore::new(Driver::Vfs);
    let r = tar::EntryType::Regular;
    let img = three_layers("x");
    let layer0 = format!("{}.tar", Digest::of_bytes(&img.raw[0]).hex());
    let config_name = format!("{}.json", img.id());
    let manifest =
        format!(r#"[{{"Config":"{config_name}","RepoTags":["x:1"],"Layers":["{layer0}"]}}]"#);

    let err = archive_err(&s.store, &raw_tar(&[("../escape", r, b"x", "")]));
    assert!(err.contains("../escape"), "{err}");
    let err = archive_err(&s.store, &raw_tar(&[("/abs", r, b"x", "")]));
    assert!(err.contains("/abs"), "{err}");
    let err = archive_err(&s.store, &raw_tar(&[("something", r, b"x", "")]));
    assert!(err.contains("neither manifest.json"), "{err}");
    // The config is missing.
    let err = archive_err(
        &s.store,
        &raw_tar(&[("manifest.json", r, manifest.as_bytes(), "")]),
    );
    assert!(err.contains(&format!("{config_name} is missing")), "{err}");
    // Layer count differs from the diff IDs.
    let err = archive_err(
        &s.store,
        &raw_tar(&[
            ("manifest.json", r, manifest.as_bytes(), ""),
            (&config_name, r, &img.config, ""),
            (&layer0, r, &img.raw[0], ""),
        ]),
    );
    assert!(err.contains("lists 1 layers"), "{err}");
    // A layer whose content is not its diff ID (the second layer's tar in the first's place).
    let one = common::image::TestImage::new(vec![img.raw[0].clone()], "amd64", "x");
    let manifest1 = format!(
        r#"[{{"Config":"{}.json","RepoTags":null,"Layers":["{layer0}"]}}]"#,
        one.id()
    );
    let err = archive_err(
        &s.store,
        &raw_tar(&[
            ("manifest.json", r, manifest1.as_bytes(), ""),
            (&format!("{}.json", one.id()), r, &one.config, ""),
            (&layer0, r, &img.raw[1], ""),
        ]),
    );
    assert!(err.contains(&layer0) && err.contains("diff"), "{err}");
    // An OCI blob whose content does not match its name.
    let mut oci = entries(&img.oci_archive(None));
    let name = format!("blobs/sha256/{}", Digest::of_bytes(&img.layers[1]).hex());
    oci.get_mut(&name).unwrap().1 = img.layers[0].clone();
    let files: Vec<(String, Vec<u8>)> = oci.into_iter().map(|(n, (_, d))| (n, d)).collect();
    let list: Vec<(&str, tar::EntryType, &[u8], &str)> = files
        .iter()
        .map(|(n, d)| (n.as_str(), r, d.as_slice(), ""))
        .collect();
    let err = archive_err(&s.store, &raw_tar(&list));
    assert!(
        err.contains(&name) && err.contains("does not match"),
        "{err}"
    );
    // Garbage.
    let err = archive_err(&s.store, &[0xffu8; 1024]);
    assert!(err.contains("bad.tar"), "{err}");

    assert!(s.store.images().unwrap().is_empty());
    assert!(s.store.blobs().list().unwrap().is_empty());
    assert!(s.store.layers().layers().unwrap().is_empty());
}

#[test]
fn links_in_docker_archives_are_followed() {
    if !root_or_skip() {
        return;
    }
    // Old docker layout: layers under <v1id>/layer.tar, plus a symlink pointing there as podman writes them.
    let img = common::image::TestImage::new(vec![three_layers("l").raw[0].clone()], "amd64", "l");
    let config_name = format!("{}.json", img.id());
    let manifest =
        format!(r#"[{{"Config":"{config_name}","RepoTags":["l:1"],"Layers":["v1/layer.tar"]}}]"#);
    let r = tar::EntryType::Regular;
    let archive = raw_tar(&[
        ("real.tar", r, &img.raw[0], ""),
        ("v1/", tar::EntryType::Directory, b"", ""),
        ("v1/layer.tar", tar::EntryType::Symlink, b"", "../real.tar"),
        ("cfg", r, &img.config, ""),
        (&config_name, tar::EntryType::Link, b"", "cfg"),
        ("escape", tar::EntryType::Symlink, b"", "../../etc/passwd"),
        ("manifest.json", r, manifest.as_bytes(), ""),
    ]);
    let s = TestStore::new(Driver::Vfs);
    let images = load(&s.store, &archive);
    assert_eq!(images[0].id, img.id());
    assert_eq!(images[0].names, ["localhost/l:1"]);
    assert_eq!(
        rootfs(&s.store, &images[0])
            .get("etc/hello")
            .map(String::as_str),
        Some("hello\n")
    );
}

#[test]
fn skopeo_reads_and_writes_our_archives() {
    if !root_or_skip() {
        return;
    }
    if !have("skopeo") {
        eprintln!("SKIP: skopeo is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = three_layers("sk");
    let layout = tmp.path().join("layout");
    img.write_oci_dir(&layout, "sk");
    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // skopeo writes a docker-archive; we load it.
    let docker = tmp.path().join("docker.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:sk", layout.display()),
        &format!("docker-archive:{}:example.org/sk/img:v2", docker.display()),
    ]);
    let s = TestStore::new(Driver::Vfs);
    let loaded = s
        .store
        .load(std::fs::File::open(&docker).unwrap(), &docker)
        .unwrap();
    assert_eq!(loaded[0].id, img.id());
    assert_eq!(loaded[0].names, ["example.org/sk/img:v2"]);
    let files = rootfs(&s.store, &loaded[0]);
    assert_eq!(files.get("top").map(String::as_str), Some("sk"));

    // skopeo reads what we write, in both formats, and gets the same image (config) back.
    for (format, transport) in [
        (ArchiveFormat::DockerArchive, "docker-archive"),
        (ArchiveFormat::OciArchive, "oci-archive"),
    ] {
        let path = tmp.path().join(format!("ours-{transport}.tar"));
        s.store
            .save(
                &[&loaded[0].id],
                format,
                std::fs::File::create(&path).unwrap(),
            )
            .unwrap();
        let out_dir = tmp.path().join(format!("out-{transport}"));
        skopeo(&[
            "copy",
            &format!("{transport}:{}", path.display()),
            &format!("oci:{}:x", out_dir.display()),
        ]);
        let config = std::fs::read(out_dir.join("blobs/sha256").join(img.id())).unwrap();
        assert_eq!(config, img.config, "{transport}");
    }
}

#[test]
fn podman_archives_load() {
    if !root_or_skip() {
        return;
    }
    if !have("podman") {
        eprintln!("SKIP: podman is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut t = common::Layer::new();
    t.dir("etc/").file("etc/podman", b"from podman\n");
    let tarball = tmp.path().join("rootfs.tar");
    std::fs::write(&tarball, t.finish()).unwrap();
    // A private store, config (file locks: not the host's /libpod_lock segment; no event log;
    // its own network dir) and tmp dir: nothing of the host's podman is touched.
    let root = tmp.path().join("root");
    let runroot = tmp.path().join("runroot");
    let conf = tmp.path().join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[engine]\nevents_logger = \"none\"\nlock_type = \"file\"\n\
             image_copy_tmp_dir = \"{}\"\n\n[network]\nnetwork_config_dir = \"{}\"\n",
            tmp.path().display(),
            tmp.path().join("cni").display()
        ),
    )
    .unwrap();
    let storage_conf = tmp.path().join("storage.conf");
    std::fs::write(
        &storage_conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.display(),
            runroot.display()
        ),
    )
    .unwrap();
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", &conf)
            .env("CONTAINERS_STORAGE_CONF", &storage_conf)
            .arg("--tmpdir")
            .arg(tmp.path().join("podman-tmp"))
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    podman(&["import", tarball.to_str().unwrap(), "pm"]);
    let id = podman(&["image", "inspect", "--format", "{{.Id}}", "pm"]);
    for format in ["docker-archive", "oci-archive"] {
        let path = tmp.path().join(format!("{format}.tar"));
        podman(&[
            "save",
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
            "pm",
        ]);
        let s = TestStore::new(Driver::Vfs);
        let images = s
            .store
            .load(std::fs::File::open(&path).unwrap(), &path)
            .unwrap();
        assert_eq!(images[0].id, id, "{format}");
        assert_eq!(images[0].names, ["localhost/pm:latest"], "{format}");
        assert_eq!(
            rootfs(&s.store, &images[0])
                .get("etc/podman")
                .map(String::as_str),
            Some("from podman\n")
        );
    }
    // podman's store holds no mounts for an import; removing the temp dir is the cleanup.
}
