//! One process-wide inotify instance, with one long-lived watch per directory
//! (exit dirs, log dirs), read by one background thread.
//!
//! Closing an inotify fd costs 8–28 ms (fsnotify SRCU teardown), so the fd is
//! never closed: every waiter in the process shares it. Waiters take a
//! generation snapshot, check their condition, and only then block until the
//! generation changes, so no event can be lost between check and wait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::error::{OciError, Result};

struct State {
    dirs: HashMap<PathBuf, WatchDescriptor>,
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
                            st.dirs.retain(|_, wd| *wd != ev.wd);
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

    /// Make sure every directory in `dirs` is watched and return the current
    /// generation. Check your condition after this call.
    pub(crate) fn snapshot(&self, dirs: &[&Path]) -> Result<u64> {
        let mut st = self.lock();
        for dir in dirs {
            // Re-adding is idempotent for the same inode and cheap; doing it
            // every time also covers a directory removed and re-created at
            // the same path before its IN_IGNORED event was processed.
            let wd = self
                .inotify
                .add_watch(
                    *dir,
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
                })?;
            st.dirs.insert(dir.to_path_buf(), wd);
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

/// Wait until `check` returns `Some`, re-checking whenever something changes
/// in one of `dirs`. `None` after `deadline`.
pub(crate) fn wait_for<T>(
    dirs: &[&Path],
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let w = watcher()?;
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
