//! # rpod-state: the state database of rpod
//!
//! ## What this crate owns
//! * The **records** of containers and pods: [`ContainerConfig`] (immutable after creation) and
//!   [`ContainerState`] (mutable), [`PodConfig`] and [`PodState`], bundled as [`ContainerRecord`] and
//!   [`PodRecord`]; and the runtime paths recorded at creation, [`DbConfig`].
//! * The object-safe **[`State`] trait** (libpod's state interface, v1.2, without volumes) and its rules:
//!   IDs and names unique across containers and pods, dependency edges with the pod rules, pod membership,
//!   namespaces, lookup by full ID / name / unique prefix, refresh after reboot, DB config validation.
//! * Two **backends**: [`InMemoryState`] and [`LmdbState`] (a single LMDB file, `<static_dir>/rpod_state.mdb`).
//!
//! ## What it does not do
//! It takes no container or pod **locks** (the `rpod-lock` crate; callers hold the object's lock around
//! update/save as libpod does), talks to no **OCI runtime**, network or storage, and does not **discover
//! configuration** (which static directory, which namespace, which paths to validate). The `rpod` facade
//! composes these: `Runtime::new` opens [`LmdbState::open`]`(static_dir)` restricted to the configured
//! namespace ([`LmdbState::with_namespace`]), reads [`State::get_db_config`] to fill paths the user did not
//! set, calls [`State::validate_db_config`], and holds the result as `Box<dyn State>`; operations over every
//! namespace (refresh, renumbering, reset) work on a [`State::view`]`("")` of it.
//!
//! ## Semantics
//! Both backends run one implementation of the rules (a private module written over abstract sorted tables),
//! so they cannot drift apart; a model-based property test checks both against an independent model.
//! Errors are [`StateError`]; compare them with [`StateError::kind`] ([`ErrorKind`]). Differences from libpod,
//! on purpose:
//! * an ambiguous ID prefix is [`ErrorKind::AmbiguousPrefix`] listing the candidates (libpod said "exists");
//! * a unique prefix that matches the other kind of object says "X is a pod, not a container" (libpod failed
//!   later with "not found in DB");
//! * lookups skip objects of other namespaces also when given their full ID (libpod returned `NsMismatch`
//!   there); the by-ID getters ([`State::container`], [`State::pod`]) return `NsMismatch`;
//! * [`State::rewrite_container_config`] refuses to change ID, name, namespace, pod or dependencies, which would
//!   silently break the indexes.
//!
//! ## Storage layout
//! One LMDB named database per Bolt bucket of libpod: `id-registry` (ID → kind + name), `name-registry`
//! (name → ID), `ns-registry` (ID → namespace), `ctr-config`, `ctr-state` (ID → record), `dependants`
//! (`depID/dependantID`), `pod-config`, `pod-state`, `pod-members` (`podID/ctrID`), `runtime-config`, plus
//! `meta` holding the schema marker. Keys are sorted, so the prefix lookup, "dependants of X" and "members
//! of P" are range scans whose cost depends on the number of matches, not of records.
//!
//! Records are stored compactly (schema `rpod-state/2`): a format byte, then MessagePack with each
//! record as an array of its fields in declaration order (no field names), about a third of their
//! JSON size; a listing of thousands of containers reads (and maps) that much less. JSON records of
//! `rpod-state/1` databases still decode (their first byte is `{`), and opening such a database
//! upgrades its marker so that an older rpod refuses it clearly. Fields may be appended to a record
//! (older records read them as defaults); reordering, removing or retyping one needs a new format
//! byte and a decoder for the old layout, which a golden-bytes test guards.
//!
//! ## Why heed 0.22
//! heed 0.23 ties every `Database` handle to a borrow of its `Env` (`Database<'e, ..>`) and opens databases
//! only inside `open_databases_and_commit` closures. This crate keeps one environment per file per process in
//! a registry of `Arc`s and stores the handles next to the environment; with 0.23 that needs a
//! self-referential struct or a leaked `Env`. heed 0.22 has lifetime-free, `Copy` handles, the same LMDB
//! (mdb.master via `lmdb-master-sys`) and the same safety contract (`unsafe` open and resize, which live in
//! one private module with their `SAFETY` arguments).
//!
//! ```
//! use rpod_state::{ContainerConfig, ContainerRecord, InMemoryState, State};
//!
//! # fn main() -> Result<(), rpod_state::StateError> {
//! let state: Box<dyn State> = Box::new(InMemoryState::new());
//! let ctr = ContainerRecord::new(ContainerConfig::new("0123abcd", "web"));
//! state.add_container(&ctr)?;
//! assert_eq!(state.lookup_container("web")?.id(), "0123abcd");
//! assert_eq!(state.lookup_container("012")?.name(), "web");
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]

