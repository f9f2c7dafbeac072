//! `pause` and `unpause`: freezing and thawing a running container (the cgroup freezer, through
//! the OCI runtime).

use rpod_oci::RuntimeStatus;
use rpod_state::ContainerStatus;

use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Freezes a running container.
    pub fn pause_container(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.freezer(id_or_name, true)
    }

    /// Thaws a paused container.
    pub fn unpause_container(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.freezer(id_or_name, false)
    }

    /// Pauses (`freeze`) a running container or resumes a paused one. When the runtime refuses
    /// because it already is in the wanted state (an earlier pause or unpause was killed after
    /// the runtime acted, before the state was saved), the record follows the runtime.
    fn freezer(&self, id_or_name: &str, freeze: bool) -> Result<(), RuntimeError> {
        self.with_container(id_or_name, |rec| {
            let id = rec.config.id.clone();
            let oci = self.oci()?;
            let (allowed, action, wanted, done) = if freeze {
                (
                    rec.state.status.is_running(),
                    "pause (it is not running)",
                    ContainerStatus::Paused,
                    RuntimeStatus::Paused,
                )
            } else {
                (
                    rec.state.status.is_paused(),
                    "unpause (it is not paused)",
                    ContainerStatus::Running,
                    RuntimeStatus::Running,
                )
            };
            require(rec, allowed, action)?;
            let acted = if freeze { oci.pause(&id) } else { oci.resume(&id) };
            if let Err(e) = acted {
                if self.runtime_status(&id) != Some(done) {
                    return Err(e.into());
                }
                tracing::warn!(container = %id, "the runtime already had the container {wanted}; recording that");
            }
            rec.state.status = wanted;
            Ok(self.state.save_container(&id, &rec.state)?)
        })
    }

    /// What the OCI runtime says of the container's status (`None`: it does not know it, or
    /// could not be asked).
    pub(crate) fn runtime_status(&self, id: &str) -> Option<RuntimeStatus> {
        self.oci().ok()?.state(id).ok().map(|s| s.status)
    }
}
