//! `cargo xtask demo`: the README's main job. A real pod on the embedded defaults: a busybox
//! `httpd` serving a page on the pod's 127.0.0.1:8080 in one container, fetched with `wget` from
//! a second container of the same pod; then `pod ps`, `ps`, `logs`, and a full cleanup.
//!
//! Everything lives in its own root, run root and tmp dir (printed), with empty configuration
//! directories, so the demo never reads or touches a user's configuration or state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{bench, deps, util};

/// The page the web container serves.
const PAGE: &str = "Hello from an rpod pod!\n";

/// The demo's private world: directories, lock segment and cgroup parent.
struct Demo {
    rpod: PathBuf,
    dir: tempfile::TempDir,
    tmp: tempfile::TempDir,
    cgroup_parent: String,
}

impl Demo {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.rpod);
        c.env("RPOD_CONFIG_ETC_DIR", self.dir.path().join("etc"))
            .env("RPOD_CONFIG_SHARE_DIR", self.dir.path().join("share"))
            .env("HOME", self.dir.path().join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .arg("--tmpdir")
            .arg(self.tmp.path())
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent);
        c
    }

    /// Runs `rpod ARGS`, echoing the command line (without the isolation flags) and its output.
    fn rpod(&self, args: &[&str]) -> Result<String> {
        println!("\n$ rpod {}", util::shell_join(args));
        let out = self.cmd().args(args).output().context("running rpod")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!(
                "rpod {} failed ({})",
                args.join(" "),
                util::describe_status(out.status)
            );
        }
        Ok(stdout)
    }

    /// Removes everything the demo made (also after a failure).
    fn cleanup(&self) {
        let _ = self.cmd().args(["pod", "rm", "-f", "demo"]).output();
        let _ = self.cmd().args(["system", "reset", "--force"]).output();
        let rel = self.cgroup_parent.trim_start_matches('/');
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                remove_cgroup_tree(&e.path().join(rel));
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// `cargo xtask demo`.
pub fn run() -> Result<()> {
    deps::run(deps::DepsArgs::default())?;
    println!("==> building rpod");
    util::run(util::cargo().args(["build", "--release", "-p", "rpod-cli"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                util::repo_root().join(p)
            }
        })
        .unwrap_or_else(|| util::repo_root().join("target"));
    let rpod = target.join("release/rpod");
    let dir = tempfile::Builder::new().prefix("rpod-demo-").tempdir()?;
    // rpod's tmp dir belongs on tmpfs (reboot detection); /dev/shm is one everywhere.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("rpod-demo-tmp-")
            .tempdir_in(shm)?
    } else {
        tempfile::Builder::new()
            .prefix("rpod-demo-tmp-")
            .tempdir()?
    };
    for d in ["etc", "share", "home"] {
        std::fs::create_dir_all(dir.path().join(d))?;
    }
    let demo = Demo {
        rpod,
        cgroup_parent: format!("/rpod_demo_{}", std::process::id()),
        dir,
        tmp,
    };
    println!("==> rpod demo: a pod with a web server and a client, on the embedded defaults");
    println!("    root:     {}", demo.dir.path().join("root").display());
    println!(
        "    run root: {}",
        demo.dir.path().join("runroot").display()
    );
    println!("    tmp dir:  {}", demo.tmp.path().display());
    println!("    config:   none (empty configuration directories: built-in defaults)");
    let rootfs = demo.dir.path().join("rootfs");
    bench::build_busybox_rootfs(&rootfs)?;
    std::fs::write(rootfs.join("var/www/index.html"), PAGE)?;
    let r = rootfs.display().to_string();

    demo.rpod(&["pod", "create", "--name", "demo"])?;
    demo.rpod(&[
        "create",
        "--pod",
        "demo",
        "--name",
        "web",
        "--rootfs",
        &r,
        "httpd",
        "-f",
        "-v",
        "-p",
        "127.0.0.1:8080",
        "-h",
        "/var/www",
    ])?;
    demo.rpod(&["pod", "start", "demo"])?;
    // httpd needs a moment to bind; retry the fetch briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let args = [
            "run",
            "--rm",
            "--pod",
            "demo",
            "--rootfs",
            &r,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
        ];
        match demo.rpod(&args) {
            Ok(p) => break p,
            Err(e) if Instant::now() < deadline => {
                println!("    (not ready yet: {e}; retrying)");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    if page != PAGE {
        bail!("the client got {page:?}, expected {PAGE:?}");
    }
    demo.rpod(&["pod", "ps", "--ctr-status"])?;
    demo.rpod(&["ps", "-a"])?;
    demo.rpod(&["logs", "web"])?;
    demo.rpod(&["pod", "stop", "-t", "2", "demo"])?;
    demo.rpod(&["pod", "rm", "-f", "demo"])?;
    demo.rpod(&["system", "reset", "--force"])?;
    println!("\n==> demo finished: the client fetched the page from the server over the pod's loopback; everything was removed");
    Ok(())
}
