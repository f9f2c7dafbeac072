//! Hostile layer entries (images.md §6): every one is refused with an error naming it, and nothing outside the
//! destination changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::Layer;
use rpod_storage::{unpack_layer, StorageError, WhiteoutMode};

/// A sandbox: `<tmp>/root` is the destination and `<tmp>/outside/secret` must survive.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn outside_str(&self) -> String {
        self.outside.to_str().unwrap().to_owned()
    }

    /// Unpacks `lower` layers (which must succeed), then `last`, which must fail naming `entry`.
    fn refuse(
        &self,
        lower: &[Vec<u8>],
        last: Vec<u8>,
        entry: &str,
        mode: WhiteoutMode,
    ) -> StorageError {
        for l in lower {
            unpack_layer(&l[..], &self.root, mode).unwrap();
        }
        let err =
            unpack_layer(&last[..], &self.root, mode).expect_err("hostile layer was accepted");
        assert!(
            matches!(
                err,
                StorageError::UnsafeEntry { .. } | StorageError::BadHardLink { .. }
            ),
            "unexpected error kind: {err}"
        );
        assert!(
            err.to_string().contains(entry),
            "error does not name {entry:?}: {err}"
        );
        self.check_outside();
        err
    }

    fn check_outside(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "something was written outside the root");
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"secret");
        assert_eq!(fs::metadata(self.outside.join("secret")).unwrap().len(), 6);
    }
}

fn layer(f: impl FnOnce(&mut Layer) -> &mut Layer) -> Vec<u8> {
    let mut l = Layer::new();
    f(&mut l);
    l.finish()
}

#[test]
fn dot_dot_leaving_the_root() {
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| l.file("../outside/x", b"x")),
        "../outside/x",
        WhiteoutMode::Delete,
    );
    s.refuse(
        &[],
        layer(|l| l.file("a/../../outside/x", b"x")),
        "a/../../outside/x",
        WhiteoutMode::Delete,
    );
    s.refuse(
        &[],
        layer(|l| l.dir("../outside/d/")),
        "../outside/d/",
        WhiteoutMode::Overlay,
    );
}

#[test]
fn absolute_names() {
    let s = Sandbox::new();
    let name = format!("{}/x", s.outside_str());
    s.refuse(
        &[],
        layer(|l| l.file(&name, b"x")),
        &name,
        WhiteoutMode::Delete,
    );
    s.refuse(
        &[],
        layer(|l| l.file("/abs", b"x")),
        "/abs",
        WhiteoutMode::Delete,
    );
}

#[test]
fn symlink_to_absolute_dir_then_entry_beneath() {
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| {
            l.symlink("l", "/etc")
                .file("l/rpod-storage-escape-test", b"x")
        }),
        "l/rpod-storage-escape-test",
        WhiteoutMode::Delete,
    );
    assert!(!Path::new("/etc/rpod-storage-escape-test").exists());
    let s = Sandbox::new();
    let out = s.outside_str();
    s.refuse(
        &[],
        layer(|l| l.symlink("l", &out).file("l/x", b"x")),
        "l/x",
        WhiteoutMode::Overlay,
    );
}

#[test]
fn symlink_climbing_out_then_entry_beneath() {
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| l.symlink("l", "../..").file("l/x", b"x")),
        "l/x",
        WhiteoutMode::Delete,
    );
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| l.symlink("l", "../outside").dir("l/d/")),
        "l/d/",
        WhiteoutMode::Delete,
    );
}

#[test]
fn symlink_from_a_lower_layer_is_not_followed_out() {
    let s = Sandbox::new();
    let lower = layer(|l| l.dir("d/").symlink("d/l", "../../outside"));
    s.refuse(
        &[lower],
        layer(|l| l.file("d/l/secret", b"pwned")),
        "d/l/secret",
        WhiteoutMode::Delete,
    );
}

