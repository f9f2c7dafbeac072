//! Images end to end through the `rpod` binary, against a real `docker-registry` on loopback:
//! pull and run of the standard image (whiteouts, opaque dirs, hard links, symlinks, setuid),
//! the image config applied to containers, save/load, push/pull with auth, rmi/prune and what
//! they leave, bad input refused with the store unchanged, a killed pull resumed without
//! orphans, `--pull` policies and `mount`/`umount`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::registry::{
    go_arch, push, push_http, standard_builder, standard_image, strings, BuiltImage, Compression,
    ImageBuilder, ImageConfig, LayerTar, Registry, OCI_INDEX, OCI_MANIFEST, STANDARD_KEEP,
    STANDARD_MOTD, STANDARD_OS_RELEASE,
};
use common::{expect_code, expect_ok, sandbox, text, Sandbox};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The standard image pushed (skopeo) to `reg` as `t/img:1`; returns it and its reference.
fn standard_on(reg: &Registry) -> (tempfile::TempDir, BuiltImage, String) {
    let dir = tempfile::tempdir().unwrap();
    let img = standard_image(dir.path());
    push(reg, dir.path(), "t/img:1", None);
    (dir, img, reg.reference("t/img:1"))
}

/// `rpod pull -q --tls-verify=false REF`, asserting success; the image ID.
fn pull(s: &Sandbox, reference: &str) -> String {
    s.ok(&["pull", "-q", "--tls-verify=false", reference])
        .trim()
        .to_owned()
}

/// The hex of a `sha256:` digest.
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// `rpod run --rm IMAGE sh -c SCRIPT` (extra flags before the image); stdout, asserting success.
fn sh(s: &Sandbox, flags: &[&str], image: &str, script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    s.ok(&args)
}

/// `rpod image inspect NAME` (the first document).
fn image_inspect(s: &Sandbox, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["image", "inspect", name])).unwrap();
    v[0].clone()
}

/// `rpod images --format json`.
fn images_json(s: &Sandbox) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&s.ok(&["images", "--format", "json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Every file and directory under the sandbox's graph root (minus the state database, which
/// is not the image store) with its type and size.
fn store_listing(s: &Sandbox) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            // Lock files appear on first use of each lock; they hold nothing.
            if rel == "libpod" || rel == "volumes" || rel.ends_with(".lock") {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if is_empty_record_file(&p) {
                // Record files appear on first use; an empty one is the same as none.
            } else {
                out.insert(rel, format!("{} bytes", md.len()));
            }
        }
    }
    let root = s.path("root");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// Whether `path` is `layers.json` or `images.json` recording nothing.
fn is_empty_record_file(path: &Path) -> bool {
    let key = match path.file_name().and_then(|n| n.to_str()) {
        Some("layers.json") => "layers",
        Some("images.json") => "images",
        _ => return false,
    };
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v[key].as_array().map(Vec::is_empty))
        .unwrap_or(false)
}

/// Asserts that `out` is a refusal: exit 125, `Error:` on stderr mentioning each of `needles`
/// (case-insensitive), and the store listing equal to `before`.
fn expect_refused(s: &Sandbox, out: &Output, needles: &[&str], before: &BTreeMap<String, String>) {
    expect_code(out, 125);
    let err = text(&out.stderr);
    assert!(err.contains("Error:"), "no Error: in {err}");
    for n in needles {
        assert!(
            err.to_lowercase().contains(&n.to_lowercase()),
            "no {n:?} in {err}"
        );
    }
    let after = store_listing(s);
    assert_eq!(
        &after,
        before,
        "the store changed: added {:?}, removed {:?}",
        after
            .keys()
            .filter(|k| !before.contains_key(*k))
            .collect::<Vec<_>>(),
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .collect::<Vec<_>>()
    );
}

/// Names of the entries of `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The layer IDs recorded in `<graph root>/overlay-layers/layers.json`: image layers, or with
/// `rw` container layers.
fn recorded_layers_of(s: &Sandbox, rw: bool) -> Vec<String> {
    let Ok(bytes) = std::fs::read(s.path("root/overlay-layers/layers.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut ids: Vec<String> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rw"].as_bool().unwrap_or(false) == rw)
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The image layers recorded.
fn recorded_layers(s: &Sandbox) -> Vec<String> {
    recorded_layers_of(s, false)
}

/// Files anywhere under `dir` whose name starts with `.tmp-` (in-progress writes).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(p.clone());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && !p.ends_with("libpod") {
                stack.push(p);
            }
        }
    }
    out
}

