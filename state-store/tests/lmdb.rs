//! LMDB backend specifics: persistence, environment sharing, map growth, damaged files, several processes.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpod_state::{
    ContainerConfig, ContainerRecord, ErrorKind, LmdbState, PodConfig, PodRecord, State,
    DB_FILE_NAME, INITIAL_MAP_SIZE,
};

const CHILD_ENV: &str = "RPOD_STATE_TEST_CHILD";

fn fast_tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn ctr(id: &str, name: &str) -> ContainerRecord {
    ContainerRecord::new(ContainerConfig::new(id, name))
}

/// A container whose env carries `payload` bytes, so that it can be checked for completeness.
fn big_ctr(id: &str, payload: usize) -> ContainerRecord {
    let mut c = ContainerConfig::new(id, format!("name-{id}"));
    c.env = vec![
        format!("PAYLOAD={}", "x".repeat(payload)),
        format!("ID={id}"),
    ];
    c.command = vec!["/bin/sleep".into(), "1000".into()];
    ContainerRecord::new(c)
}

fn assert_complete(rec: &ContainerRecord, payload: usize) {
    let id = rec.id();
    assert_eq!(rec.name(), format!("name-{id}"));
    assert_eq!(rec.config.env.len(), 2, "{id}");
    assert_eq!(rec.config.env[0].len(), "PAYLOAD=".len() + payload, "{id}");
    assert_eq!(rec.config.env[1], format!("ID={id}"));
    assert_eq!(
        rec.config.command,
        vec!["/bin/sleep".to_string(), "1000".to_string()]
    );
}

#[test]
fn data_persists_across_close_and_reopen() {
    let dir = fast_tempdir();
    {
        let s = LmdbState::open(dir.path()).unwrap();
        s.add_pod(&PodRecord::new(PodConfig::new("p1", "pod")))
            .unwrap();
        let mut c = ContainerConfig::new("c1", "web");
        c.pod = Some("p1".into());
        s.add_container_to_pod("p1", &ContainerRecord::new(c))
            .unwrap();
        s.add_container(&ctr("c2", "db")).unwrap();
        s.close().unwrap();
        assert_eq!(s.container("c1").unwrap_err().kind(), ErrorKind::DbClosed);
    }
    let path = dir.path().join(DB_FILE_NAME);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "database file mode");
    assert!(dir.path().join(format!("{DB_FILE_NAME}-lock")).exists());

    let s = LmdbState::open(dir.path()).unwrap();
    assert_eq!(s.lookup_container("web").unwrap().id(), "c1");
    assert_eq!(s.pod_container_ids("p1").unwrap(), vec!["c1".to_string()]);
    assert_eq!(s.all_containers().unwrap().len(), 2);
    assert_eq!(s.path(), path.canonicalize().unwrap());
}

#[test]
fn two_handles_share_one_environment() {
    let dir = fast_tempdir();
    let a = LmdbState::open(dir.path()).unwrap();
    // A different spelling of the same directory still maps to the same environment.
    let b = LmdbState::open(dir.path().join(".")).unwrap();
    a.add_container(&ctr("c1", "one")).unwrap();
    assert!(b.has_container("c1").unwrap());
    b.add_container(&ctr("c2", "two")).unwrap();
    assert_eq!(a.all_containers().unwrap().len(), 2);

    // Namespaces are per handle.
    let b = b.with_namespace("other");
    assert!(!b.has_container("c1").unwrap());
    assert!(a.has_container("c1").unwrap());

    // Closing one handle leaves the other working; a third open reuses the environment.
    a.close().unwrap();
    assert!(b.all_containers().unwrap().is_empty());
    assert_eq!(b.view("").unwrap().all_containers().unwrap().len(), 2);
    let c = LmdbState::open_file(dir.path().join(DB_FILE_NAME)).unwrap();
    assert_eq!(c.all_containers().unwrap().len(), 2);

    // Handles can be used from several threads at once.
    let shared: std::sync::Arc<dyn State> = std::sync::Arc::new(c);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = shared.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    s.add_container(&ctr(&format!("t{t}-{i}"), &format!("n{t}-{i}")))
                        .unwrap();
                    assert!(s.lookup_container(&format!("t{t}-{i}")).is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(shared.all_containers().unwrap().len(), 202);
}

#[test]
fn map_grows_when_full() {
    let dir = fast_tempdir();
    let s = LmdbState::open(dir.path()).unwrap();
    assert_eq!(s.map_size().unwrap(), INITIAL_MAP_SIZE);
    let payload = 64 * 1024;
    let n = 2 * INITIAL_MAP_SIZE / payload; // twice what the initial map holds
    for i in 0..n {
        s.add_container(&big_ctr(&format!("{i:08x}"), payload))
            .unwrap();
    }
    assert!(s.map_size().unwrap() > INITIAL_MAP_SIZE, "map did not grow");
    drop(s);
    let s = LmdbState::open(dir.path()).unwrap();
    let all = s.all_containers().unwrap();
    assert_eq!(all.len(), n);
    for rec in &all {
        assert_complete(rec, payload);
    }
    // A single record larger than the whole initial map also fits.
    s.add_container(&big_ctr("huge", 3 * INITIAL_MAP_SIZE))
        .unwrap();
    assert_complete(&s.container("huge").unwrap(), 3 * INITIAL_MAP_SIZE);
}

fn expect_damaged(dir: &Path) -> String {
    let err = LmdbState::open(dir).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(
            &dir.join(DB_FILE_NAME)
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        ),
        "{msg}"
    );
    assert!(msg.contains("rpod system reset --force"), "{msg}");
    msg
}

