//! Shared helpers for the integration tests: sandboxed environments and log capture.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rpod_config::{Config, ConfigEnv, ConfigError, RuntimeOptions};

/// A temporary directory holding a fake `/usr/share/containers`, `/etc/containers` and home.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// Root user, everything under the sandbox.
    pub fn root_env(&self) -> ConfigEnv {
        ConfigEnv::sandboxed(self.base())
    }

    /// Rootless user with home, XDG runtime dir and system dirs under the sandbox.
    pub fn rootless_env(&self) -> ConfigEnv {
        rootless_env(self.base())
    }

    pub fn etc(&self, name: &str) -> PathBuf {
        self.base().join("etc/containers").join(name)
    }

    pub fn share(&self, name: &str) -> PathBuf {
        self.base().join("usr/share/containers").join(name)
    }

    pub fn user(&self, name: &str) -> PathBuf {
        self.base().join("home/.config/containers").join(name)
    }

    /// Writes `contents` to `path` (see [`write`]) and returns the path.
    pub fn file(&self, path: PathBuf, contents: &str) -> PathBuf {
        write(&path, contents);
        path
    }

    /// A path inside the sandbox (for `--config` files and absolute test directories).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.base().join(rel)
    }
}

/// A rootless environment rooted in `base` (no real `$HOME`, `/etc` or `/usr/share`).
pub fn rootless_env(base: &Path) -> ConfigEnv {
    ConfigEnv {
        rootless: true,
        uid: 1000,
        home: Some(base.join("home")),
        xdg_runtime_dir: Some(base.join("run/user/1000")),
        xdg_config_home: None,
        xdg_data_home: None,
        share_dir: base.join("usr/share/containers"),
        etc_dir: base.join("etc/containers"),
        systemd_booted: false,
    }
}

/// Writes `contents` to `path`, creating its parent directories.
pub fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

pub fn load(env: &ConfigEnv) -> Config {
    Config::load(env, &RuntimeOptions::new()).unwrap()
}

pub fn load_with(env: &ConfigEnv, opts: &RuntimeOptions) -> Result<Config, ConfigError> {
    Config::load(env, opts)
}

#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a tracing subscriber that records every event (no ANSI colours) and returns
/// `f`'s result with the log text.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, buf.contents())
}

/// The lines of `logs` at WARN level.
pub fn warnings(logs: &str) -> Vec<&str> {
    logs.lines().filter(|l| l.contains(" WARN ")).collect()
}
