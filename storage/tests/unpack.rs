//! Layer unpacking: entry types, metadata, compression, whiteouts in both modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{Chunked, Layer, MTIME};
use rpod_storage::{unpack_layer, Compression, StorageError, WhiteoutMode};
use tar::EntryType;

fn unpack(
    tar: &[u8],
    dest: &Path,
    mode: WhiteoutMode,
) -> rpod_storage::Result<rpod_storage::LayerStats> {
    unpack_layer(tar, dest, mode)
}

fn every_type_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.add("./", EntryType::Directory, 0o700, "", b"", |_| {})
        .add("data/", EntryType::Directory, 0o40755, "", b"", |h| {
            h.set_mtime(MTIME - 10)
        })
        .add("data/dir/", EntryType::Directory, 0o2750, "", b"", |h| {
            h.set_mtime(MTIME - 20)
        })
        .add(
            "data/dir/a",
            EntryType::Regular,
            0o100644,
            "",
            b"a2\n",
            |_| {},
        )
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
            0o120777,
            "/etc/passwd",
            b"",
            |h| {
                h.set_uid(7);
                h.set_gid(8);
                h.set_mtime(MTIME - 5)
            },
        )
        .add(
            "data/dir/sym",
            EntryType::Symlink,
            0o777,
            "../keep",
            b"",
            |_| {},
        )
        .add("data/keep", EntryType::Regular, 0o644, "", b"keep\n", |h| {
            h.set_uid(1000);
            h.set_gid(1000)
        })
        .hardlink("data/hard", "data/keep")
        .add("data/null", EntryType::Char, 0o20644, "", b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap()
        })
        .add("data/loop", EntryType::Block, 0o600, "", b"", |h| {
            h.set_device_major(7).unwrap();
            h.set_device_minor(9).unwrap()
        })
        .add("data/fifo", EntryType::Fifo, 0o10644, "", b"", |_| {})
        .pax(&[
            ("SCHILY.xattr.user.refimg", b"v1"),
            (
                "SCHILY.xattr.security.capability",
                &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ])
        .add(
            "data/x/captrue",
            EntryType::Regular,
            0o755,
            "",
            b"bin",
            |_| {},
        );
    l.finish()
}

