//! Persistent network namespaces: an nsfs bind mount on a file, like `ip netns add`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::fsutil::{mkdir_p, random_bytes};
use crate::NetError;

/// `statfs` magic of the nsfs file system.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn netns_name() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "rpod-{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

fn ns_err(what: &str, path: &Path, errno: Errno) -> NetError {
    NetError::Netns {
        what: what.to_string(),
        path: path.to_path_buf(),
        errno,
    }
}

/// Create a new network namespace and pin it on `<dir>/rpod-<uuid>` (a bind mount of the
/// nsfs file). The namespace is created on a short-lived dedicated thread, so no thread of
/// the caller ever changes namespace. `dir` is created (0755) if needed; it is not made a
/// shared mount. On failure the file is removed.
pub fn create_netns(dir: &Path) -> Result<PathBuf, NetError> {
    mkdir_p(dir, 0o755)?;
    let path = dir.join(netns_name());
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(|e| NetError::io("creating netns file", &path, e))?;
    let target = path.clone();
    let joined = std::thread::Builder::new()
        .name("rpod-netns".into())
        .spawn(move || -> Result<(), NetError> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| ns_err("creating network namespace for", &target, e))?;
            let tid = nix::unistd::gettid();
            let src = format!("/proc/self/task/{tid}/ns/net");
            mount(
                Some(src.as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| ns_err("bind-mounting network namespace onto", &target, e))
        })
        .map_err(|e| NetError::io("starting netns thread for", &path, e))?
        .join();
    let result = match joined {
        Ok(r) => r,
        Err(_) => Err(ns_err("netns thread panicked for", &path, Errno::EIO)),
    };
    match result {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "created network namespace");
            Ok(path)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Unmount (lazily) and unlink a netns file. Idempotent: not mounted or missing is fine.
pub fn remove_netns(path: &Path) -> Result<(), NetError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(ns_err("unmounting network namespace", path, e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io("removing netns file", path, e)),
    }
}

/// Whether `path` currently is an nsfs mount (a pinned namespace).
pub fn is_netns_mounted(path: &Path) -> bool {
    // The field's integer type differs between targets.
    #[allow(clippy::useless_conversion)]
    match nix::sys::statfs::statfs(path) {
        Ok(st) => i64::from(st.filesystem_type().0) == NSFS_MAGIC,
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn name_shape() {
        let n = netns_name();
        let parts: Vec<&str> = n.trim_start_matches("rpod-").split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, vec![8, 4, 4, 4, 12]);
    }

    #[test]
    fn remove_missing_is_ok() {
        let td = tempfile::tempdir().unwrap();
        let p = td.path().join("nope");
        remove_netns(&p).unwrap();
        assert!(!is_netns_mounted(&p));
        std::fs::write(&p, b"").unwrap();
        assert!(!is_netns_mounted(&p));
        remove_netns(&p).unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn create_and_remove_as_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: not root");
            return;
        }
        let td = tempfile::tempdir().unwrap();
        let p = create_netns(&td.path().join("ns")).unwrap();
        assert!(is_netns_mounted(&p));
        remove_netns(&p).unwrap();
        assert!(!p.exists());
        assert!(!is_netns_mounted(&p));
        remove_netns(&p).unwrap();
    }
}
