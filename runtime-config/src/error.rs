//! Errors of configuration loading, validation and writing.

use std::io;
use std::path::PathBuf;

use crate::source::Source;

/// Anything that can go wrong while assembling or writing the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("config file {path} does not exist")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// TOML syntax error or a value of the wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A key holds a value rpod cannot use.
    #[error("invalid {key} {value:?} (from {origin}): {reason}")]
    Invalid {
        /// The TOML key.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Where it came from.
        origin: Source,
        /// What is expected.
        reason: String,
    },
    /// A global flag's argument could not be used, or the flag is unknown.
    #[error("invalid {flag} {value:?}: {reason}")]
    Flag {
        /// The flag, with its dashes.
        flag: String,
        /// The argument given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An explicitly configured value differs from the one stored in the state database.
    #[error(
        "database {field} {db:?} does not match our {field} {ours:?}: database configuration mismatch \
         (the state in {static_dir} was created with other settings; use the stored value or another --root)"
    )]
    DbMismatch {
        /// libpod's label for the field, e.g. `libpod temporary files directory (tmpdir)`.
        field: &'static str,
        /// The stored value.
        db: String,
        /// Our value.
        ours: String,
        /// The static dir holding the database.
        static_dir: PathBuf,
    },
    /// Writing a configuration file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The configuration could not be serialised.
    #[error("serializing the configuration: {0}")]
    Serialize(String),
}
