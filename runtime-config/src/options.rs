//! Runtime options: what the CLI flags (or an embedding program) set on top of the files.
//!
//! [`RuntimeOptions`] itself and its per-key setters are generated from the key declarations
//! (`config.rs`); this module adds the parts that are not keys.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::config::{RuntimeOptions, GLOBAL_FLAGS};
use crate::error::ConfigError;
use crate::flags::CONFIG_FLAG;

impl RuntimeOptions {
    /// No options: files and defaults only.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--config`: read only this `libpod.conf` (it must exist).
    #[must_use]
    pub fn config_path(mut self, value: impl Into<PathBuf>) -> Self {
        self.config_path = Some(value.into());
        self
    }

    /// The `--config` path, if given.
    pub fn config_file(&self) -> Option<&PathBuf> {
        self.config_path.as_ref()
    }

    /// Sets the option of the global flag `long` (as in [`GLOBAL_FLAGS`], without dashes) from
    /// its command-line argument, as the flag's setter would.
    ///
    /// Fails for a flag that is not in [`GLOBAL_FLAGS`] or an argument that does not parse as the
    /// flag's [`FlagKind`](crate::FlagKind). Values are otherwise checked when the configuration
    /// is loaded, as for the setters.
    pub fn set_flag(mut self, long: &str, arg: &OsStr) -> Result<Self, ConfigError> {
        if long == CONFIG_FLAG.long {
            return Ok(self.config_path(arg));
        }
        let invalid = |reason: String| ConfigError::Flag {
            flag: format!("--{long}"),
            value: arg.to_string_lossy().into_owned(),
            reason,
        };
        match self.layer.set_flag(long, arg) {
            Some(Ok(())) => Ok(self),
            Some(Err(reason)) => Err(invalid(reason)),
            None => Err(invalid(format!(
                "not a global flag (known: {})",
                GLOBAL_FLAGS
                    .iter()
                    .map(|f| f.long)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}
