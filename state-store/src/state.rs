//! The [`State`] trait: libpod's state interface over plain records.

use crate::error::Result;
use crate::records::{
    ContainerConfig, ContainerRecord, ContainerState, DbConfig, PodConfig, PodRecord, PodState,
};

/// The state database: every container and pod record, their names, namespaces, dependency edges and pod
/// membership. libpod's `State` interface (v1.2) without volumes.
///
/// The trait is object-safe and `Send + Sync`: the facade holds a `Box<dyn State>` and shares it between
/// threads. Methods take and return plain records; nothing here points back at a runtime, a lock or an OCI
/// handle. Every mutation is atomic (one write transaction in [`LmdbState`](crate::LmdbState)): it either
/// happens completely or not at all.
///
/// # Identity
/// IDs and names are unique across containers **and** pods: a pod and a container can share neither. An ID
/// must be non-empty, at most 255 bytes long and contain no `/`; a name must be non-empty and at most 255 bytes.
///
/// # Namespaces
/// Every handle has a namespace filter, fixed when the handle is made and never changed afterwards: `""`
/// (see everything) from [`LmdbState::open`](crate::LmdbState::open) and
/// [`InMemoryState::new`](crate::InMemoryState::new), another one through their `with_namespace` builders,
/// and [`view`](Self::view) gives a further handle on the same data with any other filter. A thread that
/// needs another namespace (every namespace, for a bulk operation) takes a view instead of changing a
/// handle that other threads share.
///
/// With a namespace, objects outside it give [`NsMismatch`](crate::ErrorKind::NsMismatch) from the by-ID
/// operations (get, update, save, remove, in-use, rewrite, membership), `false` from `has_*`, are skipped by
/// `all_*` and the lookups, and adding one is refused. [`refresh`](Self::refresh) ignores the namespace.
///
/// # Lookup
/// [`lookup_container`](Self::lookup_container) and [`lookup_pod`](Self::lookup_pod) try, in order: a full ID,
/// an exact name, then a unique ID prefix over containers and pods together. An ambiguous prefix is
/// [`AmbiguousPrefix`](crate::ErrorKind::AmbiguousPrefix) (listing the candidates); a name or unique prefix of
/// the other kind gives "X is a pod, not a container" (or the mirror message) with the not-found kind.
pub trait State: Send + Sync {
    // ----- lifecycle -----

    /// Close this handle. Every later call on it fails with [`DbClosed`](crate::ErrorKind::DbClosed); other
    /// handles and views on the same data are unaffected. Closing twice is fine. The data (the LMDB
    /// environment, the in-memory tables) is released when the last handle on it in this process is closed
    /// or dropped.
    fn close(&self) -> Result<()>;

    /// Reset per-boot state after a reboot, for every container and pod regardless of the namespace (libpod
    /// `Refresh`): see [`ContainerState::reset_for_reboot`]; pod cgroup paths are cleared.
    fn refresh(&self) -> Result<()>;

    /// The runtime paths recorded in the database (empty strings for missing keys; all empty in memory).
    fn get_db_config(&self) -> Result<DbConfig>;

    /// Check the configured paths against the recorded ones: missing keys are written (empty configured values
    /// are neither written nor compared; an empty `os` means the running OS), a differing value fails with
    /// [`DbMismatch`](crate::ErrorKind::DbMismatch). The in-memory state validates nothing.
    fn validate_db_config(&self, ours: &DbConfig) -> Result<()>;

    /// The namespace this handle is restricted to (`""` = none). It is fixed for the handle's lifetime.
    fn namespace(&self) -> Result<String>;

    /// Another handle on the same data (for LMDB: the same environment) that sees `namespace` (`""` = every
    /// namespace) instead of this handle's namespace; a view of a view sees just `namespace`. This handle is
    /// unchanged. The view has its own closed flag: closing it leaves this handle open, and the reverse.
    /// Fails with [`DbClosed`](crate::ErrorKind::DbClosed) once this handle is closed.
    fn view(&self, namespace: &str) -> Result<Box<dyn State>>;

    // ----- containers -----

    /// The container with this full ID.
    fn container(&self, id: &str) -> Result<ContainerRecord>;

    /// The container with this full ID, name or unique ID prefix (see the trait docs for the order).
    fn lookup_container(&self, id_or_name: &str) -> Result<ContainerRecord>;

    /// Whether a container with this full ID exists in the namespace.
    fn has_container(&self, id: &str) -> Result<bool>;