/// Asserts that the store holds exactly `images` (IDs): their layers and no other, their
/// blobs (manifest, config, layers) and no other, and no temp files.
fn assert_store_holds_only(s: &Sandbox, images: &[&str]) {
    let mut want_layers = Vec::new();
    let mut want_blobs = Vec::new();
    for id in images {
        let i = image_inspect(s, id);
        for l in i["GraphDriver"]["Layers"].as_array().unwrap() {
            want_layers.push(l.as_str().unwrap().to_owned());
        }
        want_blobs.push(hex(i["Digest"].as_str().unwrap()).to_owned());
        want_blobs.push((*id).to_owned());
    }
    want_layers.sort();
    want_layers.dedup();
    assert_eq!(recorded_layers(s), want_layers, "layers");
    let rw = recorded_layers_of(s, true);
    let mut dirs = entries(&s.path("root/overlay"));
    dirs.retain(|d| d != "l" && !rw.contains(d));
    assert_eq!(dirs, want_layers, "layer directories");
    let blobs = entries(&s.path("root/blobs/sha256"));
    for b in &want_blobs {
        assert!(blobs.contains(b), "blob {b} missing: {blobs:?}");
    }
    // Layer blobs: per image, from the stored records.
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("root/images/images.json")).unwrap()).unwrap();
    let mut owned: Vec<String> = want_blobs.clone();
    for r in records["images"].as_array().unwrap() {
        for b in r["blobs"].as_array().into_iter().flatten() {
            owned.push(hex(b.as_str().unwrap()).to_owned());
        }
        for b in r["digests"].as_array().into_iter().flatten() {
            owned.push(hex(b.as_str().unwrap()).to_owned());
        }
    }
    for b in &blobs {
        assert!(owned.contains(b), "orphan blob {b}");
    }
    assert_eq!(temp_files(&s.path("root")), Vec::<PathBuf>::new());
}

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

// ---------------------------------------------------------------------------------------------
// 1. Pull and run
// ---------------------------------------------------------------------------------------------

#[test]
fn pulled_image_runs_with_its_tree() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let (_dir, img, reference) = standard_on(&reg);

    let out = s.run(&["pull", "--tls-verify=false", &reference]);
    expect_ok(&out);
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id, hex(&img.config_digest), "pull prints the image ID");
    assert!(
        text(&out.stderr).contains("Copying blob"),
        "{}",
        text(&out.stderr)
    );

    let i = image_inspect(&s, &reference);
    assert_eq!(i["Id"], id);
    assert_eq!(i["Digest"], img.manifest_digest);
    assert_eq!(i["RepoTags"], serde_json::json!([reference]));
    assert_eq!(i["RootFS"]["Layers"], serde_json::json!(img.diff_ids()));
    let listed = images_json(&s);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["Id"], id);

    let out = sh(
        &s,
        &[],
        &reference,
        "test -e /gone.txt && echo gone-present; \
         ls /opq; \
         echo inodes $(stat -c %i /data/hard) $(stat -c %i /data/keep.txt); \
         echo links $(stat -c %h /data/keep.txt); \
         echo link $(readlink /data/link); cat /data/link; \
         echo mode $(stat -c %a /data/suid); \
         cat /etc/os-release; cat /etc/motd",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(!out.contains("gone-present"), "{out}");
    assert_eq!(lines[0], "c", "/opq must hold only c: {out}");
    let inodes: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(inodes[0], "inodes");
    assert_eq!(inodes[1], inodes[2], "/data/hard is not keep.txt: {out}");
    assert_eq!(lines[2], "links 2", "{out}");
    assert_eq!(lines[3], "link keep.txt");
    assert_eq!(format!("{}\n", lines[4]), STANDARD_KEEP);
    assert_eq!(lines[5], "mode 4755");
    let rest = lines[6..].join("\n") + "\n";
    assert_eq!(rest, format!("{STANDARD_OS_RELEASE}{STANDARD_MOTD}"));
    assert!(s.ps_json().is_empty(), "--rm left a container");
}

#[test]
fn pulled_image_runs_on_vfs() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let (_dir, img, reference) = standard_on(&reg);
    let vfs = |args: &[&str]| {
        let out = s
            .cmd()
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        expect_ok(&out);
        text(&out.stdout)
    };
    let id = vfs(&["pull", "-q", "--tls-verify=false", &reference]);
    assert_eq!(id.trim(), hex(&img.config_digest));
    let out = vfs(&[
        "run",
        "--rm",
        &reference,
        "sh",
        "-c",
        "test -e /gone.txt || echo no-gone; ls /opq; stat -c %a /data/suid; \
         test $(stat -c %i /data/hard) = $(stat -c %i /data/keep.txt) && echo same",
    ]);
    assert_eq!(out, "no-gone\nc\n4755\nsame\n");
    assert!(s.path("root/vfs-layers/layers.json").exists());
}

// ---------------------------------------------------------------------------------------------
// 2. The image config
// ---------------------------------------------------------------------------------------------

