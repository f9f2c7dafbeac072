//! Finding the OCI runtime and conmon binaries and asking them for their versions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::error::RuntimeError;

/// A binary rpod drives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binary {
    /// The name it is known by (`runc`, `crun`, `conmon`).
    pub name: String,
    /// The path found.
    pub path: PathBuf,
}

impl Binary {
    /// The first line of `<path> --version`, or `None` if it cannot be run.
    pub fn version(&self) -> Option<String> {
        let out = Command::new(&self.path)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().next().map(|l| l.trim().to_owned())
    }
}

/// The first candidate that exists and is not a directory (libpod's rule).
pub(crate) fn find_binary(
    what: &str,
    name: &str,
    candidates: &[String],
) -> Result<Binary, RuntimeError> {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.metadata().map(|m| !m.is_dir()).unwrap_or(false))
        .map(|p| Binary {
            name: name.to_owned(),
            path: p.to_owned(),
        })
        .ok_or_else(|| RuntimeError::BinaryNotFound {
            what: what.to_owned(),
            candidates: candidates.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_missing_and_directories() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let file = dir.path().join("bin");
        std::fs::write(&file, b"").ok();
        let c = vec![
            "/nonexistent/x".to_owned(),
            dir.path().display().to_string(),
            file.display().to_string(),
        ];
        let b = find_binary("conmon", "conmon", &c).ok();
        assert_eq!(b.map(|b| b.path), Some(file));
    }

    #[test]
    fn names_the_candidates_when_none_exists() {
        let err = find_binary("conmon", "conmon", &["/nonexistent/a".to_owned()]);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "could not find a working conmon binary (configured options: [/nonexistent/a])"
        );
    }
}
