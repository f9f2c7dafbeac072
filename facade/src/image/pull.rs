//! `pull`: short names through `unqualified-search-registries`, TLS settings from the flag and
//! `registries.conf`, credentials from `--creds` or `auth.json`, and the signature policy
//! (`policy.json`) checked before anything is fetched.

use std::path::{Path, PathBuf};

use base64::Engine;
use rpod_config::Registries;
use rpod_storage::images::{PullEvent, PullOptions};
use rpod_storage::registry::{ClientOptions, Reference, RegistryError};
use rpod_storage::{Image, ImageError};

use super::image_err;
use crate::error::RuntimeError;
use crate::Runtime;

/// When `run`/`create` pull (`--pull`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store (the default).
    #[default]
    Missing,
    /// Always pull.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, RuntimeError> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(RuntimeError::InvalidSpec(format!(
                "invalid pull policy {other:?}: use always, missing or never"
            ))),
        }
    }
}

/// How to reach registries for a pull or push.
#[derive(Debug, Clone, Default)]
pub struct PullSpec {
    /// `--tls-verify`: `Some(false)` talks to the registry without TLS verification (plain
    /// HTTP when it does not speak TLS); `None` takes `registries.conf`'s `insecure`.
    pub tls_verify: Option<bool>,
    /// `--creds USER[:PASS]`.
    pub creds: Option<String>,
    /// `--authfile`; else `$REGISTRY_AUTH_FILE`, else `/run/containers/<uid>/auth.json`.
    pub authfile: Option<PathBuf>,
    /// Print nothing while pulling.
    pub quiet: bool,
}