#[macro_use]
mod delegate {
    /// The [`State`](crate::State) methods that are the same for every backend: each runs one
    /// `logic` function in a read snapshot or a write transaction of the backend (`self.with_read` /
    /// `self.with_write`, which supply the tables and the handle's namespace). Expanded inside each
    /// backend's `impl State`, so the rules exist once.
    macro_rules! delegate_state_methods {
        (
            $(view $vname:ident($($varg:ident: $vty:ty),*) -> $vret:ty;)*
            $(update $uname:ident($($uarg:ident: $uty:ty),*);)*
        ) => {
            $(
                fn $vname(&self, $($varg: $vty),*) -> $crate::error::Result<$vret> {
                    self.with_read(|r, ns| $crate::logic::$vname(r, ns, $($varg),*))
                }
            )*
            $(
                fn $uname(&self, $($uarg: $uty),*) -> $crate::error::Result<()> {
                    self.with_write(|w, ns| $crate::logic::$uname(w, ns, $($uarg),*))
                }
            )*
        };
    }

    /// Invokes [`delegate_state_methods`] with every record method of the trait, and defines the
    /// methods that only need the backend's `handle` ([`Handle`](crate::handle::Handle)): `close`,
    /// `refresh` and `namespace`.
    macro_rules! state_record_methods {
        () => {
            fn close(&self) -> $crate::error::Result<()> {
                self.handle.close();
                Ok(())
            }

            fn refresh(&self) -> $crate::error::Result<()> {
                self.with_write(|w, _| $crate::logic::refresh(w))
            }

            fn namespace(&self) -> $crate::error::Result<String> {
                self.handle.data()?;
                Ok(self.handle.namespace().to_string())
            }

            delegate_state_methods! {
                view container(id: &str) -> ContainerRecord;
                view lookup_container(id_or_name: &str) -> ContainerRecord;
                view has_container(id: &str) -> bool;
                view update_container(id: &str) -> ContainerState;
                view container_in_use(id: &str) -> Vec<String>;
                view all_containers() -> Vec<ContainerRecord>;
                view for_each_container(f: &mut dyn FnMut(ContainerRecord) -> bool) -> ();
                view pod(id: &str) -> PodRecord;
                view lookup_pod(id_or_name: &str) -> PodRecord;
                view has_pod(id: &str) -> bool;
                view pod_has_container(pod_id: &str, ctr_id: &str) -> bool;
                view pod_container_ids(pod_id: &str) -> Vec<String>;
                view pod_containers(pod_id: &str) -> Vec<ContainerRecord>;
                view update_pod(id: &str) -> PodState;
                view all_pods() -> Vec<PodRecord>;
                view object_count() -> u64;
                update add_container(ctr: &ContainerRecord);
                update remove_container(id: &str);
                update save_container(id: &str, state: &ContainerState);
                update rewrite_container_config(id: &str, config: &ContainerConfig);
                update add_pod(pod: &PodRecord);
                update remove_pod(id: &str);
                update remove_pod_containers(pod_id: &str);
                update add_container_to_pod(pod_id: &str, ctr: &ContainerRecord);
                update remove_container_from_pod(pod_id: &str, ctr_id: &str);
                update save_pod(id: &str, state: &PodState);
                update rewrite_pod_config(id: &str, config: &PodConfig);
            }
        };
    }
}

mod error;
mod handle;
mod lmdb;
mod logic;
mod memory;
mod records;
mod state;

pub use error::{DecodeError, ErrorKind, Result, StateError};
pub use lmdb::{LmdbState, DB_FILE_NAME, INITIAL_MAP_SIZE};
pub use memory::InMemoryState;
pub use records::{
    unix_nanos, ContainerConfig, ContainerRecord, ContainerState, ContainerStatus, DbConfig,
    ExecSession, Mount, PodConfig, PodRecord, PodState, PortMapping, Rlimit,
};
pub use state::State;