#[test]
fn garbage_file_gives_a_clean_error() {
    for len in [10usize, 4096, 3 * 4096 + 17] {
        let dir = fast_tempdir();
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(dir.path().join(DB_FILE_NAME), &bytes).unwrap();
        expect_damaged(dir.path());
        // The file was not modified.
        assert_eq!(std::fs::read(dir.path().join(DB_FILE_NAME)).unwrap(), bytes);
    }
}

#[test]
fn zero_length_file_is_refused() {
    // Only a missing file is a new database: an empty one lost its records (see tests/damaged.rs).
    let dir = fast_tempdir();
    std::fs::write(dir.path().join(DB_FILE_NAME), b"").unwrap();
    let msg = expect_damaged(dir.path());
    assert!(msg.contains("it is empty"), "{msg}");
}

#[test]
fn directory_in_place_of_the_file_is_refused() {
    let dir = fast_tempdir();
    std::fs::create_dir(dir.path().join(DB_FILE_NAME)).unwrap();
    expect_damaged(dir.path());
}

/// The database file in `dir`, opened with heed directly.
fn raw_env(dir: &Path) -> heed::Env {
    let path = dir.join(DB_FILE_NAME);
    unsafe {
        heed::EnvOpenOptions::new()
            .max_dbs(16)
            .map_size(1 << 24)
            .flags(heed::EnvFlags::NO_SUB_DIR)
            .open(&path)
            .unwrap()
    }
}

/// A table of the database file as raw bytes.
type Raw = heed::Database<heed::types::Bytes, heed::types::Bytes>;

/// Writes to the database file in `dir` behind rpod's back: `edit` gets the raw environment and
/// a write transaction, which is then committed and the environment closed.
fn edit_raw(dir: &Path, edit: impl FnOnce(&heed::Env, &mut heed::RwTxn)) {
    let env = raw_env(dir);
    let mut wtxn = env.write_txn().unwrap();
    edit(&env, &mut wtxn);
    wtxn.commit().unwrap();
    env.prepare_for_closing().wait();
}

/// Sets `key` to `value` in rpod's (existing) table `table`.
fn put_raw(env: &heed::Env, wtxn: &mut heed::RwTxn, table: &str, key: &[u8], value: &[u8]) {
    let db: Raw = env.open_database(wtxn, Some(table)).unwrap().unwrap();
    db.put(wtxn, key, value).unwrap();
}

#[test]
fn foreign_lmdb_file_is_refused() {
    let dir = fast_tempdir();
    edit_raw(dir.path(), |env, wtxn| {
        let db: heed::Database<heed::types::Str, heed::types::Str> =
            env.create_database(wtxn, None).unwrap();
        db.put(wtxn, "someone", "else").unwrap();
    });
    let msg = expect_damaged(dir.path());
    assert!(msg.contains("another program"), "{msg}");
}