#[test]
fn image_config_takes_effect_and_flags_override_it() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let config = ImageConfig {
        entrypoint: Some(strings(&["/bin/echo", "ep"])),
        cmd: Some(strings(&["default-cmd"])),
        env: strings(&["PATH=/bin", "FOO=image", "BAR=b"]),
        working_dir: Some("/data".into()),
        user: Some("1234:1234".into()),
        ..ImageConfig::default()
    };
    let img = standard_builder()
        .config(config)
        .write_oci_layout(dir.path(), "cfg");
    push(&reg, dir.path(), "t/cfg:1", None);
    let reference = reg.reference("t/cfg:1");
    assert_eq!(pull(&s, &reference), hex(&img.config_digest));

    let i = image_inspect(&s, &reference);
    assert_eq!(
        i["Config"]["Entrypoint"],
        serde_json::json!(["/bin/echo", "ep"])
    );
    assert_eq!(i["Config"]["WorkingDir"], "/data");

    // Entrypoint + Cmd.
    assert_eq!(s.ok(&["run", "--rm", &reference]), "ep default-cmd\n");
    // A CMD replaces the image's Cmd, keeping the entrypoint.
    assert_eq!(s.ok(&["run", "--rm", &reference, "x", "y"]), "ep x y\n");
    // --entrypoint replaces the entrypoint (and drops the image's Cmd).
    assert_eq!(
        s.ok(&["run", "--rm", "--entrypoint", "/bin/pwd", &reference]),
        "/data\n"
    );
    // Env, WorkingDir and User take effect; -e overrides an image variable.
    let script = "echo $FOO $BAR; pwd; id -u; id -g";
    let out = s.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &reference,
        "-c",
        script,
    ]);
    assert_eq!(out, "image b\n/data\n1234\n1234\n");
    let out = s.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=cli",
        "--entrypoint",
        "/bin/sh",
        &reference,
        "-c",
        script,
    ]);
    assert_eq!(out, "cli b\n/data\n1234\n1234\n");
    // --user and --workdir override the image's.
    let out = s.ok(&[
        "run",
        "--rm",
        "--user",
        "0:0",
        "--workdir",
        "/etc",
        "--entrypoint",
        "/bin/sh",
        &reference,
        "-c",
        "pwd; id -u",
    ]);
    assert_eq!(out, "/etc\n0\n");
}

// ---------------------------------------------------------------------------------------------
// 3. save/load, push/pull with auth, podman archives
// ---------------------------------------------------------------------------------------------

#[test]
fn save_and_load_round_trip_in_both_formats() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let (_dir, img, reference) = standard_on(&reg);
    let id = pull(&s, &reference);
    let digest = image_inspect(&s, &id)["Digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(digest, img.manifest_digest);

    let out_dir = tempfile::tempdir().unwrap();
    for format in ["docker-archive", "oci-archive"] {
        // Start from the pulled image (with its registry manifest).
        s.ok(&["rmi", "-a"]);
        pull(&s, &reference);
        let file = out_dir.path().join(format!("{format}.tar"));
        let f = file.to_str().unwrap();
        s.ok(&["save", "-q", "-o", f, "--format", format, &reference]);
        assert!(std::fs::metadata(&file).unwrap().len() > 0);
        s.ok(&["rmi", &reference]);
        assert!(images_json(&s).is_empty());
        let loaded = s.ok(&["load", "-i", f]);
        assert_eq!(loaded, format!("Loaded image: {reference}\n"), "{format}");
        let i = image_inspect(&s, &reference);
        assert_eq!(i["Id"], id, "{format}: ID");
        if format == "oci-archive" {
            // The stored manifest travels byte for byte.
            assert_eq!(i["Digest"], digest, "{format}: digest");
        } else {
            // A docker-archive holds no manifest (podman's loads get a new one too): the
            // loaded image's manifest lists the uncompressed layers. Saved and loaded again,
            // that image keeps its digest.
            let first = i["Digest"].clone();
            assert_ne!(first, digest);
            s.ok(&["save", "-q", "-o", f, "--format", format, &reference]);
            s.ok(&["rmi", &reference]);
            s.ok(&["load", "-q", "-i", f]);
            assert_eq!(
                image_inspect(&s, &reference)["Digest"],
                first,
                "{format}: digest"
            );
        }
        assert_eq!(i["RootFS"]["Layers"], serde_json::json!(img.diff_ids()));
        // And it still runs.
        assert_eq!(
            sh(&s, &[], &reference, "ls /opq; cat /data/hard"),
            "c\nkept\n"
        );
    }
}

