//! Image names: normalising what a user types and matching it against stored names.

use super::error::{ImageError, ImageResult};
use super::record::Image;
use crate::registry::Reference;

/// The registry given to names that have none (`rpod tag IMG foo` names it `localhost/foo:latest`).
pub const LOCAL_REGISTRY: &str = "localhost";

/// Parses `name` as a tagged image name and qualifies it: `foo` → `localhost/foo:latest`,
/// `quay.io/a/b` → `quay.io/a/b:latest`. A digest is refused (names are tags).
pub fn normalize_name(name: &str) -> ImageResult<String> {
    let bad = |reason: String| ImageError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let r = Reference::parse(name).map_err(|e| bad(e.to_string()))?;
    if r.digest.is_some() {
        return Err(bad("a name cannot carry a digest, give a tag".into()));
    }
    let r = if r.is_qualified() {
        r
    } else {
        r.with_registry(LOCAL_REGISTRY)
    };
    Ok(r.to_string())
}

/// Whether the stored `name` (qualified, tagged) is what `query` means: the same name, or for an unqualified
/// query a stored name whose repository is the query's or ends with `/<query's repository>`, same tag.
pub(crate) fn name_matches(name: &str, query: &Reference) -> bool {
    let Ok(stored) = Reference::parse(name) else {
        return false;
    };
    if stored.tag != query.tag || query.digest.is_some() {
        return false;
    }
    if query.is_qualified() {
        return stored.registry == query.registry && stored.repository == query.repository;
    }
    stored.repository == query.repository
        || stored
            .repository
            .strip_suffix(&query.repository)
            .is_some_and(|p| p.ends_with('/'))
}

/// Whether a `repo@sha256:…` query names this image (by one of its manifest digests; the repository must
/// match one of its names, ignoring tags).
fn digest_matches(image: &Image, query: &Reference) -> bool {
    let Some(d) = &query.digest else {
        return false;
    };
    let d = d.to_string();
    if image.digest != d && !image.digests.contains(&d) {
        return false;
    }
    image.names.iter().any(|n| {
        Reference::parse(n).is_ok_and(|s| {
            s.repository == query.repository
                || s.repository
                    .strip_suffix(&query.repository)
                    .is_some_and(|p| p.ends_with('/'))
        })
    }) || image.names.is_empty()
}

/// Finds the one image `query` names: a full ID (or `sha256:<id>`), a name (qualified or short), a
/// `name@digest`, or a unique ID prefix.
pub(crate) fn find<'a>(images: &'a [Image], query: &str) -> ImageResult<&'a Image> {
    let not_found = || ImageError::NotFound {
        name: query.to_owned(),
    };
    let id = query.strip_prefix("sha256:").unwrap_or(query);
    if let Some(i) = images.iter().find(|i| i.id == id) {
        return Ok(i);
    }
    if let Ok(r) = Reference::parse(query) {
        let hits: Vec<&Image> = images
            .iter()
            .filter(|i| {
                if r.digest.is_some() {
                    digest_matches(i, &r)
                } else {
                    i.names.iter().any(|n| name_matches(n, &r))
                }
            })
            .collect();
        match hits.len() {
            0 => {}
            1 => return Ok(hits[0]),
            _ => {
                // An exact qualified name wins over suffix matches.
                if let Some(i) = hits.iter().find(|i| i.names.iter().any(|n| n == query)) {
                    return Ok(i);
                }
                return Err(ImageError::Ambiguous {
                    name: query.to_owned(),
                    matches: hits
                        .iter()
                        .map(|i| i.names.first().cloned().unwrap_or_else(|| i.id.clone()))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    if id.len() >= 3 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<&Image> = images.iter().filter(|i| i.id.starts_with(id)).collect();
        return match hits.len() {
            0 => Err(not_found()),
            1 => Ok(hits[0]),
            _ => Err(ImageError::Ambiguous {
                name: query.to_owned(),
                matches: hits
                    .iter()
                    .map(|i| i.id[..12.min(i.id.len())].to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        };
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, names: &[&str]) -> Image {
        Image {
            id: id.into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            digest: format!("sha256:{}", "d".repeat(64)),
            digests: vec![],
            manifest_type: String::new(),
            blobs: vec![],
            layers: vec![],
            created: None,
            added: 0,
            size: 0,
        }
    }

    #[test]
    fn normalizes_short_names_to_localhost() {
        assert_eq!(
            normalize_name("foo").ok().as_deref(),
            Some("localhost/foo:latest")
        );
        assert_eq!(
            normalize_name("127.0.0.1:5000/t/img:1").ok().as_deref(),
            Some("127.0.0.1:5000/t/img:1")
        );
        assert!(normalize_name("Foo").is_err());
        assert!(normalize_name(&format!("a@sha256:{}", "0".repeat(64))).is_err());
    }

    #[test]
    fn finds_by_name_short_name_and_prefix() {
        let a = "a".repeat(64);
        let b = format!("ab{}", "b".repeat(62));
        let images = vec![
            image(&a, &["127.0.0.1:5000/t/img:1", "localhost/mine:latest"]),
            image(&b, &["docker.io/library/busybox:latest"]),
        ];
        let id = |q: &str| find(&images, q).map(|i| i.id.clone()).ok();
        assert_eq!(id("127.0.0.1:5000/t/img:1"), Some(a.clone()));
        assert_eq!(id("img:1"), Some(a.clone()));
        assert_eq!(id("t/img:1"), Some(a.clone()));
        assert_eq!(id("mine"), Some(a.clone()));
        assert_eq!(id("busybox"), Some(b.clone()));
        assert_eq!(id("aaa"), Some(a.clone()));
        assert_eq!(id(&format!("sha256:{b}")), Some(b.clone()));
        assert!(matches!(
            find(&images, "a"),
            Err(ImageError::NotFound { .. })
        ));
        assert!(matches!(
            find(&images, "img:2"),
            Err(ImageError::NotFound { .. })
        ));
        assert!(matches!(
            find(&images, "mg:1"),
            Err(ImageError::NotFound { .. })
        ));
        let c = format!("aa{}", "c".repeat(62));
        let images = vec![image(&a, &[]), image(&c, &[])];
        assert!(matches!(
            find(&images, "aa"),
            Err(ImageError::NotFound { .. })
        ));
        assert!(find(&images, "aaa").is_ok());
        assert!(matches!(
            find(&images, "aab"),
            Err(ImageError::NotFound { .. })
        ));
        let images = vec![
            image(&a, &[]),
            image(&format!("aaa{}", "c".repeat(61)), &[]),
        ];
        assert!(matches!(
            find(&images, "aaa"),
            Err(ImageError::Ambiguous { .. })
        ));
    }
}
