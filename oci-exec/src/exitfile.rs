//! conmon exit files (`<exit-dir>/<id>`) and waiting for them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{OciError, Result};

/// What conmon recorded about a container's exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code: the process' status, 128+signal, or -1 when conmon did not know.
    pub code: i32,
    /// When the exit file was written (its ctime), i.e. the finished time.
    pub finished: SystemTime,
    /// Whether `<bundle>/oom` exists (the container was OOM-killed).
    pub oom_killed: bool,
}

/// Path of the exit file of container `id`.
pub fn exit_file_path(exit_dir: &Path, id: &str) -> PathBuf {
    exit_dir.join(id)
}

/// Parse exit file content (decimal text, no newline; whitespace tolerated).
pub fn parse_exit_code(content: &str) -> Option<i32> {
    content.trim().parse::<i32>().ok()
}

/// Read `<exit_dir>/<id>`; `Ok(None)` when it does not exist yet.
/// `bundle`, when given, is checked for the `oom` flag file.
pub fn read_exit_file(
    exit_dir: &Path,
    id: &str,
    bundle: Option<&Path>,
) -> Result<Option<ExitInfo>> {
    let path = exit_file_path(exit_dir, id);
    let content = match std::fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OciError::io("reading exit file", path, e)),
    };
    let code = parse_exit_code(&content).ok_or_else(|| OciError::BadExitFile {
        path: path.clone(),
        content: content.clone(),
    })?;
    let finished = match std::fs::metadata(&path) {
        Ok(md) => {
            let secs = u64::try_from(md.ctime()).unwrap_or(0);
            let nanos = u32::try_from(md.ctime_nsec()).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
        }
        Err(_) => SystemTime::now(),
    };
    let oom_killed = bundle.is_some_and(|b| b.join("oom").exists());
    Ok(Some(ExitInfo {
        code,
        finished,
        oom_killed,
    }))
}

/// Wait for conmon to write `<exit_dir>/<id>`, using the process-wide inotify
/// watcher (one long-lived watch on `exit_dir`; no polling). Returns the exit
/// code, or `None` after `timeout` (`None` = wait forever).
pub fn wait_exit(exit_dir: &Path, id: &str, timeout: Option<Duration>) -> Result<Option<i32>> {
    Ok(wait_exit_info(exit_dir, id, None, timeout)?.map(|i| i.code))
}

/// Like [`wait_exit`] but returns the full [`ExitInfo`].
pub fn wait_exit_info(
    exit_dir: &Path,
    id: &str,
    bundle: Option<&Path>,
    timeout: Option<Duration>,
) -> Result<Option<ExitInfo>> {
    // A timeout beyond what the clock can represent means no timeout.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    crate::watch::wait_for(&[exit_dir], deadline, || {
        read_exit_file(exit_dir, id, bundle)
    })
}

/// Move a stale exit file out of the way (`<id>` → `<id>-old`, as libpod's
/// `removeConmonFiles` does) so that the next run's exit can be observed.
pub fn retire_exit_file(exit_dir: &Path, id: &str) -> Result<()> {
    let path = exit_file_path(exit_dir, id);
    let old = exit_dir.join(format!("{id}-old"));
    match std::fs::rename(&path, &old) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OciError::io("renaming exit file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(parse_exit_code("0"), Some(0));
        assert_eq!(parse_exit_code("137"), Some(137));
        assert_eq!(parse_exit_code("-1"), Some(-1));
        assert_eq!(parse_exit_code("x"), None);
    }

    #[test]
    fn wait_sees_rename() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = d.path().to_path_buf();
        assert_eq!(
            wait_exit(&dir, "c", Some(Duration::from_millis(20))).unwrap_or_else(|e| panic!("{e}")),
            None
        );
        let dir2 = dir.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let tmp = dir2.join("c.XXXX");
            std::fs::write(&tmp, "42").unwrap_or_else(|e| panic!("{e}"));
            std::fs::rename(&tmp, dir2.join("c")).unwrap_or_else(|e| panic!("{e}"));
        });
        let start = Instant::now();
        let code =
            wait_exit(&dir, "c", Some(Duration::from_secs(5))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, Some(42));
        assert!(start.elapsed() < Duration::from_secs(2));
        let _ = t.join();
        retire_exit_file(&dir, "c").unwrap_or_else(|e| panic!("{e}"));
        assert!(dir.join("c-old").exists());
    }
}
