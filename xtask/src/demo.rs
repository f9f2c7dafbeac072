//! `cargo xtask demo`: the README's main job. A real pod on a real CNI bridge network, its
//! containers run from an image: the demo lays out a root filesystem holding the host's static
//! busybox, tars it and makes it an image with `rpod import --change 'CMD ["/bin/sh"]' rootfs.tar
//! localhost/rpod-demo:latest` (no registry involved). A busybox `httpd` from that image listens
//! on the pod's port 80 in one container, the pod publishing it on `127.0.0.1:<free port>` of the
//! host; the page is fetched with `wget` from a second container of the same pod (same image) and
//! from the host (a plain HTTP GET); then `images`, `pod ps`, `ps`, `port`, `logs`, and a full
//! cleanup (`rmi` included).
//!
//! Everything lives in its own root, run root and tmp dir (printed). Its only configuration is a
//! `libpod.conf` giving the demo its own network: CNI config dir and IPAM dir inside its temp
//! dir, bridge `rpoddemo0`, subnet 10.81.0.0/24 (the embedded defaults otherwise), so the demo
//! never reads or touches a user's configuration, state or networks. The image store lives in the
//! same root (the embedded default storage driver). The cleanup (also after a failure) removes
//! the pod and the image, resets the state, deletes the bridge and unmounts anything still
//! mounted under the demo's directories before they are deleted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{bench, deps, util};

/// The page the web container serves.
const PAGE: &str = "Hello from an rpod pod!\n";
/// The demo's network (its name and its bridge's).
const NETWORK: &str = "rpoddemo0";
/// The demo network's subnet.
const SUBNET: &str = "10.81.0.0/24";
/// The image the demo imports and runs.
const IMAGE: &str = "localhost/rpod-demo:latest";

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
        let _ = self.cmd().args(["rmi", "-f", IMAGE]).output();
        let _ = self.cmd().args(["system", "reset", "--force"]).output();
        // Nothing should be mounted under our directories any more; if a failure left a layer
        // mounted, detach it so that the temporary directories can be deleted.
        for dir in [self.dir.path(), self.tmp.path()] {
            for m in mounts_under(dir) {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&m)
                    .stderr(std::process::Stdio::null())
                    .output();
            }
        }
        // The bridge plugin leaves the bridge (shared by a network's containers) behind.
        let _ = Command::new("ip")
            .args(["link", "del", NETWORK])
            .stderr(std::process::Stdio::null())
            .output();
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

/// Mount points at or under `dir` (from `/proc/self/mountinfo`), deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes blanks as octal; our temp dirs have none.
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Removes the cgroup `dir` bottom-up, best effort (children first; a cgroup directory can only
/// be `rmdir`ed once it has no children).
pub(crate) fn remove_cgroup_tree(dir: &Path) {
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
    for d in ["etc", "share", "home", "cni", "ipam"] {
        std::fs::create_dir_all(dir.path().join(d))?;
    }
    std::fs::write(dir.path().join("etc/libpod.conf"), libpod_conf(dir.path()))?;
    // Checked before the guard exists: its cleanup deletes the bridge.
    if Path::new("/sys/class/net").join(NETWORK).exists() {
        bail!(
            "a network interface {NETWORK} already exists (a demo still running, or a \
             leftover: `ip link del {NETWORK}`)"
        );
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
    println!(
        "    config:   {} (its own network {NETWORK}: bridge {NETWORK}, {SUBNET}; built-in defaults otherwise)",
        demo.dir.path().join("etc/libpod.conf").display()
    );
    // The image: a busybox root filesystem, as a tarball, imported into the demo's image store.
    let rootfs = demo.dir.path().join("rootfs");
    bench::build_busybox_rootfs(&rootfs)?;
    std::fs::write(rootfs.join("var/www/index.html"), PAGE)?;
    let tarball = demo.dir.path().join("rootfs.tar");
    println!(
        "\n$ tar -C rootfs --numeric-owner -cf rootfs.tar .   # busybox-static root filesystem"
    );
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--numeric-owner", "-cf"])
            .arg(&tarball)
            .arg("."),
    )?;
    std::fs::remove_dir_all(&rootfs)?;
    let tar = tarball.display().to_string();
    demo.rpod(&["import", "--change", r#"CMD ["/bin/sh"]"#, &tar, IMAGE])?;
    demo.rpod(&["images"])?;
    let r = "localhost/rpod-demo";

    let port = free_port()?;
    let publish = format!("127.0.0.1:{port}:80");
    let pod_id = demo.rpod(&[
        "pod",
        "create",
        "--name",
        "demo",
        "--network",
        "bridge",
        "-p",
        &publish,
    ])?;
    let infra = format!("{}-infra", pod_id.trim().get(..12).unwrap_or_default());
    demo.rpod(&[
        "create", "--pod", "demo", "--name", "web", "--pull", "never", r, "httpd", "-f", "-v",
        "-p", "80", "-h", "/var/www",
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
            "--pull",
            "never",
            r,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:80/",
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
        bail!("the client container got {page:?}, expected {PAGE:?}");
    }
    println!("\n$ # from the host: GET http://127.0.0.1:{port}/ (the pod's published port)");
    let from_host = http_get(port)?;
    print!("{from_host}");
    if from_host != PAGE {
        bail!("the host got {from_host:?}, expected {PAGE:?}");
    }
    // The pod's ports belong to its infra container.
    demo.rpod(&["port", &infra])?;
    demo.rpod(&["pod", "ps", "--ctr-status"])?;
    demo.rpod(&["ps", "-a"])?;
    demo.rpod(&["logs", "web"])?;
    demo.rpod(&["pod", "stop", "-t", "2", "demo"])?;
    demo.rpod(&["pod", "rm", "-f", "demo"])?;
    demo.rpod(&["rmi", IMAGE])?;
    demo.rpod(&["images"])?;
    demo.rpod(&["system", "reset", "--force"])?;
    let left = mounts_under(demo.dir.path());
    if !left.is_empty() {
        bail!("mounts left under the demo's root: {left:?}");
    }
    println!(
        "\n==> demo finished: containers of the imported image {IMAGE} served the page to a \
         second container of the pod and to the host (through the published port {port}); \
         everything was removed"
    );
    Ok(())
}

/// The demo's `libpod.conf`: its own CNI config dir, default network, bridge, subnet and IPAM
/// dir, all under `dir` (the bridge excepted).
fn libpod_conf(dir: &Path) -> String {
    format!(
        "cni_config_dir = \"{}\"\ncni_default_network = \"{NETWORK}\"\n\
         default_bridge = \"{NETWORK}\"\ndefault_subnet = \"{SUBNET}\"\n\
         ipam_data_dir = \"{}\"\n",
        dir.join("cni").display(),
        dir.join("ipam").display()
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// `GET /` on 127.0.0.1:`port` from the host, retried for a few seconds; the body of the
/// 200 answer.
fn http_get(port: u16) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get_once(port) {
            Ok(body) => return Ok(body),
            Err(e) if Instant::now() < deadline => {
                println!("    (not ready yet: {e:#}; retrying)");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

fn http_get_once(port: u16) -> Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr} sent no HTTP answer: {text:?}");
    };
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.") || status.split_whitespace().nth(1) != Some("200") {
        bail!("{addr} answered {status:?}");
    }
    Ok(body.to_owned())
}
