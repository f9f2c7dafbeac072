//! The overlay driver's layout and mounts.
//!
//! `<home>/<id>/` holds `diff/` (the layer's changes; the upper directory of a container layer), `work/`,
//! `merged/` (the mount point), `empty/` (a lower directory for layers without parent), `link` (the 26-character
//! short name) and, when the layer has a parent, `lower` (`l/<short>` of every ancestor, nearest first, joined
//! with `:`). `<home>/l/<short>` is a symlink to `../<id>/diff`.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags};

use crate::layers::error::{LayerError, LayerResult};
use crate::layers::meta::{self, Layer};

/// The short link directory inside the driver home.
pub(crate) const LINK_DIR: &str = "l";
/// Length of a short link name (26 random base32 characters, as containers/storage).
const LINK_LEN: usize = 26;
/// Most lower layers a mount may stack, as containers/storage: `(26+1+1)·128 ≤ pagesize − 512`.
pub(crate) const MAX_DEPTH: usize = 128;
/// The legacy `mount(2)` copies at most one page of option data, NUL included.
const OPTIONS_LIMIT: usize = 4096;
/// Mode of `diff/`, `merged/`, `empty/`.
const LAYER_DIR_MODE: u32 = 0o755;

/// Creates the overlay skeleton in a temp layer and returns its `diff` directory.
pub(crate) fn populate(dir: &Path) -> LayerResult<PathBuf> {
    for sub in ["diff", "work", "merged", "empty"] {
        let path = dir.join(sub);
        fs::DirBuilder::new()
            .mode(if sub == "work" { 0o700 } else { LAYER_DIR_MODE })
            .create(&path)
            .map_err(|e| LayerError::io("create directory", &path, e))?;
    }
    let link = short_name()?;
    meta::write_atomic(&dir.join("link"), link.as_bytes())?;
    Ok(dir.join("diff"))
}

/// The short link name stored in a layer directory's `link` file.
pub(crate) fn read_link(dir: &Path) -> LayerResult<String> {
    let path = dir.join("link");
    let link = fs::read_to_string(&path).map_err(|e| LayerError::io("read", &path, e))?;
    if link.len() != LINK_LEN
        || !link
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(LayerError::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::InvalidData, "not a short link name"),
        ));
    }
    Ok(link)
}

/// Writes the `lower` file (absent for a base layer).
pub(crate) fn write_lower(dir: &Path, ancestors: &[&Layer]) -> LayerResult<()> {
    if ancestors.is_empty() {
        return Ok(());
    }
    let lower = lower_links(ancestors)?.join(":");
    meta::write_atomic(&dir.join("lower"), lower.as_bytes())
}

fn lower_links(ancestors: &[&Layer]) -> LayerResult<Vec<String>> {
    ancestors
        .iter()
        .map(|l| {
            l.link
                .as_ref()
                .map(|s| format!("{LINK_DIR}/{s}"))
                .ok_or_else(|| LayerError::NotFound {
                    id: format!("{} (its short link is not recorded)", l.id),
                })
        })
        .collect()
}

/// Creates `l/<short> -> ../<id>/diff` for a committed layer.
pub(crate) fn link(home: &Path, id: &str) -> LayerResult<()> {
    let dir = home.join(id);
    let short = read_link(&dir)?;
    let path = home.join(LINK_DIR).join(short);
    std::os::unix::fs::symlink(Path::new("..").join(id).join("diff"), &path)
        .map_err(|e| LayerError::io("create short link", &path, e))
}

