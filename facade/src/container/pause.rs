//! `pause` and `unpause`: freezing and thawing a running container (the cgroup freezer, through
//! the OCI runtime).

use rpod_state::ContainerStatus;

use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Freezes a running container.
    pub fn pause_container(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.with_container(id_or_name, |rec| {
            require(
                rec,
                rec.state.status.is_running(),
                "pause (it is not running)",
            )?;
            self.oci()?.pause(&rec.config.id)?;
            rec.state.status = ContainerStatus::Paused;
            Ok(self.state.save_container(&rec.config.id, &rec.state)?)
        })
    }

    /// Thaws a paused container.
    pub fn unpause_container(&self, id_or_name: &str) -> Result<(), RuntimeError> {
        self.with_container(id_or_name, |rec| {
            require(
                rec,
                rec.state.status.is_paused(),
                "unpause (it is not paused)",
            )?;
            self.oci()?.resume(&rec.config.id)?;
            rec.state.status = ContainerStatus::Running;
            Ok(self.state.save_container(&rec.config.id, &rec.state)?)
        })
    }
}