#[test]
fn push_with_credentials_and_pull_back() {
    let Some(s) = sandbox() else { return };
    let plain = Registry::start();
    let (_dir, img, reference) = standard_on(&plain);
    let id = pull(&s, &reference);

    let auth = Registry::start_with_auth("alice", "s3cret");
    let dest = auth.reference("t/copy:2");
    // Wrong credentials: refused with a clear message, nothing pushed.
    let out = s.run(&[
        "push",
        "--tls-verify=false",
        "--creds",
        "alice:wrong",
        &reference,
        &dest,
    ]);
    expect_code(&out, 125);
    let err = text(&out.stderr);
    assert!(
        err.contains("Error:") && err.contains("unauthorized"),
        "{err}"
    );
    // Right ones.
    let out = s.run(&[
        "push",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &reference,
        &dest,
    ]);
    expect_ok(&out);
    assert!(
        text(&out.stderr).contains(&img.manifest_digest),
        "{}",
        text(&out.stderr)
    );

    // A fresh sandbox pulls it back: same ID and digest.
    let fresh = Sandbox::new();
    fresh.ok(&["images"]);
    let before = store_listing(&fresh);
    let out = fresh.run(&["pull", "--tls-verify=false", "--creds", "alice:nope", &dest]);
    expect_refused(
        &fresh,
        &out,
        &["unauthorized", "wrong username or password"],
        &before,
    );
    let out = fresh.run(&["pull", "--tls-verify=false", &dest]);
    expect_refused(&fresh, &out, &["authentication required"], &before);
    let got = fresh.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &dest,
    ]);
    assert_eq!(got.trim(), id);
    let i = image_inspect(&fresh, &dest);
    assert_eq!(i["Digest"], img.manifest_digest);
    // With an auth file instead of --creds.
    let authfile = fresh.path("auth.json");
    std::fs::write(
        &authfile,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            auth.addr(),
            base64_of("alice:s3cret")
        ),
    )
    .unwrap();
    fresh.ok(&["rmi", &dest]);
    let got = fresh.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        &dest,
    ]);
    assert_eq!(got.trim(), id);
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// podman (when installed) saves an image into an archive that rpod loads. podman runs with
/// its own temporary root and run root and the vfs driver, never the host's store.
#[test]
fn podman_saved_archive_loads() {
    let Some(s) = sandbox() else { return };
    let Some(podman) = ["/usr/bin/podman", "/usr/local/bin/podman"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        eprintln!("skipping: podman is not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (root, runroot) = (tmp.path().join("root"), tmp.path().join("runroot"));
    // podman's own tmp dir, file locks (not the host's /libpod_lock segment), no event log and
    // its own network dir, so nothing of the host's podman is touched.
    let podman_tmp = tmp.path().join("podman-tmp");
    let conf = tmp.path().join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[engine]\nevents_logger = \"none\"\nlock_type = \"file\"\n\
             image_copy_tmp_dir = \"{}\"\n\n[network]\nnetwork_config_dir = \"{}\"\n",
            tmp.path().display(),
            tmp.path().join("cni").display()
        ),
    )
    .unwrap();
    let storage_conf = tmp.path().join("storage.conf");
    std::fs::write(
        &storage_conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.display(),
            runroot.display()
        ),
    )
    .unwrap();
    let podman_cmd = |args: &[&str]| {
        let out = std::process::Command::new(podman)
            .env("CONTAINERS_CONF", &conf)
            .env("CONTAINERS_STORAGE_CONF", &storage_conf)
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .arg("--tmpdir")
            .arg(&podman_tmp)
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    // A root filesystem tarball: the standard image's first layer.
    let tarball = tmp.path().join("rootfs.tar");
    std::fs::write(&tarball, &common::registry::standard_layers()[0]).unwrap();
    podman_cmd(&[
        "import",
        tarball.to_str().unwrap(),
        "localhost/frompodman:1",
    ]);
    for format in ["docker-archive", "oci-archive"] {
        let archive = tmp.path().join(format!("{format}.tar"));
        podman_cmd(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "localhost/frompodman:1",
        ]);
        s.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(
            sh(&s, &[], "localhost/frompodman:1", "cat /etc/os-release"),
            STANDARD_OS_RELEASE
        );
        s.ok(&["rmi", "localhost/frompodman:1"]);
    }
    let _ = podman_cmd(&["system", "reset", "--force"]);
}

// ---------------------------------------------------------------------------------------------
// 4. rmi and prune
// ---------------------------------------------------------------------------------------------

#[test]
fn rmi_of_image_in_use_fails_then_leaves_nothing() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let (_dir, _img, reference) = standard_on(&reg);
    let id = pull(&s, &reference);
    assert_store_holds_only(&s, &[&id]);

    // A running container (its root mounted) and a created one.
    let ctr = s.ok(&["run", "-d", "--name", "user", &reference, "sleep", "100"]);
    let ctr = ctr.trim();
    s.ok(&["create", "--name", "user2", &reference, "true"]);
    let out = s.run(&["rmi", &reference]);
    expect_code(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("Error:") && err.contains("in use"), "{err}");
    assert!(
        err.contains(&ctr[..12]) || err.contains(ctr),
        "names no container: {err}"
    );
    let out = s.run(&["image", "rm", &id]);
    expect_code(&out, 2);
    assert_eq!(images_json(&s).len(), 1);
    // Unknown: 1.
    expect_code(&s.run(&["rmi", "nosuchimage"]), 1);

    s.ok(&["rm", "-f", "-t", "0", "user", "user2"]);
    let out = s.ok(&["rmi", &reference]);
    assert!(out.contains(&format!("Untagged: {reference}")), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(images_json(&s).is_empty());
    assert_eq!(recorded_layers(&s), Vec::<String>::new());
    let mut dirs = entries(&s.path("root/overlay"));
    dirs.retain(|d| d != "l");
    assert_eq!(dirs, Vec::<String>::new(), "layer directories left");
    assert_eq!(entries(&s.path("root/overlay/l")), Vec::<String>::new());
    assert_eq!(entries(&s.path("root/blobs/sha256")), Vec::<String>::new());
    assert_eq!(
        entries(&s.path("runroot/rpod-mounted")),
        Vec::<String>::new()
    );
    let mounts =
        std::fs::read_to_string(s.path("runroot/overlay-layers/mounts.json")).unwrap_or_default();
    assert!(
        !mounts.contains(&id) && !mounts.contains("\"count\":1"),
        "{mounts}"
    );
    assert_eq!(common::mounts_under(s.dir.path()), Vec::<String>::new());
}