fn check_every_type(dest: &Path) {
    let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
    // The root entry's mode is not applied.
    assert_ne!(fs::metadata(dest).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(m("data").mode() & 0o7777, 0o755);
    assert_eq!(
        m("data").mtime(),
        (MTIME - 10) as i64,
        "dir mtime applied after its contents"
    );
    assert_eq!(m("data/dir").mode() & 0o7777, 0o2750);
    assert_eq!(m("data/dir").mtime(), (MTIME - 20) as i64);
    assert_eq!(fs::read(dest.join("data/dir/a")).unwrap(), b"a2\n");
    let suid = m("data/suid");
    assert_eq!(suid.mode() & 0o7777, 0o4755, "setuid survives chown");
    assert_eq!((suid.uid(), suid.gid()), (1000, 1001));
    assert_eq!(suid.mtime(), MTIME as i64);
    assert_eq!(m("data/tmp").mode() & 0o7777, 0o1777);
    let abs = m("data/abssym");
    assert!(abs.file_type().is_symlink());
    assert_eq!(
        fs::read_link(dest.join("data/abssym")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        (abs.uid(), abs.gid(), abs.mtime()),
        (7, 8, (MTIME - 5) as i64)
    );
    assert_eq!(
        fs::read_link(dest.join("data/dir/sym")).unwrap(),
        Path::new("../keep")
    );
    assert_eq!(m("data/hard").ino(), m("data/keep").ino());
    assert_eq!(m("data/keep").nlink(), 2);
    assert_eq!((m("data/keep").uid(), m("data/keep").gid()), (1000, 1000));
    let null = m("data/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o644);
    let lp = m("data/loop");
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 9));
    assert!(m("data/fifo").file_type().is_fifo());
    let cap = dest.join("data/x/captrue");
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(&cap, "user.refimg", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"v1");
}

#[test]
fn every_entry_type_with_metadata() {
    if !common::is_root() {
        eprintln!("skipping: needs root (chown, mknod)");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let stats = unpack(&every_type_layer(), dest.path(), WhiteoutMode::Overlay).unwrap();
    assert_eq!(stats.entries, 14);
    assert_eq!(stats.bytes, 3 + 10 + 5 + 3);
    assert_eq!(stats.compression, Some(Compression::None));
    check_every_type(dest.path());
}

#[test]
fn gzip_and_zstd_layers() {
    if !common::is_root() {
        eprintln!("skipping: needs root (chown, mknod)");
        return;
    }
    let tar = every_type_layer();
    for (blob, kind) in [
        (common::gzip(&tar), Compression::Gzip),
        (common::zstd(&tar), Compression::Zstd),
    ] {
        let dest = tempfile::tempdir().unwrap();
        let reader = Chunked {
            inner: &blob[..],
            chunk: 3,
        };
        let stats = unpack_layer(reader, dest.path(), WhiteoutMode::Delete).unwrap();
        assert_eq!(stats.compression, Some(kind));
        check_every_type(dest.path());
    }
}

#[test]
fn corrupt_or_unsupported_blobs_fail() {
    let dest = tempfile::tempdir().unwrap();
    let mut tar = Layer::new();
    tar.file("f", &[7u8; 10_000]);
    let mut gz = common::gzip(&tar.finish());
    let len = gz.len();
    gz[len - 6] ^= 0xff; // CRC/size trailer
    assert!(matches!(
        unpack(&gz, dest.path(), WhiteoutMode::Delete),
        Err(StorageError::Read { .. })
    ));
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2];
    assert!(matches!(
        unpack(&xz, dest.path(), WhiteoutMode::Delete),
        Err(StorageError::UnsupportedCompression { format: "xz" })
    ));
    assert!(unpack(
        b"not a tar at all, just some bytes",
        dest.path(),
        WhiteoutMode::Delete
    )
    .is_err());
}

#[test]
fn big_layer_streams_in_small_chunks() {
    const SIZE: u64 = 64 << 20;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    {
        let mut b = tar::Builder::new(&mut enc);
        let mut h = tar::Header::new_ustar();
        h.set_path("zeros").unwrap();
        h.set_size(SIZE);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::repeat(0).take(SIZE)).unwrap();
        b.finish().unwrap();
    }
    let blob = enc.finish().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let stats = unpack_layer(
        Chunked {
            inner: &blob[..],
            chunk: 509,
        },
        dest.path(),
        WhiteoutMode::Delete,
    )
    .unwrap();
    assert_eq!(stats.bytes, SIZE);
    assert_eq!(fs::metadata(dest.path().join("zeros")).unwrap().len(), SIZE);
}

/// The layers of images.md §3, reduced: a lower layer, then one with a whiteout and an opaque directory.
fn lower_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("data/")
        .dir("data/dir/")
        .file("data/dir/a", b"a\n")
        .file("data/del", b"del\n")
        .file("data/keep", b"keep\n");
    l.dir("data/repl/")
        .file("data/repl/b", b"b\n")
        .dir("data/repl/sub/")
        .file("data/repl/sub/deep", b"d");
    l.dir("data/gone/").file("data/gone/inner", b"i");
    l.finish()
}

