//! `rpod-config`: everything rpod knows about its configuration before it touches the system.
//!
//! It owns the built-in defaults (root and rootless), the discovery of `libpod.conf` and the
//! `containers.conf` layers, the merge of files and runtime options into one [`RuntimeConfig`],
//! the record of where every key came from ([`Source`]), the database override rule, validation,
//! `registries.conf` parsing and the rootless first-run write of `libpod.conf`.
//!
//! It does **not** open anything but configuration files: finding binaries, creating directories,
//! locks and state belong to the other crates and are composed by the `rpod` facade.

#![deny(unsafe_code)]

#[macro_use]
mod keys;

mod cleanup;
mod config;
mod db;
mod env;
mod error;
mod files;
mod flags;
mod fsutil;
mod load;
mod options;
mod registries;
mod source;
mod validate;
mod value;

pub use config::{
    RuntimeConfig, RuntimeOptions, DEFAULT_NUM_LOCKS, GLOBAL_FLAGS, ROOTLESS_INHERITED_KEYS,
};
pub use db::{DbConfig, DbField};
pub use env::ConfigEnv;
pub use error::ConfigError;
pub use flags::{FlagKind, GlobalFlag, Resolved};
pub use fsutil::write_file_atomic;
pub use load::{Config, FileKind, LoadedFile};
pub use registries::{Registries, RegistriesError};
pub use source::{Source, Sources};
pub use value::{CgroupManager, StateBackend};