#[test]
fn json_database_of_rpod_state_1_still_reads_and_is_marked_upgraded() {
    let dir = fast_tempdir();
    let mut rec = big_ctr("c1", 10);
    rec.state.exit_code = 3;
    {
        let s = LmdbState::open(dir.path()).unwrap();
        s.add_container(&rec).unwrap();
    }
    // Turn it into what rpod-state/1 wrote: JSON records and the old marker.
    edit_raw(dir.path(), |env, wtxn| {
        let config = serde_json::to_vec(&rec.config).unwrap();
        put_raw(env, wtxn, "ctr-config", b"c1", &config);
        let state = serde_json::to_vec(&rec.state).unwrap();
        put_raw(env, wtxn, "ctr-state", b"c1", &state);
        put_raw(env, wtxn, "meta", b"schema", b"rpod-state/1");
    });
    {
        let s = LmdbState::open(dir.path()).unwrap();
        let got = s.container("c1").unwrap();
        assert_eq!(got.config, rec.config);
        assert_eq!(got.state.exit_code, 3);
        // Saving writes the compact form, which reads back the same.
        s.save_container("c1", &got.state).unwrap();
        assert_eq!(s.container("c1").unwrap().state, got.state);
        s.close().unwrap();
    }
    let env = raw_env(dir.path());
    let rtxn = env.read_txn().unwrap();
    let meta: Raw = env.open_database(&rtxn, Some("meta")).unwrap().unwrap();
    assert_eq!(
        meta.get(&rtxn, b"schema").unwrap(),
        Some(&b"rpod-state/2"[..])
    );
    let state: Raw = env
        .open_database(&rtxn, Some("ctr-state"))
        .unwrap()
        .unwrap();
    assert_eq!(
        state
            .get(&rtxn, b"c1")
            .unwrap()
            .and_then(|v| v.first().copied()),
        Some(1)
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = fast_tempdir();
    LmdbState::open(dir.path()).unwrap().close().unwrap();
    edit_raw(dir.path(), |env, wtxn| {
        put_raw(env, wtxn, "meta", b"schema", b"rpod-state/3")
    });
    let msg = expect_damaged(dir.path());
    assert!(msg.contains("rpod-state/3"), "{msg}");
}

#[test]
fn undecodable_record_is_skipped_by_listing() {
    let dir = fast_tempdir();
    {
        let s = LmdbState::open(dir.path()).unwrap();
        s.add_container(&ctr("c1", "good")).unwrap();
        s.add_container(&ctr("c2", "bad")).unwrap();
    }
    edit_raw(dir.path(), |env, wtxn| {
        put_raw(env, wtxn, "ctr-config", b"c2", b"{not json")
    });
    let s = LmdbState::open(dir.path()).unwrap();
    let all = s.all_containers().unwrap();
    assert_eq!(
        all.iter().map(|r| r.id().to_string()).collect::<Vec<_>>(),
        vec!["c1".to_string()]
    );
    let err = s.container("c2").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("config of container c2"), "{err}");
    assert!(err.to_string().contains(DB_FILE_NAME), "{err}");
    // Operations that need the damaged record report it rather than guess.
    assert_eq!(
        s.remove_container("c2").unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

/// Resident size in KiB of this process's mapping of the file with inode `ino` (from `/proc/self/smaps`).
fn mapped_rss_kib(ino: u64) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut ours = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_ascii_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode path".
            ours = line.split_ascii_whitespace().nth(4) == Some(ino.to_string().as_str());
        } else if ours && first == "Rss:" {
            total += line
                .split_ascii_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

/// Lists every container of `s`, checking each, and returns the peak resident size (KiB) of the
/// database mapping seen after the first `skip` records.
fn listing_peak(s: &LmdbState, ino: u64, payload: usize, skip: usize) -> (usize, u64) {
    let mut seen = 0;
    let mut peak = 0;
    s.for_each_container(&mut |rec| {
        assert_complete(&rec, payload);
        seen += 1;
        if seen > skip && seen % 100 == 0 {
            peak = peak.max(mapped_rss_kib(ino));
        }
        true
    })
    .unwrap();
    (seen, peak)
}

#[test]
fn long_listing_gives_mapped_pages_back() {
    use std::os::unix::fs::MetadataExt;
    const N: usize = 3000;
    const PAYLOAD: usize = 6000;
    let dir = fast_tempdir();
    let s = LmdbState::open(dir.path()).unwrap();
    for i in 0..N {
        s.add_container(&big_ctr(&format!("{i:06}"), PAYLOAD))
            .unwrap();
    }
    let file = dir.path().join(DB_FILE_NAME);
    let meta = std::fs::metadata(&file).unwrap();
    // Bigger than the initial map: the map grew (and moved) while adding.
    assert!(
        meta.len() > INITIAL_MAP_SIZE as u64,
        "the file should outgrow the initial map: {}",
        meta.len()
    );
    // Without giving pages back the whole file ends up resident; with it, a window of a few
    // hundred records (well under a quarter of the file). First on the handle that grew the
    // map (the writes mapped much of the file; the first release drops that)...
    let (seen, peak) = listing_peak(&s, meta.ino(), PAYLOAD, 300);
    assert_eq!(seen, N);
    assert!(
        peak > 0,
        "the database mapping was not found in /proc/self/smaps"
    );
    assert!(
        peak * 1024 < meta.len() / 4,
        "{peak} KiB of a {} byte file stayed resident during the listing",
        meta.len()
    );
    // ...then on a fresh environment, as in a new `rpod ps` process, from the first record.
    s.close().unwrap();
    let s = LmdbState::open(dir.path()).unwrap();
    let (seen, peak) = listing_peak(&s, meta.ino(), PAYLOAD, 0);
    assert_eq!(seen, N);
    assert!(
        peak * 1024 < meta.len() / 4,
        "{peak} KiB of a {} byte file stayed resident during the listing",
        meta.len()
    );
    // Reads after a listing still see every record.
    assert_complete(&s.container("002999").unwrap(), PAYLOAD);
    assert_eq!(s.all_containers().unwrap().len(), N);
}

// ----- several processes -----

fn child_cmd(test: &str, spec: String) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec);
    cmd
}