fn upper_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("data/")
        .whiteout("data", "del")
        .whiteout("data", "gone")
        .whiteout("data", "never-existed");
    l.dir("data/repl/")
        .file("data/repl/-early", b"e")
        .opaque("data/repl")
        .file("data/repl/c", b"c\n");
    l.whiteout("nodir/deeper", "x");
    l.finish()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn delete_mode_whiteouts_and_opaque_dirs() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    unpack(&lower_layer(), d, WhiteoutMode::Delete).unwrap();
    let stats = unpack(&upper_layer(), d, WhiteoutMode::Delete).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (4, 1));
    assert_eq!(names(&d.join("data")), ["dir", "keep", "repl"]);
    assert_eq!(
        names(&d.join("data/repl")),
        ["-early", "c"],
        "lower contents gone, this layer's kept"
    );
    assert_eq!(fs::read(d.join("data/dir/a")).unwrap(), b"a\n");
    assert!(
        !d.join("nodir").exists(),
        "a whiteout does not create its parent in Delete mode"
    );
}

#[test]
fn overlay_mode_whiteouts_and_opaque_dirs() {
    if !common::is_root() {
        eprintln!("skipping: needs root (mknod, trusted.* xattrs)");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let stats = unpack(&upper_layer(), d, WhiteoutMode::Overlay).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (4, 1));
    for name in [
        "data/del",
        "data/gone",
        "data/never-existed",
        "nodir/deeper/x",
    ] {
        let m = fs::symlink_metadata(d.join(name)).unwrap();
        assert!(m.file_type().is_char_device(), "{name}");
        assert_eq!(m.rdev(), 0, "{name}");
        assert_eq!(m.mode() & 0o7777, 0, "{name}");
    }
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(d.join("data/repl"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert_eq!(names(&d.join("data/repl")), ["-early", "c"]);
    assert!(!d.join("data/repl/.wh..wh..opq").exists());
}

#[test]
fn later_layer_replaces_entries_of_other_types() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let mut l = Layer::new();
    l.dir("a/")
        .file("a/x", b"1")
        .file("f", b"file")
        .symlink("s", "a")
        .dir("d/")
        .file("d/in", b"i");
    unpack(&l.finish(), d, WhiteoutMode::Delete).unwrap();
    let mut l = Layer::new();
    // file over directory, directory over file, directory over symlink (the symlink is replaced, not followed).
    l.file("d", b"now a file")
        .dir("f/")
        .file("f/y", b"y")
        .dir("s/")
        .file("s/z", b"z")
        .file("a/x", b"2");
    unpack(&l.finish(), d, WhiteoutMode::Delete).unwrap();
    assert_eq!(fs::read(d.join("d")).unwrap(), b"now a file");
    assert_eq!(fs::read(d.join("f/y")).unwrap(), b"y");
    assert!(fs::symlink_metadata(d.join("s")).unwrap().is_dir());
    assert_eq!(names(&d.join("a")), ["x"]);
    assert_eq!(fs::read(d.join("a/x")).unwrap(), b"2");
}

#[test]
fn relative_symlink_inside_root_is_followed_for_parents() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let mut l = Layer::new();
    l.dir("usr/")
        .dir("usr/lib/")
        .symlink("lib", "usr/lib")
        .file("lib/libc.so", b"elf");
    unpack(&l.finish(), d, WhiteoutMode::Delete).unwrap();
    assert_eq!(fs::read(d.join("usr/lib/libc.so")).unwrap(), b"elf");
    assert!(fs::symlink_metadata(d.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn hard_link_to_lower_layer_and_missing_target() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let mut l = Layer::new();
    l.file("lower", b"data");
    unpack(&l.finish(), d, WhiteoutMode::Delete).unwrap();
    let mut l = Layer::new();
    l.hardlink("./up", "./lower");
    unpack(&l.finish(), d, WhiteoutMode::Delete).unwrap();
    assert_eq!(
        fs::metadata(d.join("up")).unwrap().ino(),
        fs::metadata(d.join("lower")).unwrap().ino()
    );
    let mut l = Layer::new();
    l.hardlink("bad", "missing");
    let err = unpack(&l.finish(), d, WhiteoutMode::Delete).unwrap_err();
    assert!(matches!(err, StorageError::BadHardLink { .. }), "{err}");
}
