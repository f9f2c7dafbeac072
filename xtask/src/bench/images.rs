//! `cargo xtask bench --images`: the image benchmarks, rpod against podman side by side, every
//! store fresh and private to the run:
//!
//! - `pull` of a ~100 MB, three-layer image (random, incompressible file content, gzip layers)
//!   from a loopback `docker-registry` (its own data dir, `127.0.0.1:<free port>`, TLS with a
//!   throw-away self-signed certificate; the image is built here as an OCI layout and uploaded
//!   with `curl` through the registry API); every measured pull
//!   starts on a brand-new store; wall time and peak RSS (GNU time's `%M`) per run;
//! - unpacking one layer blob: `rpod import BLOB` (blob stored + unpacked + recorded) against
//!   `tar -xzf BLOB` (the floor) and `gzip -dc BLOB` (decompression alone);
//! - `run --rm IMAGE true` (hyperfine), the busybox image imported into both stores;
//! - `images` with 100 images in the store (hyperfine).
//!
//! Isolation: podman runs with its own `--root`, `--runroot`, `--tmpdir`, `--storage-driver
//! overlay` and `--runtime runc`, and with `CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`,
//! `CONTAINERS_REGISTRIES_CONF` and `REGISTRY_AUTH_FILE` pointing at files of this run (file
//! locks in its tmp dir, no event log, CNI configs in its own dir), so it never opens the host's
//! store, lock segment or networks. rpod runs on the embedded defaults with its own root, run
//! root, tmp dir, lock segment, config dir and cgroup parent. Everything (registry, containers,
//! images, mounts, cgroups, lock segments, directories) is removed by [`World`]'s drop, also
//! after a failure.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use super::{markdown, setup, BenchArgs};
use crate::deps::{self, DepsArgs};
use crate::util::{self, shell_join};

/// The section of BENCHMARKS.md this bench writes.
pub(super) const SECTION: markdown::Section = markdown::Section {
    start: "<!-- bench:images:start -->",
    end: "<!-- bench:images:end -->",
    heading: "Images",
};

/// The repository of the pulled image in the loopback registry.
const BIG_REPO: &str = "rpod-bench/big";
/// The busybox image both engines run.
const BUSYBOX: &str = "localhost/rpod-bench-busybox:latest";
/// Random bytes per layer of the pulled image (MiB).
const LAYER_MIB: [usize; 3] = [45, 35, 20];
/// Small files per layer (4 KiB each), besides the 1 MiB ones.
const SMALL_FILES: usize = 100;
/// Images in the store for the `images` case.
const IMAGES_N: usize = 100;
/// Fixed mtime of the layers' entries.
const MTIME: &str = "@1600000000";

/// Runs the image benchmarks.
pub(super) fn run(args: &BenchArgs) -> Result<()> {
    if !args.skip_deps {
        deps::run(DepsArgs { with_podman: true })?;
    }
    let rpod = setup::build_rpod()?;
    let world = World::new(rpod)?;
    let result = bench(&world, args);
    let cleanup = world.cleanup();
    let report = result?;
    cleanup?;
    drop(world);
    println!("\n{report}");
    if args.write {
        markdown::update(&SECTION, &report)?;
    }
    Ok(())
}

/// One measured run: wall time and peak RSS.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss_kib: f64,
}

/// Several runs of one case.
struct Stats {
    name: String,
    command: String,
    samples: Vec<Sample>,
    /// hyperfine's (median, mean, σ) when it measured the wall time.
    hyperfine: Option<(f64, f64, Option<f64>)>,
}

impl Stats {
    fn median_secs(&self) -> f64 {
        if let Some((m, _, _)) = self.hyperfine {
            return m;
        }
        super::measure::median_of(&mut self.samples.iter().map(|s| s.secs).collect::<Vec<_>>())
    }
    fn rss_mib(&self) -> f64 {
        super::measure::median_of(&mut self.samples.iter().map(|s| s.rss_kib).collect::<Vec<_>>())
            / 1024.0
    }
    fn spread(&self) -> String {
        if let Some((_, mean, sd)) = self.hyperfine {
            return format!(
                "{:.2} ± {:.2} ms (hyperfine)",
                mean * 1e3,
                sd.unwrap_or(0.0) * 1e3
            );
        }
        let min = self.samples.iter().map(|s| s.secs).fold(f64::MAX, f64::min);
        let max = self.samples.iter().map(|s| s.secs).fold(0.0, f64::max);
        format!("{} runs, {} – {}", self.samples.len(), ms(min), ms(max))
    }
}

