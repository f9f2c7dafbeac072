//! `registries.conf`, v1 and v2 formats, for `rpod info`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Search and insecure registries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Registries {
    /// Registries searched for unqualified image names.
    pub search: Vec<String>,
    /// Registries reached without TLS verification.
    pub insecure: Vec<String>,
}

/// `registries.conf` could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RegistriesError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

#[derive(Deserialize, Default)]
struct Raw {
    registries: Option<V1>,
    #[serde(rename = "unqualified-search-registries")]
    unqualified: Option<Vec<String>>,
    registry: Option<Vec<V2Registry>>,
}

#[derive(Deserialize, Default)]
struct V1 {
    search: Option<V1List>,
    insecure: Option<V1List>,
}

#[derive(Deserialize, Default)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

#[derive(Deserialize)]
struct V2Registry {
    location: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    insecure: bool,
}

impl Registries {
    /// Reads `path`; a missing file means no registries.
    pub fn load(path: &Path) -> Result<Registries, RegistriesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registries::default()),
            Err(e) => {
                return Err(RegistriesError {
                    path: path.to_owned(),
                    message: e.to_string(),
                })
            }
        };
        Self::parse(&text).map_err(|message| RegistriesError {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the text of a `registries.conf` (v1 `[registries.search]` / `[registries.insecure]`
    /// or v2 `unqualified-search-registries` / `[[registry]] insecure = true`).
    pub fn parse(text: &str) -> Result<Registries, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut out = Registries::default();
        if let Some(v1) = raw.registries {
            out.search
                .extend(v1.search.map(|l| l.registries).unwrap_or_default());
            out.insecure
                .extend(v1.insecure.map(|l| l.registries).unwrap_or_default());
        }
        out.search.extend(raw.unqualified.unwrap_or_default());
        for r in raw.registry.unwrap_or_default() {
            if r.insecure {
                if let Some(loc) = r.location.or(r.prefix) {
                    out.insecure.push(loc);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_format() {
        let r = Registries::parse(
            "[registries.search]\nregistries = ['docker.io', 'quay.io']\n[registries.insecure]\nregistries = ['local:5000']\n",
        );
        assert_eq!(
            r,
            Ok(Registries {
                search: vec!["docker.io".into(), "quay.io".into()],
                insecure: vec!["local:5000".into()],
            })
        );
    }

    #[test]
    fn v2_format() {
        let r = Registries::parse(
            "unqualified-search-registries = ['docker.io']\n[[registry]]\nlocation = 'a.example'\ninsecure = true\n[[registry]]\nlocation = 'b.example'\n",
        );
        assert_eq!(
            r,
            Ok(Registries {
                search: vec!["docker.io".into()],
                insecure: vec!["a.example".into()],
            })
        );
    }

    #[test]
    fn missing_file_is_empty() {
        assert_eq!(
            Registries::load(Path::new("/nonexistent/registries.conf")).ok(),
            Some(Registries::default())
        );
    }
}
