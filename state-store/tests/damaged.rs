//! Damaged database files: truncated at several points, empty, garbage, a bad magic, a stale or garbage
//! `-lock` file. Each open runs in a child process (this test binary, re-run with `RPOD_DAMAGED_CHILD` set),
//! so that a `SIGBUS` from a mapped page beyond the end of the file fails the test instead of killing the
//! test runner. Every damage must give a clear error naming the file, without a panic or a signal death.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rpod_state::{
    ContainerConfig, ContainerRecord, ErrorKind, LmdbState, PodConfig, PodRecord, State,
    DB_FILE_NAME,
};

const CHILD_ENV: &str = "RPOD_DAMAGED_CHILD";
const RESULT: &str = "RPOD-DAMAGED-RESULT:";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn ctr(id: &str) -> ContainerRecord {
    let mut c = ContainerConfig::new(id, format!("name-{id}"));
    c.env = vec![format!("PAYLOAD={}", "x".repeat(2000))];
    ContainerRecord::new(c)
}

/// The child: open the state in `$RPOD_DAMAGED_CHILD`, read everything, write once; print the outcome.
#[test]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let outcome = (|| -> rpod_state::Result<usize> {
        let s = LmdbState::open(&dir)?;
        let n = s.all_containers()?.len() + s.all_pods()?.len();
        s.add_container(&ctr("child-added"))?;
        Ok(n)
    })();
    match outcome {
        Ok(n) => println!("\n{RESULT}ok {n}"),
        Err(e) => println!("\n{RESULT}err {:?} {e}", e.kind()),
    }
}

/// What the child reported: `Ok(records)` or `Err((kind, message))`.
fn probe(dir: &Path) -> Result<usize, (String, String)> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child died (signal {:?}, status {:?}):\n{stdout}\n{}",
        out.status.signal(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT).map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no result from the child:\n{stdout}"));
    if let Some(n) = line.strip_prefix("ok ") {
        return Ok(n.trim().parse().unwrap());
    }
    let rest = line.strip_prefix("err ").unwrap();
    let (kind, msg) = rest.split_once(' ').unwrap();
    Err((kind.to_string(), msg.to_string()))
}

/// A database with 40 containers and a pod (enough for several pages and an overflow record), closed.
fn populated() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let s = LmdbState::open(dir.path()).unwrap();
    for i in 0..40 {
        s.add_container(&ctr(&format!("c{i:03}"))).unwrap();
    }
    let mut big = ContainerConfig::new("big", "big");
    big.env = vec!["x".repeat(64 * 1024)];
    s.add_container(&ContainerRecord::new(big)).unwrap();
    s.add_pod(&PodRecord::new(PodConfig::new("p1", "pod1")))
        .unwrap();
    s.close().unwrap();
    let file = dir.path().join(DB_FILE_NAME).canonicalize().unwrap();
    (dir, file)
}

/// `(page size, last page)` from the newer meta page (offsets of `MDB_meta` on 64-bit platforms).
fn meta(file: &Path) -> (u64, u64) {
    let bytes = std::fs::read(file).unwrap();
    let at = |off: usize| u64::from_ne_bytes(bytes[off..off + 8].try_into().unwrap());
    let psize = u64::from(u32::from_ne_bytes(bytes[40..44].try_into().unwrap()));
    let p = psize as usize;
    let (last0, txn0) = (at(136), at(144));
    let (last1, txn1) = (at(p + 136), at(p + 144));
    (psize, if txn1 > txn0 { last1 } else { last0 })
}

