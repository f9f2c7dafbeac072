//! The network seam of the container life cycle: a [`NetworkBackend`] gives a container its
//! network namespace before its OCI spec is written ([`NetworkBackend::setup`]) and releases it
//! in every cleanup ([`NetworkBackend::teardown`]: exit command, stop, removal, refresh after a
//! reboot, a failed or interrupted init).
//!
//! Two backends: [`NullNetwork`] (no CNI: `none`, `host`, `ns:<path>` and joining another
//! container's namespace) and [`CniNetwork`] (the default: the same, plus `bridge` and named
//! CNI networks through `rpod-net`). `mode.rs` turns `--network`/`-p`/`--ip`/`--dns…` into a
//! container's record, `files.rs` writes its `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/hostname`, `manage.rs` is `rpod network …` and `settings.rs` what `inspect` and
//! `port` show.

mod cni;
pub(crate) mod files;
mod manage;
pub(crate) mod mode;
mod settings;

pub use cni::CniNetwork;
pub use manage::{NetworkInspect, NetworkMember, NetworkSubnet, NetworkSummary};
pub use mode::NetworkSpec;
pub use settings::{port_line, InspectNetwork, InspectNetworkEntry, InspectPort};

use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::RuntimeError;

/// How a container gets its network namespace, as the life cycle resolved it from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new, empty network namespace (`--network none`).
    None,
    /// The host's network namespace (`--network host`).
    Host,
    /// A namespace the user named (`--network ns:<path>`).
    Path(PathBuf),
    /// A new namespace attached to CNI networks ([`NetworkRequest::networks`]; empty means
    /// the default network): `--network bridge` or `--network net1,net2`.
    Cni,
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
    /// Host ports published to it (host port already assigned).
    pub ports: Vec<crate::PortMapping>,
    /// A static address on the first network (`--ip`).
    pub static_ip: Option<IpAddr>,
}

/// Where the OCI runtime finds the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNamespace {
    /// The runtime creates a new one.
    New,
    /// The host's (no network namespace in the spec).
    Host,
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
    /// The host ports published to it.
    pub ports: Vec<crate::PortMapping>,
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

    /// After a reboot (refresh): releases what the boot did not, for the containers `owned`
    /// says are this runtime's (host-local IP leases, cached CNI results; libpod #3759).
    fn release_after_reboot(&self, owned: &dyn Fn(&str) -> bool) -> Result<(), RuntimeError> {
        let _ = owned;
        Ok(())
    }
}

/// The backend without CNI: a new, empty namespace made by the OCI runtime, the host's, a
/// given one or another container's. It creates nothing, so its teardown has nothing to
/// release; it refuses CNI networks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullNetwork;

impl NetworkBackend for NullNetwork {
    fn name(&self) -> &str {
        "none"
    }

    fn setup(&self, request: &NetworkRequest) -> Result<NetworkStatus, RuntimeError> {
        let namespace = match &request.mode {
            NetworkMode::None => NetNamespace::New,
            NetworkMode::Host => NetNamespace::Host,
            NetworkMode::Join { path, .. } | NetworkMode::Path(path) => {
                NetNamespace::Path(path.clone())
            }
            NetworkMode::Cni => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "container {}: the {} network backend has no CNI networks",
                    request.container_name,
                    self.name()
                )))
            }
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
            ports: Vec::new(),
            static_ip: None,
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