fn ms(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{:.0} ms", secs * 1e3)
    } else {
        format!("{:.2} ms", secs * 1e3)
    }
}

/// Everything the run made: directories, the registry, the engines' stores.
struct World {
    rpod: PathBuf,
    /// Stores, the image layout, configs (on disk).
    dir: tempfile::TempDir,
    /// tmp dirs (on tmpfs).
    shm: tempfile::TempDir,
    registry: Option<Child>,
    registry_addr: String,
    cgroup_parent: String,
    /// Every rpod root made (`<dir>/rpod-<n>`), for the cleanup.
    rpod_roots: std::cell::RefCell<Vec<(PathBuf, Vec<String>)>>,
    /// Every podman root made (`<dir>/podman-<n>`), for the cleanup.
    podman_roots: std::cell::RefCell<Vec<(PathBuf, Vec<String>)>>,
    next: std::cell::Cell<u32>,
}

impl World {
    fn new(rpod: PathBuf) -> Result<World> {
        let dir = tempfile::Builder::new()
            .prefix("rpod-bench-images-")
            .tempdir_in("/var/tmp")?;
        let shm = tempfile::Builder::new()
            .prefix("rpod-bench-images-")
            .tempdir_in("/dev/shm")?;
        let p = dir.path();
        for d in ["etc", "home", "podman", "podman/cni", "tmp", "registry"] {
            fs::create_dir_all(p.join(d))?;
        }
        // rpod: embedded defaults; no policy.json (accept), no registries.conf, empty auth.
        fs::write(p.join("auth.json"), r#"{"auths":{}}"#)?;
        // podman: its own configuration files, nothing read from /etc/containers.
        fs::write(
            p.join("podman/policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )?;
        fs::write(p.join("podman/registries.conf"), "")?;
        fs::write(
            p.join("podman/storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/podman/unused-root\"\n\
                 runroot = \"{0}/podman/unused-runroot\"\n",
                p.display()
            ),
        )?;
        fs::write(
            p.join("podman/containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"none\"\nlock_type = \"file\"\nruntime = \"runc\"\n\
                 image_copy_tmp_dir = \"{tmp}\"\n\n[network]\nnetwork_backend = \"cni\"\n\
                 network_config_dir = \"{cni}\"\n",
                tmp = p.join("tmp").display(),
                cni = p.join("podman/cni").display()
            ),
        )?;
        let mut world = World {
            rpod,
            dir,
            shm,
            registry: None,
            registry_addr: String::new(),
            cgroup_parent: format!("/rpod_bench_img_cg_{}", std::process::id()),
            rpod_roots: Default::default(),
            podman_roots: Default::default(),
            next: std::cell::Cell::new(0),
        };
        world.start_registry()?;
        Ok(world)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn seq(&self) -> u32 {
        let n = self.next.get();
        self.next.set(n + 1);
        n
    }

    /// A fresh rpod root; returns the global flags selecting it.
    fn new_rpod_root(&self) -> Result<Vec<String>> {
        let n = self.seq();
        let root = self.path(&format!("rpod-{n}"));
        let tmp = self.shm.path().join(format!("rpod-{n}"));
        fs::create_dir_all(&root)?;
        let flags: Vec<String> = vec![
            "--root".into(),
            root.join("root").display().to_string(),
            // On tmpfs, as podman's (and as the default /run/containers/storage is).
            "--runroot".into(),
            self.shm.path().join(format!("r{n}r")).display().to_string(),
            "--tmpdir".into(),
            tmp.display().to_string(),
            "--lock-name".into(),
            format!("/rpod_bench_img_{}_{n}", std::process::id()),
            "--runtime".into(),
            "runc".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
        ];
        self.rpod_roots
            .borrow_mut()
            .push((root.clone(), flags.clone()));
        Ok(flags)
    }

    /// A fresh podman root; returns the global flags selecting it.
    fn new_podman_root(&self) -> Result<Vec<String>> {
        let n = self.seq();
        let root = self.path(&format!("podman-{n}"));
        fs::create_dir_all(&root)?;
        let flags: Vec<String> = vec![
            "--root".into(),
            root.join("root").display().to_string(),
            // podman refuses a run root longer than 50 characters: a short one on tmpfs.
            "--runroot".into(),
            self.shm.path().join(format!("p{n}r")).display().to_string(),
            "--tmpdir".into(),
            self.shm
                .path()
                .join(format!("podman-{n}"))
                .display()
                .to_string(),
            "--storage-driver".into(),
            "overlay".into(),
            "--runtime".into(),
            "runc".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
        ];
        self.podman_roots
            .borrow_mut()
            .push((root.clone(), flags.clone()));
        Ok(flags)
    }

    /// `rpod FLAGS ARGS`, isolated from the host's configuration.
    fn rpod(&self, flags: &[String], args: &[&str]) -> Command {
        let mut c = Command::new(&self.rpod);
        let p = self.dir.path();
        c.env("RPOD_CONFIG_ETC_DIR", p.join("etc"))
            .env("RPOD_CONFIG_SHARE_DIR", p.join("etc"))
            .env("HOME", p.join("home"))
            .env("REGISTRY_AUTH_FILE", p.join("auth.json"))
            .env_remove("XDG_CONFIG_HOME")
            .args(flags)
            .args(args);
        no_proxy(&mut c);
        c
    }

    /// `podman FLAGS ARGS`, isolated from the host's configuration.
    fn podman(&self, flags: &[String], args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        let p = self.path("podman");
        c.env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("TMPDIR", self.path("tmp"))
            .env("HOME", self.path("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .args(flags)
            .args(args);
        no_proxy(&mut c);
        c
    }

    /// `text` with this run's directories shortened.
    fn hide(&self, text: &str) -> String {
        text.replace(&self.shm.path().display().to_string(), "$SHM")
            .replace(&self.dir.path().display().to_string(), "$DIR")
    }

    fn start_registry(&mut self) -> Result<()> {
        let data = self.path("registry/data");
        fs::create_dir_all(&data)?;
        let config = self.path("registry/config.yml");
        let log_path = self.path("registry/log");
        // TLS with a throw-away self-signed certificate: `--tls-verify=false` then means "any
        // certificate" for both engines. (Plain HTTP would need rpod's https-then-http fallback,
        // which does not trigger against a plain-HTTP registry: see BENCHMARKS.md.)
        let (cert, key) = (
            self.path("registry/cert.pem"),
            self.path("registry/key.pem"),
        );
        quiet(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        )
        .context("making the registry's certificate (openssl)")?;
        for _ in 0..8 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let addr = format!("127.0.0.1:{port}");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n  secret: rpod-bench-secret\n  \
                     tls:\n    certificate: {}\n    key: {}\n",
                    data.display(),
                    cert.display(),
                    key.display()
                ),
            )?;
            let log = fs::File::create(&log_path)?;
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting docker-registry (install it with `cargo xtask deps`)")?;
            self.registry = Some(child);
            self.registry_addr = addr.clone();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(child) = self.registry.as_mut() {
                    if child.try_wait()?.is_some() {
                        break;
                    }
                }
                // A TLS server answers a plain HTTP request with 400: it is up.
                if http_status(&addr, "/v2/").is_ok_and(|s| s == 400) {
                    eprintln!("xtask bench: docker-registry on {addr}");
                    return Ok(());
                }
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.stop_registry();
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            if !log.contains("address already in use") {
                bail!("docker-registry did not come up on {addr}:\n{log}");
            }
        }
        bail!("docker-registry found no free port")
    }

    fn stop_registry(&mut self) {
        if let Some(mut child) = self.registry.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes what the engines made; errors are collected, the rest still runs.
    fn cleanup(&self) -> Result<()> {
        let mut errors = Vec::new();
        for (root, flags) in self.podman_roots.borrow_mut().drain(..) {
            if root.join("root").exists() {
                for args in [&["rm", "-a", "-f"][..], &["rmi", "-a", "-f"][..]] {
                    let _ = quiet(&mut self.podman(&flags, args));
                }
            }
            unmount_under(&root);
            if let Err(e) = fs::remove_dir_all(&root) {
                errors.push(format!("removing {}: {e}", root.display()));
            }
        }
        for (root, flags) in self.rpod_roots.borrow_mut().drain(..) {
            let n = root
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("rpod-"))
                .unwrap_or_default()
                .to_owned();
            if root.join("root").exists() {
                let _ = quiet(&mut self.rpod(&flags, &["rm", "-a", "-f"]));
                let _ = quiet(&mut self.rpod(&flags, &["rmi", "-a", "-f"]));
                let _ = quiet(&mut self.rpod(&flags, &["system", "reset", "--force"]));
            }
            let _ = fs::remove_file(format!(
                "/dev/shm/rpod_bench_img_{}_{n}",
                std::process::id()
            ));
            unmount_under(&root);
            if let Err(e) = fs::remove_dir_all(&root) {
                errors.push(format!("removing {}: {e}", root.display()));
            }
        }
        let rel = self.cgroup_parent.trim_start_matches('/');
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                crate::demo::remove_cgroup_tree(&e.path().join(rel));
            }
        }
        unmount_under(self.dir.path());
        unmount_under(self.shm.path());
        let left: Vec<PathBuf> = crate::demo::mounts_under(self.dir.path())
            .into_iter()
            .chain(crate::demo::mounts_under(self.shm.path()))
            .collect();
        if !left.is_empty() {
            errors.push(format!("mounts left: {left:?}"));
        }
        ensure!(errors.is_empty(), "cleanup: {}", errors.join("; "));
        Ok(())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_registry();
        let _ = self.cleanup();
    }
}

fn no_proxy(c: &mut Command) {
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(var);
    }
    c.env("NO_PROXY", "*");
}

