//! A damaged state database (truncated, empty, garbage): every command fails with a clear error naming
//! the file (exit 125, no signal death), and `system reset --force` is the way back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{rootfs, stdout_ok as ok, Sandbox};

fn create(sb: &Sandbox) -> String {
    sb.create_ctr(&["true"])
}

fn db_file(sb: &Sandbox) -> PathBuf {
    let file = sb
        .path("root/libpod/rpod_state.mdb")
        .canonicalize()
        .unwrap();
    assert!(file.is_file(), "{} is missing", file.display());
    file
}

enum Damage {
    Half,
    Empty,
    Garbage,
    /// A directory in place of the `-lock` file.
    LockDir,
}

fn damage(file: &Path, how: &Damage) {
    match how {
        Damage::Half => {
            let len = std::fs::metadata(file).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        Damage::Empty => std::fs::write(file, b"").unwrap(),
        Damage::Garbage => {
            let bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + 13) as u8).collect();
            std::fs::write(file, bytes).unwrap();
        }
        Damage::LockDir => {
            let lock = format!("{}-lock", file.display());
            std::fs::remove_file(&lock).unwrap();
            std::fs::create_dir(&lock).unwrap();
        }
    }
}

/// The command must exit 125 (no signal) with `Error: …` naming the file and the way back.
fn expect_state_error(sb: &Sandbox, file: &Path, args: &[&str], needle: &str) {
    let started = Instant::now();
    let out = sb.cmd().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "rpod {args:?} died of a signal: {stderr}"
    );
    assert_eq!(out.status.code(), Some(125), "rpod {args:?}: {stderr}");
    assert!(stderr.starts_with("Error: "), "rpod {args:?}: {stderr}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "rpod {args:?}: {stderr}"
    );
    assert!(stderr.contains(needle), "rpod {args:?}: {stderr}");
    assert!(
        stderr.contains("rpod system reset --force"),
        "rpod {args:?}: {stderr}"
    );
    // Nothing (stopping containers, waiting for locks) happens before the state is opened.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rpod {args:?} took {:?}",
        started.elapsed()
    );
}

fn damaged_then_reset(how: Damage, needle: &str) {
    let sb = Sandbox::new();
    let id = create(&sb);
    let file = db_file(&sb);
    damage(&file, &how);
    let fresh_rootfs = rootfs(&sb).display().to_string();
    for args in [
        &["ps", "-a"][..],
        &["create", "--rootfs", &fresh_rootfs, "true"],
        &["rm", "-f", &id],
        &["pod", "ps"],
    ] {
        expect_state_error(&sb, &file, args, needle);
    }
    // The way back.
    let out = sb.run(["system", "reset", "--force"]);
    ok(&out);
    let listed = ok(&sb.run(["ps", "-a", "-q"]));
    assert_eq!(listed.trim(), "", "records survived the reset");
    // ... on a fresh, working database.
    let new_id = create(&sb);
    let listed = ok(&sb.run(["ps", "-a", "-q"]));
    assert!(new_id.starts_with(listed.trim()), "{listed:?} vs {new_id}");
    ok(&sb.run(["rm", "-f", &new_id]));
}

/// One test a damage: `name: damage => what the error says`.
macro_rules! damaged_then_reset_tests {
    ($($name:ident: $how:expr => $needle:literal;)*) => {$(
        #[test]
        fn $name() {
            damaged_then_reset($how, $needle);
        }
    )*};
}

damaged_then_reset_tests! {
    truncated_database: Damage::Half => "the file is truncated";
    zero_length_database: Damage::Empty => "it is empty (0 bytes)";
    garbage_database: Damage::Garbage => "not an LMDB database (bad magic";
    directory_in_place_of_the_lock_file: Damage::LockDir => "-lock is not a regular file";
}