    /// Add a container that is in no pod (`config.pod` must be `None`, else
    /// [`InvalidArg`](crate::ErrorKind::InvalidArg); pod members go through
    /// [`add_container_to_pod`](Self::add_container_to_pod)). Its dependencies must exist, be in the same
    /// namespace and not be pod members.
    fn add_container(&self, ctr: &ContainerRecord) -> Result<()>;

    /// Remove a container that is in no pod (pod members:
    /// [`PodExists`](crate::ErrorKind::PodExists)) and that no container depends on
    /// ([`HasDependants`](crate::ErrorKind::HasDependants), listing them).
    fn remove_container(&self, id: &str) -> Result<()>;

    /// Re-read a container's state from the database.
    fn update_container(&self, id: &str) -> Result<ContainerState>;

    /// Write a container's state.
    fn save_container(&self, id: &str, state: &ContainerState) -> Result<()>;

    /// IDs of the containers that depend on this one, sorted.
    fn container_in_use(&self, id: &str) -> Result<Vec<String>>;

    /// Every container in the namespace, sorted by ID. Records that do not decode are logged and skipped.
    fn all_containers(&self) -> Result<Vec<ContainerRecord>>;

    /// Every container in the namespace, in ID order, handed to `f` one at a time as it is decoded
    /// (a listing of thousands never holds them all); stops early when `f` returns false. Records
    /// that do not decode are logged and skipped.
    fn for_each_container(&self, f: &mut dyn FnMut(ContainerRecord) -> bool) -> Result<()>;

    /// Replace a container's config (migrations, lock renumbering). ID, name, namespace, pod and dependencies
    /// must not change ([`InvalidArg`](crate::ErrorKind::InvalidArg)).
    fn rewrite_container_config(&self, id: &str, config: &ContainerConfig) -> Result<()>;

    // ----- pods -----

    /// The pod with this full ID.
    fn pod(&self, id: &str) -> Result<PodRecord>;

    /// The pod with this full ID, name or unique ID prefix.
    fn lookup_pod(&self, id_or_name: &str) -> Result<PodRecord>;

    /// Whether a pod with this full ID exists in the namespace.
    fn has_pod(&self, id: &str) -> Result<bool>;

    /// Add a pod (no members yet).
    fn add_pod(&self, pod: &PodRecord) -> Result<()>;

    /// Remove an empty pod ([`NotEmpty`](crate::ErrorKind::NotEmpty) otherwise).
    fn remove_pod(&self, id: &str) -> Result<()>;

    /// Remove every member of the pod, atomically. Fails with
    /// [`HasDependants`](crate::ErrorKind::HasDependants) if a member has a dependant outside the pod.
    fn remove_pod_containers(&self, pod_id: &str) -> Result<()>;

    /// Add a container to a pod: `ctr.config.pod` must be `Some(pod_id)`; its dependencies must be members of
    /// the same pod.
    fn add_container_to_pod(&self, pod_id: &str, ctr: &ContainerRecord) -> Result<()>;

    /// Remove a member container (and its record) from a pod. Refused while it has dependants.
    fn remove_container_from_pod(&self, pod_id: &str, ctr_id: &str) -> Result<()>;

    /// Whether the pod has this member.
    fn pod_has_container(&self, pod_id: &str, ctr_id: &str) -> Result<bool>;

    /// IDs of the pod's members, sorted.
    fn pod_container_ids(&self, pod_id: &str) -> Result<Vec<String>>;

    /// The pod's members (full records), sorted by ID.
    fn pod_containers(&self, pod_id: &str) -> Result<Vec<ContainerRecord>>;

    /// Re-read a pod's state.
    fn update_pod(&self, id: &str) -> Result<PodState>;

    /// Write a pod's state.
    fn save_pod(&self, id: &str, state: &PodState) -> Result<()>;

    /// Every pod in the namespace, sorted by ID. Records that do not decode are logged and skipped.
    fn all_pods(&self) -> Result<Vec<PodRecord>>;

    /// Replace a pod's config; ID, name and namespace must not change.
    fn rewrite_pod_config(&self, id: &str, config: &PodConfig) -> Result<()>;

    // ----- counts -----

    /// The number of containers and pods in **every** namespace (this handle's namespace does not filter
    /// it), in constant time: no record is read or decoded (LMDB's entry count of the ID registry). For
    /// cheap consistency checks such as "are more locks allocated than there are objects?".
    fn object_count(&self) -> Result<u64>;
}
