//! `pod inspect` and `pod ps`: the documents podman prints for a pod.

use std::collections::BTreeMap;

use rpod_state::{ContainerRecord, PodRecord};
use serde::Serialize;

use super::status::PodStatus;
use crate::container::ContainerInspect;
use crate::error::RuntimeError;
use crate::timefmt;
use crate::Runtime;

/// What `rpod pod inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodInspect {
    /// Full ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// libpod namespace.
    pub namespace: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The pod's status.
    pub state: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Lock ID.
    #[serde(rename = "LockID")]
    pub lock_id: u32,
    /// cgroup parent.
    pub cgroup_parent: String,
    /// The pod's cgroup.
    pub cgroup_path: String,
    /// The infra container's ID (empty: none).
    pub infra_container_id: String,
    /// Namespaces the members share.
    pub shared_namespaces: Vec<String>,
    /// How many containers (infra included).
    pub num_containers: usize,
    /// Every member's inspect document.
    pub containers: Vec<ContainerInspect>,
}

/// A member in [`PodListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodMember {
    /// Full ID.
    pub id: String,
    /// Name.
    pub names: String,
    /// Status (`running`, …).
    pub status: String,
}

/// One row of `rpod pod ps --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodListing {
    /// Full ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The pod's status.
    pub status: String,
    /// The infra container's ID.
    pub infra_id: String,
    /// libpod namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its members.
    pub containers: Vec<PodMember>,
}

impl PodInspect {
    /// The document for `p` with these members (statuses up to date).
    pub fn new(p: &PodRecord, members: &[ContainerRecord]) -> Self {
        PodInspect {
            id: p.config.id.clone(),
            name: p.config.name.clone(),
            namespace: p.config.namespace.clone(),
            created: timefmt::rfc3339(p.config.created),
            state: PodStatus::of(members).to_string(),
            labels: p.config.labels.clone(),
            lock_id: p.config.lock_id,
            cgroup_parent: p.config.cgroup_parent.clone(),
            cgroup_path: p.state.cgroup_path.clone(),
            infra_container_id: p.state.infra_container_id.clone(),
            shared_namespaces: p.config.shared_namespaces.clone(),
            num_containers: members.len(),
            containers: members.iter().map(ContainerInspect::from).collect(),
        }
    }
}

impl PodListing {
    /// The row for `p` with these members (statuses up to date).
    pub fn new(p: &PodRecord, members: &[ContainerRecord]) -> Self {
        PodListing {
            id: p.config.id.clone(),
            name: p.config.name.clone(),
            created: timefmt::rfc3339(p.config.created),
            status: PodStatus::of(members).to_string(),
            infra_id: p.state.infra_container_id.clone(),
            namespace: p.config.namespace.clone(),
            labels: p.config.labels.clone(),
            containers: members
                .iter()
                .map(|c| PodMember {
                    id: c.config.id.clone(),
                    names: c.config.name.clone(),
                    status: c.state.status.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

impl Runtime {
    /// The members of a pod with their statuses brought up to date (infra included).
    pub fn pod_members_view(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let mut members = self.pod_containers(pod_id)?;
        for m in &mut members {
            self.container_view(m)?;
        }
        Ok(members)
    }

    /// The `pod inspect` document of a pod.
    pub fn inspect_pod(&self, id_or_name: &str) -> Result<PodInspect, RuntimeError> {
        let p = self.lookup_pod(id_or_name)?;
        let members = self.pod_members_view(&p.config.id)?;
        Ok(PodInspect::new(&p, &members))
    }
}
