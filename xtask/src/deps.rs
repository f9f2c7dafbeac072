//! `cargo xtask deps`: make sure the Debian packages rpod's tests and
//! benchmarks need are installed (installing them when running as root).
//!
//! Only Debian packages and the Rust toolchain are needed: tests run with
//! plain `cargo test`, so `cargo-nextest` is deliberately *not* required.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util;

/// Packages needed by the test suite (container runtimes, networking, a
/// static busybox for test rootfs, an init for pods) and by benchmarks.
pub const PACKAGES: &[&str] = &[
    "runc",
    "crun",
    "conmon",
    "containernetworking-plugins",
    "iptables",
    "busybox-static",
    "catatonit",
    "hyperfine",
    "time",
    // registry client tests (rpod-storage): a local registry, an interop peer and htpasswd
    "docker-registry",
    "skopeo",
    "apache2-utils",
    // the image benchmark's loopback registry serves TLS with a throw-away certificate
    "openssl",
    "curl",
];

/// Extra package for the rpod-vs-podman benchmarks only.
pub const PODMAN: &str = "podman";

/// podman's other network backend, for the benchmark's netavark case (podman 4.3 runs CNI
/// unless `--network-backend netavark` is given; bookworm ships netavark 1.4.0). The bench
/// always names the backend, so installing them does not change which one its other cases
/// use.
pub const NETAVARK: &[&str] = &["netavark", "aardvark-dns"];

/// Options of `cargo xtask deps`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct DepsArgs {
    /// Also require `podman`, `netavark` and `aardvark-dns` (only needed for `cargo xtask
    /// bench`).
    #[arg(long)]
    pub with_podman: bool,
}

/// Whether dpkg considers `pkg` fully installed.
fn is_installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("failed to run dpkg-query (is this a Debian system?)")?;
    // dpkg-query exits non-zero for packages it has never heard of.
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

/// Whether we run as root (`id -u` is 0). `id` is used rather than
/// `geteuid(2)` because the workspace forbids `unsafe`.
fn is_root() -> bool {
    util::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0")
}

/// The packages from `wanted` that are not installed.
fn missing(wanted: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for pkg in wanted {
        if !is_installed(pkg)? {
            missing.push(*pkg);
        }
    }
    Ok(missing)
}

/// The full package list for the given options.
fn wanted(args: DepsArgs) -> Vec<&'static str> {
    let mut wanted = PACKAGES.to_vec();
    if args.with_podman {
        wanted.push(PODMAN);
        wanted.extend_from_slice(NETAVARK);
    }
    wanted
}

/// Checks (and as root, installs) the required packages.
pub fn run(args: DepsArgs) -> Result<()> {
    let wanted = wanted(args);
    let missing = missing(&wanted)?;
    if missing.is_empty() {
        println!(
            "xtask deps: all {} required packages are installed ({})",
            wanted.len(),
            wanted.join(" ")
        );
        return Ok(());
    }
    println!("xtask deps: missing packages: {}", missing.join(" "));

    let install = format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        eprintln!("xtask deps: not running as root; install them with:");
        eprintln!("    sudo apt-get update && sudo {install}");
        bail!("missing packages: {}", missing.join(" "));
    }

    println!("xtask deps: running apt-get update && {install}");
    util::run(Command::new("apt-get").arg("update").stdin(Stdio::null()))?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )?;

    let still_missing = self::missing(&wanted)?;
    if !still_missing.is_empty() {
        bail!(
            "apt-get succeeded but these packages are still not installed: {}",
            still_missing.join(" ")
        );
    }
    println!("xtask deps: installed {}", missing.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_only_on_request() {
        assert!(!wanted(DepsArgs { with_podman: false }).contains(&PODMAN));
        let with = wanted(DepsArgs { with_podman: true });
        assert!(with.contains(&PODMAN));
        assert!(NETAVARK.iter().all(|p| with.contains(p)));
        let without = wanted(DepsArgs { with_podman: false });
        assert!(!NETAVARK.iter().any(|p| without.contains(p)));
        assert!(!PACKAGES.iter().any(|p| p.contains("nextest")));
    }
}
