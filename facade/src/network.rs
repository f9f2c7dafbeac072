//! The network seam of the container life cycle: a [`NetworkBackend`] gives a container its
//! network namespace before its OCI spec is written ([`NetworkBackend::setup`]) and releases it
//! in every cleanup ([`NetworkBackend::teardown`]: exit command, stop, removal, refresh after a
//! reboot, a failed init).
//!
//! The built-in backend, [`NullNetwork`], is the "none" network (a new, empty network namespace
//! made by the OCI runtime) and "join another container's namespace" (pod members). A CNI
//! backend plugs in here next, without touching the life cycle.

use std::path::PathBuf;

use crate::error::RuntimeError;

/// How a container gets its network namespace, as the life cycle resolved it from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new, empty network namespace (`--network none`).
    None,
    /// Another container's network namespace (pod members; `container:<id>`).
    Join {
        /// The container whose namespace is joined.
        container: String,
        /// Its namespace, e.g. `/proc/<pid>/ns/net`.
        path: PathBuf,
    },
}

/// What [`NetworkBackend::setup`] is asked to do for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    /// The container's ID.
    pub container_id: String,
    /// The container's name.
    pub container_name: String,
    /// Its mode.
    pub mode: NetworkMode,
    /// The networks it asked to join (its record's `networks`).
    pub networks: Vec<String>,
}

/// Where the OCI runtime finds the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNamespace {
    /// The runtime creates a new one.
    New,
    /// The runtime joins this one (a bind-mounted netns file or `/proc/<pid>/ns/net`).
    Path(PathBuf),
}

/// The outcome of [`NetworkBackend::setup`]; the life cycle records it in the container's state.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkStatus {
    /// The namespace for the OCI spec.
    pub namespace: NetNamespace,
    /// A network namespace the backend created and owns (recorded as the state's
    /// `netns_path`; teardown removes it). `None` when the runtime or another container owns it.
    pub owned_netns: Option<PathBuf>,
    /// Per-network results (e.g. CNI results), recorded for teardown and inspect.
    pub results: Vec<serde_json::Value>,
}

/// What [`NetworkBackend::teardown`] releases: what setup recorded in the container's state.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkTeardown {
    /// The container's ID.
    pub container_id: String,
    /// The container's name.
    pub container_name: String,
    /// The namespace setup created (the state's `netns_path`; empty when none).
    pub netns_path: String,
    /// The results setup recorded.
    pub results: Vec<serde_json::Value>,
}

/// A network backend (netavark's driver model: a trait plus a `none` implementation).
///
/// The life cycle calls [`setup`](Self::setup) once per init, before the OCI spec is written,
/// and [`teardown`](Self::teardown) on every cleanup path; teardown must be idempotent (it runs
/// again after a crash, or for a container that never got a network) and must keep going after
/// a failed step, reporting every error at the end.
pub trait NetworkBackend: Send + Sync + std::fmt::Debug {
    /// The backend's name (`rpod info`, logs).
    fn name(&self) -> &str;

    /// Gives the container its network namespace.
    fn setup(&self, request: &NetworkRequest) -> Result<NetworkStatus, RuntimeError>;

    /// Releases what [`setup`](Self::setup) created.
    fn teardown(&self, teardown: &NetworkTeardown) -> Result<(), RuntimeError>;
}

/// The `none` backend: a new, empty namespace made by the OCI runtime, or another container's.
/// It creates nothing, so its teardown has nothing to release.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullNetwork;

impl NetworkBackend for NullNetwork {
    fn name(&self) -> &str {
        "none"
    }

    fn setup(&self, request: &NetworkRequest) -> Result<NetworkStatus, RuntimeError> {
        let namespace = match &request.mode {
            NetworkMode::None => NetNamespace::New,
            NetworkMode::Join { path, .. } => NetNamespace::Path(path.clone()),
        };
        Ok(NetworkStatus {
            namespace,
            owned_netns: None,
            results: Vec::new(),
        })
    }

    fn teardown(&self, _teardown: &NetworkTeardown) -> Result<(), RuntimeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_network_creates_or_joins() {
        let mut req = NetworkRequest {
            container_id: "a".into(),
            container_name: "a".into(),
            mode: NetworkMode::None,
            networks: Vec::new(),
        };
        let st = NullNetwork.setup(&req).ok();
        assert_eq!(st.map(|s| s.namespace), Some(NetNamespace::New));
        req.mode = NetworkMode::Join {
            container: "b".into(),
            path: "/proc/1/ns/net".into(),
        };
        let st = NullNetwork.setup(&req).ok();
        assert_eq!(
            st.map(|s| s.namespace),
            Some(NetNamespace::Path("/proc/1/ns/net".into()))
        );
    }
}