#[test]
fn prune_removes_dangling_images_only() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let (_dir, _img, reference) = standard_on(&reg);
    let old = pull(&s, &reference);
    // Another image under the same name: the old one becomes dangling.
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg = ImageConfig::busybox_defaults();
    cfg.labels.insert("v".into(), "2".into());
    let img2 = standard_builder()
        .config(cfg)
        .write_oci_layout(dir2.path(), "v2");
    push(&reg, dir2.path(), "t/img:2", None);
    let new = pull(&s, &reg.reference("t/img:2"));
    assert_eq!(new, hex(&img2.config_digest));
    assert_ne!(new, old);
    s.ok(&["tag", &new, &reference]);
    // An import without a name is dangling too; one with a name is not.
    let tarball = s.path("rootfs.tar");
    std::fs::write(&tarball, &common::registry::standard_layers()[0]).unwrap();
    let unnamed = s
        .ok(&["import", "-q", tarball.to_str().unwrap()])
        .trim()
        .to_owned();
    let named = s
        .ok(&["import", "-q", tarball.to_str().unwrap(), "imported:1"])
        .trim()
        .to_owned();
    // Same content, same second: the IDs may only differ by the history; both are images.
    let dangling = s.ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    let mut dangling: Vec<&str> = dangling.lines().collect();
    dangling.sort_unstable();
    let mut want = vec![old.as_str(), unnamed.as_str()];
    want.sort_unstable();
    want.dedup();
    if named == unnamed {
        // Identical content gives one image, which now has a name.
        want.retain(|i| *i != unnamed);
    }
    assert_eq!(dangling, want);
    let filtered = s.ok(&["images", "-q", "--no-trunc", "--filter", "reference=t/img"]);
    assert_eq!(filtered.trim(), new);

    let pruned = s.ok(&["image", "prune"]);
    let mut pruned: Vec<&str> = pruned.lines().collect();
    pruned.sort_unstable();
    assert_eq!(pruned, want);
    let mut left: Vec<String> = images_json(&s)
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    let mut want_left = vec![new.clone(), named.clone()];
    want_left.sort();
    assert_eq!(left, want_left);
    assert_store_holds_only(&s, &[&new, &named]);
    // prune -a removes every image no container uses.
    s.ok(&["create", "--name", "keep", &new, "true"]);
    let pruned = s.ok(&["image", "prune", "-a"]);
    assert_eq!(pruned.trim(), named);
    assert_store_holds_only(&s, &[&new]);
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input
// ---------------------------------------------------------------------------------------------

/// A sandbox with the standard image pulled (so the store has content), its registry and the
/// store listing.
fn primed() -> Option<(
    Sandbox,
    Registry,
    tempfile::TempDir,
    BTreeMap<String, String>,
)> {
    let s = sandbox()?;
    let reg = Registry::start();
    let (dir, _img, reference) = standard_on(&reg);
    pull(&s, &reference);
    let before = store_listing(&s);
    Some((s, reg, dir, before))
}

/// A one-layer image of `tar` (gzip), pushed over HTTP as `repo:1`.
fn push_layer(reg: &Registry, repo: &str, tar: Vec<u8>) -> BuiltImage {
    let dir = tempfile::tempdir().unwrap();
    let [l1, ..] = common::registry::standard_layers();
    let img = ImageBuilder::new()
        .layer(l1.clone(), Compression::Gzip)
        .layer(tar, Compression::Gzip)
        .write_oci_layout(dir.path(), "x");
    push_http(reg, &img, repo, "1", None);
    img
}

#[test]
fn tampered_blob_fails_the_pull_and_leaves_nothing() {
    let Some((s, reg, _dir, before)) = primed() else {
        return;
    };
    let mut l = LayerTar::new();
    l.dir("extra", 0o755)
        .file("extra/big", &vec![7u8; 300_000], 0o644);
    let img = push_layer(&reg, "t/bad", l.finish());
    reg.corrupt_blob(&img.layer_digests()[1]);
    let out = s.run(&["pull", "--tls-verify=false", &reg.reference("t/bad:1")]);
    expect_refused(&s, &out, &["digest"], &before);
    // Also a corrupt config blob.
    let mut l = LayerTar::new();
    l.file("other", b"other\n", 0o644);
    let img = push_layer(&reg, "t/bad2", l.finish());
    reg.corrupt_blob(&img.config_digest);
    let out = s.run(&["pull", "--tls-verify=false", &reg.reference("t/bad2:1")]);
    expect_refused(&s, &out, &["digest"], &before);
}

