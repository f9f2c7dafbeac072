//! Delete-mode unpack of a multi-layer stack (busybox as content) compared with GNU `tar -x` of each layer plus
//! whiteouts applied by hand before each extraction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::Layer;
use rpod_storage::{unpack_layer, WhiteoutMode};
use tar::EntryType;

const BUSYBOX: &str = "/usr/bin/busybox";

fn layers() -> Vec<Vec<u8>> {
    let bb = fs::read(BUSYBOX).unwrap();
    let mut l1 = Layer::new();
    l1.dir("bin/")
        .add("bin/busybox", EntryType::Regular, 0o755, "", &bb, |_| {})
        .hardlink("bin/sh", "bin/busybox");
    for applet in ["ls", "cat", "echo"] {
        l1.symlink(&format!("bin/{applet}"), "busybox");
    }
    l1.dir("etc/").add(
        "etc/passwd",
        EntryType::Regular,
        0o644,
        "",
        b"root:x:0:0::/root:/bin/sh\n",
        |_| {},
    );
    l1.add(
        "etc/shadow",
        EntryType::Regular,
        0o640,
        "",
        b"root:*:1::::::\n",
        |h| h.set_gid(42),
    );
    l1.dir("etc/conf.d/")
        .file("etc/conf.d/a", b"a")
        .file("etc/conf.d/b", b"b");
    l1.add("tmp/", EntryType::Directory, 0o1777, "", b"", |_| {});
    let mut l2 = Layer::new();
    l2.dir("bin/")
        .whiteout("bin", "sh")
        .whiteout("bin", "cat")
        .symlink("bin/sh", "/bin/busybox");
    l2.dir("etc/")
        .dir("etc/conf.d/")
        .opaque("etc/conf.d")
        .file("etc/conf.d/c", b"c");
    l2.add(
        "etc/passwd",
        EntryType::Regular,
        0o600,
        "",
        b"root:x:0:0::/root:/bin/ash\n",
        |h| h.set_uid(1000),
    );
    let mut l3 = Layer::new();
    l3.whiteout("", "tmp").dir("home/").add(
        "home/user/",
        EntryType::Directory,
        0o700,
        "",
        b"",
        |h| {
            h.set_uid(1000);
            h.set_gid(1000)
        },
    );
    vec![
        l1.finish(),
        common::gzip(&l2.finish()),
        common::zstd(&l3.finish()),
    ]
}

fn reference(layers: &[Vec<u8>], root: &Path, scratch: &Path) {
    for (i, blob) in layers.iter().enumerate() {
        let mut plain = Vec::new();
        let mut r = decode(blob);
        std::io::copy(&mut r, &mut plain).unwrap();
        let file = scratch.join(format!("layer{i}.tar"));
        fs::write(&file, &plain).unwrap();
        let list = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
        for name in String::from_utf8(list.stdout).unwrap().lines() {
            let p = Path::new(name);
            let base = p.file_name().unwrap().to_str().unwrap();
            let dir = root.join(p.parent().unwrap());
            if base == ".wh..wh..opq" {
                for e in fs::read_dir(&dir).into_iter().flatten() {
                    let e = e.unwrap().path();
                    if e.is_dir() && !e.is_symlink() {
                        fs::remove_dir_all(e).unwrap()
                    } else {
                        fs::remove_file(e).unwrap()
                    }
                }
            } else if let Some(target) = base.strip_prefix(".wh.") {
                let t = dir.join(target);
                match fs::symlink_metadata(&t) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&t).unwrap(),
                    Ok(_) => fs::remove_file(&t).unwrap(),
                    Err(_) => {}
                }
            }
        }
        let st = Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&file)
            .args(["--exclude=.wh.*", "-C"])
            .arg(root)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

fn decode(blob: &[u8]) -> Box<dyn std::io::Read + '_> {
    match blob {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(blob)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(blob).unwrap()),
        _ => Box::new(blob),
    }
}

/// path → (mode, uid, gid, mtime, size, link target or content length, nlink>1)
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let extra = if m.file_type().is_symlink() {
                fs::read_link(&p).unwrap().display().to_string()
            } else if m.is_file() {
                format!(
                    "{:x}",
                    fs::read(&p)
                        .unwrap()
                        .iter()
                        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)))
                )
            } else {
                String::new()
            };
            let mtime = m.mtime();
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} {} {} {}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    mtime,
                    m.nlink(),
                    extra
                ),
            );
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn delete_mode_matches_gnu_tar_with_manual_whiteouts() {
    if !common::is_root()
        || !Path::new(BUSYBOX).exists()
        || Command::new("tar").arg("--version").output().is_err()
    {
        eprintln!("skipping: needs root, {BUSYBOX} and GNU tar");
        return;
    }
    let layers = layers();
    let ours = tempfile::tempdir().unwrap();
    for l in &layers {
        unpack_layer(&l[..], ours.path(), WhiteoutMode::Delete).unwrap();
    }
    let theirs = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    reference(&layers, theirs.path(), scratch.path());
    let snap = snapshot(ours.path());
    assert!(
        snap.contains_key("bin/busybox")
            && snap.contains_key("etc/conf.d/c")
            && snap.contains_key("home/user")
    );
    for gone in ["bin/cat", "etc/conf.d/a", "tmp"] {
        assert!(!snap.contains_key(gone), "{gone} should be whited out");
    }
    assert_eq!(snap, snapshot(theirs.path()));
}
