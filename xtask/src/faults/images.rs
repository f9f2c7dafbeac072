//! The image store of an `--images` round: what the round prepares once,
//! what a sandbox starts with, what the store looks like at a check
//! ([`observe`]) and the invariants on it ([`evaluate`]).
//!
//! At setup the round builds two tarballs from its busybox rootfs
//! (`busybox.tar`, and `extra.tar` with one more file, so its layer is new
//! to every store), imports the first as `localhost/fltimg` in a setup
//! sandbox, imports the second as `localhost/fltload`, saves that one
//! (`load.tar`, a docker-archive) and removes it, and keeps a copy of the
//! resulting store (`<round>/store/`: `images/`, `overlay-layers/`,
//! `overlay/`, `blobs/`). Every sandbox starts with that copy under its
//! `--root` (the overlay lower directories are named relative to the
//! driver home, so the copy mounts as the original), and every container
//! runs from `localhost/fltimg` (`--pull never`).
//!
//! The invariants (on top of the plain round's): every container record
//! from an image has its writable layer (a `rw` layer named after the
//! container); no writable layer lacks a record; the kernel's overlay
//! mounts under the graph root are exactly the layers `mounts.json`
//! counts, a running or paused container's layer is mounted and marked
//! (`<runroot>/rpod-mounted/<id>`), no marker belongs to a container
//! without a record or an `exited` one; every image has
//! its layers and blobs; and where the store must have been collected
//! (after a successful `import`/`load` and after `image prune`) no blob,
//! image layer or layer directory is left that no image owns.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::invariants::{short, CtrRecord, Kind, Violation};
use super::observe::args;
use super::sandbox::{Round, Sandbox};

/// The image every container of the round runs from.
pub const IMAGE: &str = "localhost/fltimg:latest";
/// The image `load` brings in (from [`RoundImages::archive`]).
pub const LOADED: &str = "localhost/fltload:latest";
/// The image `import` makes (from [`RoundImages::extra_tar`]).
pub const IMPORTED: &str = "localhost/fltimport:latest";
/// The unused image `rmi` removes (imported by the fixture).
pub const SPARE: &str = "localhost/fltspare:latest";

/// The parts of a graph root that make the image store.
const STORE_PARTS: &[&str] = &["images", "overlay-layers", "overlay", "blobs"];

/// What an `--images` round prepared at setup.
#[derive(Debug, Clone)]
pub struct RoundImages {
    /// The tarball `import` and the `rmi` fixture import (one file more than
    /// the rootfs of [`IMAGE`]).
    pub extra_tar: PathBuf,
    /// The docker-archive `load -i` reads ([`LOADED`]).
    pub archive: PathBuf,
    /// The store every sandbox starts with (the parts of a graph root).
    pub template: PathBuf,
}

impl RoundImages {
    /// Builds the tarballs, the archive and the template store of `round`.
    pub fn new(round: &Round) -> Result<RoundImages> {
        let busybox_tar = round.dir.join("busybox.tar");
        let extra_tar = round.dir.join("extra.tar");
        let extra = round.dir.join("extra");
        fs::create_dir_all(extra.join("etc"))?;
        fs::write(extra.join("etc/fltmark"), "rpod faults\n")?;
        tar(&["-cf", &p(&busybox_tar), "-C", &p(&round.rootfs), "."])?;
        tar(&[
            "-cf",
            &p(&extra_tar),
            "-C",
            &p(&round.rootfs),
            ".",
            "-C",
            &p(&extra),
            "./etc/fltmark",
        ])?;
        let images = RoundImages {
            extra_tar,
            archive: round.dir.join("load.tar"),
            template: round.dir.join("store"),
        };
        let sb = round.sandbox("img", false)?;
        let steps: [Vec<String>; 4] = [
            args(&["import", "-q", &p(&busybox_tar), IMAGE]),
            args(&["import", "-q", &p(&images.extra_tar), LOADED]),
            args(&["save", "-q", "-o", &p(&images.archive), LOADED]),
            args(&["rmi", LOADED]),
        ];
        for step in &steps {
            let o = sb.rpod(step)?;
            if !o.ok() {
                bail!(
                    "setting up the round's image: `{}`: {}: {}",
                    o.line,
                    o.ending.short(),
                    o.first_err_line()
                );
            }
        }
        fs::create_dir(&images.template)?;
        for part in STORE_PARTS {
            let from = sb.dir.join("root").join(part);
            if from.exists() {
                copy_tree(&from, &images.template)?;
            }
        }
        Ok(images)
    }