/// The child must fail with a `Corrupt` error that names the file and contains `needle`.
fn expect_damaged(dir: &Path, file: &Path, needle: &str) -> String {
    let (kind, msg) = probe(dir).expect_err("the damaged database opened");
    assert_eq!(kind, format!("{:?}", ErrorKind::Corrupt), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    assert!(msg.contains("rpod system reset --force"), "{msg}");
    msg
}

fn truncate(file: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_healthy_database_opens_in_a_child() {
    let (dir, _) = populated();
    assert_eq!(probe(dir.path()), Ok(42));
}

#[test]
fn truncated_database_is_refused_before_it_is_mapped() {
    let (dir, file) = populated();
    let pristine = std::fs::read(&file).unwrap();
    let (psize, last) = meta(&file);
    let end = (last + 1) * psize;
    assert!(pristine.len() as u64 >= end, "the healthy file is short");
    let cuts = [
        ("half", end / 2),
        ("just below the last page", end - 1),
        ("without the last page", end - psize),
        ("one page", psize),
        ("one byte", 1),
        ("the meta pages only", 2 * psize),
    ];
    for (what, len) in cuts {
        std::fs::write(&file, &pristine).unwrap();
        truncate(&file, len);
        let msg = expect_damaged(dir.path(), &file, "truncated");
        eprintln!("{what}: {msg}");
        if len >= 2 * psize {
            assert!(
                msg.contains(&format!(
                    "it is {len} bytes but its last page ends at {end}: the file is truncated"
                )),
                "{what}: {msg}"
            );
        }
    }
}

#[test]
fn zero_length_database_is_an_error_not_a_new_database() {
    let (dir, file) = populated();
    truncate(&file, 0);
    let msg = expect_damaged(dir.path(), &file, "it is empty (0 bytes)");
    eprintln!("{msg}");
    // ... also without a lock file, and not modified.
    std::fs::remove_file(format!("{}-lock", file.display())).unwrap();
    expect_damaged(dir.path(), &file, "it is empty (0 bytes)");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
}

#[test]
fn garbage_and_bad_magic_are_refused() {
    let dir = tempdir();
    let file = dir.path().canonicalize().unwrap().join(DB_FILE_NAME);
    for len in [10usize, 100, 4096, 3 * 4096 + 17, 64 * 1024] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let msg = expect_damaged(dir.path(), &file, "");
        eprintln!("garbage of {len} bytes: {msg}");
        if len >= 20 {
            assert!(msg.contains("not an LMDB database (bad magic"), "{msg}");
        } else {
            assert!(msg.contains("shorter than LMDB's two meta pages"), "{msg}");
        }
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "the file was modified"
        );
    }
    // A real database whose first magic is damaged, then one whose second is.
    let (dir, file) = populated();
    let pristine = std::fs::read(&file).unwrap();
    let (psize, _) = meta(&file);
    let mut bad = pristine.clone();
    bad[16] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    let msg = expect_damaged(dir.path(), &file, "not an LMDB database (bad magic");
    eprintln!("{msg}");
    let mut bad = pristine.clone();
    bad[psize as usize + 16] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    let msg = expect_damaged(dir.path(), &file, "second meta page has a bad magic");
    eprintln!("{msg}");
    // A wrong data format version.
    let mut bad = pristine;
    bad[20] = 7;
    std::fs::write(&file, &bad).unwrap();
    let msg = expect_damaged(dir.path(), &file, "data format version 7");
    eprintln!("{msg}");
}

#[test]
fn stale_or_garbage_lock_file_is_reinitialised() {
    let (dir, file) = populated();
    let lock = PathBuf::from(format!("{}-lock", file.display()));
    let pristine_lock = std::fs::read(&lock).unwrap();
    let variants: [(&str, Vec<u8>); 4] = [
        ("stale", pristine_lock.clone()),
        ("empty", Vec::new()),
        (
            "truncated",
            pristine_lock[..pristine_lock.len() / 3].to_vec(),
        ),
        ("garbage", (0..9000).map(|i| (i * 31 + 5) as u8).collect()),
    ];
    let mut expected = 42;
    for (what, bytes) in variants {
        std::fs::write(&lock, &bytes).unwrap();
        assert_eq!(probe(dir.path()), Ok(expected), "{what} lock file");
        // The child added a record; the next one sees it.
        expected += 1;
        let s = LmdbState::open(dir.path()).unwrap();
        s.remove_container("child-added").unwrap();
        s.close().unwrap();
        expected -= 1;
    }
    // A directory in place of the lock file: a damaged-state error (so `system reset --force` takes its
    // way around the state), not a crash.
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let (kind, msg) = probe(dir.path()).expect_err("opened with a directory as lock file");
    assert_eq!(kind, format!("{:?}", ErrorKind::Corrupt), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("-lock is not a regular file"), "{msg}");
}