const PROCS: usize = 8;
const PER_PROC: usize = 250;
const MP_PAYLOAD: usize = 12 * 1024; // 2000 × 12 KiB > 16 MiB: the processes must grow the map together

#[test]
fn eight_processes_add_concurrently() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (dir, idx) = spec.split_once('|').unwrap();
        let s = LmdbState::open(dir).unwrap();
        for j in 0..PER_PROC {
            s.add_container(&big_ctr(&format!("p{idx}-{j:04}"), MP_PAYLOAD))
                .unwrap();
        }
        return;
    }
    let dir = fast_tempdir();
    let children: Vec<_> = (0..PROCS)
        .map(|i| {
            child_cmd(
                "eight_processes_add_concurrently",
                format!("{}|{i}", dir.path().display()),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child failed");
    }
    let s = LmdbState::open(dir.path()).unwrap();
    let all = s.all_containers().unwrap();
    assert_eq!(all.len(), PROCS * PER_PROC);
    let ids: BTreeSet<&str> = all.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), PROCS * PER_PROC);
    for rec in &all {
        assert_complete(rec, MP_PAYLOAD);
    }
    assert!(s.map_size().unwrap() > INITIAL_MAP_SIZE);
}

const READY_MARKER: &str = "RPOD-STATE-CHILD-READY";

#[test]
fn killed_writer_leaves_a_usable_database() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let s = LmdbState::open(&dir).unwrap();
        // Bounded, in case the parent dies before killing us.
        for j in 0..20_000 {
            s.add_container(&big_ctr(&format!("k{j:08}"), 3000))
                .unwrap();
            if j == 20 {
                // The harness prints "test <name> ... " without a newline first: the marker is matched anywhere.
                println!("\n{READY_MARKER}");
            }
        }
        return;
    }
    let dir = fast_tempdir();
    let mut child = child_cmd(
        "killed_writer_leaves_a_usable_database",
        dir.path().display().to_string(),
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines.next().expect("child ended early").unwrap();
        if line.contains(READY_MARKER) {
            break;
        }
        assert!(Instant::now() < deadline, "child never got ready");
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL, in the middle of the batch of adds
    child.wait().unwrap();

    let s = LmdbState::open(dir.path()).unwrap();
    let all = s.all_containers().unwrap();
    assert!(all.len() > 20, "only {} records", all.len());
    eprintln!("{} complete records after SIGKILL", all.len());
    for rec in &all {
        assert_complete(rec, 3000);
        assert_eq!(s.lookup_container(rec.name()).unwrap().id(), rec.id());
    }
    // The dead writer's lock is recovered: the database is writable.
    s.add_container(&big_ctr("after-crash", 10)).unwrap();
    assert_eq!(s.all_containers().unwrap().len(), all.len() + 1);
}

#[test]
fn db_config_is_recorded_and_checked() {
    let dir = fast_tempdir();
    let s = LmdbState::open(dir.path()).unwrap();
    assert_eq!(s.get_db_config().unwrap(), rpod_state::DbConfig::default());
    let ours = rpod_state::DbConfig {
        os: String::new(),
        static_dir: "/var/lib/rpod".into(),
        tmp_dir: "/run/rpod".into(),
        run_root: "/run/storage".into(),
        graph_root: "/var/lib/storage".into(),
        volume_path: String::new(),
    };
    s.validate_db_config(&ours).unwrap();
    let stored = s.get_db_config().unwrap();
    assert_eq!(stored.os, std::env::consts::OS);
    assert_eq!(stored.static_dir, "/var/lib/rpod");
    assert_eq!(stored.volume_path, "");
    // Same values (and unset ones) pass; a later volume path is recorded.
    let mut again = ours.clone();
    again.tmp_dir.clear();
    again.volume_path = "/var/lib/rpod/volumes".into();
    s.validate_db_config(&again).unwrap();
    assert_eq!(
        s.get_db_config().unwrap().volume_path,
        "/var/lib/rpod/volumes"
    );
    // A mismatch fails with libpod's message and writes nothing.
    let mut other = ours.clone();
    other.graph_root = "/elsewhere".into();
    other.volume_path = "/var/lib/rpod/volumes".into();
    let err = s.validate_db_config(&other).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DbMismatch);
    assert_eq!(
        err.to_string(),
        "database storage graph root directory (graphroot) \"/var/lib/storage\" does not match our storage graph \
         root directory (graphroot) \"/elsewhere\": database configuration mismatch"
    );
    assert_eq!(s.get_db_config().unwrap().graph_root, "/var/lib/storage");
    let _unused: PathBuf = s.path().to_path_buf();
}