    /// Gives sandbox `root` (its `--root`) the round's store.
    pub fn install(&self, root: &Path) -> Result<()> {
        for part in STORE_PARTS {
            let from = self.template.join(part);
            if from.exists() {
                copy_tree(&from, root)?;
            }
        }
        Ok(())
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn tar(argv: &[&str]) -> Result<()> {
    let status = Command::new("tar")
        .args(argv)
        .stderr(Stdio::inherit())
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("`tar {}` failed", argv.join(" "));
    }
    Ok(())
}

/// `cp -a from into/`.
fn copy_tree(from: &Path, into: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(into)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!("`cp -a {} {}` failed", from.display(), into.display());
    }
    Ok(())
}

/// Mount points under `dir` (`/proc/self/mountinfo`), in mount order.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let under = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&under))
        .map(str::to_string)
        .collect()
}

/// Detaches (`umount -l`) every mount under `dir`, newest first,
/// until none is left (mounts may be stacked); problems are warnings.
pub fn detach_mounts_under(dir: &Path) {
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts.iter().rev() {
            let status = Command::new("umount")
                .arg("-l")
                .arg(m)
                .stderr(Stdio::null())
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("xtask faults: warning: `umount -l {m}` failed");
            }
        }
    }
    for m in mounts_under(dir) {
        eprintln!("xtask faults: warning: {m} is still mounted");
    }
}

/// An image record, as `images.json` has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRec {
    /// The image ID.
    pub id: String,
    /// Its names.
    pub names: Vec<String>,
    /// Its layers' IDs.
    pub layers: Vec<String>,
    /// Every blob it references (`sha256:<hex>`: manifests, config, layers).
    pub blobs: Vec<String>,
}

/// A layer record, as `layers.json` has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerRec {
    /// The layer ID.
    pub id: String,
    /// A container's writable layer.
    pub rw: bool,
    /// Its names (a container layer's is its container's ID).
    pub names: Vec<String>,
}