/// Runs `cmd` with its output captured; fails with its stderr.
fn quiet(cmd: &mut Command) -> Result<String> {
    let line = util::display_cmd(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            util::describe_status(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lazily unmounts everything at or under `dir`.
fn unmount_under(dir: &Path) {
    for m in crate::demo::mounts_under(dir) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&m)
            .stderr(Stdio::null())
            .status();
    }
}

/// The HTTP status of `GET path` on the loopback `addr`.
fn http_status(addr: &str, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")
}

/// One run of `cmd` under `/usr/bin/time -f %M`, output discarded: wall time and peak RSS.
fn timed(world: &World, cmd: &Command) -> Result<Sample> {
    let out = world.path("time.out");
    let mut time = Command::new("/usr/bin/time");
    time.arg("-o").arg(&out).args(["-f", "%M"]);
    time.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => time.env(k, v),
            None => time.env_remove(k),
        };
    }
    time.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let o = time.output().context("running /usr/bin/time")?;
    let secs = start.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            util::display_cmd(cmd),
            util::describe_status(o.status),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = fs::read_to_string(&out)?;
    let rss_kib = text
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()
        .with_context(|| format!("unexpected /usr/bin/time output {text:?}"))?;
    Ok(Sample { secs, rss_kib })
}

/// hyperfine over `cmd` (its environment passed on), plus `rss_runs` GNU time runs.
fn hyperfine(world: &World, name: &str, cmd: &Command, args: &BenchArgs) -> Result<Stats> {
    let json_path = world.path("hyperfine.json");
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut hf = Command::new("hyperfine");
    hf.args(["-N", "--warmup", &args.warmup.max(1).to_string()])
        .args(["--runs", &args.runs.to_string()])
        .arg("--export-json")
        .arg(&json_path)
        .args(["--command-name", name])
        .arg(shell_join(&argv));
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => hf.env(k, v),
            None => hf.env_remove(k),
        };
    }
    hf.stdin(Stdio::null()).stdout(std::io::stderr());
    util::run(&mut hf)?;
    let json: Value = serde_json::from_str(&fs::read_to_string(&json_path)?)?;
    let hfr = super::measure::parse_hyperfine(&json)?;
    let mut samples = Vec::new();
    for _ in 0..args.rss_runs {
        samples.push(timed(world, cmd)?);
    }
    Ok(Stats {
        name: name.to_owned(),
        command: world.hide(&shell_join(&argv)),
        samples,
        hyperfine: Some(hfr),
    })
}

