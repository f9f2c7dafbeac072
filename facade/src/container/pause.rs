//! `pause` and `unpause`: freezing and thawing a running container (the cgroup freezer, through
//! the OCI runtime).

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

    /// Pauses (`freeze`) a running container or resumes a paused one.
    fn freezer(&self, id_or_name: &str, freeze: bool) -> Result<(), RuntimeError> {
        self.with_container(id_or_name, |rec| {
            let id = rec.config.id.clone();
            let oci = self.oci()?;
            if freeze {
                require(
                    rec,
                    rec.state.status.is_running(),
                    "pause (it is not running)",
                )?;
                oci.pause(&id)?;
                rec.state.status = ContainerStatus::Paused;
            } else {
                require(
                    rec,
                    rec.state.status.is_paused(),
                    "unpause (it is not paused)",
                )?;
                oci.resume(&id)?;
                rec.state.status = ContainerStatus::Running;
            }
            Ok(self.state.save_container(&id, &rec.state)?)
        })
    }
}