/// The image store of one sandbox at one moment.
#[derive(Debug, Clone, Default)]
pub struct StoreSnapshot {
    /// Failures reading it.
    pub errors: Vec<String>,
    /// The store uses the overlay driver (kernel mounts are checked).
    pub overlay: bool,
    /// `images.json`.
    pub images: Vec<ImageRec>,
    /// `<driver>-layers/layers.json`.
    pub layers: Vec<LayerRec>,
    /// Directories in the driver home (`overlay/<id>`; not `l` or temp dirs).
    pub layer_dirs: Vec<String>,
    /// Files in `blobs/sha256/`, as `sha256:<hex>`.
    pub blobs: Vec<String>,
    /// `mounts.json`: layers counted as mounted (count > 0) and the count.
    pub counts: BTreeMap<String, u32>,
    /// Mount points under the graph root, relative to it.
    pub kernel: Vec<String>,
    /// Files in `<runroot>/rpod-mounted/` (container IDs).
    pub markers: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a JSON file; absent is `None`.
fn read_json(path: &Path, errors: &mut Vec<String>) -> Option<Value> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(format!("{}: bad JSON: {e}", path.display()));
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(format!("reading {}: {e}", path.display()));
            None
        }
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Parses `images.json`.
pub fn parse_images(v: &Value) -> Vec<ImageRec> {
    v["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let id = i["id"].as_str().unwrap_or_default().to_string();
                    let mut blobs = strings(&i["blobs"]);
                    blobs.extend(strings(&i["digests"]));
                    if let Some(d) = i["digest"].as_str() {
                        blobs.push(d.to_string());
                    }
                    blobs.push(format!("sha256:{id}"));
                    blobs.sort();
                    blobs.dedup();
                    ImageRec {
                        names: strings(&i["names"]),
                        layers: strings(&i["layers"]),
                        blobs,
                        id,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `layers.json`.
pub fn parse_layers(v: &Value) -> Vec<LayerRec> {
    v["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| LayerRec {
                    id: l["id"].as_str().unwrap_or_default().to_string(),
                    rw: l["rw"].as_bool().unwrap_or(false),
                    names: strings(&l["names"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the store of `sb` (files only: no rpod command runs, so nothing
/// is collected or swept by looking).
pub fn observe(sb: &Sandbox) -> StoreSnapshot {
    let root = sb.dir.join("root");
    let run = sb.dir.join("runroot");
    let mut snap = StoreSnapshot::default();
    let driver = if root.join("vfs-layers").exists() {
        "vfs"
    } else {
        "overlay"
    };
    snap.overlay = driver == "overlay";
    let mut errors = Vec::new();
    if let Some(v) = read_json(&root.join("images/images.json"), &mut errors) {
        snap.images = parse_images(&v);
    }
    if let Some(v) = read_json(
        &root.join(format!("{driver}-layers/layers.json")),
        &mut errors,
    ) {
        snap.layers = parse_layers(&v);
    }
    if let Some(v) = read_json(
        &run.join(format!("{driver}-layers/mounts.json")),
        &mut errors,
    ) {
        if let Some(m) = v["mounts"].as_object() {
            for (id, n) in m {
                let n = u32::try_from(n.as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
                if n > 0 {
                    snap.counts.insert(id.clone(), n);
                }
            }
        }
    }
    snap.errors = errors;
    snap.layer_dirs = names_in(&root.join(driver))
        .into_iter()
        .filter(|n| n != "l" && !n.starts_with('.'))
        .collect();
    snap.blobs = names_in(&root.join("blobs/sha256"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .map(|n| format!("sha256:{n}"))
        .collect();
    let prefix = format!("{}/", root.display());
    snap.kernel = mounts_under(&root)
        .into_iter()
        .map(|m| m.strip_prefix(&prefix).unwrap_or(&m).to_string())
        .collect();
    snap.markers = names_in(&run.join("rpod-mounted"));
    snap
}

/// States in which a container's root filesystem is released (cleanup
/// ran). A `configured` container may keep the mount a killed `init` made:
/// its marker makes the next init take it over (one count, not two) and its
/// removal drops it, which the checks after the removal see (as with the
/// network a killed `init` set up).
const AT_REST: &[&str] = &["exited"];
/// States in which a container's root filesystem must be mounted.
const MOUNTED: &[&str] = &["running", "paused"];

/// The image-store invariants on `store`, against the container records
/// `ctrs`; `gc_clean`: the store was just collected, so nothing may be
/// left that no image owns.
pub fn evaluate(
    store: &StoreSnapshot,
    ctrs: &[CtrRecord],
    gc_clean: bool,
    phase: &'static str,
) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut add = |kind, detail: String| found.push(Violation::new(kind, phase, detail));
    for e in &store.errors {
        add(Kind::StateUnreadable, e.clone());
    }
    let layer = |id: &str| store.layers.iter().find(|l| l.id == id);
    let ctr_layer = |ctr: &str| {
        store
            .layers
            .iter()
            .find(|l| l.rw && l.names.iter().any(|n| n == ctr))
    };
    let record = |id: &str| ctrs.iter().find(|c| c.id == id);

    // (1) Every container from an image has its layer.
    for c in ctrs.iter().filter(|c| !c.image.is_empty()) {
        if ctr_layer(&c.id).is_none() {
            add(
                Kind::LayerMissing,
                format!("{} container {} has no layer", c.state, short(&c.id)),
            );
        }
    }
    // (2) No writable layer without its container.
    for l in store.layers.iter().filter(|l| l.rw) {
        if !l.names.iter().any(|n| record(n).is_some()) {
            let named = l
                .names
                .first()
                .map_or_else(|| "no name".to_string(), |n| format!("named {}", short(n)));
            add(
                Kind::OrphanLayer,
                format!("layer {} ({named})", short(&l.id)),
            );
        }
    }
    // (3) Mounts: the kernel's agree with the counts; the markers with the
    // records; a running container's layer is mounted.
    let mut kernel: BTreeMap<String, usize> = BTreeMap::new();
    for m in &store.kernel {
        let id = m
            .strip_prefix("overlay/")
            .and_then(|r| r.strip_suffix("/merged"))
            .filter(|id| !id.contains('/'));
        match id {
            Some(id) => *kernel.entry(id.to_string()).or_default() += 1,
            None => add(Kind::MountCount, format!("unexpected mount {m}")),
        }
    }
    if store.overlay {
        for (id, n) in &kernel {
            if *n > 1 {
                add(
                    Kind::MountCount,
                    format!("layer {} mounted {n} times", short(id)),
                );
            }
            if !store.counts.contains_key(id) {
                add(
                    Kind::MountCount,
                    format!("layer {} mounted, not counted", short(id)),
                );
            }
        }
        for (id, n) in &store.counts {
            if !kernel.contains_key(id) {
                add(
                    Kind::MountCount,
                    format!("layer {} counted {n} times, not mounted", short(id)),
                );
            }
        }
    }
    for (id, n) in &store.counts {
        if layer(id).is_none() {
            add(
                Kind::MountCount,
                format!("count {n} for layer {}, which does not exist", short(id)),
            );
        }
    }
    for m in &store.markers {
        match record(m) {
            None => add(
                Kind::MountLeft,
                format!("rpod-mounted/{} of no container", short(m)),
            ),
            Some(c) if AT_REST.contains(&c.state.as_str()) => add(
                Kind::MountLeft,
                format!("rpod-mounted/{} of {} container", short(m), c.state),
            ),
            Some(c) => {
                if !ctr_layer(&c.id).is_some_and(|l| store.counts.contains_key(&l.id)) {
                    add(
                        Kind::MountMissing,
                        format!(
                            "{} container {} marked, layer not counted",
                            c.state,
                            short(m)
                        ),
                    );
                }
            }
        }
    }
    for c in ctrs
        .iter()
        .filter(|c| !c.image.is_empty() && MOUNTED.contains(&c.state.as_str()))
    {
        let mounted = ctr_layer(&c.id).is_some_and(|l| {
            store.counts.contains_key(&l.id) && (!store.overlay || kernel.contains_key(&l.id))
        });
        if !mounted || !store.markers.contains(&c.id) {
            add(
                Kind::MountMissing,
                format!(
                    "{} container {}: layer {}, marker {}",
                    c.state,
                    short(&c.id),
                    if mounted { "mounted" } else { "not mounted" },
                    if store.markers.contains(&c.id) {
                        "present"
                    } else {
                        "missing"
                    }
                ),
            );
        }
    }
    // (4) Images are whole; after a collection nothing is unowned.
    let layer_ids: BTreeSet<&str> = store.layers.iter().map(|l| l.id.as_str()).collect();
    let blobs: BTreeSet<&str> = store.blobs.iter().map(String::as_str).collect();
    for i in &store.images {
        for l in &i.layers {
            if !layer_ids.contains(l.as_str()) {
                add(
                    Kind::ImageIncomplete,
                    format!("image {} lacks layer {}", short(&i.id), short(l)),
                );
            }
        }
        for b in &i.blobs {
            if !blobs.contains(b.as_str()) {
                add(
                    Kind::ImageIncomplete,
                    format!(
                        "image {} lacks blob {}",
                        short(&i.id),
                        short(b.trim_start_matches("sha256:"))
                    ),
                );
            }
        }
    }
    if gc_clean {
        let owned_layers: BTreeSet<&str> = store
            .images
            .iter()
            .flat_map(|i| i.layers.iter().map(String::as_str))
            .collect();
        let owned_blobs: BTreeSet<&str> = store
            .images
            .iter()
            .flat_map(|i| i.blobs.iter().map(String::as_str))
            .collect();
        for l in store.layers.iter().filter(|l| !l.rw) {
            if !owned_layers.contains(l.id.as_str()) {
                add(Kind::Unowned, format!("image layer {}", short(&l.id)));
            }
        }
        for b in &store.blobs {
            if !owned_blobs.contains(b.as_str()) {
                add(
                    Kind::Unowned,
                    format!("blob {}", short(b.trim_start_matches("sha256:"))),
                );
            }
        }
        for d in &store.layer_dirs {
            if !layer_ids.contains(d.as_str()) {
                add(Kind::Unowned, format!("layer directory {}", short(d)));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn ctr(c: char, state: &str) -> CtrRecord {
        CtrRecord {
            id: id(c),
            name: c.to_string(),
            state: state.into(),
            image: id('i'),
            ..CtrRecord::default()
        }
    }

    /// A running container `a` on image `i` (base layer `b`, rw layer `r`),
    /// a configured one `c` (rw layer `s`).
    fn clean() -> (StoreSnapshot, Vec<CtrRecord>) {
        let layer = |l: char, rw: bool, name: Option<char>| LayerRec {
            id: id(l),
            rw,
            names: name.map(id).into_iter().collect(),
        };
        let store = StoreSnapshot {
            overlay: true,
            images: vec![ImageRec {
                id: id('i'),
                names: vec![IMAGE.into()],
                layers: vec![id('b')],
                blobs: vec![format!("sha256:{}", id('i')), format!("sha256:{}", id('e'))],
            }],
            layers: vec![
                layer('b', false, None),
                layer('r', true, Some('a')),
                layer('s', true, Some('c')),
            ],
            layer_dirs: vec![id('b'), id('r'), id('s')],
            blobs: vec![format!("sha256:{}", id('e')), format!("sha256:{}", id('i'))],
            counts: [(id('r'), 1)].into_iter().collect(),
            kernel: vec![format!("overlay/{}/merged", id('r'))],
            markers: vec![id('a')],
            errors: Vec::new(),
        };
        (store, vec![ctr('a', "running"), ctr('c', "configured")])
    }

    #[test]
    fn clean_store_has_no_violation() {
        let (store, ctrs) = clean();
        assert_eq!(evaluate(&store, &ctrs, true, "x"), Vec::new());
    }

    #[test]
    fn store_leftovers_are_found() {
        let (mut store, mut ctrs) = clean();
        // `c` lost its layer, `d` has one without a record, `r` is not mounted
        // though counted, an image layer and a blob are unowned.
        store.layers.retain(|l| l.id != id('s'));
        store.layers.push(LayerRec {
            id: id('t'),
            rw: true,
            names: vec![id('d')],
        });
        store.layers.push(LayerRec {
            id: id('u'),
            rw: false,
            names: Vec::new(),
        });
        store.kernel.clear();
        store.blobs.push(format!("sha256:{}", id('f')));
        store.markers.push(id('c'));
        ctrs[1].state = "exited".into();
        let kinds: Vec<Kind> = evaluate(&store, &ctrs, true, "x")
            .iter()
            .map(|v| v.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                Kind::LayerMissing,
                Kind::OrphanLayer,
                Kind::MountCount,
                Kind::MountLeft,
                Kind::MountMissing,
                Kind::Unowned,
                Kind::Unowned,
                Kind::Unowned,
            ]
        );
        // Without a collection, only what is never fine.
        let kinds: Vec<Kind> = evaluate(&store, &ctrs, false, "x")
            .iter()
            .map(|v| v.kind)
            .collect();
        assert_eq!(kinds.len(), 5);
    }

    #[test]
    fn parses_store_files() {
        let images = serde_json::json!({"version": 1, "images": [{
            "id": "ab", "names": ["localhost/x:latest"], "digest": "sha256:cd",
            "digests": [], "blobs": ["sha256:ef"], "layers": ["12"], "manifest_type": "m"
        }]});
        let i = parse_images(&images);
        assert_eq!(i[0].blobs, vec!["sha256:ab", "sha256:cd", "sha256:ef"]);
        assert_eq!(i[0].layers, vec!["12"]);
        let layers = serde_json::json!({"version": 1, "layers": [
            {"id": "12", "size": 0, "created": 0},
            {"id": "34", "parent": "12", "size": 0, "created": 0, "rw": true, "names": ["c1"]}
        ]});
        let l = parse_layers(&layers);
        assert!(!l[0].rw && l[1].rw);
        assert_eq!(l[1].names, vec!["c1"]);
    }
}