/// `runs` runs of the command `make()` returns (after `warmup` unmeasured ones), each made
/// fresh (a new store) by `make`.
fn repeated(
    world: &World,
    name: &str,
    warmup: u32,
    runs: u32,
    mut make: impl FnMut() -> Result<Command>,
) -> Result<Stats> {
    let mut samples = Vec::new();
    let mut command = String::new();
    for i in 0..warmup + runs {
        let cmd = make()?;
        command = world.hide(&argv_line(&cmd));
        let s = timed(world, &cmd)?;
        eprintln!(
            "xtask bench: {name}: {}run {}: {} , {:.1} MiB",
            if i < warmup { "warm-up " } else { "" },
            i + 1,
            ms(s.secs),
            s.rss_kib / 1024.0
        );
        if i >= warmup {
            samples.push(s);
        }
    }
    Ok(Stats {
        name: name.to_owned(),
        command,
        samples,
        hyperfine: None,
    })
}

/// `cmd`'s program and arguments as one shell line (its environment left out).
fn argv_line(cmd: &Command) -> String {
    shell_join(
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned()),
    )
}

/// SHA-256 of a file, as `sha256:<hex>` (with `sha256sum`).
fn sha256_file(path: &Path) -> Result<String> {
    let out = util::output(Command::new("sha256sum").arg(path))?;
    let hex = out.split_whitespace().next().context("sha256sum output")?;
    Ok(format!("sha256:{hex}"))
}

