//! The pod records: [`PodConfig`], [`PodState`] and [`PodRecord`].

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{epoch, unix_nanos};

/// The immutable configuration of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodConfig {
    /// Full ID.
    pub id: String,
    /// Unique name (shared namespace with container names).
    pub name: String,
    /// libpod namespace.
    pub namespace: String,
    /// Lock ID.
    pub lock_id: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    #[serde(with = "unix_nanos")]
    pub created: SystemTime,
    /// Cgroup parent.
    pub cgroup_parent: String,
    /// Whether the pod has an infra container.
    pub infra: bool,
    /// Namespaces shared through the infra container (e.g. `net`, `ipc`).
    pub shared_namespaces: Vec<String>,
}

impl Default for PodConfig {
    fn default() -> Self {
        PodConfig {
            id: String::new(),
            name: String::new(),
            namespace: String::new(),
            lock_id: 0,
            labels: BTreeMap::new(),
            created: epoch(),
            cgroup_parent: String::new(),
            infra: false,
            shared_namespaces: Vec::new(),
        }
    }
}

impl PodConfig {
    /// A config with the given ID and name and defaults elsewhere (created now).
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        PodConfig {
            id: id.into(),
            name: name.into(),
            created: SystemTime::now(),
            ..Default::default()
        }
    }
}

/// The mutable state of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PodState {
    /// ID of the infra container (empty = none yet).
    pub infra_container_id: String,
    /// Path of the pod's cgroup (cleared on refresh).
    pub cgroup_path: String,
}

/// A pod as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Immutable config.
    pub config: PodConfig,
    /// State when read.
    pub state: PodState,
}

impl PodRecord {
    /// A record with a config and an empty state.
    pub fn new(config: PodConfig) -> Self {
        PodRecord {
            config,
            state: PodState::default(),
        }
    }

    /// The pod's ID.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}
