//! The HTTP client: requests, authentication, manifests and blobs.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::{Body, SendBody};

use super::auth::{query_escape, resolve_location};
use super::error::RegistryError;
use super::http::{classify, transport};
use super::manifest::ACCEPTED_MANIFESTS;
use crate::blobs::{BlobInfo, BlobStore};
use crate::digest::Digest;

/// Manifests larger than this are refused (the registry's own limit is 4 MiB too).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
pub(super) type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How to talk to a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Use plain `http://` instead of `https://` (podman's `--tls-verify=false` on a plain registry).
    pub insecure_http: bool,
    /// Verify the server's TLS certificate; `false` accepts any certificate (`--tls-verify=false`).
    pub tls_verify: bool,
    /// Username and password for Basic auth or for the token server.
    pub credentials: Option<(String, String)>,
    /// The `User-Agent` header; `rpod/<version>` when `None`.
    pub user_agent: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_http: false,
            tls_verify: true,
            credentials: None,
            user_agent: None,
        }
    }
}

/// A manifest as fetched: its media type (from `Content-Type`), verified digest and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// One of [`ACCEPTED_MANIFESTS`].
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The bytes as served.
    pub bytes: Vec<u8>,
}

/// A synchronous client of one Docker Registry v2 / OCI distribution registry.
///
/// Authentication is lazy: a request goes out with whatever is cached for its scope; on `401` the
/// `WWW-Authenticate` challenge is answered (Basic with the credentials, or a Bearer token fetched from the
/// realm and cached per scope) and the request is retried once. Streaming uploads cannot be replayed, so
/// [`Client::push_blob`] first makes a small request in the push scope to settle authentication.
#[derive(Debug)]
pub struct Client {
    pub(super) base: String,
    pub(super) agent: ureq::Agent,
    pub(super) credentials: Option<(String, String)>,
    pub(super) use_basic: AtomicBool,
    pub(super) tokens: Mutex<HashMap<String, String>>,
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

pub(super) fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Client {
    /// A client of `registry` (`host[:port]`); no request is made yet.
    pub fn new(registry: &str, options: ClientOptions) -> Result<Self> {
        let scheme = if options.insecure_http {
            "http"
        } else {
            "https"
        };
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(!options.tls_verify)
            .build();
        let user_agent = options
            .user_agent
            .unwrap_or_else(|| format!("rpod/{}", env!("CARGO_PKG_VERSION")));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(user_agent)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_redirects(10)
            .build();
        Ok(Client {
            base: format!("{scheme}://{registry}"),
            agent: config.into(),
            credentials: options.credentials,
            use_basic: AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:5000`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v2/`: checks that the registry speaks the v2 API and that authentication (if any) works.
    pub fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.request("GET", &url, "", &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(()),
            _ => Err(self.unexpected("GET", &url, resp)),
        }
    }

    /// Fetches a manifest by tag or digest, offering the OCI and Docker schema 2 types (never schema 1).
    ///
    /// By digest, the bytes must hash to it; by tag, they must match `Docker-Content-Digest` when sent.
    /// Manifests over [`MAX_MANIFEST_SIZE`] are refused without being read.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let accept = ACCEPTED_MANIFESTS.join(", ");
        let resp = self.request("GET", &url, &pull_scope(repo), &[("Accept", &accept)], None)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(self.not_found("manifest", repo, reference, resp)),
            _ => return Err(self.unexpected("GET", &url, resp)),
        }
        let too_large = || RegistryError::ManifestTooLarge {
            repository: repo.to_owned(),
            reference: reference.to_owned(),
            limit: MAX_MANIFEST_SIZE,
        };
        if resp
            .body()
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_SIZE)
        {
            return Err(too_large());
        }
        let media_type = header(&resp, "content-type")
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
            .to_owned();
        if !ACCEPTED_MANIFESTS.contains(&media_type.as_str()) {
            return Err(RegistryError::UnsupportedMediaType {
                repository: repo.to_owned(),
                reference: reference.to_owned(),
                media_type,
            });
        }
        let announced = header(&resp, "docker-content-digest").map(str::to_owned);
        let bytes = match resp
            .into_body()
            .into_with_config()
            .limit(MAX_MANIFEST_SIZE)
            .read_to_vec()
        {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(_)) => return Err(too_large()),
            Err(source) => return Err(transport("GET", &url, source)),
        };
        let digest = Digest::of_bytes(&bytes);
        let expected = match Digest::parse(reference) {
            Ok(d) => Some(d),
            Err(_) => announced.as_deref().and_then(|a| match Digest::parse(a) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(%url, error = %e, "ignoring unusable Docker-Content-Digest");
                    None
                }
            }),
        };
        if let Some(expected) = expected {
            if expected != digest {
                return Err(RegistryError::ManifestDigestMismatch {
                    repository: repo.to_owned(),
                    reference: reference.to_owned(),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        tracing::debug!(%url, %media_type, %digest, size = bytes.len(), "fetched manifest");
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// Whether the repository has the blob (`HEAD`).
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.head_blob(repo, digest, &pull_scope(repo))
    }

    fn head_blob(&self, repo: &str, digest: &Digest, scope: &str) -> Result<bool> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.request("HEAD", &url, scope, &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.unexpected("HEAD", &url, resp)),
        }
    }

    /// Downloads a blob into `store`, streaming it through [`BlobStore::put`] (which verifies the digest and
    /// leaves nothing behind on a mismatch). A blob already in the store is not downloaded again.
    pub fn fetch_blob(&self, repo: &str, digest: &Digest, store: &BlobStore) -> Result<BlobInfo> {
        if store.has(digest)? {
            let path = store.path(digest);
            let size = std::fs::metadata(&path)
                .map_err(|e| crate::StorageError::Io {
                    op: "stat blob",
                    path,
                    source: e,
                })?
                .len();
            tracing::debug!(%digest, "blob already present, not downloading");
            return Ok(BlobInfo {
                digest: digest.clone(),
                size,
            });
        }
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.request("GET", &url, &pull_scope(repo), &[], None)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(self.not_found("blob", repo, &digest.to_string(), resp)),
            _ => return Err(self.unexpected("GET", &url, resp)),
        }
        let info = store.put(resp.into_body().into_reader(), digest)?;
        tracing::debug!(%url, size = info.size, "fetched blob");
        Ok(info)
    }

    /// Opens a blob's download as a stream (for a caller that stores it while it reads it, e.g. through a
    /// [`Tee`](crate::Tee) into [`BlobStore::writer`]); the caller verifies the digest.
    pub fn blob_reader(&self, repo: &str, digest: &Digest) -> Result<impl Read + Send + 'static> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.request("GET", &url, &pull_scope(repo), &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(resp.into_body().into_reader()),
            404 => Err(self.not_found("blob", repo, &digest.to_string(), resp)),
            _ => Err(self.unexpected("GET", &url, resp)),
        }
    }

    /// Uploads a blob of `size` bytes unless the repository already has it; returns whether it uploaded.
    ///
    /// Flow: `HEAD` the blob, `POST …/blobs/uploads/`, then one `PUT <Location>&digest=…` with the whole body
    /// (the registry verifies the digest).
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        reader: impl Read,
        size: u64,
    ) -> Result<bool> {
        let scope = push_scope(repo);
        if self.head_blob(repo, digest, &scope)? {
            tracing::debug!(%digest, repo, "blob already in the registry");
            return Ok(false);
        }
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.request("POST", &url, &scope, &[], Some(&[]))?;
        if resp.status().as_u16() != 202 {
            return Err(self.unexpected("POST", &url, resp));
        }
        let location = header(&resp, "location").ok_or_else(|| RegistryError::Protocol {
            url: url.clone(),
            reason: "upload started (202) without a Location header".into(),
        })?;
        let mut put_url = resolve_location(&url, location);
        put_url.push(if put_url.contains('?') { '&' } else { '?' });
        put_url.push_str("digest=");
        put_url.push_str(&query_escape(&digest.to_string()));
        let mut reader = reader;
        let request = http::Request::builder()
            .method("PUT")
            .uri(&put_url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string());
        let request = match self.cached_auth(&scope) {
            Some(a) => request.header("Authorization", a),
            None => request,
        };
        let request = request
            .body(SendBody::from_reader(&mut reader))
            .map_err(|e| transport("PUT", &put_url, e.into()))?;
        let resp = self
            .agent
            .run(request)
            .map_err(|e| classify("PUT", &put_url, e))?;
        match resp.status().as_u16() {
            201 => {
                tracing::debug!(%digest, repo, size, "uploaded blob");
                Ok(true)
            }
            401 => Err(self.auth_failed(resp)),
            _ => Err(self.unexpected("PUT", &put_url, resp)),
        }
    }

    /// Uploads a manifest under `reference` (a tag or its digest); returns the manifest's digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.request(
            "PUT",
            &url,
            &push_scope(repo),
            &[("Content-Type", media_type)],
            Some(bytes),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.unexpected("PUT", &url, resp));
        }
        let digest = Digest::of_bytes(bytes);
        tracing::debug!(%url, %digest, "pushed manifest");
        Ok(digest)
    }
}
