//! Blob store: round trip, digest verification, streaming.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use rpod_storage::{BlobStore, Digest, StorageError};

#[test]
fn put_has_open_list_remove() {
    let root = tempfile::tempdir().unwrap();
    let store = BlobStore::open(root.path()).unwrap();
    let data = b"some layer bytes";
    let digest = Digest::of_bytes(data);
    assert!(!store.has(&digest).unwrap());
    let info = store.put(&data[..], &digest).unwrap();
    assert_eq!(info.digest, digest);
    assert_eq!(info.size, data.len() as u64);
    assert!(store.has(&digest).unwrap());
    let path = store.path(&digest);
    assert_eq!(path, root.path().join("blobs/sha256").join(digest.hex()));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    let mut back = Vec::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    let other = store.put_unverified(&b"other"[..]).unwrap();
    assert_eq!(other.digest, Digest::of_bytes(b"other"));
    let mut want = vec![digest.clone(), other.digest.clone()];
    want.sort();
    assert_eq!(store.list().unwrap(), want);
    // Storing the same blob again is harmless.
    store.put(&data[..], &digest).unwrap();
    assert!(store.remove(&digest).unwrap());
    assert!(!store.remove(&digest).unwrap());
    assert!(matches!(
        store.open_blob(&digest),
        Err(StorageError::BlobNotFound { .. })
    ));
    assert_eq!(store.list().unwrap(), vec![other.digest]);
}

#[test]
fn digest_mismatch_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = BlobStore::open(root.path()).unwrap();
    let wrong = Digest::of_bytes(b"expected content");
    let err = store.put(&b"tampered content"[..], &wrong).unwrap_err();
    let actual = Digest::of_bytes(b"tampered content");
    match &err {
        StorageError::DigestMismatch {
            expected,
            actual: got,
        } => {
            assert_eq!(expected, &wrong.to_string());
            assert_eq!(got, &actual.to_string());
        }
        other => panic!("unexpected error {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.to_string()) && msg.contains(&actual.to_string()),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(root.path().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!store.has(&actual).unwrap());
}

#[test]
fn streams_a_big_blob_in_small_chunks() {
    const SIZE: u64 = 64 << 20;
    let root = tempfile::tempdir().unwrap();
    let store = BlobStore::open(root.path()).unwrap();
    let reader = common::Chunked {
        inner: std::io::repeat(0).take(SIZE),
        chunk: 4093,
    };
    let info = store.put_unverified(reader).unwrap();
    assert_eq!(info.size, SIZE);
    assert_eq!(
        std::fs::metadata(store.path(&info.digest)).unwrap().len(),
        SIZE
    );
}

#[test]
fn foreign_files_are_not_listed() {
    let root = tempfile::tempdir().unwrap();
    let store = BlobStore::open(root.path()).unwrap();
    std::fs::write(root.path().join("blobs/sha256/.tmp-abc"), b"x").unwrap();
    std::fs::write(root.path().join("blobs/sha256/README"), b"x").unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn temp_files_of_killed_writers_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let store = BlobStore::open(root.path()).unwrap();
    let kept = store.put_unverified(&b"kept"[..]).unwrap();
    let dir = root.path().join("blobs/sha256");
    std::fs::write(dir.join(".tmp-abc123"), b"half a blob").unwrap();
    assert_eq!(store.list().unwrap(), vec![kept.digest.clone()]);
    assert_eq!(store.remove_temp_files().unwrap(), 1);
    assert!(!dir.join(".tmp-abc123").exists());
    assert!(store.has(&kept.digest).unwrap());
    assert_eq!(store.remove_temp_files().unwrap(), 0);
}
