//! Harness for image tests, independent of rpod's own image code: it drives only the real tools.
//!
//! - [`Registry`]: Debian's `docker-registry` (distribution 2.8) on `127.0.0.1:<free port>`, its
//!   data in a temporary directory, deletes enabled, optionally with htpasswd Basic auth
//!   ([`Registry::start_with_auth`]); killed and reaped on drop (also when the test panics).
//! - [`LayerTar`] and [`ImageBuilder`]: OCI image layouts (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`) built from scratch, without network, from the static `busybox`;
//!   [`standard_image`] is the three-layer image most tests want (whiteouts, an opaque dir, a hard
//!   link, a symlink, a setuid file; gzip and zstd layers).
//! - [`push`] (`skopeo copy oci:… docker://…`), [`inspect`] (`skopeo inspect`), and direct HTTP
//!   uploads ([`Registry::put_blob`], [`Registry::put_manifest`], [`push_http`]) for images skopeo
//!   would refuse; [`Registry::corrupt_blob`] tampers with a stored blob after the upload (the
//!   registry checks digests on upload, not on download).
//!
//! Every tool it runs is isolated from the host's configuration: skopeo gets its own policy,
//! auth file, registries.conf and registries.d in a temporary directory, and all traffic goes
//! to loopback (proxies are never used). Missing tools make it panic naming `cargo xtask deps`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// OCI media types used by the builder.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The tag [`standard_image`] writes into its layout.
pub const STANDARD_TAG: &str = "latest";

/// Fixed modification time of every entry the builder writes (reproducible digests).
const MTIME: u64 = 1_600_000_000;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hex part of a `sha256:<hex>` digest (panics on anything else).
fn digest_hex(digest: &str) -> &str {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest:?}"));
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a sha256 digest: {digest:?}"
    );
    hex
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

/// Full path of `tool` on `PATH` (or the usual Debian places), or a panic naming `cargo xtask
/// deps` and the Debian package.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{tool}` is not installed: the image tests need it (Debian package {package}); \
                 install the test dependencies with `cargo xtask deps`"
            )
        })
}

/// The static busybox binary (`busybox-static`).
pub fn busybox_path() -> PathBuf {
    ["/usr/bin/busybox", "/bin/busybox"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "busybox is not installed: the image tests need the static busybox (Debian \
                 package busybox-static); install the test dependencies with `cargo xtask deps`"
            )
        })
}

/// An HTTP agent that talks to loopback only: no proxy, statuses returned rather than errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The `Authorization` header value for Basic auth.
fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

