//! The vfs driver copies its parent layer with every type of entry and all metadata: a container layer on top of
//! a rich base layer starts as an exact copy of it. Needs root; skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Layer, MTIME};
use rpod_storage::{Driver, LayerStore};
use tar::EntryType;

fn rich_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.add("./", EntryType::Directory, 0o700, "", b"", |_| {})
        .add("data/", EntryType::Directory, 0o755, "", b"", |h| {
            h.set_mtime(MTIME - 10)
        })
        .add("data/dir/", EntryType::Directory, 0o2750, "", b"", |h| {
            h.set_uid(5);
            h.set_mtime(MTIME - 20)
        })
        .file("data/dir/a", b"a2\n")
        .add(
            "data/suid",
            EntryType::Regular,
            0o4755,
            "",
            b"#!/bin/sh\n",
            |h| {
                h.set_uid(1000);
                h.set_gid(1001)
            },
        )
        .add("data/tmp/", EntryType::Directory, 0o1777, "", b"", |_| {})
        .add(
            "data/abssym",
            EntryType::Symlink,
            0o777,
            "/etc/passwd",
            b"",
            |h| {
                h.set_uid(7);
                h.set_gid(8);
                h.set_mtime(MTIME - 5)
            },
        )
        .symlink("data/dir/sym", "../keep")
        .add("data/keep", EntryType::Regular, 0o644, "", b"keep\n", |h| {
            h.set_uid(1000);
            h.set_gid(1000)
        })
        .hardlink("data/hard", "data/keep")
        .add("data/null", EntryType::Char, 0o644, "", b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap()
        })
        .add("data/loop", EntryType::Block, 0o600, "", b"", |h| {
            h.set_device_major(7).unwrap();
            h.set_device_minor(9).unwrap()
        })
        .add("data/fifo", EntryType::Fifo, 0o644, "", b"", |_| {})
        .pax(&[
            ("SCHILY.xattr.user.refimg", b"v1"),
            ("SCHILY.xattr.trusted.t", b"tv"),
        ])
        .file("data/x", b"bin");
    l.finish()
}

/// Everything observable about a tree, keyed by relative path; hard links as the set of inode-sharing names.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    for names in inodes.values().filter(|n| n.len() > 1) {
        out.insert(format!("hardlinks {names:?}"), String::new());
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, Vec<String>>,
) {
    let meta = fs::symlink_metadata(dir).unwrap();
    let rel = dir.strip_prefix(root).unwrap().display().to_string();
    let mut xattrs: Vec<String> = xattr_names(dir);
    xattrs.sort();
    let body = if meta.is_file() {
        inodes.entry(meta.ino()).or_default().push(rel.clone());
        format!("{:?}", fs::read(dir).unwrap())
    } else if meta.file_type().is_symlink() {
        fs::read_link(dir).unwrap().display().to_string()
    } else {
        String::new()
    };
    out.insert(
        rel,
        format!(
            "mode={:o} uid={} gid={} rdev={} mtime={}.{} xattrs={xattrs:?} {body}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.rdev(),
            meta.mtime(),
            meta.mtime_nsec()
        ),
    );
    if meta.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            walk(root, &entry.unwrap().path(), out, inodes);
        }
    }
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).unwrap_or(0);
    buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|name| {
            let name = String::from_utf8_lossy(name).into_owned();
            let mut value = vec![0u8; 256];
            let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
            format!("{name}={:?}", &value[..len])
        })
        .collect()
}

#[test]
fn a_vfs_layer_starts_as_an_exact_copy_of_its_parent() {
    if !common::is_root() {
        eprintln!("skipping: the layer store tests need root");
        return;
    }
    let graph = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let store = LayerStore::open(graph.path(), run.path(), Driver::Vfs).unwrap();
    let base = store
        .create_layer_from_blob(None, &rich_layer()[..])
        .unwrap();
    let rw = store.create_rw_layer(Some(&base.id)).unwrap();
    let before = snapshot(&store.layer_dir(&base.id));
    assert!(before["data/x"].contains("user.refimg"), "{before:#?}");
    assert!(before["data/x"].contains("trusted.t"), "{before:#?}");
    assert!(
        before.contains_key("hardlinks [\"data/hard\", \"data/keep\"]")
            || before.contains_key("hardlinks [\"data/keep\", \"data/hard\"]"),
        "{before:#?}"
    );
    assert_eq!(snapshot(&store.layer_dir(&rw.id)), before);
}
