//! Atomic file writes: temp file in the same directory, fsync, rename, fsync of the directory.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::NetError;

/// `mkdir -p` with `mode` for the directories created (existing ones are left alone).
pub(crate) fn mkdir_p(dir: &Path, mode: u32) -> Result<(), NetError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| NetError::io("creating directory", dir, e))
}

/// Write `data` to `path` atomically with permission bits `mode`.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), NetError> {
    write_replace(path, data, mode, true)
}

/// [`write_atomic`] without the fsyncs: for a file that only has to survive the writer being
/// killed (the page cache keeps it), not the machine going down.
pub(crate) fn write_replace(
    path: &Path,
    data: &[u8],
    mode: u32,
    sync: bool,
) -> Result<(), NetError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rnd = [0u8; 6];
    random_bytes(&mut rnd);
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tmp-{suffix}"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| NetError::io("creating", &tmp, e))?;
        // The umask may have cleared bits: set the mode explicitly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| NetError::io("setting mode of", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| NetError::io("writing", &tmp, e))?;
        if sync {
            f.sync_all().map_err(|e| NetError::io("syncing", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| NetError::io("renaming into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    if !sync {
        return Ok(());
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Remove a file; a missing file is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), NetError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io("removing", path, e)),
    }
}

/// Fill `buf` with random bytes (falls back to time and pid if the kernel refuses, which only
/// weakens uniqueness of temporary names, never correctness).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
}