/// A `docker-registry serve` process on `127.0.0.1:<free port>`; killed and reaped on drop.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    creds: Option<(String, String)>,
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Registry {
        Registry::launch(None)
    }

    /// A registry requiring Basic auth (htpasswd, bcrypt) for `user`/`pass`.
    pub fn start_with_auth(user: &str, pass: &str) -> Registry {
        Registry::launch(Some((user, pass)))
    }

    fn launch(auth: Option<(&str, &str)>) -> Registry {
        let bin = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("rpod-registry-")
            .tempdir()
            .expect("temporary directory for the registry");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("registry data dir");
        let mut auth_yml = String::new();
        if let Some((user, pass)) = auth {
            let htpasswd = require_tool("htpasswd", "apache2-utils");
            let out = Command::new(htpasswd)
                .args(["-Bbn", user, pass])
                .stdin(Stdio::null())
                .output()
                .expect("run htpasswd");
            assert!(
                out.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd file");
            auth_yml = format!(
                "auth:\n  htpasswd:\n    realm: rpod-test\n    path: {}\n",
                file.display()
            );
        }
        let config = dir.path().join("config.yml");
        let log_path = dir.path().join("log");
        // A port from the kernel, released just before the registry binds it: another process
        // may take it in between, so a clash is retried with a new port.
        for attempt in 0..8 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free loopback port")
                .port();
            let addr = format!("127.0.0.1:{port}");
            let yml = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: rpod-test-secret\n\
                 {auth_yml}",
                data = data.display(),
            );
            std::fs::write(&config, yml).expect("write registry config");
            let log = std::fs::File::create(&log_path).expect("registry log file");
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("registry log file"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let want = if auth.is_some() { 401 } else { 200 };
            match wait_ready(&mut child, &addr, want) {
                Ok(()) => {
                    return Registry {
                        child,
                        dir,
                        addr,
                        creds: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
                    }
                }
                Err(exited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if exited && log.contains("address already in use") && attempt < 7 {
                        continue;
                    }
                    panic!("docker-registry did not come up on {addr}:\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The registry process's ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `127.0.0.1:PORT/<name>`: a full image reference for `name` (`repo:tag` or `repo@digest`).
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// The credentials this registry requires, if any.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage root (`rootdirectory`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The registry's log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest_hex(digest);
        self.data_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Tampers with stored blob `digest`: flips the bits of one byte in its middle, keeping its
    /// length, so the registry still serves it (under the old digest) but its content no longer
    /// matches. Panics if the blob is not stored.
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_path(digest);
        let mut bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("blob {digest} not in the registry ({e})"));
        assert!(!bytes.is_empty(), "blob {digest} is empty");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        self.replace_blob(digest, &bytes);
    }

    /// Replaces the stored bytes of blob `digest` with `bytes` (of the same length: the
    /// registry serves the size it recorded).
    pub fn replace_blob(&self, digest: &str, bytes: &[u8]) {
        let path = self.blob_path(digest);
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("blob {digest} not in the registry ({e})"))
            .len();
        assert_eq!(
            len,
            bytes.len() as u64,
            "replacement for {digest} must keep its length"
        );
        std::fs::write(&path, bytes).expect("rewrite the blob");
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        creds: Option<(&str, &str)>,
    ) -> ureq::http::request::Builder {
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        if let Some((u, p)) = creds {
            b = b.header("Authorization", basic_auth(u, p));
        }
        b
    }

    fn send(&self, req: ureq::http::Request<Vec<u8>>) -> Result<HttpReply, String> {
        let resp = agent()
            .run(req)
            .map_err(|e| format!("HTTP to {}: {e}", self.addr))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("HTTP body from {}: {e}", self.addr))?;
        Ok(HttpReply {
            status,
            headers,
            body,
        })
    }

    /// `METHOD http://ADDR<path>` with `body`, Basic auth with `creds` when given.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        creds: Option<(&str, &str)>,
    ) -> Result<HttpReply, String> {
        let url = if path.starts_with("http://") {
            assert!(
                path.starts_with(&format!("http://{}/", self.addr)),
                "only this registry is reachable: {path}"
            );
            path.to_owned()
        } else {
            format!("http://{}{path}", self.addr)
        };
        let mut b = self.request(method, &url, creds);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body).map_err(|e| format!("bad request: {e}"))?;
        self.send(req)
    }

    /// Uploads `bytes` as a blob of `repo` under `digest` (its real digest when `None`): POST
    /// to start the upload, then one PUT with the whole body. Returns the digest used; a
    /// digest that does not match the bytes is refused by the registry (`Err`).
    pub fn put_blob(
        &self,
        repo: &str,
        bytes: &[u8],
        digest: Option<&str>,
        creds: Option<(&str, &str)>,
    ) -> Result<String, String> {
        let digest = digest.map_or_else(|| sha256_digest(bytes), str::to_owned);
        let start = self.http(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Vec::new(),
            creds,
        )?;
        if start.status != 202 {
            return Err(format!("start upload: {}", start.describe()));
        }
        let location = start
            .header("location")
            .ok_or_else(|| "upload start without Location".to_owned())?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let done = self.http(
            "PUT",
            &url,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &bytes.len().to_string()),
            ],
            bytes.to_vec(),
            creds,
        )?;
        if done.status != 201 {
            return Err(format!("finish upload of {digest}: {}", done.describe()));
        }
        Ok(digest)
    }

    /// PUTs `bytes` as the manifest `repo:reference` with `media_type`; returns the digest the
    /// registry reports.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        creds: Option<(&str, &str)>,
    ) -> Result<String, String> {
        let reply = self.http(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes.to_vec(),
            creds,
        )?;
        if reply.status != 201 {
            return Err(format!(
                "put manifest {repo}:{reference}: {}",
                reply.describe()
            ));
        }
        Ok(reply
            .header("docker-content-digest")
            .map_or_else(|| sha256_digest(bytes), str::to_owned))
    }

    /// GETs the manifest `repo:reference` (accepting OCI and Docker types); `(media type,
    /// bytes)`.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        creds: Option<(&str, &str)>,
    ) -> Result<(String, Vec<u8>), String> {
        let accept = [
            OCI_MANIFEST,
            OCI_INDEX,
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let reply = self.http(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", &accept)],
            Vec::new(),
            creds,
        )?;
        if reply.status != 200 {
            return Err(format!(
                "get manifest {repo}:{reference}: {}",
                reply.describe()
            ));
        }
        let mt = reply.header("content-type").unwrap_or("").to_owned();
        Ok((mt, reply.body))
    }
}

