//! `restart`: stop (if running), then start again, under one hold of the container's lock.

use std::time::Duration;

use rpod_state::ContainerRecord;

use super::start::StartRequest;
use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Stops the container if it runs, then starts it again, under one hold of its lock (so
    /// the old conmon's cleanup cannot remove an auto-removing container in between).
    pub fn restart_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<ContainerRecord, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let pod_lock = self.pod_lock_of(&rec)?;
        let _pod_guard = pod_lock.as_ref().map(|l| l.lock()).transpose()?;
        self.start_dependencies(&rec)?;
        self.with_container(&rec.config.id, |rec| {
            let status = rec.state.status;
            require(rec, status.can_restart(), "restart")?;
            if status.can_stop() {
                self.stop_locked(rec, timeout)?;
            }
            self.start_locked(rec, StartRequest::under_pod_lock())
                .map(|s| s.record)
        })
    }
}