#[test]
fn hostile_layers_are_refused() {
    let Some((s, reg, _dir, before)) = primed() else {
        return;
    };
    let victim = tempfile::tempdir().unwrap();
    let target = victim.path().display().to_string();

    let mut up = LayerTar::new();
    up.raw(tar::EntryType::Regular, b"../escape", None, 0o644, b"x");
    let mut abs = LayerTar::new();
    abs.symlink("evil", &target)
        .file("evil/pwned", b"pwned\n", 0o644);
    let mut rel = LayerTar::new();
    rel.symlink("up", "../../../../../../../..").file(
        &format!("up{target}/pwned2"),
        b"pwned\n",
        0o644,
    );
    for (repo, tar) in [("t/up", up), ("t/abs", abs), ("t/rel", rel)] {
        push_layer(&reg, repo, tar.finish());
        let out = s.run(&[
            "pull",
            "--tls-verify=false",
            &reg.reference(&format!("{repo}:1")),
        ]);
        expect_refused(&s, &out, &["refusing layer entry"], &before);
        assert_eq!(
            entries(victim.path()),
            Vec::<String>::new(),
            "{repo} wrote outside"
        );
    }
    assert!(!s.path("escape").exists() && !s.path("root/escape").exists());
}

/// A symlink to an absolute host path in one layer and a file written through it by the next:
/// with vfs (which unpacks each layer onto a copy of the one below) the write must be
/// refused; with overlay (each layer in its own directory) it may only create a directory in
/// the upper layer. Either way nothing is written outside the store.
#[test]
fn symlink_from_a_lower_layer_is_not_followed() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let victim = tempfile::tempdir().unwrap();
    let target = victim.path().display().to_string();
    let [l1, ..] = common::registry::standard_layers();
    let mut lower = LayerTar::new();
    lower.symlink("evil", &target);
    let mut upper = LayerTar::new();
    upper.file("evil/pwned", b"pwned\n", 0o644);
    let dir = tempfile::tempdir().unwrap();
    let img = ImageBuilder::new()
        .layer(l1.clone(), Compression::Gzip)
        .layer(lower.finish(), Compression::Gzip)
        .layer(upper.finish(), Compression::Gzip)
        .write_oci_layout(dir.path(), "x");
    push_http(&reg, &img, "t/cross", "1", None);
    let reference = reg.reference("t/cross:1");
    for driver in ["vfs", "overlay"] {
        let run = |args: &[&str]| {
            s.cmd()
                .args(["--storage-driver", driver])
                .args(args)
                .output()
                .unwrap()
        };
        run(&["images"]);
        let before = store_listing(&s);
        let out = run(&["pull", "-q", "--tls-verify=false", &reference]);
        if out.status.success() {
            assert_eq!(driver, "overlay", "vfs followed the lower layer's symlink");
            eprintln!("overlay: the upper layer's directory covers the symlink");
            let out = run(&["run", "--rm", &reference, "sh", "-c", "cat /evil/pwned"]);
            expect_ok(&out);
            assert_eq!(text(&out.stdout), "pwned\n");
        } else {
            expect_refused(&s, &out, &["refusing layer entry"], &before);
        }
        assert_eq!(
            entries(victim.path()),
            Vec::<String>::new(),
            "{driver} wrote outside"
        );
    }
}

#[test]
fn unknown_images_and_unreachable_registries_are_refused() {
    let Some((s, reg, _dir, before)) = primed() else {
        return;
    };
    // Unknown tag, unknown repository.
    let out = s.run(&["pull", "--tls-verify=false", &reg.reference("t/img:nope")]);
    expect_refused(&s, &out, &["not found"], &before);
    let out = s.run(&["pull", "--tls-verify=false", &reg.reference("t/nothere:1")]);
    expect_refused(&s, &out, &["not found"], &before);
    // Unknown local image with --pull never; and in image commands.
    let out = s.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "localhost/nosuch:1",
        "true",
    ]);
    expect_refused(&s, &out, &["image not known"], &before);
    let out = s.run(&["image", "inspect", "nosuch"]);
    expect_refused(&s, &out, &["image not known"], &before);
    let out = s.run(&["save", "-o", s.path("x.tar").to_str().unwrap(), "nosuch"]);
    expect_refused(&s, &out, &["image not known"], &before);
    assert!(!s.path("x.tar").exists());
    // A registry that is down.
    let addr = format!("127.0.0.1:{}", dead_port());
    let out = s.run(&["pull", "--tls-verify=false", &format!("{addr}/t/img:1")]);
    expect_refused(&s, &out, &["cannot reach registry", &addr], &before);
    let out = s.run(&[
        "push",
        "--tls-verify=false",
        &reg.reference("t/img:1"),
        &format!("{addr}/t/img:1"),
    ]);
    expect_refused(&s, &out, &["cannot reach registry"], &before);
    assert!(s.ps_json().is_empty());
}

