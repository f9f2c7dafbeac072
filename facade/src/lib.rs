//! `rpod`: the container engine library. Its [`Runtime`] composes rpod's crates.
//!
//! It owns the composition: assembling the configuration (`rpod-config`), finding the OCI
//! runtime and conmon, creating rpod's directories, opening the state (`rpod-state`) and applying
//! the paths stored in it, opening the lock manager (`rpod-lock`) under the `alive.lck` file lock,
//! container and pod life cycles (IDs, names, locks, records), and host information (`rpod info`).
//!
//! It does **not** own configuration parsing, lock internals, state storage, OCI spec generation
//! or networking: those live in the leaf crates, which never depend on each other and share plain
//! data through this facade.

#![deny(unsafe_code)]

mod cgroups;
mod containers;
mod error;
mod info;
mod infra;
mod lifecycle;
mod locks;
mod names;
mod pods;
mod refresh;
mod runtime;

pub use containers::ContainerSpec;
pub use error::RuntimeError;
pub use lifecycle::{AttachOptions, Attached, ExecResult, ExecSpec};
pub use rpod_oci::Binary;

pub use info::{
    ConmonInfo, Distribution, HostInfo, Info, OciRuntimeInfo, RegistriesInfo, StoreInfo,
};
pub use locks::{segment_name, LockHolder, LockReport};
pub use names::{generate_id, random_name, validate_name, MAX_NAME_LEN};
pub use pods::{PodSpec, DEFAULT_POD_SHARE, SHAREABLE_NAMESPACES};
pub use refresh::ALIVE_FILE;
/// The OCI crate, re-exported (log entries, exit-code helpers).
pub use rpod_oci as oci;
pub use runtime::{load_config, reset_unreadable, Runtime, STATE_FILE};

/// The state crate, re-exported: its records are what the container and pod calls return.
pub use rpod_state as state;
pub use rpod_state::{ContainerRecord, ContainerStatus, PodRecord};

/// The lock crate, re-exported for embedders that use the lock manager directly.
pub use rpod_lock as lock;

/// The configuration crate, re-exported so embedders and the CLI need only this crate.
pub use rpod_config as config;
pub use rpod_config::{Config, ConfigEnv, RuntimeConfig, RuntimeOptions, Source};

/// rpod's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