/// Waits until `GET http://ADDR/v2/` answers `want` (200, or 401 with auth). `Err(true)` when
/// the process exited first, `Err(false)` after 30 s.
fn wait_ready(child: &mut Child, addr: &str, want: u16) -> Result<(), bool> {
    let url = format!("http://{addr}/v2/");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(true);
        }
        if let Ok(resp) = agent.get(&url).call() {
            if resp.status().as_u16() == want {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply of [`Registry::http`].
#[derive(Debug)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        format!("{} {}", self.status, String::from_utf8_lossy(&self.body))
    }
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// Builds an uncompressed layer tar. Entries are owned by root and dated [`MTIME`] unless said
/// otherwise; paths are relative (no leading `/`). [`LayerTar::raw`] writes any path bytes, for
/// hostile layers (`../x`, absolute paths).
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        LayerTar::new()
    }
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

impl LayerTar {
    /// An empty layer.
    pub fn new() -> LayerTar {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        b.follow_symlinks(false);
        LayerTar { b }
    }

    fn append(&mut self, mut h: tar::Header, path: &str, body: &[u8]) -> &mut Self {
        let path = path.trim_start_matches('/');
        self.b
            .append_data(&mut h, path, body)
            .unwrap_or_else(|e| panic!("tar entry {path}: {e}"));
        self
    }

    /// A directory `path` with `mode`.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0, 0)
    }

    /// A directory owned by `uid:gid`.
    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let h = header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.append(h, &format!("{}/", path.trim_end_matches('/')), &[])
    }

    /// A regular file `path` with `body` and `mode` (permission bits incl. setuid/setgid/sticky).
    pub fn file(&mut self, path: &str, body: &[u8], mode: u32) -> &mut Self {
        self.file_owned(path, body, mode, 0, 0)
    }

    /// A regular file owned by `uid:gid`.
    pub fn file_owned(
        &mut self,
        path: &str,
        body: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let h = header(tar::EntryType::Regular, mode, uid, gid, body.len() as u64);
        self.append(h, path, body)
    }

    /// A symlink `path` -> `target` (any target, also absolute or with `..`).
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        h.set_link_name(target)
            .unwrap_or_else(|e| panic!("symlink target {target}: {e}"));
        self.append(h, path, &[])
    }

    /// A hard link `path` to `target`, a path earlier in this layer.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
        h.set_link_name(target.trim_start_matches('/'))
            .unwrap_or_else(|e| panic!("hard link target {target}: {e}"));
        self.append(h, path, &[])
    }

    /// A whiteout removing `path` of lower layers (`dir/.wh.name`).
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let path = path.trim_matches('/');
        let wh = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.file(&wh, &[], 0o644)
    }

    /// Marks directory `dir` opaque (`dir/.wh..wh..opq`): lower layers' contents are hidden.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_matches('/')),
            &[],
            0o644,
        )
    }

    /// An entry whose name is exactly `path` (up to 100 bytes, unchecked: `../x`, `/abs`…) of
    /// type `kind`, with `link` as link name for links, and `body` for regular files.
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        path: &[u8],
        link: Option<&[u8]>,
        mode: u32,
        body: &[u8],
    ) -> &mut Self {
        let mut h = header(kind, mode, 0, 0, body.len() as u64);
        {
            let old = h.as_old_mut();
            assert!(path.len() <= old.name.len(), "raw path too long");
            old.name = [0; 100];
            old.name[..path.len()].copy_from_slice(path);
            if let Some(link) = link {
                assert!(link.len() <= old.linkname.len(), "raw link name too long");
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link);
            }
        }
        h.set_cksum();
        self.b
            .append(&h, body)
            .unwrap_or_else(|e| panic!("raw tar entry: {e}"));
        self
    }

    /// A character or block device node (kind `Char` or `Block`).
    pub fn device(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = header(kind, 0o666, 0, 0, 0);
        h.set_device_major(major)
            .and_then(|()| h.set_device_minor(minor))
            .expect("device numbers");
        self.append(h, path, &[])
    }

    /// The finished, uncompressed tar.
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish the layer tar")
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar (`…layer.v1.tar`).
    None,
    /// gzip (`…tar+gzip`).
    Gzip,
    /// zstd (`…tar+zstd`).
    Zstd,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// `tar` compressed this way.
    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).expect("gzip");
                gz.finish().expect("gzip")
            }
            Compression::Zstd => zstd::stream::encode_all(tar, 3).expect("zstd"),
        }
    }
}