/// Writes `bytes` as a blob of the layout; returns its descriptor fields (digest, size).
fn put_blob(layout: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let tmp = layout.join("blob.tmp");
    fs::write(&tmp, bytes)?;
    put_blob_file(layout, &tmp)
}

/// Moves the file `path` into the layout's blobs; its (digest, size).
fn put_blob_file(layout: &Path, path: &Path) -> Result<(String, u64)> {
    let digest = sha256_file(path)?;
    let size = fs::metadata(path)?.len();
    let dest = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    fs::rename(path, &dest)?;
    Ok((digest, size))
}

/// Fills `dir` with `mib` files of 1 MiB of random bytes and [`SMALL_FILES`] 4 KiB ones.
fn random_files(dir: &Path, mib: usize) -> Result<()> {
    fs::create_dir_all(dir.join("small"))?;
    let mut urandom = fs::File::open("/dev/urandom")?;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..mib {
        urandom.read_exact(&mut buf)?;
        fs::write(dir.join(format!("blob-{i:03}.bin")), &buf)?;
    }
    for i in 0..SMALL_FILES {
        urandom.read_exact(&mut buf[..4096])?;
        fs::write(dir.join(format!("small/f-{i:03}")), &buf[..4096])?;
    }
    Ok(())
}

/// The pulled image: an OCI layout of three gzip layers (busybox + random files, then random
/// files twice). Returns the layout's path and the path of its first (largest) layer blob.
fn build_big_image(world: &World) -> Result<(PathBuf, PathBuf, Vec<u64>)> {
    let work = world.path("big");
    let layout = work.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256"))?;
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    let mut sizes = Vec::new();
    let mut first_blob = PathBuf::new();
    for (i, mib) in LAYER_MIB.iter().enumerate() {
        let tree = work.join(format!("layer{i}"));
        fs::create_dir_all(&tree)?;
        if i == 0 {
            setup::build_busybox_rootfs(&tree)?;
        }
        random_files(&tree.join(format!("data/layer{i}")), *mib)?;
        let tar = work.join(format!("layer{i}.tar"));
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(&tree)
                .args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name"])
                .arg(format!("--mtime={MTIME}"))
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        fs::remove_dir_all(&tree)?;
        diff_ids.push(sha256_file(&tar)?);
        util::run(Command::new("gzip").args(["-n", "-f"]).arg(&tar))?;
        let gz = work.join(format!("layer{i}.tar.gz"));
        if i == 0 {
            fs::copy(&gz, work.join("layer0.blob.tar.gz"))?;
            first_blob = work.join("layer0.blob.tar.gz");
        }
        let (digest, size) = put_blob_file(&layout, &gz)?;
        sizes.push(size);
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        }));
    }
    let config = json!({
        "created": "2020-09-13T12:26:40Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2020-09-13T12:26:40Z", "created_by": "rpod bench layer 0"},
            {"created": "2020-09-13T12:26:40Z", "created_by": "rpod bench layer 1"},
            {"created": "2020-09-13T12:26:40Z", "created_by": "rpod bench layer 2"},
        ],
    });
    let (config_digest, config_size) = put_blob(&layout, &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers,
    });
    let (manifest_digest, manifest_size) = put_blob(&layout, &serde_json::to_vec(&manifest)?)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok((layout, first_blob, sizes))
}

