//! The layer store shared by several processes: two processes creating the same layer end with one, and a
//! process killed while unpacking leaves nothing recorded and its temp directory is removed on the next open
//! (but not while it is alive). The children are this test binary re-run on `child_create_from_stdin`.
//! Needs root; skips otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Layer as Tar;
use rpod_storage::{Driver, LayerStore};

const CHILD_ENV: &str = "RPOD_LAYERS_CHILD";

/// Not a test by itself: in a child process (`RPOD_LAYERS_CHILD=<driver>:<graph>:<run>`), creates a layer from
/// stdin and prints its ID.
#[test]
fn child_create_from_stdin() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let driver = match parts.next().unwrap() {
        "overlay" => Driver::Overlay,
        _ => Driver::Vfs,
    };
    let (graph, run) = (parts.next().unwrap(), parts.next().unwrap());
    let store = LayerStore::open(graph, run, driver).unwrap();
    let layer = store
        .create_layer_from_blob(None, std::io::stdin().lock())
        .unwrap();
    // On a line of its own: libtest prints "test ... " before it.
    println!("\nLAYER-ID={}", layer.id);
}

fn spawn_child(driver: Driver, graph: &Path, run: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_create_from_stdin",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!("{}:{}:{}", driver.name(), graph.display(), run.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn drivers() -> Vec<Driver> {
    if !common::is_root() {
        eprintln!("skipping: the layer store tests need root");
        return Vec::new();
    }
    let probe = tempfile::tempdir().unwrap();
    match Driver::detect(probe.path()).unwrap() {
        Driver::Overlay => vec![Driver::Overlay, Driver::Vfs],
        Driver::Vfs => vec![Driver::Vfs],
    }
}

fn home(graph: &Path, driver: Driver) -> PathBuf {
    match driver {
        Driver::Overlay => graph.join("overlay"),
        Driver::Vfs => graph.join("vfs/dir"),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A layer of `size` bytes of file content, gzip'd.
fn big_layer(size: usize) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("d/")
        .add_reader("d/big", size as u64, &vec![7u8; size][..]);
    common::gzip(&t.finish())
}

#[test]
fn two_processes_creating_the_same_layer_end_with_one() {
    for driver in drivers() {
        let graph = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let blob = big_layer(2 << 20);
        let mut children: Vec<Child> = (0..2)
            .map(|_| spawn_child(driver, graph.path(), run.path()))
            .collect();
        for child in &mut children {
            child.stdin.take().unwrap().write_all(&blob).unwrap();
        }
        let ids: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "{out:?}");
                let text = String::from_utf8(out.stdout).unwrap();
                text.lines()
                    .find_map(|l| l.split("LAYER-ID=").nth(1))
                    .and_then(|rest| rest.get(..64))
                    .unwrap_or_else(|| panic!("no layer ID in {text:?}"))
                    .to_owned()
            })
            .collect();
        assert_eq!(ids[0], ids[1]);
        let store = LayerStore::open(graph.path(), run.path(), driver).unwrap();
        assert_eq!(store.layers().unwrap().len(), 1);
        let mut expected = vec![ids[0].clone()];
        if driver == Driver::Overlay {
            expected.push("l".into());
            assert_eq!(names(&home(graph.path(), driver).join("l")).len(), 1);
        }
        assert_eq!(names(&home(graph.path(), driver)), expected);
    }
}

#[test]
fn a_process_killed_while_unpacking_leaves_nothing() {
    for driver in drivers() {
        let graph = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let blob = big_layer(8 << 20);
        let mut child = spawn_child(driver, graph.path(), run.path());
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&blob[..blob.len() / 2]).unwrap();
        let home = home(graph.path(), driver);
        let deadline = Instant::now() + Duration::from_secs(20);
        let temp = loop {
            if let Some(t) = home
                .exists()
                .then(|| names(&home))
                .and_then(|n| n.into_iter().find(|n| n.starts_with(".tmp-")))
            {
                break t;
            }
            assert!(Instant::now() < deadline, "child never started its layer");
            std::thread::sleep(Duration::from_millis(20));
        };
        // The builder is alive: opening the store must not remove its temp directory.
        let store = LayerStore::open(graph.path(), run.path(), driver).unwrap();
        assert!(home.join(&temp).exists());
        child.kill().unwrap();
        child.wait().unwrap();
        let mut rest = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut rest).unwrap();
        assert!(!String::from_utf8_lossy(&rest).contains("LAYER-ID="));
        drop(store);
        let store = LayerStore::open(graph.path(), run.path(), driver).unwrap();
        assert!(store.layers().unwrap().is_empty());
        let expected: Vec<&str> = match driver {
            Driver::Overlay => vec!["l"],
            Driver::Vfs => vec![],
        };
        assert_eq!(names(&home), expected);
    }
}