/// LMDB does not write pages that a transaction allocated and freed again, so a healthy file can end before
/// the last page its meta records; those pages are free, and the check must accept such a file.
#[test]
fn healthy_file_shorter_than_its_last_page_is_accepted() {
    let (dir, file) = populated();
    let mut short = None;
    {
        // SAFETY (test): nothing else has the file open.
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .max_dbs(16)
                .map_size(1 << 26)
                .flags(heed::EnvFlags::NO_SUB_DIR)
                .open(&file)
                .unwrap()
        };
        // Transactions that add and delete records of varying sizes in a scratch table until one leaves
        // freed (unwritten) pages at the end of the file.
        for round in 0u32..300 {
            let mut wtxn = env.write_txn().unwrap();
            let db: heed::Database<heed::types::Bytes, heed::types::Bytes> =
                env.create_database(&mut wtxn, Some("scratch")).unwrap();
            let n = 50 + (round * 37) % 400;
            for i in 0..n {
                let value = vec![7u8; (100 + (i * 13) % 3000) as usize];
                db.put(&mut wtxn, &(round * 1000 + i).to_be_bytes(), &value)
                    .unwrap();
            }
            for i in (0..n).filter(|i| (i + round) % 3 != 0) {
                db.delete(&mut wtxn, &(round * 1000 + i).to_be_bytes())
                    .unwrap();
            }
            if round % 5 == 0 {
                db.clear(&mut wtxn).unwrap();
            }
            wtxn.commit().unwrap();
            let (psize, last) = meta(&file);
            let len = std::fs::metadata(&file).unwrap().len();
            if len < (last + 1) * psize {
                short = Some((len, psize, last));
                break;
            }
        }
        env.prepare_for_closing().wait();
    }
    let (len, psize, last) = short.expect("no transaction left free pages at the end of the file");
    eprintln!("file {len} bytes, last page ends at {}", (last + 1) * psize);
    assert_eq!(probe(dir.path()), Ok(42));
    // Cutting into the pages in use is still caught.
    truncate(&file, len - psize);
    expect_damaged(dir.path(), &file, "the file is truncated");
}

/// The check is repeated on every open, also when the environment is already open in this process.
#[test]
fn truncation_after_open_is_caught_by_the_next_open() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let (dir, file) = populated();
    let s = LmdbState::open(dir.path()).unwrap();
    assert_eq!(s.all_containers().unwrap().len(), 41);
    let (psize, _) = meta(&file);
    truncate(&file, 3 * psize);
    let err = LmdbState::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("the file is truncated"), "{err}");
    // `s` is not used again: its map now reaches beyond the end of the file (the documented residual race).
    drop(s);
}

#[test]
fn a_creation_cut_short_is_created_again() {
    // LMDB writes both initial meta pages (transaction 0) when it creates the file; a process
    // killed in that write leaves only the first. Such a file holds no data, so it is replaced
    // by a new database instead of being refused until a reset.
    let (dir, file) = populated();
    let (psize, _) = meta(&file);
    let mut first = std::fs::read(&file).unwrap()[..psize as usize].to_vec();
    first[136..144].copy_from_slice(&1u64.to_ne_bytes()); // last page: the second meta page
    first[144..152].copy_from_slice(&0u64.to_ne_bytes()); // transaction 0
    std::fs::write(&file, &first).unwrap();
    assert_eq!(probe(dir.path()), Ok(0));
    // A real database cut to its first page (a later transaction in that meta) is still refused.
    let (dir, file) = populated();
    truncate(&file, psize);
    expect_damaged(dir.path(), &file, "the file is truncated");
}