#[test]
fn wrong_credentials_are_refused() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start_with_auth("bob", "pw");
    let dir = tempfile::tempdir().unwrap();
    standard_image(dir.path());
    push(&reg, dir.path(), "t/img:1", reg.creds());
    let reference = reg.reference("t/img:1");
    s.ok(&["images"]);
    let before = store_listing(&s);
    for creds in ["bob:wrong", "eve:pw"] {
        let out = s.run(&["pull", "--tls-verify=false", "--creds", creds, &reference]);
        expect_refused(&s, &out, &["wrong username or password"], &before);
    }
    let out = s.run(&[
        "run",
        "--rm",
        "--tls-verify=false",
        "--creds",
        "bob:no",
        &reference,
        "true",
    ]);
    expect_refused(&s, &out, &["wrong username or password"], &before);
    assert!(s.ps_json().is_empty());
    pull_with(&s, &reference, "bob:pw");
}

fn pull_with(s: &Sandbox, reference: &str, creds: &str) -> String {
    s.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--creds",
        creds,
        reference,
    ])
    .trim()
    .to_owned()
}

#[test]
fn manifest_for_another_platform_only_is_refused() {
    let Some((s, reg, _dir, before)) = primed() else {
        return;
    };
    let other = if go_arch() == "arm64" {
        "s390x"
    } else {
        "arm64"
    };
    let dir = tempfile::tempdir().unwrap();
    let img = standard_builder()
        .platform(other, "linux")
        .write_oci_layout(dir.path(), "other");
    for l in &img.layers {
        reg.put_blob("t/multi", &l.blob, None, None).unwrap();
    }
    reg.put_blob("t/multi", &img.config, None, None).unwrap();
    reg.put_manifest(
        "t/multi",
        &img.manifest_digest,
        OCI_MANIFEST,
        &img.manifest,
        None,
    )
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": img.manifest_digest,
            "size": img.manifest.len(),
            "platform": {"architecture": other, "os": "linux"},
        }],
    });
    let index = serde_json::to_vec(&index).unwrap();
    reg.put_manifest("t/multi", "1", OCI_INDEX, &index, None)
        .unwrap();
    let out = s.run(&["pull", "--tls-verify=false", &reg.reference("t/multi:1")]);
    expect_refused(&s, &out, &["no manifest for", other], &before);
}

// ---------------------------------------------------------------------------------------------
// 6. A killed pull
// ---------------------------------------------------------------------------------------------