/// `curl` against the loopback registry (any certificate, never a proxy).
fn curl(world: &World) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "-k", "--noproxy", "*", "--fail"])
        .env("HOME", world.path("home"));
    no_proxy(&mut c);
    c
}

/// Uploads the layout's blobs and its manifest to `ADDR/REPO:latest` with the registry API
/// (a POST to start each upload, one PUT with the whole blob): no client that keeps caches or
/// reads the host's container configuration is involved.
fn push(world: &World, layout: &Path) -> Result<()> {
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json without a manifest")?;
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest_path = blob(manifest_digest);
    let manifest: Value = serde_json::from_slice(&fs::read(&manifest_path)?)?;
    let mut digests = vec![manifest["config"]["digest"]
        .as_str()
        .context("manifest without a config")?
        .to_owned()];
    for l in manifest["layers"]
        .as_array()
        .context("manifest without layers")?
    {
        digests.push(
            l["digest"]
                .as_str()
                .context("layer without digest")?
                .to_owned(),
        );
    }
    let base = format!("https://{}/v2/{BIG_REPO}", world.registry_addr);
    for digest in &digests {
        let headers = quiet(
            curl(world)
                .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
                .arg(format!("{base}/blobs/uploads/")),
        )?;
        let location = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_owned())
            })
            .context("the registry started an upload without a Location")?;
        let location = if location.starts_with('/') {
            format!("https://{}{location}", world.registry_addr)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        quiet(
            curl(world)
                .args(["-o", "/dev/null", "-X", "PUT"])
                .args(["-H", "Content-Type: application/octet-stream"])
                .arg("-T")
                .arg(blob(digest))
                .arg(format!("{location}{sep}digest={digest}")),
        )?;
    }
    quiet(
        curl(world)
            .args(["-o", "/dev/null", "-X", "PUT"])
            .args([
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg("-T")
            .arg(&manifest_path)
            .arg(format!("{base}/manifests/latest")),
    )?;
    eprintln!("xtask bench: pushed {BIG_REPO}:latest ({manifest_digest})");
    Ok(())
}

/// A busybox root filesystem tarball at `path` (optionally with a marker file).
fn busybox_tar(world: &World, path: &Path, marker: Option<usize>) -> Result<()> {
    let tree = world.path("tree");
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    fs::create_dir_all(&tree)?;
    match marker {
        None => setup::build_busybox_rootfs(&tree)?,
        Some(i) => {
            fs::create_dir_all(tree.join("etc"))?;
            fs::write(tree.join("etc/marker"), format!("image {i}\n"))?;
        }
    }
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .args(["--numeric-owner", "-cf"])
            .arg(path)
            .arg("."),
    )?;
    fs::remove_dir_all(&tree)?;
    Ok(())
}