impl Runtime {
    /// Pulls `name` and returns the image. An unqualified name is tried in each of
    /// `registries.conf`'s `unqualified-search-registries` in turn.
    pub fn pull_image(
        &self,
        name: &str,
        spec: &PullSpec,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, RuntimeError> {
        let name = name.strip_prefix("docker://").unwrap_or(name);
        let reference = Reference::parse(name).map_err(|e| image_err(e.into()))?;
        let registries = Registries::load(&self.config.env.registries_conf())?;
        let candidates: Vec<Reference> = if reference.is_qualified() {
            vec![reference]
        } else if registries.search.is_empty() {
            return Err(image_err(ImageError::InvalidName {
                name: name.to_owned(),
                reason: format!(
                    "short name: no unqualified-search-registries are defined in {}; give the \
                     registry (e.g. docker.io/library/{name})",
                    self.config.env.registries_conf().display()
                ),
            }));
        } else {
            registries
                .search
                .iter()
                .map(|r| reference.with_registry(r))
                .collect()
        };
        let store = self.image_store()?;
        let mut errors = Vec::new();
        for candidate in &candidates {
            self.check_policy(candidate)?;
            let host = candidate.registry.clone().unwrap_or_default();
            let insecure = spec.tls_verify == Some(false)
                || (spec.tls_verify.is_none() && registries.insecure.contains(&host));
            let mut options = PullOptions {
                client: ClientOptions {
                    tls_verify: !insecure,
                    credentials: credentials(spec, &host)?,
                    ..ClientOptions::default()
                },
                platform: None,
            };
            let mut result = store.pull(candidate, &options, progress);
            if insecure
                && matches!(
                    &result,
                    Err(ImageError::Registry(RegistryError::Connect { .. }))
                )
            {
                // podman's fallback for insecure registries: plain HTTP.
                options.client.insecure_http = true;
                result = store.pull(candidate, &options, progress);
            }
            match result {
                Ok(image) => return Ok(image),
                Err(e) if candidates.len() > 1 && is_not_found(&e) => {
                    errors.push(format!("{candidate}: {e}"));
                }
                Err(e) => return Err(image_err(e)),
            }
        }
        Err(image_err(ImageError::NotFound {
            name: format!("{name} (tried {})", errors.join("; ")),
        }))
    }

    /// The image `name` names, pulled first as `policy` says.
    pub fn ensure_image(
        &self,
        name: &str,
        policy: PullPolicy,
        spec: &PullSpec,
        progress: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<Image, RuntimeError> {
        match policy {
            PullPolicy::Always => self.pull_image(name, spec, progress),
            PullPolicy::Never => self.lookup_image(name),
            PullPolicy::Missing => match self.lookup_image(name) {
                Ok(i) => Ok(i),
                Err(RuntimeError::Image(e)) if matches!(*e, ImageError::NotFound { .. }) => {
                    self.pull_image(name, spec, progress)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// The signature policy for the `docker` transport: `insecureAcceptAnything` passes,
    /// `reject` refuses, and signature requirements are refused as not supported (never
    /// silently ignored). No policy file: accept (choice: a fresh host has none).
    fn check_policy(&self, reference: &Reference) -> Result<(), RuntimeError> {
        let path = if self.config.values.signature_policy_path.is_empty() {
            self.config.env.etc_dir.join("policy.json")
        } else {
            PathBuf::from(&self.config.values.signature_policy_path)
        };
        check_policy_file(&path, "docker", &scopes(reference), &reference.to_string())
    }
}

impl Runtime {
    /// `rpod push IMAGE [DEST]`: uploads the image's blobs and its stored manifest (so the
    /// digest is unchanged) to `dest` (default: the image's name, which must then name a
    /// registry). Returns the manifest digest.
    pub fn push_image(
        &self,
        image: &str,
        dest: Option<&str>,
        spec: &PullSpec,
    ) -> Result<String, RuntimeError> {
        let store = self.image_store()?;
        let found = store.lookup(image).map_err(image_err)?;
        let dest = dest.unwrap_or(image);
        let dest = dest.strip_prefix("docker://").unwrap_or(dest);
        let mut reference = Reference::parse(dest).map_err(|e| image_err(e.into()))?;
        if !reference.is_qualified() {
            // `rpod push foo` of `localhost/foo:latest` cannot mean a registry.
            return Err(image_err(ImageError::InvalidName {
                name: dest.to_owned(),
                reason: format!(
                    "no registry in the destination (image {}): give registry/repository[:tag]",
                    found.id
                ),
            }));
        }
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some("latest".into());
        }
        let registries = Registries::load(&self.config.env.registries_conf())?;
        let host = reference.registry.clone().unwrap_or_default();
        let insecure = spec.tls_verify == Some(false)
            || (spec.tls_verify.is_none() && registries.insecure.contains(&host));
        let mut options = ClientOptions {
            tls_verify: !insecure,
            credentials: credentials(spec, &host)?,
            ..ClientOptions::default()
        };
        let mut result = store.push(&found.id, &reference, &options);
        if insecure
            && matches!(
                &result,
                Err(ImageError::Registry(RegistryError::Connect { .. }))
            )
        {
            options.insecure_http = true;
            result = store.push(&found.id, &reference, &options);
        }
        result.map(|d| d.to_string()).map_err(image_err)
    }
}

/// Whether `e` means "not in this registry" (so the next search registry is worth trying).
fn is_not_found(e: &ImageError) -> bool {
    matches!(
        e,
        ImageError::Registry(RegistryError::NotFound { .. })
            | ImageError::Registry(RegistryError::Connect { .. })
            | ImageError::Registry(RegistryError::AuthRequired { .. })
    )
}

/// The policy scopes of a docker reference, most specific first: `host/repo:tag` (or
/// `@digest`), `host/repo`, each parent namespace, `host`.
fn scopes(r: &Reference) -> Vec<String> {
    let host = r.registry.clone().unwrap_or_default();
    let repo = format!("{host}/{}", r.repository);
    let mut out = Vec::new();
    if let Some(d) = &r.digest {
        out.push(format!("{repo}@{d}"));
    } else if let Some(t) = &r.tag {
        out.push(format!("{repo}:{t}"));
    }
    let mut cur = repo.as_str();
    out.push(cur.to_owned());
    while let Some((parent, _)) = cur.rsplit_once('/') {
        out.push(parent.to_owned());
        cur = parent;
    }
    out
}

/// Evaluates `policy.json` at `path` for `transport` and the `scopes`.
pub(crate) fn check_policy_file(
    path: &Path,
    transport: &str,
    scopes: &[String],
    what: &str,
) -> Result<(), RuntimeError> {
    let refuse = |reason: String| {
        image_err(ImageError::Policy {
            reference: what.to_owned(),
            reason,
        })
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no signature policy file: accepting");
            return Ok(());
        }
        Err(e) => {
            return Err(refuse(format!(
                "cannot read policy {}: {e}",
                path.display()
            )))
        }
    };
    let policy: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| refuse(format!("policy {} is not valid JSON: {e}", path.display())))?;
    let per_transport = policy.get("transports").and_then(|t| t.get(transport));
    let requirements = scopes
        .iter()
        .find_map(|s| per_transport.and_then(|t| t.get(s.as_str())))
        .or_else(|| per_transport.and_then(|t| t.get("")))
        .or_else(|| policy.get("default"))
        .and_then(|r| r.as_array())
        .ok_or_else(|| {
            refuse(format!(
                "policy {} has no requirement for this image (no \"default\")",
                path.display()
            ))
        })?;
    if requirements.is_empty() {
        return Err(refuse(format!(
            "policy {} has an empty requirement list for this image",
            path.display()
        )));
    }
    for req in requirements {
        match req.get("type").and_then(|t| t.as_str()) {
            Some("insecureAcceptAnything") => {}
            Some("reject") => {
                return Err(refuse(format!(
                    "rejected by the signature policy {}",
                    path.display()
                )))
            }
            Some(kind @ ("signedBy" | "sigstoreSigned" | "signedBaseLayer")) => {
                return Err(refuse(format!(
                    "the signature policy {} requires {kind}, and rpod cannot verify signatures",
                    path.display()
                )))
            }
            other => {
                return Err(refuse(format!(
                    "unknown requirement type {other:?} in the signature policy {}",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// Credentials for `host`: `--creds`, else the auth file's entry for it.
fn credentials(spec: &PullSpec, host: &str) -> Result<Option<(String, String)>, RuntimeError> {
    if let Some(c) = &spec.creds {
        let (u, p) = c.split_once(':').unwrap_or((c.as_str(), ""));
        if u.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "invalid --creds: use USERNAME[:PASSWORD]".into(),
            ));
        }
        return Ok(Some((u.to_owned(), p.to_owned())));
    }
    let path = spec
        .authfile
        .clone()
        .or_else(|| std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/run/containers/{}/auth.json",
                nix::unistd::geteuid()
            ))
        });
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && spec.authfile.is_none() => {
            return Ok(None)
        }
        Err(source) => return Err(RuntimeError::Read { path, source }),
    };
    let bad = |why: &str| RuntimeError::InvalidSpec(format!("auth file {}: {why}", path.display()));
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(&format!("not valid JSON: {e}")))?;
    let Some(entry) = json.get("auths").and_then(|a| a.get(host)) else {
        return Ok(None);
    };
    let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| bad(&format!("the auth entry for {host} is not base64")))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| bad(&format!("the auth entry for {host} is not user:password")))?;
    Ok(Some((u.to_owned(), p.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_go_from_specific_to_host() {
        let r = Reference::parse("quay.io/a/b:1").ok();
        assert_eq!(
            r.as_ref().map(scopes),
            Some(vec![
                "quay.io/a/b:1".to_owned(),
                "quay.io/a/b".into(),
                "quay.io/a".into(),
                "quay.io".into()
            ])
        );
    }

    #[test]
    fn policy_accepts_rejects_and_refuses_signatures() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let p = dir.path().join("policy.json");
        let write = |s: &str| std::fs::write(&p, s).ok();
        let scopes = vec![
            "h/a/b:1".to_owned(),
            "h/a/b".into(),
            "h/a".into(),
            "h".into(),
        ];
        write(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#);
        assert!(check_policy_file(&p, "docker", &scopes, "x").is_ok());
        write(
            r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"h/a":[{"type":"reject"}]}}}"#,
        );
        assert!(check_policy_file(&p, "docker", &scopes, "x").is_err());
        assert!(check_policy_file(&p, "docker", &["o/a".into()], "x").is_ok());
        write(r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}"#);
        let e = check_policy_file(&p, "docker", &scopes, "x")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("cannot verify signatures")));
        assert!(check_policy_file(&dir.path().join("none.json"), "docker", &scopes, "x").is_ok());
    }
}