/// A TCP proxy on loopback to `upstream` that sends the upstream's replies at `rate` bytes per
/// second (0: unthrottled); stopped on drop.
struct SlowProxy {
    addr: String,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    fn start(upstream: &str, rate: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let (r, st) = (rate.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let (r, st2) = (r.clone(), st.clone());
                        std::thread::spawn(move || pipe(client, server, None, &st2));
                        let st3 = st.clone();
                        std::thread::spawn(move || pipe(s2, c2, Some(&r), &st3));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        SlowProxy {
            addr,
            rate,
            stop,
            accept: Some(accept),
        }
    }
}

/// Copies `from` to `to`, at most `rate` bytes per second when given (0: unthrottled).
fn pipe(mut from: TcpStream, mut to: TcpStream, rate: Option<&AtomicU64>, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(r) = rate {
            let r = r.load(Ordering::SeqCst);
            if r > 0 {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn killed_pull_resumes_and_leaves_no_orphans() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    // The standard image plus a layer of 24 MB of random data (incompressible).
    let mut random = vec![0u8; 24 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    let mut big = LayerTar::new();
    big.file("big.bin", &random, 0o644);
    let dir = tempfile::tempdir().unwrap();
    let img = standard_builder()
        .layer(big.finish(), Compression::None)
        .write_oci_layout(dir.path(), "big");
    push_http(&reg, &img, "t/big", "1", None);
    // Through a proxy serving 12 MB/s: the big blob takes about 2 s.
    let proxy = SlowProxy::start(reg.addr(), 12 << 20);
    let reference = format!("{}/t/big:1", proxy.addr);

    let mut child = s
        .cmd()
        .args(["pull", "-q", "--tls-verify=false", &reference])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let blobs = s.path("root/blobs/sha256");
    let big_hex = hex(&img.layer_digests()[3]).to_owned();
    // Kill it once the small blobs are stored and the big one is on its way.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = entries(&blobs);
        let stored = e.iter().filter(|n| !n.starts_with(".tmp-")).count();
        let partial = e.iter().filter(|n| n.starts_with(".tmp-")).any(|n| {
            std::fs::metadata(blobs.join(n))
                .map(|m| m.len() > 1 << 20)
                .unwrap_or(false)
        });
        if stored >= 3 && partial {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the pull made no progress: {e:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        !entries(&blobs).contains(&big_hex),
        "the big blob completed"
    );
    assert!(images_json(&s).is_empty(), "an image was recorded");
    // What the killed pull left: stored blobs and the partial download.
    assert!(
        !temp_files(&s.path("root")).is_empty(),
        "no partial download"
    );

    // The next pull (unthrottled) completes, and nothing else is left.
    proxy.rate.store(0, Ordering::SeqCst);
    let id = pull(&s, &reference);
    assert_eq!(id, hex(&img.config_digest));
    assert_store_holds_only(&s, &[&id]);
    let mut want_blobs: Vec<String> = img
        .layer_digests()
        .iter()
        .chain([&img.config_digest, &img.manifest_digest])
        .map(|d| hex(d).to_owned())
        .collect();
    want_blobs.sort();
    assert_eq!(entries(&blobs), want_blobs);
    assert_eq!(
        sh(&s, &[], &reference, "stat -c %s /big.bin; cat /etc/motd"),
        format!("{}\n{STANDARD_MOTD}", 24 << 20)
    );
}

// ---------------------------------------------------------------------------------------------
// 7. --pull policies, mount and umount
// ---------------------------------------------------------------------------------------------

#[test]
fn pull_policies_and_mount() {
    let Some(s) = sandbox() else { return };
    let reg = Registry::start();
    let (_dir, img, reference) = standard_on(&reg);

    let out = s.run(&["run", "--rm", "--pull", "never", &reference, "true"]);
    expect_code(&out, 125);
    let err = text(&out.stderr);
    assert!(
        err.contains("Error:") && err.contains("image not known"),
        "{err}"
    );
    assert!(images_json(&s).is_empty());
    assert!(s.ps_json().is_empty());

    let out = s.run(&[
        "run",
        "--rm",
        "--pull",
        "missing",
        "--tls-verify=false",
        &reference,
        "cat",
        "/etc/motd",
    ]);
    expect_ok(&out);
    assert_eq!(text(&out.stdout), STANDARD_MOTD);
    assert_eq!(image_inspect(&s, &reference)["Id"], hex(&img.config_digest));
    // Now present: --pull never runs it, --pull missing does not pull again.
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--pull",
            "never",
            &reference,
            "cat",
            "/data/link"
        ]),
        STANDARD_KEEP
    );
    let out = s.run(&["run", "--rm", "--pull", "missing", &reference, "true"]);
    expect_ok(&out);
    assert!(
        !text(&out.stderr).contains("Copying"),
        "{}",
        text(&out.stderr)
    );
    // --pull always pulls again.
    let out = s.run(&[
        "run",
        "--rm",
        "--pull",
        "always",
        "--tls-verify=false",
        &reference,
        "true",
    ]);
    expect_ok(&out);
    assert!(
        text(&out.stderr).contains("Copying"),
        "{}",
        text(&out.stderr)
    );

    // mount/umount of a created container.
    s.ok(&["create", "--name", "m", &reference, "cat", "/written"]);
    let path = s.ok(&["mount", "m"]).trim().to_owned();
    let root = Path::new(&path);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/os-release")).unwrap(),
        STANDARD_OS_RELEASE
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/hard")).unwrap(),
        STANDARD_KEEP
    );
    assert!(!root.join("gone.txt").exists());
    assert_eq!(entries(&root.join("opq")), ["c"]);
    assert!(
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&path),
        "{path} not mounted"
    );
    // Written through the mount, seen in the container.
    std::fs::write(root.join("written"), "via mount\n").unwrap();
    let id = s.ok(&["umount", "m"]);
    assert_eq!(id.trim().len(), 64);
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&path),
        "{path} still mounted"
    );
    assert_eq!(s.ok(&["start", "-a", "m"]), "via mount\n");
    s.ok(&["rm", "m"]);
    assert_eq!(common::mounts_under(s.dir.path()), Vec::<String>::new());
}

/// `exec -u NAME` in a container from an image resolves the name in the image's `/etc/passwd`
/// (the layer's mount point), not in a directory the container does not have.
#[test]
fn exec_user_is_looked_up_in_the_image() {
    let Some((s, _reg, _dir, _before)) = primed() else {
        return;
    };
    let reference = s
        .ok(&["images", "--format", "json"])
        .split('"')
        .find(|t| t.contains("/t/img:1"))
        .map(str::to_owned)
        .expect("the pulled image is listed");
    s.ok(&["run", "-d", "--name", "ex", &reference, "sleep", "60"]);
    assert_eq!(
        s.ok(&["exec", "-u", "tester", "ex", "id", "-u"]).trim(),
        "1234"
    );
    expect_ok(&s.run(&["rm", "-f", "-t", "0", "ex"]));
}
