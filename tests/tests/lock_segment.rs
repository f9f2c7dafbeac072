//! The lock segment end to end: locks leaked by killed creators are reclaimed by the next
//! command, and a truncated, overwritten or removed segment gives a clear error naming it (never
//! a signal) with `system renumber` and `system reset --force` as ways back; a reset removes the
//! segment for good, also when containers were running.

mod common;

#[allow(clippy::unwrap_used, clippy::expect_used)]
mod lock_segment {
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::Output;
    use std::time::Duration;

    use rpod_lock::LockManager;

    use super::common::{available, Sandbox};

    fn segment(sb: &Sandbox) -> String {
        format!("/dev/shm{}", sb.lock_name)
    }

    /// The segment's file, open for writing (to damage it).
    fn segment_file(sb: &Sandbox) -> std::fs::File {
        std::fs::OpenOptions::new()
            .write(true)
            .open(segment(sb))
            .unwrap()
    }

    /// A root with a running container, a created one and a pod: 4 objects, 4 locks.
    fn populated() -> Sandbox {
        let sb = Sandbox::new();
        let out = sb.run_ctr(&["-d"], &["sleep", "100"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = sb.cmd();
        c.arg("create").arg("--rootfs").arg(&sb.rootfs).arg("true");
        assert!(c.output().unwrap().status.success());
        sb.ok(&["pod", "create", "--name", "p"]);
        assert_eq!(sb.held_locks(), 4);
        sb
    }

    /// Fails cleanly (an exit code, not a signal) with a message naming the segment.
    fn assert_clean_failure(sb: &Sandbox, out: &Output, what: &str) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code().is_some_and(|c| c != 0),
            "{what}: {:?} {stderr}",
            out.status
        );
        assert!(stderr.contains(&segment(sb)), "{what}: {stderr}");
        assert!(stderr.contains("rpod system renumber"), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }

    /// `system reset --force` works and leaves no segment behind, also after conmon's cleanup
    /// commands for the containers it stopped have run.
    fn assert_reset_removes_everything(sb: &Sandbox) {
        let out = sb.run(&["system", "reset", "--force"]);
        assert!(
            out.status.success(),
            "reset: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
        // What conmon runs when a container the reset stopped exits, maybe only now: it must not
        // create the root again.
        let out = sb.run(&["container", "cleanup", "0123456789ab"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!Path::new(&segment(sb)).exists(), "segment left behind");
        assert!(
            !sb.path("root/libpod/rpod_state.mdb").exists(),
            "database left behind"
        );
        assert!(!sb.tmp.path().exists(), "tmp dir left behind");
    }

    #[test]
    fn locks_of_killed_creators_are_reclaimed_by_the_next_command() {
        if !available() {
            return;
        }
        let sb = populated();
        // What `pod create` killed between allocating and recording leaves behind.
        let table = rpod_lock::ShmLockManager::open(&sb.lock_name, 2048).unwrap();
        for _ in 0..3 {
            let _ = table.allocate().unwrap();
        }
        drop(table);
        let out = sb.run(&["ps", "-a"]);
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches("no container or pod records it").count(),
            3,
            "{stderr}"
        );
        assert_eq!(sb.held_locks(), 4);
        assert_reset_removes_everything(&sb);
    }

    #[test]
    fn truncated_segment() {
        if !available() {
            return;
        }
        let sb = populated();
        segment_file(&sb).set_len(1000).unwrap();
        let out = sb.run(&["ps", "-a"]);
        assert_clean_failure(&sb, &out, "truncated");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is 1000 bytes"));
        // Renumber recreates it and keeps every object.
        sb.ok(&["system", "renumber"]);
        assert_eq!(sb.held_locks(), 4);
        assert_eq!(sb.ps_json().len(), 3);
        // Emptied (the renumbered segment is a new file), as a creator killed before sizing it
        // leaves it: after the wait for that creator, the segment is initialised again and
        // every recorded ID reserved; reset still works.
        segment_file(&sb).set_len(0).unwrap();
        let out = sb.run(&["ps", "-a"]);
        assert!(
            out.status.success(),
            "empty: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("initialising it again"));
        assert_eq!(sb.held_locks(), 4);
        assert_reset_removes_everything(&sb);
    }

    #[test]
    fn overwritten_segment() {
        if !available() {
            return;
        }
        let sb = populated();
        segment_file(&sb).write_all_at(&[0xa5; 4096], 0).unwrap();
        let out = sb.run(&["ps", "-a"]);
        assert_clean_failure(&sb, &out, "garbage");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not an rpod lock segment"));
        assert_reset_removes_everything(&sb);
    }

    #[test]
    fn removed_segment() {
        if !available() {
            return;
        }
        let sb = populated();
        std::fs::remove_file(segment(&sb)).unwrap();
        // The next command recreates it and reserves every recorded lock again.
        let out = sb.run(&["ps", "-a"]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("the lock table was missing"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sb.held_locks(), 4);
        // New objects get fresh IDs, not recorded ones.
        sb.ok(&["pod", "create", "--name", "q"]);
        assert_eq!(sb.held_locks(), 6);
        std::fs::remove_file(segment(&sb)).unwrap();
        assert_reset_removes_everything(&sb);
    }
}
