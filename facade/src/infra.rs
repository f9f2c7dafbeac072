//! The root filesystem of pod infra containers: no image, just the static `catatonit` from
//! `init_path`, built once per static dir and moved into place atomically.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::RuntimeError;
use crate::Runtime;

/// Where catatonit is looked for when `init_path` does not exist.
const CATATONIT_FALLBACKS: &[&str] = &[
    "/usr/libexec/podman/catatonit",
    "/usr/bin/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/local/bin/catatonit",
];

/// libpod's default infra command, which needs the pause image rpod does not use.
const LIBPOD_PAUSE_COMMAND: &str = "/pause";

impl Runtime {
    /// The catatonit binary: `init_path`, else the first of the usual places.
    fn catatonit(&self) -> Result<PathBuf, RuntimeError> {
        let configured = PathBuf::from(&self.config.values.init_path);
        std::iter::once(configured.clone())
            .chain(CATATONIT_FALLBACKS.iter().map(PathBuf::from))
            .find(|p| p.is_file())
            .ok_or_else(|| RuntimeError::BinaryNotFound {
                what: "catatonit (init_path, for pod infra containers)".to_owned(),
                candidates: std::iter::once(configured.display().to_string())
                    .chain(CATATONIT_FALLBACKS.iter().map(|s| (*s).to_owned()))
                    .collect(),
            })
    }

    /// Builds `<static_dir>/infra-rootfs` (catatonit plus the mount points) if it is missing.
    /// Concurrent builders each build into a private directory; the first rename wins.
    pub fn ensure_infra_rootfs(&self) -> Result<PathBuf, RuntimeError> {
        let dest = self.infra_rootfs();
        if dest.join("catatonit").is_file() {
            return Ok(dest);
        }
        let src = self.catatonit()?;
        let parent = dest.parent().unwrap_or(Path::new("/"));
        let tmp = parent.join(format!(
            ".infra-rootfs.tmp-{}-{}",
            std::process::id(),
            crate::names::generate_id()?.get(..8).unwrap_or("x")
        ));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RuntimeError::CreateDir { path, source }
        };
        let build = || -> Result<(), RuntimeError> {
            for d in ["dev", "proc", "sys", "etc", "tmp"] {
                let p = tmp.join(d);
                std::fs::create_dir_all(&p).map_err(io(&p))?;
            }
            let bin = tmp.join("catatonit");
            std::fs::copy(&src, &bin).map_err(io(&bin))?;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&bin))?;
            let passwd = tmp.join("etc/passwd");
            std::fs::write(&passwd, "root:x:0:0:root:/:/catatonit\n").map_err(io(&passwd))?;
            let group = tmp.join("etc/group");
            std::fs::write(&group, "root:x:0:\n").map_err(io(&group))?;
            std::fs::File::open(&bin)
                .and_then(|f| f.sync_all())
                .map_err(io(&bin))?;
            Ok(())
        };
        let result = build();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process won the race: its rootfs is as good as ours.
            if !dest.join("catatonit").is_file() {
                return Err(RuntimeError::CreateDir {
                    path: dest,
                    source: e,
                });
            }
        }
        Ok(dest)
    }

    /// The root filesystem of infra containers: `<static_dir>/infra-rootfs` (built when a pod
    /// first starts).
    pub fn infra_rootfs(&self) -> PathBuf {
        self.config.values.static_dir.join("infra-rootfs")
    }

    /// The infra container's command: `infra_command` when configured (other than libpod's
    /// `/pause`, which needs the pause image), else `catatonit -P`.
    pub fn infra_command(&self) -> Vec<String> {
        let cmd = &self.config.values.infra_command;
        if self.config.sources.is_explicit("infra_command") && cmd != LIBPOD_PAUSE_COMMAND {
            vec![cmd.clone()]
        } else {
            vec!["/catatonit".to_owned(), "-P".to_owned()]
        }
    }
}
