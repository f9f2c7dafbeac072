//! One process-wide inotify instance, with one long-lived watch per directory
//! (exit dirs, log dirs), read by one background thread.
//!
//! Closing an inotify fd costs 8–28 ms (fsnotify SRCU teardown), so the fd is
//! never closed: every waiter in the process shares it. The kernel still closes
//! it when the process exits, which delays the exit (and whoever waits for it)
//! by the same amount, so [`wait_for`] only creates the instance when its
//! condition does not already hold. Waiters take a
//! generation snapshot, check their condition, and only then block until the
//! generation changes, so no event can be lost between check and wait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::error::{OciError, Result};

struct Watched {
    /// The current watch; `None` after the kernel dropped it (`IN_IGNORED`: the directory was
    /// removed), until the next `snapshot` adds it again.
    wd: Option<WatchDescriptor>,
    /// Live [`WatchGuard`]s for this directory; the last one removes the watch and the entry.
    users: usize,
}

struct State {
    dirs: HashMap<PathBuf, Watched>,
    generation: u64,
}

pub(crate) struct Watcher {
    inotify: Inotify,
    state: Mutex<State>,
    cond: Condvar,
}

static WATCHER: OnceLock<std::result::Result<Arc<Watcher>, Errno>> = OnceLock::new();

/// The process-wide watcher, started on first use.
pub(crate) fn watcher() -> Result<Arc<Watcher>> {
    let w = WATCHER.get_or_init(|| {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
        let w = Arc::new(Watcher {
            inotify,
            state: Mutex::new(State {
                dirs: HashMap::new(),
                generation: 0,
            }),
            cond: Condvar::new(),
        });
        let bg = Arc::clone(&w);
        std::thread::Builder::new()
            .name("rpod-oci-inotify".into())
            .spawn(move || bg.run())
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EAGAIN as i32)))?;
        Ok(w)
    });
    match w {
        Ok(w) => Ok(Arc::clone(w)),
        Err(e) => Err(OciError::sys("starting the inotify watcher", *e)),
    }
}

