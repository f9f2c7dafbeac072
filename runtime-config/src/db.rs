//! The database override rule (reference §2.8).
//!
//! The state database remembers the paths it was created with. A path the user did not set
//! explicitly is replaced by the stored one; an explicit path that differs is an error naming the
//! field, the stored value and ours.

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::load::Config;
use crate::source::Source;

/// The paths stored in the state database. An empty string means "not stored".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbConfig {
    /// `static-dir`.
    pub static_dir: String,
    /// `tmp-dir`.
    pub tmp_dir: String,
    /// `run-root`.
    pub run_root: String,
    /// `graph-root`.
    pub graph_root: String,
    /// `volume-path`.
    pub volume_path: String,
}

/// One path field of [`DbConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbField {
    /// The static dir.
    StaticDir,
    /// The tmp dir.
    TmpDir,
    /// The storage run root.
    RunRoot,
    /// The storage graph root.
    GraphRoot,
    /// The volume path.
    VolumePath,
}

impl DbField {
    /// Every field, in libpod's validation order.
    pub const ALL: [DbField; 5] = [
        DbField::StaticDir,
        DbField::TmpDir,
        DbField::RunRoot,
        DbField::GraphRoot,
        DbField::VolumePath,
    ];

    /// libpod's label for the field in mismatch messages.
    pub fn label(self) -> &'static str {
        match self {
            DbField::StaticDir => "libpod root directory (staticdir)",
            DbField::TmpDir => "libpod temporary files directory (tmpdir)",
            DbField::RunRoot => "storage temporary directory (runroot)",
            DbField::GraphRoot => "storage graph root directory (graphroot)",
            DbField::VolumePath => "volume path",
        }
    }

    /// The configuration key the field corresponds to.
    pub fn key(self) -> &'static str {
        match self {
            DbField::StaticDir => "static_dir",
            DbField::TmpDir => "tmp_dir",
            DbField::RunRoot => "run_root",
            DbField::GraphRoot => "graph_root",
            DbField::VolumePath => "volume_path",
        }
    }
}

impl DbConfig {
    /// The stored value of `field`.
    pub fn get(&self, field: DbField) -> &str {
        match field {
            DbField::StaticDir => &self.static_dir,
            DbField::TmpDir => &self.tmp_dir,
            DbField::RunRoot => &self.run_root,
            DbField::GraphRoot => &self.graph_root,
            DbField::VolumePath => &self.volume_path,
        }
    }
}

impl Config {
    fn path_mut(&mut self, field: DbField) -> &mut PathBuf {
        let v = &mut self.values;
        match field {
            DbField::StaticDir => &mut v.static_dir,
            DbField::TmpDir => &mut v.tmp_dir,
            DbField::RunRoot => &mut v.run_root,
            DbField::GraphRoot => &mut v.graph_root,
            DbField::VolumePath => &mut v.volume_path,
        }
    }

    /// The paths to store in a new database.
    pub fn db_config(&self) -> DbConfig {
        let v = &self.values;
        let s = |p: &PathBuf| p.display().to_string();
        DbConfig {
            static_dir: s(&v.static_dir),
            tmp_dir: s(&v.tmp_dir),
            run_root: s(&v.run_root),
            graph_root: s(&v.graph_root),
            volume_path: s(&v.volume_path),
        }
    }

    /// Applies the stored paths: each one not set explicitly takes the stored value (source
    /// [`Source::Database`]); an explicit one that differs fails with
    /// [`ConfigError::DbMismatch`]. Nothing changes when an error is returned.
    pub fn apply_db_config(&mut self, db: &DbConfig) -> Result<(), ConfigError> {
        let mut updates = Vec::new();
        for field in DbField::ALL {
            let stored = db.get(field);
            if stored.is_empty() {
                continue;
            }
            let ours = self.path_mut(field).display().to_string();
            if ours == stored {
                continue;
            }
            if self.sources.is_explicit(field.key()) {
                return Err(ConfigError::DbMismatch {
                    field: field.label(),
                    db: stored.to_owned(),
                    ours,
                    static_dir: self.values.static_dir.clone(),
                });
            }
            updates.push((field, stored));
        }
        for (field, stored) in updates {
            *self.path_mut(field) = PathBuf::from(stored);
            self.sources.set(field.key(), Source::Database);
        }
        Ok(())
    }
}