/// Removes short links whose layer directory is gone.
pub(crate) fn remove_dangling_links(home: &Path) -> LayerResult<()> {
    let dir = home.join(LINK_DIR);
    let entries = fs::read_dir(&dir).map_err(|e| LayerError::io("read", &dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| LayerError::io("read", &dir, e))?.path();
        if fs::metadata(&path).is_err() {
            tracing::info!(path = %path.display(), "removing dangling short link");
            fs::remove_file(&path).map_err(|e| LayerError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Mounts a layer at `<id>/merged`: a container layer read-write over its ancestors, an image layer read-only
/// with its own `diff` on top.
pub(crate) fn mount(home: &Path, layer: &Layer, ancestors: &[&Layer]) -> LayerResult<PathBuf> {
    let id = &layer.id;
    let mut lowers = Vec::with_capacity(ancestors.len() + 2);
    if !layer.rw {
        lowers.extend(lower_links(&[layer])?);
    }
    lowers.extend(lower_links(ancestors)?);
    if lowers.len() > MAX_DEPTH {
        return Err(LayerError::MaxDepth {
            id: id.clone(),
            depth: lowers.len(),
            max: MAX_DEPTH,
        });
    }
    if lowers.len() < 2 {
        // overlayfs needs one lower with an upper, two without.
        lowers.push(format!("{id}/empty"));
    }
    let upper = layer
        .rw
        .then(|| format!(",upperdir={id}/diff,workdir={id}/work"));
    let options = |prefix: &str| {
        let lowers: Vec<String> = lowers.iter().map(|l| format!("{prefix}{l}")).collect();
        let upper = upper
            .as_ref()
            .map(|u| u.replace("dir=", &format!("dir={prefix}")));
        format!("lowerdir={}{}", lowers.join(":"), upper.unwrap_or_default())
    };
    let target = home.join(id).join("merged");
    let flags = if layer.rw {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    let absolute = options(&format!("{}/", escape(&home.to_string_lossy())));
    if absolute.len() < OPTIONS_LIMIT {
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            flags,
            Some(absolute.as_str()),
        )
        .map_err(|e| mount_error("mount overlay", &target, &absolute, e.into()))?;
    } else {
        // Too long for one page: relative paths, mounted by mount(8) running in the driver home.
        let relative = options("");
        tracing::debug!(
            len = relative.len(),
            "overlay options too long for absolute paths, mounting relative"
        );
        let mut cmd = Command::new("mount");
        cmd.current_dir(home).args(["-t", "overlay"]);
        if !layer.rw {
            cmd.arg("-r");
        }
        let out = cmd
            .arg("-o")
            .arg(&relative)
            .arg("overlay")
            .arg(format!("{id}/merged"))
            .output()
            .map_err(|e| mount_error("run mount(8) for", &target, &relative, e))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(mount_error(
                "mount overlay",
                &target,
                &relative,
                io::Error::other(format!("mount(8) {}: {msg}", out.status)),
            ));
        }
    }
    tracing::debug!(id, target = %target.display(), "mounted overlay");
    Ok(target)
}

/// Detaches the mount at `<dir>/merged`; not being mounted is not an error.
pub(crate) fn unmount(dir: &Path) -> LayerResult<()> {
    let target = dir.join("merged");
    match nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(mount_error("unmount", &target, "", e.into())),
    }
}

/// Tries an overlay mount with an upper directory inside `graph_root`.
pub(crate) fn probe(graph_root: &Path) -> LayerResult<()> {
    let dir = tempfile::Builder::new()
        .prefix(".overlay-probe-")
        .tempdir_in(graph_root)
        .map_err(|e| LayerError::io("create probe directory in", graph_root, e))?;
    for sub in ["lower", "upper", "work", "merged"] {
        let p = dir.path().join(sub);
        fs::create_dir(&p).map_err(|e| LayerError::io("create directory", &p, e))?;
    }
    let base = escape(&dir.path().to_string_lossy());
    let options = format!("lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work");
    let target = dir.path().join("merged");
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| mount_error("mount overlay", &target, &options, e.into()))?;
    unmount(dir.path())
}

/// Escapes the characters overlayfs splits its options on.
fn escape(path: &str) -> String {
    path.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

fn mount_error(op: &'static str, target: &Path, options: &str, source: io::Error) -> LayerError {
    LayerError::Mount {
        op,
        target: target.to_owned(),
        options: options.to_owned(),
        source,
    }
}

/// A random short link name: 26 base32 characters (A–Z, 2–7).
fn short_name() -> LayerResult<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = meta::random_bytes::<LINK_LEN>()?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect())
}