#[test]
fn chained_and_looping_symlinks() {
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| {
            l.symlink("a", "b")
                .symlink("b", "c/../../outside")
                .dir("c/")
                .file("a/x", b"x")
        }),
        "a/x",
        WhiteoutMode::Delete,
    );
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| l.symlink("a", "b").symlink("b", "a").file("a/x", b"x")),
        "a/x",
        WhiteoutMode::Delete,
    );
}

#[test]
fn hard_link_outside_the_root() {
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| l.hardlink("h", "../../etc/passwd")),
        "h",
        WhiteoutMode::Delete,
    );
    s.refuse(
        &[],
        layer(|l| l.hardlink("h", "../outside/secret")),
        "h",
        WhiteoutMode::Delete,
    );
    let abs = format!("{}/secret", s.outside_str());
    s.refuse(
        &[],
        layer(|l| l.hardlink("h", &abs)),
        "h",
        WhiteoutMode::Delete,
    );
    assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().len(), 6);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn hard_link_through_a_symlink() {
    let s = Sandbox::new();
    let out = s.outside_str();
    s.refuse(
        &[],
        layer(|l| l.symlink("s", &out).hardlink("h", "s/secret")),
        "h",
        WhiteoutMode::Delete,
    );
    let s = Sandbox::new();
    s.refuse(
        &[],
        layer(|l| l.symlink("s", "../outside").hardlink("h", "s/secret")),
        "h",
        WhiteoutMode::Delete,
    );
}

#[test]
fn whiteouts_through_a_symlink() {
    let s = Sandbox::new();
    let lower = layer(|l| l.symlink("l", "../outside"));
    s.refuse(
        std::slice::from_ref(&lower),
        layer(|l| l.whiteout("l", "secret")),
        "l/.wh.secret",
        WhiteoutMode::Delete,
    );
    s.refuse(
        &[],
        layer(|l| l.opaque("l")),
        "l/.wh..wh..opq",
        WhiteoutMode::Delete,
    );
    let s = Sandbox::new();
    s.refuse(
        &[lower],
        layer(|l| l.whiteout("l", "secret")),
        "l/.wh.secret",
        WhiteoutMode::Overlay,
    );
    s.refuse(
        &[],
        layer(|l| l.opaque("l")),
        "l/.wh..wh..opq",
        WhiteoutMode::Overlay,
    );
    s.refuse(
        &[],
        layer(|l| l.file(".wh..", b"")),
        ".wh..",
        WhiteoutMode::Delete,
    );
}

#[test]
fn leaf_symlink_is_replaced_not_followed() {
    let s = Sandbox::new();
    let target = format!("{}/secret", s.outside_str());
    for l in [
        layer(|l| l.symlink("f", &target)),
        layer(|l| l.file("f", b"overwritten?")),
        layer(|l| l.symlink("f", &target)),
        layer(|l| l.dir("f/")),
        layer(|l| l.symlink("f", &target)),
        layer(|l| l.hardlink("g", "f").whiteout("", "f")),
    ] {
        unpack_layer(&l[..], &s.root, WhiteoutMode::Delete).unwrap();
    }
    s.check_outside();
    assert!(
        fs::symlink_metadata(s.root.join("g"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "hard link to the symlink itself"
    );
}

#[test]
fn deferred_dir_mtime_does_not_follow_a_later_symlink() {
    let s = Sandbox::new();
    let victim = s.outside.parent().unwrap().join("victim");
    fs::create_dir_all(victim.join("sub")).unwrap();
    let before = fs::metadata(victim.join("sub"))
        .unwrap()
        .modified()
        .unwrap();
    let target = victim.to_str().unwrap().to_owned();
    let l = layer(|l| {
        l.add("d/", tar::EntryType::Directory, 0o755, "", b"", |h| {
            h.set_mtime(1)
        })
        .add("d/sub/", tar::EntryType::Directory, 0o755, "", b"", |h| {
            h.set_mtime(1)
        })
        .symlink("d", &target)
    });
    unpack_layer(&l[..], &s.root, WhiteoutMode::Delete).unwrap();
    assert_eq!(
        fs::metadata(victim.join("sub"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    s.check_outside();
}
