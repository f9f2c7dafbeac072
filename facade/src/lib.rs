//! `rpod`: the container engine library. Its [`Runtime`] composes rpod's crates.
//!
//! It owns the composition: assembling the configuration (`rpod-config`), finding the OCI
//! runtime and conmon, creating rpod's directories, opening the state (`rpod-state`) and applying
//! the paths stored in it, opening the lock manager (`rpod-lock`) under the `alive.lck` file lock,
//! container and pod life cycles (one file per verb under `container/` and `pod/`: IDs, names,
//! locks, records, status rules), the seams the life cycle calls for the network
//! ([`NetworkBackend`]), the root filesystem ([`RootfsProvider`]) and the OCI runtime, the
//! documents `inspect` and `ps` print, and host information (`rpod info`). Its `image/` module
//! drives the image store (`rpod-storage`) for the image verbs (pull, images, rmi, load, save,
//! push, import, mount) and gives containers from images their defaults and writable layer
//! ([`ImageRootfs`]).
//!
//! It does **not** own configuration parsing, lock internals, state storage, OCI spec generation,
//! the conmon protocol, CNI (`rpod-net`) or image storage and registries (`rpod-storage`): those live in the leaf crates, which never depend on each other
//! and share plain data through this facade. Embedders use the types re-exported here by name;
//! nothing here hands out the raw state or lock manager, so every record is written under its
//! lock.

#![deny(unsafe_code)]

mod cgroups;
mod container;
mod convert;
mod error;
mod image;
mod info;
mod locks;
mod names;
mod network;
mod oci;
mod orphans;
mod pod;
mod refresh;
mod rootfs;
mod runtime;
mod signal;
mod system;
pub mod timefmt;

pub use container::{
    parse_detach_keys, status_text, AttachOptions, Attached, ContainerFilter, ContainerInspect,
    ContainerListing, ContainerSpec, DetachFilter, ExecResult, ExecSpec, InspectConfig,
    InspectState, StatusRules, Streamed, DEFAULT_DETACH_KEYS,
};
pub use error::RuntimeError;
pub use image::{ImageInspect, ImageRootfs, ImageSummary, PullPolicy, PullSpec};
pub use rpod_oci::Binary;
/// The image store's types (records, import options, pull progress, the registry client's
/// options), for embedders and the CLI.
pub use rpod_storage::images::{ArchiveFormat, ImportOptions, PullEvent};
pub use rpod_storage::registry::manifest::ContainerConfig as ImageRuntimeConfig;
pub use rpod_storage::{Image, ImageError};

pub use info::{
    ConmonInfo, Distribution, HostInfo, Info, NetworkInfo, OciRuntimeInfo, RegistriesInfo,
    StoreInfo,
};
pub use locks::{segment_name, LockHolder, LockReport};
pub use names::{generate_id, random_name, validate_name, MAX_NAME_LEN};
pub use network::{
    port_line, CniNetwork, InspectNetwork, InspectNetworkEntry, InspectPort, NetNamespace,
    NetworkBackend, NetworkInspect, NetworkMember, NetworkMode, NetworkRequest, NetworkSpec,
    NetworkStatus, NetworkSubnet, NetworkSummary, NetworkTeardown, NullNetwork,
};
pub use pod::{
    PodInspect, PodListing, PodMember, PodSpec, PodStatus, DEFAULT_POD_SHARE, SHAREABLE_NAMESPACES,
};
pub use refresh::ALIVE_FILE;
pub use rootfs::{DefaultRootfs, DirectoryRootfs, InfraRootfs, RootfsProvider, RootfsRequest};
/// The options of `rpod network create`, and the errors of networking (`rpod-net`).
pub use rpod_net::{NetError, NetworkCreate};
pub use runtime::{load_config, Runtime, RuntimeBuilder, STATE_FILE};
pub use signal::parse_signal;
pub use system::{remove_lock_segment, reset_unreadable};

/// Log entries of a container, as [`Runtime::logs`] returns them.
pub use rpod_oci::{format_entry, LogEntry, LogStream};
/// The records the container and pod calls return.
pub use rpod_state::{
    ContainerConfig, ContainerRecord, ContainerState, ContainerStatus, ExecSession, Mount,
    PodConfig, PodRecord, PodState, PortMapping, Rlimit,
};

/// The configuration crate, re-exported so embedders and the CLI need only this crate.
pub use rpod_config as config;
pub use rpod_config::{Config, ConfigEnv, RuntimeConfig, RuntimeOptions, Source};

/// rpod's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