/// One layer as it goes into the image: the blob, its media type and the diff ID the config
/// claims. Fields are public so tests can tamper (a wrong `diff_id`, a blob that is not a tar…).
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// The layer's media type in the manifest.
    pub media_type: String,
    /// The (compressed) blob.
    pub blob: Vec<u8>,
    /// `sha256:` of the uncompressed tar, as written into the config's `rootfs.diff_ids`.
    pub diff_id: String,
}

impl LayerBlob {
    /// `tar` compressed with `compression`, with its true diff ID.
    pub fn new(tar: &[u8], compression: Compression) -> LayerBlob {
        LayerBlob {
            media_type: compression.media_type().to_owned(),
            blob: compression.compress(tar),
            diff_id: sha256_digest(tar),
        }
    }

    /// The blob's digest (what the manifest lists).
    pub fn digest(&self) -> String {
        sha256_digest(&self.blob)
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// The runtime part of an image config (`config` in the OCI config JSON). `None`/empty fields
/// are left out.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
    /// Any other fields of `config` (`ExposedPorts`, `Volumes`…), merged last.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Helper: a `Vec<String>` from string slices.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl ImageConfig {
    /// `PATH=…` set, `Cmd ["/bin/sh"]`: what a plain busybox image has.
    pub fn busybox_defaults() -> ImageConfig {
        ImageConfig {
            cmd: Some(strings(&["/bin/sh"])),
            env: strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
            ..ImageConfig::default()
        }
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Value};
        let mut m = serde_json::Map::new();
        if let Some(e) = &self.entrypoint {
            m.insert("Entrypoint".into(), json!(e));
        }
        if let Some(c) = &self.cmd {
            m.insert("Cmd".into(), json!(c));
        }
        if !self.env.is_empty() {
            m.insert("Env".into(), json!(self.env));
        }
        if let Some(w) = &self.working_dir {
            m.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &self.user {
            m.insert("User".into(), json!(u));
        }
        if !self.labels.is_empty() {
            m.insert("Labels".into(), json!(self.labels));
        }
        if let Some(s) = &self.stop_signal {
            m.insert("StopSignal".into(), json!(s));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// The Go architecture name of this machine (what image configs and indexes use).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Builds an image: layers, then a config, then [`ImageBuilder::write_oci_layout`].
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<LayerBlob>,
    config: ImageConfig,
    architecture: String,
    os: String,
    annotations: BTreeMap<String, String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

/// What [`ImageBuilder::write_oci_layout`] wrote.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The layout directory.
    pub dir: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`) in `index.json`.
    pub tag: String,
    /// The manifest JSON and its digest.
    pub manifest: Vec<u8>,
    /// `sha256:` of [`BuiltImage::manifest`].
    pub manifest_digest: String,
    /// The config JSON.
    pub config: Vec<u8>,
    /// `sha256:` of [`BuiltImage::config`] (the image ID).
    pub config_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerBlob>,
}

impl BuiltImage {
    /// The layers' blob digests, bottom first.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(LayerBlob::digest).collect()
    }

    /// The diff IDs the config lists.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

impl ImageBuilder {
    /// No layers, an empty config, this machine's architecture, `linux`.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            config: ImageConfig::default(),
            architecture: go_arch().to_owned(),
            os: "linux".to_owned(),
            annotations: BTreeMap::new(),
        }
    }

    /// Adds layer `tar` (uncompressed), compressed with `compression`.
    pub fn layer(mut self, tar: Vec<u8>, compression: Compression) -> Self {
        self.layers.push(LayerBlob::new(&tar, compression));
        self
    }

    /// Adds a prepared (possibly tampered) layer blob as is.
    pub fn layer_blob(mut self, layer: LayerBlob) -> Self {
        self.layers.push(layer);
        self
    }

    /// The layers so far (mutable, for tampering).
    pub fn layers_mut(&mut self) -> &mut Vec<LayerBlob> {
        &mut self.layers
    }

    /// Sets the runtime config.
    pub fn config(mut self, config: ImageConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the architecture (Go name) and OS.
    pub fn platform(mut self, architecture: &str, os: &str) -> Self {
        self.architecture = architecture.to_owned();
        self.os = os.to_owned();
        self
    }

    /// Adds a manifest annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The config JSON.
    pub fn config_json(&self) -> Vec<u8> {
        let history: Vec<serde_json::Value> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| {
                serde_json::json!({
                    "created": "2020-09-13T12:26:40Z",
                    "created_by": format!("rpod test layer {}", i + 1),
                })
            })
            .collect();
        let v = serde_json::json!({
            "created": "2020-09-13T12:26:40Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config.to_json(),
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        serde_json::to_vec(&v).expect("config JSON")
    }

    /// The manifest JSON for `config` (its bytes).
    pub fn manifest_json(&self, config: &[u8]) -> Vec<u8> {
        let mut v = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": config.len(),
            },
            "layers": self.layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type,
                "digest": l.digest(),
                "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::json!(self.annotations);
        }
        serde_json::to_vec(&v).expect("manifest JSON")
    }

    /// Writes (or adds to) the OCI image layout `dir`: `oci-layout`, the blobs, and an
    /// `index.json` entry tagged `tag` (replacing an entry of the same tag).
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> BuiltImage {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("create the layout's blobs dir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let put = |bytes: &[u8]| {
            let d = sha256_digest(bytes);
            std::fs::write(blobs.join(digest_hex(&d)), bytes).expect("write a layout blob");
            d
        };
        for l in &self.layers {
            put(&l.blob);
        }
        let config = self.config_json();
        let config_digest = put(&config);
        let manifest = self.manifest_json(&config);
        let manifest_digest = put(&manifest);

        let index_path = dir.join("index.json");
        let mut index: serde_json::Value = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(
                || serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
            );
        let entries = index["manifests"]
            .as_array_mut()
            .expect("index.json has a manifests array");
        entries.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
        entries.push(serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": self.architecture, "os": self.os},
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        std::fs::write(&index_path, serde_json::to_vec(&index).expect("index JSON"))
            .expect("write index.json");
        BuiltImage {
            dir: dir.to_path_buf(),
            tag: tag.to_owned(),
            manifest,
            manifest_digest,
            config,
            config_digest,
            layers: self.layers.clone(),
        }
    }
}

/// Applets [`standard_image`] links to busybox in `/bin`.
pub const STANDARD_APPLETS: &[&str] = &[
    "sh", "cat", "ls", "stat", "id", "pwd", "env", "echo", "test", "readlink", "sleep", "true",
];

/// `/etc/passwd` of the standard image.
pub const STANDARD_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\ntester:x:1234:1234:tester:/home/tester:/bin/sh\n";
/// `/etc/group` of the standard image.
pub const STANDARD_GROUP: &str = "root:x:0:\ntester:x:1234:\n";
/// `/etc/os-release` of the standard image.
pub const STANDARD_OS_RELEASE: &str =
    "ID=rpod-test\nNAME=\"rpod test image\"\nVERSION_ID=1\nPRETTY_NAME=\"rpod test image 1\"\n";
/// `/data/keep.txt` (also reached through `/data/hard` and `/data/link`).
pub const STANDARD_KEEP: &str = "kept\n";
/// `/etc/motd` (layer 3).
pub const STANDARD_MOTD: &str = "welcome to the rpod test image\n";

/// The standard image's three layers (uncompressed tars), built once per process:
///
/// 1. (gzip) dirs `/bin /etc /data /opq /tmp (1777) /root (700) /home/tester (1234:1234)`;
///    `/bin/busybox` (static) and symlinks [`STANDARD_APPLETS`] -> `busybox`;
///    `/etc/passwd`, `/etc/group` (root, `tester` 1234:1234), `/etc/os-release`; `/gone.txt`;
///    `/opq/a`, `/opq/b`; `/data/keep.txt`.
/// 2. (gzip) whiteout of `/gone.txt`; `/opq` opaque with `/opq/c`; `/data/keep.txt` again and
///    the hard link `/data/hard` -> it; symlink `/data/link` -> `keep.txt`; setuid
///    `/data/suid` (04755).
/// 3. (zstd) `/etc/motd`.
///
/// The resulting tree: `/gone.txt` absent, `/opq` = {c}, `/data` = {keep.txt, hard, link,
/// suid}, `/etc/motd` present.
pub fn standard_layers() -> &'static [Vec<u8>; 3] {
    static LAYERS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    LAYERS.get_or_init(|| {
        let busybox = std::fs::read(busybox_path()).expect("read busybox");
        let mut l1 = LayerTar::new();
        l1.dir("bin", 0o755);
        l1.file("bin/busybox", &busybox, 0o755);
        for applet in STANDARD_APPLETS {
            l1.symlink(&format!("bin/{applet}"), "busybox");
        }
        l1.dir("etc", 0o755)
            .file("etc/passwd", STANDARD_PASSWD.as_bytes(), 0o644)
            .file("etc/group", STANDARD_GROUP.as_bytes(), 0o644)
            .file("etc/os-release", STANDARD_OS_RELEASE.as_bytes(), 0o644)
            .dir("tmp", 0o1777)
            .dir("root", 0o700)
            .dir("home", 0o755)
            .dir_owned("home/tester", 0o755, 1234, 1234)
            .file("gone.txt", b"this file is whited out by layer 2\n", 0o644)
            .dir("opq", 0o755)
            .file("opq/a", b"a\n", 0o644)
            .file("opq/b", b"b\n", 0o644)
            .dir("data", 0o755)
            .file("data/keep.txt", STANDARD_KEEP.as_bytes(), 0o644);

        let mut l2 = LayerTar::new();
        l2.whiteout("gone.txt")
            .dir("opq", 0o755)
            .opaque("opq")
            .file("opq/c", b"c\n", 0o644)
            .dir("data", 0o755)
            .file("data/keep.txt", STANDARD_KEEP.as_bytes(), 0o644)
            .hardlink("data/hard", "data/keep.txt")
            .symlink("data/link", "keep.txt")
            .file("data/suid", b"#!/bin/sh\necho suid\n", 0o4755);

        let mut l3 = LayerTar::new();
        l3.dir("etc", 0o755)
            .file("etc/motd", STANDARD_MOTD.as_bytes(), 0o644);

        [l1.finish(), l2.finish(), l3.finish()]
    })
}

/// An [`ImageBuilder`] with the standard layers (see [`standard_layers`]) and
/// [`ImageConfig::busybox_defaults`]; change the config with [`ImageBuilder::config`].
pub fn standard_builder() -> ImageBuilder {
    let [l1, l2, l3] = standard_layers();
    ImageBuilder::new()
        .layer(l1.clone(), Compression::Gzip)
        .layer(l2.clone(), Compression::Gzip)
        .layer(l3.clone(), Compression::Zstd)
        .config(ImageConfig::busybox_defaults())
}

/// Writes the standard image into the OCI layout `dir`, tagged [`STANDARD_TAG`].
pub fn standard_image(dir: &Path) -> BuiltImage {
    standard_builder().write_oci_layout(dir, STANDARD_TAG)
}

// ---------------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------------

/// skopeo isolated from the host's configuration: its own policy (accept anything), empty auth
/// file, empty registries.conf, empty registries.d and tmp dir, all in a temporary directory.
pub struct Skopeo {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Default for Skopeo {
    fn default() -> Self {
        Skopeo::new()
    }
}

impl Skopeo {
    /// A fresh, isolated configuration.
    pub fn new() -> Skopeo {
        let bin = require_tool("skopeo", "skopeo");
        let dir = tempfile::Builder::new()
            .prefix("rpod-skopeo-")
            .tempdir()
            .expect("temporary directory for skopeo");
        let p = dir.path();
        std::fs::write(
            p.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("write policy.json");
        std::fs::write(p.join("auth.json"), r#"{"auths":{}}"#).expect("write auth.json");
        std::fs::write(p.join("registries.conf"), "").expect("write registries.conf");
        std::fs::create_dir_all(p.join("registries.d")).expect("registries.d");
        std::fs::create_dir_all(p.join("tmp")).expect("skopeo tmp dir");
        Skopeo { dir, bin }
    }

    /// `skopeo` with the global flags and environment of this configuration; add the
    /// subcommand and its arguments.
    pub fn cmd(&self) -> Command {
        let p = self.dir.path();
        let mut c = Command::new(&self.bin);
        c.arg("--policy")
            .arg(p.join("policy.json"))
            .arg("--registries.d")
            .arg(p.join("registries.d"))
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .env("REGISTRY_AUTH_FILE", p.join("auth.json"))
            .env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("TMPDIR", p.join("tmp"))
            .env("HOME", p)
            .env("XDG_RUNTIME_DIR", p)
            .env("XDG_CONFIG_HOME", p)
            .env("DOCKER_CONFIG", p)
            .stdin(Stdio::null());
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
        c
    }

    /// The isolated auth file (for `--authfile`).
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }
}

/// The source tag to copy from the layout: its only image when it has one (`oci:DIR`), else
/// the tag of `reference`.
fn layout_source(layout: &Path, reference: &str) -> String {
    let count = std::fs::read(layout.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"].as_array().map(Vec::len))
        .unwrap_or_else(|| panic!("{} is not an OCI layout", layout.display()));
    if count == 1 {
        format!("oci:{}", layout.display())
    } else {
        let tag = reference
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map_or("latest", |(_, t)| t);
        format!("oci:{}:{tag}", layout.display())
    }
}

/// `skopeo copy --preserve-digests oci:LAYOUT docker://ADDR/<reference>` (with `--dest-creds`
/// when given); the raw output. A layout with several images is copied from the image tagged
/// like `reference`.
pub fn try_push(
    registry: &Registry,
    layout: &Path,
    reference: &str,
    creds: Option<(&str, &str)>,
) -> Output {
    let skopeo = Skopeo::new();
    let mut c = skopeo.cmd();
    c.args([
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    c.arg("--dest-authfile").arg(skopeo.auth_file());
    match creds {
        Some((u, p)) => {
            c.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        None => {
            c.arg("--dest-no-creds");
        }
    }
    c.arg(layout_source(layout, reference))
        .arg(format!("docker://{}", registry.reference(reference)));
    c.output().expect("run skopeo copy")
}

/// [`try_push`], asserting success (the registry's log is shown otherwise).
pub fn push(registry: &Registry, layout: &Path, reference: &str, creds: Option<(&str, &str)>) {
    let out = try_push(registry, layout, reference, creds);
    assert!(
        out.status.success(),
        "skopeo copy {} -> {} failed: {}\nregistry log:\n{}",
        layout.display(),
        reference,
        String::from_utf8_lossy(&out.stderr),
        registry.log()
    );
}

/// `skopeo inspect [--raw] --tls-verify=false docker://ADDR/<reference>` (with `--creds`
/// when given); the raw output.
pub fn try_inspect(
    registry: &Registry,
    reference: &str,
    creds: Option<(&str, &str)>,
    raw: bool,
) -> Output {
    let skopeo = Skopeo::new();
    let mut c = skopeo.cmd();
    c.args(["inspect", "--tls-verify=false", "--retry-times", "0"]);
    if raw {
        c.arg("--raw");
    }
    c.arg("--authfile").arg(skopeo.auth_file());
    match creds {
        Some((u, p)) => {
            c.arg("--creds").arg(format!("{u}:{p}"));
        }
        None => {
            c.arg("--no-creds");
        }
    }
    c.arg(format!("docker://{}", registry.reference(reference)));
    c.output().expect("run skopeo inspect")
}

/// `skopeo inspect` as JSON, asserting success.
pub fn inspect(
    registry: &Registry,
    reference: &str,
    creds: Option<(&str, &str)>,
) -> serde_json::Value {
    let out = try_inspect(registry, reference, creds, false);
    assert!(
        out.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo inspect prints JSON")
}

/// Pushes `image`'s blobs and manifest to `repo:tag` over HTTP, without skopeo (so nothing is
/// checked beyond what the registry checks: blob digests and that the manifest's blobs exist).
/// Returns the manifest digest.
pub fn push_http(
    registry: &Registry,
    image: &BuiltImage,
    repo: &str,
    tag: &str,
    creds: Option<(&str, &str)>,
) -> String {
    for l in &image.layers {
        registry
            .put_blob(repo, &l.blob, None, creds)
            .unwrap_or_else(|e| panic!("push layer: {e}"));
    }
    registry
        .put_blob(repo, &image.config, None, creds)
        .unwrap_or_else(|e| panic!("push config: {e}"));
    registry
        .put_manifest(repo, tag, OCI_MANIFEST, &image.manifest, creds)
        .unwrap_or_else(|e| panic!("push manifest: {e}"))
}