/// The measurements, as the markdown report.
fn bench(world: &World, args: &BenchArgs) -> Result<String> {
    let runs = args.pull_runs;
    eprintln!("\nxtask bench: building the ~100 MB, 3-layer test image");
    let (layout, layer_blob, sizes) = build_big_image(world)?;
    push(world, &layout)?;
    let reference = format!("{}/{BIG_REPO}:latest", world.registry_addr);
    let total: u64 = sizes.iter().sum();

    // 1. pull, every run on a fresh store.
    eprintln!("\nxtask bench: pull");
    let rpod_pull = repeated(world, "rpod pull", 1, runs, || {
        let flags = world.new_rpod_root()?;
        Ok(world.rpod(&flags, &["pull", "--tls-verify=false", &reference]))
    })?;
    let podman_pull = repeated(world, "podman pull", 1, runs, || {
        let flags = world.new_podman_root()?;
        let policy = world.path("podman/policy.json").display().to_string();
        Ok(world.podman(
            &flags,
            &[
                "pull",
                "--tls-verify=false",
                "--signature-policy",
                &policy,
                &reference,
            ],
        ))
    })?;
    world.cleanup()?;

    // 2. unpacking one layer blob.
    eprintln!("\nxtask bench: unpack");
    let blob = layer_blob.display().to_string();
    let blob_size = fs::metadata(&layer_blob)?.len();
    let dest = world.path("untar");
    let tar_floor = repeated(world, "tar -xzf", 1, runs, || {
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        fs::create_dir_all(&dest)?;
        let mut c = Command::new("tar");
        c.arg("-xzf").arg(&blob).arg("-C").arg(&dest);
        Ok(c)
    })?;
    let tar_sync = repeated(world, "tar -xzf + sync -f", 1, runs, || {
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        fs::create_dir_all(&dest)?;
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "tar -xzf {} -C {} && sync -f {}",
            util::shell_quote(&blob),
            util::shell_quote(&dest.display().to_string()),
            util::shell_quote(&dest.display().to_string())
        ));
        Ok(c)
    })?;
    let gunzip = repeated(world, "gzip -dc > /dev/null", 1, runs, || {
        let mut c = Command::new("gzip");
        c.arg("-dc").arg(&blob);
        Ok(c)
    })?;
    let rpod_import = repeated(world, "rpod import (one layer blob)", 1, runs, || {
        let flags = world.new_rpod_root()?;
        Ok(world.rpod(&flags, &["import", &blob, "localhost/rpod-bench-layer"]))
    })?;
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    world.cleanup()?;

    // 3. run --rm IMAGE true.
    eprintln!("\nxtask bench: run --rm IMAGE true");
    let bb_tar = world.path("busybox.tar");
    busybox_tar(world, &bb_tar, None)?;
    let bb = bb_tar.display().to_string();
    let rflags = world.new_rpod_root()?;
    quiet(&mut world.rpod(&rflags, &["import", &bb, BUSYBOX]))?;
    let pflags = world.new_podman_root()?;
    quiet(&mut world.podman(&pflags, &["import", &bb, BUSYBOX]))?;
    let run_args = [
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        BUSYBOX,
        "true",
    ];
    let rpod_run = hyperfine(
        world,
        "rpod run --rm IMAGE true",
        &world.rpod(&rflags, &run_args),
        args,
    )?;
    let podman_run = hyperfine(
        world,
        "podman run --rm IMAGE true",
        &world.podman(&pflags, &run_args),
        args,
    )?;
    world.cleanup()?;

    // 4. images with 100 images.
    eprintln!("\nxtask bench: images with {IMAGES_N} images");
    let rflags = world.new_rpod_root()?;
    let pflags = world.new_podman_root()?;
    for i in 0..IMAGES_N {
        let t = world.path("small.tar");
        busybox_tar(world, &t, Some(i))?;
        let t = t.display().to_string();
        let name = format!("localhost/rpod-bench-img-{i:03}:latest");
        quiet(&mut world.rpod(&rflags, &["import", &t, &name]))?;
        quiet(&mut world.podman(&pflags, &["import", &t, &name]))?;
    }
    let n_rpod = quiet(&mut world.rpod(&rflags, &["images", "-q"]))?
        .lines()
        .count();
    let n_podman = quiet(&mut world.podman(&pflags, &["images", "-q"]))?
        .lines()
        .count();
    ensure!(
        n_rpod == IMAGES_N && n_podman == IMAGES_N,
        "expected {IMAGES_N} images, rpod lists {n_rpod}, podman {n_podman}"
    );
    let rpod_images = hyperfine(
        world,
        "rpod images (100)",
        &world.rpod(&rflags, &["images"]),
        args,
    )?;
    let podman_images = hyperfine(
        world,
        "podman images (100)",
        &world.podman(&pflags, &["images"]),
        args,
    )?;
    world.cleanup()?;

    let mut out = String::new();
    let now = util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let kernel = util::first_line_or_unknown("uname", &["-r"]);
    let rpod_version = util::first_line_or_unknown(
        "git",
        &[
            "-C",
            &util::repo_root().display().to_string(),
            "describe",
            "--always",
            "--dirty",
        ],
    );
    writeln!(
        out,
        "Command: `cargo xtask bench --images{}`\n",
        if args.write { " --write" } else { "" }
    )?;
    writeln!(
        out,
        "Date: {now} · kernel `{kernel}` · {} cores · load average at the end (1/5/15 min): {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.join(" ")
    )?;
    writeln!(
        out,
        "Versions: rpod `{rpod_version}` · {} · {} · {} · hyperfine `{}`\n",
        util::first_line_or_unknown("podman", &["--version"]),
        util::first_line_or_unknown("runc", &["--version"]),
        util::first_line_or_unknown("docker-registry", &["--version"]),
        util::first_line_or_unknown("hyperfine", &["--version"]),
    )?;
    writeln!(
        out,
        "| case | median | spread | target | peak RSS (MiB) | RSS target |\n|---|---:|---|---|---:|---|"
    )?;
    let mut row = |s: &Stats, target: String, rss_target: String| {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {target} | {:.1} | {rss_target} |",
            s.name,
            ms(s.median_secs()),
            s.spread(),
            s.rss_mib()
        );
    };
    let ratio = |a: &Stats, b: &Stats| a.median_secs() / b.median_secs();
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    let pull_ratio = ratio(&rpod_pull, &podman_pull);
    row(
        &rpod_pull,
        format!(
            "≤ 0.6× podman: {pull_ratio:.2}× {}",
            mark(pull_ratio <= 0.6)
        ),
        format!("≤ 48 MiB {}", mark(rpod_pull.rss_mib() <= 48.0)),
    );
    row(&podman_pull, "–".into(), "–".into());
    let unpack_ratio = ratio(&rpod_import, &tar_floor);
    row(
        &rpod_import,
        format!(
            "≤ 1.2× tar -xzf: {unpack_ratio:.2}× {}",
            mark(unpack_ratio <= 1.2)
        ),
        "–".into(),
    );
    row(&tar_floor, "floor".into(), "–".into());
    row(&tar_sync, "–".into(), "–".into());
    row(&gunzip, "–".into(), "–".into());
    let run_ratio = ratio(&rpod_run, &podman_run);
    row(
        &rpod_run,
        format!("≤ 0.4× podman: {run_ratio:.2}× {}", mark(run_ratio <= 0.4)),
        "–".into(),
    );
    row(&podman_run, "–".into(), "–".into());
    let images_ms = rpod_images.median_secs() * 1e3;
    row(
        &rpod_images,
        format!("≤ 10 ms {}", mark(images_ms <= 10.0)),
        "–".into(),
    );
    row(&podman_images, "–".into(), "–".into());
    writeln!(
        out,
        "\nThe pulled image: 3 gzip layers of {} bytes ({:.1} MB in all; 1 MiB files of random \
         bytes, {SMALL_FILES} 4 KiB files per layer, busybox in the first, `gzip -n`), uploaded with \
         `curl` to `docker-registry` on `127.0.0.1:<free port>` (its own data dir; TLS with a \
         throw-away self-signed certificate, both engines with `--tls-verify=false`). The unpacked blob is \
         that first layer ({blob_size} bytes). Each pull and each `rpod import` runs on a \
         brand-new store (a warm-up run first, not counted; the registry's files are in the page \
         cache). Wall time: `run`/`images` by `hyperfine -N` ({} runs, {} warm-up), the others \
         by {runs} timed runs (median; spread = min – max). Peak RSS: GNU time's `%M` (median).",
        sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" + "),
        total as f64 / 1e6,
        args.runs,
        args.warmup.max(1),
    )?;
    writeln!(
        out,
        "\nCommands (`$DIR` on disk, `$SHM` on tmpfs, both this run's own):\n"
    )?;
    for s in [
        &rpod_pull,
        &podman_pull,
        &rpod_import,
        &tar_floor,
        &tar_sync,
        &gunzip,
        &rpod_run,
        &podman_run,
        &rpod_images,
        &podman_images,
    ] {
        writeln!(out, "- {}: `{}`", s.name, s.command)?;
    }
    Ok(out)
}
