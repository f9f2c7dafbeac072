//! The root-filesystem seam of the container life cycle: a [`RootfsProvider`] makes a
//! container's root filesystem available at init ([`RootfsProvider::prepare`], which mounts when
//! there is something to mount) and gives it back at cleanup ([`RootfsProvider::release`]).
//! The user named by `--user` is looked up in the prepared root (its `/etc/passwd`).
//!
//! Providers: [`DirectoryRootfs`] (`--rootfs DIR`, used as is) and [`InfraRootfs`] (the pod
//! infra container's root, built once from `init_path`). [`DefaultRootfs`] picks one per
//! container; [`ImageRootfs`](crate::ImageRootfs) mounts a container's layer from the image store.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::RuntimeError;

/// What a [`RootfsProvider`] is asked to prepare or release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsRequest {
    /// The container's ID.
    pub container_id: String,
    /// The root filesystem its record names (`--rootfs`, or the infra root).
    pub rootfs: PathBuf,
    /// Whether it is a pod's infra container.
    pub is_infra: bool,
    /// The container's writable layer in the image store, for a container from an image.
    pub layer: Option<String>,
}

/// A source of container root filesystems.
///
/// [`prepare`](Self::prepare) runs once per init, before the OCI spec is written;
/// [`release`](Self::release) runs on every cleanup path and must be idempotent.
pub trait RootfsProvider: Send + Sync + std::fmt::Debug {
    /// Makes the root filesystem available and returns the path the OCI spec uses.
    fn prepare(&self, request: &RootfsRequest) -> Result<PathBuf, RuntimeError>;

    /// Gives back what [`prepare`](Self::prepare) took (unmounts); nothing for a plain directory.
    fn release(&self, request: &RootfsRequest) -> Result<(), RuntimeError>;
}

/// A directory used as is (podman's `--rootfs`): prepare checks that it is still there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryRootfs;

impl RootfsProvider for DirectoryRootfs {
    fn prepare(&self, request: &RootfsRequest) -> Result<PathBuf, RuntimeError> {
        if !request.rootfs.is_dir() {
            return Err(RuntimeError::Rootfs {
                path: request.rootfs.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(request.rootfs.clone())
    }

    fn release(&self, _request: &RootfsRequest) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// Where catatonit is looked for when `init_path` does not exist.
const CATATONIT_FALLBACKS: &[&str] = &[
    "/usr/libexec/podman/catatonit",
    "/usr/bin/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/local/bin/catatonit",
];

/// The root filesystem of pod infra containers: no image, just the static `catatonit` from
/// `init_path` plus the mount points, built once per static dir and moved into place
/// atomically (concurrent builders each build a private copy; the first rename wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfraRootfs {
    /// `<static_dir>/infra-rootfs`.
    pub dest: PathBuf,
    /// The configured `init_path`.
    pub init_path: PathBuf,
}

impl InfraRootfs {
    /// The catatonit binary: `init_path`, else the first of the usual places.
    fn catatonit(&self) -> Result<PathBuf, RuntimeError> {
        std::iter::once(self.init_path.clone())
            .chain(CATATONIT_FALLBACKS.iter().map(PathBuf::from))
            .find(|p| p.is_file())
            .ok_or_else(|| RuntimeError::BinaryNotFound {
                what: "catatonit (init_path, for pod infra containers)".to_owned(),
                candidates: std::iter::once(self.init_path.display().to_string())
                    .chain(CATATONIT_FALLBACKS.iter().map(|s| (*s).to_owned()))
                    .collect(),
            })
    }

    /// Builds the root if it is missing and returns its path.
    pub fn ensure(&self) -> Result<PathBuf, RuntimeError> {
        let dest = &self.dest;
        if dest.join("catatonit").is_file() {
            return Ok(dest.clone());
        }
        let src = self.catatonit()?;
        let parent = dest.parent().unwrap_or(Path::new("/"));
        let tmp = parent.join(format!(
            ".infra-rootfs.tmp-{}-{}",
            std::process::id(),
            crate::names::generate_id()?.get(..8).unwrap_or("x")
        ));
        let result = build_infra_root(&src, &tmp);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&tmp, dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process won the race: its rootfs is as good as ours.
            if !dest.join("catatonit").is_file() {
                return Err(RuntimeError::CreateDir {
                    path: dest.clone(),
                    source: e,
                });
            }
        }
        Ok(dest.clone())
    }
}

/// catatonit, the mount points and a minimal `/etc/passwd` and `/etc/group` in `tmp`.
fn build_infra_root(src: &Path, tmp: &Path) -> Result<(), RuntimeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RuntimeError::CreateDir { path, source }
    };
    for d in ["dev", "proc", "sys", "etc", "tmp"] {
        let p = tmp.join(d);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    let bin = tmp.join("catatonit");
    std::fs::copy(src, &bin).map_err(io(&bin))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(io(&bin))?;
    let passwd = tmp.join("etc/passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/:/catatonit\n").map_err(io(&passwd))?;
    let group = tmp.join("etc/group");
    std::fs::write(&group, "root:x:0:\n").map_err(io(&group))?;
    std::fs::File::open(&bin)
        .and_then(|f| f.sync_all())
        .map_err(io(&bin))?;
    Ok(())
}

impl RootfsProvider for InfraRootfs {
    fn prepare(&self, _request: &RootfsRequest) -> Result<PathBuf, RuntimeError> {
        // An infra container may start before its pod ever did (`run --pod`, `start` of a
        // member, which start it as a dependency): build its root here.
        self.ensure()
    }

    fn release(&self, _request: &RootfsRequest) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// The built-in choice: the infra root for infra containers, the image layer for containers
/// from an image, the directory as is otherwise.
#[derive(Debug, Clone)]
pub struct DefaultRootfs {
    /// For `--rootfs` containers.
    pub directory: DirectoryRootfs,
    /// For pod infra containers.
    pub infra: InfraRootfs,
    /// For containers from an image.
    pub image: crate::image::ImageRootfs,
}

impl DefaultRootfs {
    fn pick(&self, request: &RootfsRequest) -> &dyn RootfsProvider {
        if request.is_infra {
            &self.infra
        } else if request.layer.is_some() {
            &self.image
        } else {
            &self.directory
        }
    }
}

impl RootfsProvider for DefaultRootfs {
    fn prepare(&self, request: &RootfsRequest) -> Result<PathBuf, RuntimeError> {
        self.pick(request).prepare(request)
    }

    fn release(&self, request: &RootfsRequest) -> Result<(), RuntimeError> {
        self.pick(request).release(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_must_exist() {
        let req = RootfsRequest {
            container_id: "x".into(),
            rootfs: "/nonexistent/rootfs".into(),
            is_infra: false,
            layer: None,
        };
        let err = DirectoryRootfs.prepare(&req).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("rootfs /nonexistent/rootfs: entity not found")
        );
        let req = RootfsRequest {
            rootfs: "/".into(),
            ..req
        };
        assert_eq!(DirectoryRootfs.prepare(&req).ok(), Some(PathBuf::from("/")));
    }

    #[test]
    fn infra_root_is_built_once() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let init = dir.path().join("catatonit-src");
        if std::fs::write(&init, b"#!/bin/true\n").is_err() {
            return;
        }
        let infra = InfraRootfs {
            dest: dir.path().join("infra-rootfs"),
            init_path: init,
        };
        let p = infra.ensure().ok();
        assert_eq!(
            p.as_deref(),
            Some(dir.path().join("infra-rootfs").as_path())
        );
        assert!(dir.path().join("infra-rootfs/etc/passwd").is_file());
        assert_eq!(infra.ensure().ok(), p);
    }
}
