//! What the cases run on, made before any measurement: the release `rpod`
//! binary, the busybox rootfs, and podman's `rpod-bench-busybox` and
//! `rpod-bench-pause` images (imported from local files, with no network).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::isolation::podman;
use crate::util;

/// Name of the busybox image imported into podman for container benchmarks.
pub(super) const PODMAN_BUSYBOX_IMAGE: &str = "rpod-bench-busybox";
/// Name of the pod infra image imported into podman: the static `catatonit`
/// with `ENTRYPOINT ["/catatonit", "-P"]`, i.e. what podman 4 builds itself
/// as `localhost/podman-pause:<version>-<stamp>` when `infra_image` is unset
/// (built here under our own name so that the benchmark only creates
/// `rpod-bench-*` objects, and without any network access).
pub(super) const PODMAN_PAUSE_IMAGE: &str = "rpod-bench-pause";

/// Builds `rpod` in release mode and returns the binary's path. The build
/// honours `CARGO_TARGET_DIR` (a relative one is taken, as cargo does, from
/// the directory `cargo xtask` was started in).
pub(super) fn build_rpod() -> Result<PathBuf> {
    let mut cmd = cargo()?;
    cmd.args([
        "build",
        "--release",
        "-p",
        "rpod-cli",
        "--message-format=json-render-diagnostics",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    run_cargo_build(
        cmd,
        "xtask bench",
        "`cargo build --release -p rpod-cli` must succeed before rpod can be benchmarked \
         (use `--filter podman` to measure podman alone)",
    )
}

/// Runs the `cargo build ... --message-format=json-render-diagnostics`
/// command `cmd` (stdout piped) and returns the path of the `rpod` binary it
/// built; `who` prefixes the messages, `hint` follows a failed build's status.
pub(crate) fn run_cargo_build(mut cmd: Command, who: &str, hint: &str) -> Result<PathBuf> {
    eprintln!("{who}: $ {}", util::display_cmd(&cmd));
    let out = cmd
        .output()
        .context("failed to start cargo to build rpod")?;
    if !out.status.success() {
        bail!(
            "building the rpod CLI failed ({}): {hint}",
            util::describe_status(out.status)
        );
    }
    // cargo reports each built artifact as a JSON line; find the binary.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            let exe = PathBuf::from(exe);
            if exe.file_name().is_some_and(|n| n == "rpod") {
                eprintln!("{who}: rpod binary: {}", exe.display());
                return Ok(exe);
            }
        }
    }
    bail!("`{}` produced no `rpod` binary", util::display_cmd(&cmd))
}

/// [`util::cargo`], honouring `CARGO_TARGET_DIR` (a relative one is taken,
/// as cargo does, from the directory `cargo xtask` was started in).
pub(crate) fn cargo() -> Result<Command> {
    let mut cmd = util::cargo();
    if let Some(target_dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let target_dir = PathBuf::from(target_dir);
        if target_dir.is_relative() {
            // util::cargo() runs in the repository root, not in our cwd.
            cmd.env(
                "CARGO_TARGET_DIR",
                std::env::current_dir()?.join(target_dir),
            );
        }
    }
    Ok(cmd)
}

/// Whether podman has `image`.
fn podman_image_exists(image: &str) -> Result<bool> {
    let exists = podman()
        .args(["image", "exists", image])
        .stdin(Stdio::null())
        .status()
        .context("failed to run podman")?;
    Ok(exists.success())
}

/// Imports the contents of `rootfs` into podman as `image`, with
/// `podman import --change` for each of `changes`.
fn podman_import(rootfs: &Path, image: &str, changes: &[&str]) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to run tar")?;
    let tar_out = tar.stdout.take().context("tar has no stdout")?;
    let mut import = podman();
    import.arg("import");
    for change in changes {
        import.args(["--change", change]);
    }
    let import = import
        .args(["-", image])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .status()
        .context("failed to run podman import")?;
    let tar_status = tar.wait()?;
    ensure!(
        tar_status.success(),
        "tar failed ({})",
        util::describe_status(tar_status)
    );
    ensure!(
        import.success(),
        "podman import failed ({})",
        util::describe_status(import)
    );
    eprintln!("xtask bench: imported podman image {image}");
    Ok(())
}

/// Makes sure podman has the `rpod-bench-busybox` image: a rootfs holding
/// the host's static busybox (`/bin/busybox`) and a symlink per applet,
/// imported with `podman import`. Does nothing if the image exists, and
/// touches no other image or container.
pub(super) fn ensure_podman_busybox_image() -> Result<()> {
    if podman_image_exists(PODMAN_BUSYBOX_IMAGE)? {
        eprintln!("xtask bench: podman image {PODMAN_BUSYBOX_IMAGE} already exists");
        return Ok(());
    }
    let rootfs = tempfile::Builder::new()
        .prefix("rpod-bench-rootfs-")
        .tempdir()?;
    build_busybox_rootfs(rootfs.path())?;
    podman_import(rootfs.path(), PODMAN_BUSYBOX_IMAGE, &[])
}

/// Makes sure podman has the `rpod-bench-pause` pod infra image (see
/// [`PODMAN_PAUSE_IMAGE`]), built from the host's static
/// `/usr/bin/catatonit`. Does nothing if the image exists, and touches no
/// other image or container.
pub(super) fn ensure_podman_pause_image() -> Result<()> {
    if podman_image_exists(PODMAN_PAUSE_IMAGE)? {
        eprintln!("xtask bench: podman image {PODMAN_PAUSE_IMAGE} already exists");
        return Ok(());
    }
    let catatonit = Path::new("/usr/bin/catatonit");
    ensure!(
        catatonit.exists(),
        "{} not found (install catatonit)",
        catatonit.display()
    );
    let rootfs = tempfile::Builder::new()
        .prefix("rpod-bench-pause-")
        .tempdir()?;
    for sub in ["dev", "etc", "proc", "sys"] {
        fs::create_dir(rootfs.path().join(sub))?;
    }
    fs::copy(catatonit, rootfs.path().join("catatonit"))?;
    podman_import(
        rootfs.path(),
        PODMAN_PAUSE_IMAGE,
        &[r#"ENTRYPOINT ["/catatonit", "-P"]"#],
    )
}

/// Lays out a minimal busybox rootfs in `dir`.
pub(crate) fn build_busybox_rootfs(dir: &Path) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.exists(),
        "{} not found (install busybox-static)",
        busybox.display()
    );
    for sub in ["bin", "dev", "etc", "proc", "root", "sys", "tmp", "var/www"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )?;
    fs::copy(busybox, dir.join("bin/busybox"))?;
    let list = util::output(Command::new(busybox).arg("--list"))?;
    let mut applets: Vec<&str> = list.lines().map(str::trim).collect();
    // Make sure the applets the benchmarks rely on are there.
    for needed in ["sh", "echo", "true", "cat", "ls", "sleep", "wget", "httpd"] {
        ensure!(
            applets.contains(&needed),
            "{} has no `{needed}` applet",
            busybox.display()
        );
    }
    applets.retain(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'));
    for applet in applets {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}
