//! Where each configuration key's value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The origin of one key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "lowercase")]
pub enum Source {
    /// rpod's built-in default (possibly derived from another key, e.g. static dir from graph root).
    Default,
    /// A configuration file.
    File(PathBuf),
    /// A runtime option; the string is the CLI flag that sets it (e.g. `--tmpdir`).
    Flag(String),
    /// The value stored in the state database (applied because the key was not set explicitly).
    Database,
}

impl Source {
    /// Whether the user chose this value (file or flag), as opposed to a default or the database.
    pub fn is_explicit(&self) -> bool {
        matches!(self, Source::File(_) | Source::Flag(_))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::Flag(flag) => write!(f, "flag:{flag}"),
            Source::Database => f.write_str("database"),
        }
    }
}

/// The source of every key, by TOML key name. Keys never set are [`Source::Default`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// The source of `key`.
    pub fn get(&self, key: &str) -> &Source {
        self.0.get(key).unwrap_or(&Source::Default)
    }

    /// Records that `key` was set by `source`.
    pub fn set(&mut self, key: &str, source: Source) {
        if source == Source::Default {
            self.0.remove(key);
        } else {
            self.0.insert(key.to_owned(), source);
        }
    }

    /// Whether `key` was set by a file or a flag.
    pub fn is_explicit(&self, key: &str) -> bool {
        self.get(key).is_explicit()
    }

    /// Every key with a non-default source.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}