impl Watcher {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent
        // (it is only a map and a counter), so recover from poisoning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        loop {
            match self.inotify.read_events() {
                Ok(events) => {
                    let mut st = self.lock();
                    for ev in &events {
                        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                            // Keep the entry (and its users): only the watch is gone.
                            for w in st.dirs.values_mut() {
                                if w.wd == Some(ev.wd) {
                                    w.wd = None;
                                }
                            }
                        }
                    }
                    st.generation = st.generation.wrapping_add(1);
                    drop(st);
                    self.cond.notify_all();
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("inotify watcher stopped: {e}");
                    // Wake everyone so that they can notice their deadline.
                    let mut st = self.lock();
                    st.generation = st.generation.wrapping_add(1);
                    drop(st);
                    self.cond.notify_all();
                    return;
                }
            }
        }
    }

    fn add_watch(&self, dir: &Path) -> Result<WatchDescriptor> {
        self.inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_ONLYDIR,
            )
            .map_err(|e| OciError::Io {
                context: "watching directory",
                path: dir.to_path_buf(),
                source: std::io::Error::from(e),
            })
    }

    /// Watch `dirs` until the returned guard is dropped. The last guard of a directory removes
    /// its watch: a removed watch is torn down in the background (the kernel's fsnotify
    /// reaper), so a process that exits a few milliseconds later (`rpod run` after cleaning up)
    /// no longer waits for that teardown when the kernel closes the inotify fd.
    pub(crate) fn acquire(self: &Arc<Self>, dirs: &[&Path]) -> Result<WatchGuard> {
        let mut guard = WatchGuard {
            watcher: Arc::clone(self),
            dirs: Vec::with_capacity(dirs.len()),
        };
        for dir in dirs {
            // Under the lock, so that no other guard's release removes the watch between our
            // add_watch and our count (rm_watch and add_watch of one directory never interleave).
            let mut st = self.lock();
            let wd = self.add_watch(dir)?;
            let entry = st
                .dirs
                .entry(dir.to_path_buf())
                .or_insert(Watched { wd: None, users: 0 });
            entry.wd = Some(wd);
            entry.users += 1;
            drop(st);
            guard.dirs.push(dir.to_path_buf());
        }
        Ok(guard)
    }

    fn release(&self, dirs: &[PathBuf]) {
        let mut st = self.lock();
        for dir in dirs {
            let Some(w) = st.dirs.get_mut(dir) else {
                continue;
            };
            w.users = w.users.saturating_sub(1);
            if w.users == 0 {
                if let Some(wd) = w.wd {
                    // EINVAL: the watch is already gone (directory removed); nothing to undo.
                    let _ = self.inotify.rm_watch(wd);
                }
                st.dirs.remove(dir);
            }
        }
    }

    /// Make sure every directory in `dirs` (held by a [`WatchGuard`]) is watched and return the
    /// current generation. Check your condition after this call.
    pub(crate) fn snapshot(&self, dirs: &[&Path]) -> Result<u64> {
        let mut st = self.lock();
        for dir in dirs {
            // Re-adding is idempotent for the same inode and cheap; doing it every time also
            // covers a directory removed and re-created at the same path. The entry's users are
            // only ever changed by guards.
            let wd = self.add_watch(dir)?;
            if let Some(w) = st.dirs.get_mut(*dir) {
                w.wd = Some(wd);
            }
        }
        Ok(st.generation)
    }

    /// Block until the generation differs from `since` or `deadline` passes.
    /// Returns false on timeout.
    pub(crate) fn wait_change(&self, since: u64, deadline: Option<Instant>) -> bool {
        let mut st = self.lock();
        while st.generation == since {
            match deadline {
                None => {
                    st = self.cond.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    st = self
                        .cond
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

/// Keeps directories watched (see [`Watcher::acquire`]).
pub(crate) struct WatchGuard {
    watcher: Arc<Watcher>,
    dirs: Vec<PathBuf>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.watcher.release(&self.dirs);
    }
}

/// Wait until `check` returns `Some`, re-checking whenever something changes
/// in one of `dirs`. `None` after `deadline`.
pub(crate) fn wait_for<T>(
    dirs: &[&Path],
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    // Check before watching: most waits find their condition already true (an exit file conmon
    // wrote while the caller read the container's output), and a process that never watched
    // never pays the inotify teardown when it exits (8–28 ms, see the module docs), which
    // would otherwise be most of the gap between `rpod run` and a bare conmon + runc.
    if let Some(v) = check()? {
        return Ok(Some(v));
    }
    let w = watcher()?;
    let _watching = w.acquire(dirs)?;
    loop {
        let generation = w.snapshot(dirs)?;
        if let Some(v) = check()? {
            return Ok(Some(v));
        }
        if !w.wait_change(generation, deadline) {
            return check();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_watcher() -> Arc<Watcher> {
        Arc::new(Watcher {
            inotify: Inotify::init(InitFlags::IN_CLOEXEC).unwrap_or_else(|e| panic!("{e}")),
            state: Mutex::new(State {
                dirs: HashMap::new(),
                generation: 0,
            }),
            cond: Condvar::new(),
        })
    }

    fn users(w: &Watcher, dir: &Path) -> Option<usize> {
        w.lock().dirs.get(dir).map(|d| d.users)
    }

    #[test]
    fn last_guard_removes_the_watch() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let w = fresh_watcher();
        let a = w.acquire(&[d.path()]).unwrap_or_else(|e| panic!("{e}"));
        let b = w.acquire(&[d.path()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(users(&w, d.path()), Some(2));
        drop(a);
        assert_eq!(users(&w, d.path()), Some(1));
        drop(b);
        assert_eq!(users(&w, d.path()), None);
        // Watching again after the removal works.
        let _c = w.acquire(&[d.path()]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(users(&w, d.path()), Some(1));
    }

    #[test]
    fn a_removed_directory_keeps_its_users() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = d.path().join("exits");
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let w = fresh_watcher();
        let bg = Arc::clone(&w);
        // Runs until the test process ends (it blocks reading the fresh inotify fd).
        std::thread::spawn(move || bg.run());
        let a = w.acquire(&[&dir]).unwrap_or_else(|e| panic!("{e}"));
        let b = w.acquire(&[&dir]).unwrap_or_else(|e| panic!("{e}"));
        let generation = w.snapshot(&[&dir]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let deadline = Some(Instant::now() + std::time::Duration::from_secs(5));
        // IN_DELETE_SELF and IN_IGNORED may come in separate reads.
        let mut since = generation;
        while w
            .lock()
            .dirs
            .get(dir.as_path())
            .is_some_and(|e| e.wd.is_some())
        {
            assert!(w.wait_change(since, deadline), "no IN_IGNORED");
            since = w.lock().generation;
        }
        assert_eq!(users(&w, &dir), Some(2));
        drop(a);
        assert_eq!(users(&w, &dir), Some(1));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        w.snapshot(&[&dir]).unwrap_or_else(|e| panic!("{e}"));
        assert!(w
            .lock()
            .dirs
            .get(dir.as_path())
            .is_some_and(|e| e.wd.is_some()));
        drop(b);
        assert_eq!(users(&w, &dir), None);
    }

    #[test]
    fn a_condition_that_holds_needs_no_watch() {
        // A directory that cannot be watched: only the check-first path can succeed.
        let missing = Path::new("/nonexistent/rpod-watch-test");
        let got = wait_for(&[missing], None, || Ok(Some(7))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, Some(7));
        assert!(wait_for(&[missing], None, || Ok(None::<i32>)).is_err());
    }
}
