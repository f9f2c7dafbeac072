//! Where configuration files live and who is asking: injectable, so tests never read the real
//! `/etc` or `$HOME`.

use std::path::{Path, PathBuf};

/// The environment configuration is discovered in.
///
/// [`ConfigEnv::detect`] reads the real process environment; tests build one by hand that points
/// every base directory into a temporary folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEnv {
    /// Whether rpod runs as a non-root user.
    pub rootless: bool,
    /// The effective user ID.
    pub uid: u32,
    /// The user's home directory, if known.
    pub home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`, if set.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, if set (defaults to `~/.config`).
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_DATA_HOME`, if set (defaults to `~/.local/share`).
    pub xdg_data_home: Option<PathBuf>,
    /// Vendor configuration directory, normally `/usr/share/containers`.
    pub share_dir: PathBuf,
    /// Administrator configuration directory, normally `/etc/containers`.
    pub etc_dir: PathBuf,
    /// Whether systemd is the init system (`/run/systemd/system` exists).
    pub systemd_booted: bool,
}

impl ConfigEnv {
    /// Reads the real environment of this process.
    ///
    /// For sandboxes and tests, `RPOD_CONFIG_ETC_DIR` and `RPOD_CONFIG_SHARE_DIR` replace
    /// `/etc/containers` and `/usr/share/containers` (the home directory follows `$HOME` and
    /// the `XDG_*` variables as usual).
    pub fn detect() -> Self {
        let uid = current_euid();
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        ConfigEnv {
            rootless: uid != 0,
            uid,
            home: var("HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
            share_dir: var("RPOD_CONFIG_SHARE_DIR")
                .unwrap_or_else(|| PathBuf::from("/usr/share/containers")),
            etc_dir: var("RPOD_CONFIG_ETC_DIR").unwrap_or_else(|| PathBuf::from("/etc/containers")),
            systemd_booted: Path::new("/run/systemd/system").is_dir(),
        }
    }

    /// An environment rooted entirely in `base` (for tests and sandboxes): `base/usr/share/containers`,
    /// `base/etc/containers` and home `base/home`; root user, no systemd.
    pub fn sandboxed(base: &Path) -> Self {
        ConfigEnv {
            rootless: false,
            uid: 0,
            home: Some(base.join("home")),
            xdg_runtime_dir: None,
            xdg_config_home: None,
            xdg_data_home: None,
            share_dir: base.join("usr/share/containers"),
            etc_dir: base.join("etc/containers"),
            systemd_booted: false,
        }
    }

    /// The user's configuration directory for containers (`~/.config/containers`).
    pub fn user_config_dir(&self) -> Option<PathBuf> {
        match (&self.xdg_config_home, &self.home) {
            (Some(x), _) => Some(x.join("containers")),
            (None, Some(h)) => Some(h.join(".config/containers")),
            (None, None) => None,
        }
    }

    /// The rootless user's own `libpod.conf`.
    pub fn user_libpod_conf(&self) -> Option<PathBuf> {
        self.user_config_dir().map(|d| d.join("libpod.conf"))
    }

    /// `libpod.conf` candidates in libpod's order of precedence (first existing wins).
    pub fn libpod_conf_candidates(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if self.rootless {
            v.extend(self.user_libpod_conf());
        }
        v.push(self.etc_dir.join("libpod.conf"));
        v.push(self.share_dir.join("libpod.conf"));
        v
    }

    /// `containers.conf` layers, lowest precedence first.
    pub fn containers_conf_layers(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.share_dir.join("containers.conf"),
            self.etc_dir.join("containers.conf"),
        ];
        v.extend(self.user_config_dir().map(|d| d.join("containers.conf")));
        v
    }

    /// `registries.conf` (the administrator's).
    pub fn registries_conf(&self) -> PathBuf {
        self.etc_dir.join("registries.conf")
    }

    /// The default (data, run) directories that hold rpod state for this user.
    pub fn default_dirs(&self) -> (PathBuf, PathBuf) {
        if !self.rootless {
            return (PathBuf::from("/var/lib/rpod"), PathBuf::from("/run/rpod"));
        }
        let data = match (&self.xdg_data_home, &self.home) {
            (Some(x), _) => x.join("rpod"),
            (None, Some(h)) => h.join(".local/share/rpod"),
            (None, None) => PathBuf::from(format!("/tmp/rpod-data-{}", self.uid)),
        };
        let run = match &self.xdg_runtime_dir {
            Some(x) => x.join("rpod"),
            None => PathBuf::from(format!("/tmp/rpod-run-{}", self.uid)),
        };
        (data, run)
    }
}

/// The effective user ID, read from `/proc/self/status` so this crate needs no `unsafe`.
fn current_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
