//! Image references: `[registry[:port]/]repository[:tag][@sha256:<hex>]`.

use std::fmt;
use std::str::FromStr;

use super::error::RegistryError;
use crate::digest::Digest;

/// The registry that unqualified single-name references mean when resolved against Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed image reference.
///
/// A name whose first `/`-separated component contains a `.` or `:` or is `localhost` is qualified: that
/// component is the registry. Anything else is left **unqualified** (`registry` is `None`) so that the caller
/// can try its `unqualified-search-registries`; [`Reference::with_registry`] then applies the Docker Hub
/// `library/` rule. Repository components must be lowercase; a reference with neither tag nor digest gets the
/// tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry host (with port), or `None` for an unqualified name.
    pub registry: Option<String>,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    /// The tag; `None` only when a digest is given without a tag.
    pub tag: Option<String>,
    /// The digest, if given; it takes precedence over the tag when fetching.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; see the type's documentation for the rules.
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidReference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if input.len() > 4096 {
            return Err(bad("too long"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (input, None),
        };
        // A tag is a ':' after the last '/', so "host:5000/repo" is not read as a tag.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(&bad)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_domain(first).map_err(&bad)?;
                (Some(first.to_owned()), rest)
            }
            _ => (None, name),
        };
        validate_path(repository).map_err(&bad)?;
        let mut reference = Reference {
            registry: None,
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        };
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(match registry {
            Some(r) => reference.with_registry(&r),
            None => reference,
        })
    }

    /// The same reference qualified with `registry`; on Docker Hub (`docker.io`, `index.docker.io`) a
    /// single-component repository gets the `library/` prefix.
    pub fn with_registry(&self, registry: &str) -> Reference {
        let mut out = self.clone();
        let hub = registry == DOCKER_HUB || registry == "index.docker.io";
        if hub && !out.repository.contains('/') {
            out.repository = format!("library/{}", out.repository);
        }
        out.registry = Some(if hub { DOCKER_HUB } else { registry }.to_owned());
        out
    }

    /// Whether the reference names its registry.
    pub fn is_qualified(&self) -> bool {
        self.registry.is_some()
    }

    /// What to put after `manifests/`: the digest if there is one, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The host to talk to for this reference's registry (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> Option<&str> {
        self.registry.as_deref().map(|r| match r {
            DOCKER_HUB => DOCKER_HUB_API,
            other => other,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `[\w][\w.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let ok_first = tag
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok_first
        || tag.len() > 128
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    }
    Ok(())
}

/// A host name (letters, digits, `-`, `.`) or bracketed IPv6, optionally with `:port`.
fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("invalid IPv6 address");
        }
        (None, after.strip_prefix(':'))
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty()
            || host.starts_with(['-', '.'])
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        {
            return Err("invalid registry host name");
        }
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid registry port");
        }
    }
    Ok(())
}

/// Components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.len() > 255 {
        return Err("repository name is longer than 255 characters");
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    for comp in path.split('/') {
        let bytes = comp.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() || !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum)
        {
            return Err(
                "repository components must start and end with a lowercase letter or digit",
            );
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(&bytes[i]) {
                i += 1;
                continue;
            }
            let sep_start = i;
            while i < bytes.len() && !alnum(&bytes[i]) {
                i += 1;
            }
            let sep = &comp[sep_start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
                return Err("invalid separator in repository name (allowed: '.', '_', '__', '-'+)");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_the_usual_forms() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.registry.as_deref(), r.repository.as_str()),
            (None, "busybox")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(
            r.with_registry("docker.io").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            r.with_registry("quay.io").to_string(),
            "quay.io/busybox:latest"
        );

        let r = Reference::parse("docker.io/busybox:1.36").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
        assert_eq!(r.api_host(), Some(DOCKER_HUB_API));

        let r = Reference::parse("localhost:5000/a/b-c__d.e:v1.0").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "a/b-c__d.e");
        assert_eq!(r.reference(), "v1.0");

        let r = Reference::parse(&format!("127.0.0.1:36100/x/y@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.reference(), D);
        let r = Reference::parse(&format!("localhost/x:t@{D}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.reference()), (Some("t"), D.to_owned()));
        assert!(Reference::parse("[::1]:5000/x").unwrap().is_qualified());
        assert!(!Reference::parse("library/busybox").unwrap().is_qualified());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "quay.io/Foo/bar",
            "a//b",
            "a/",
            "-a",
            "a:",
            "a:-x",
            "a:b c",
            "a@sha256:1234",
            "a@md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a...b",
            "host:port/x",
            "exa mple.com/x",
        ] {
            let err = Reference::parse(bad).unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidReference { .. }),
                "{bad}: {err}"
            );
        }
        // Uppercase is fine in the registry host, not in the repository.
        assert!(Reference::parse("Example.COM/x").is_ok());
    }
}
