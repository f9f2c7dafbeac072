//! A `docker-registry` (distribution 2.8) on loopback for integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpod_storage::registry::{Client, ClientOptions};
use rpod_storage::Digest;

/// A `docker-registry serve` process on a free loopback port; killed and reaped on drop.
pub struct Registry {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Registry {
    /// Starts a registry (with htpasswd Basic auth when `auth` is given); `None` if it is not installed.
    pub fn start(auth: Option<(&str, &str)>) -> Option<Registry> {
        if !have("docker-registry") {
            eprintln!("SKIP: docker-registry is not installed (cargo xtask deps installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let mut yml = format!(
            "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}, secret: rpod-test}}\n",
            data.display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, out.stdout).unwrap();
            yml.push_str(&format!(
                "auth: {{htpasswd: {{realm: rpod-test, path: {}}}}}\n",
                htpasswd.display()
            ));
        }
        let config = dir.path().join("reg.yml");
        std::fs::write(&config, yml).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = Registry { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&reg.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen: {}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(reg)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn client(&self, credentials: Option<(&str, &str)>) -> Client {
        let options = ClientOptions {
            insecure_http: true,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            ..ClientOptions::default()
        };
        Client::new(&self.addr, options).unwrap()
    }

    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
