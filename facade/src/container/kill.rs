//! `kill`: a signal to a running container's main process (or to all its processes).

use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Sends `signal` to a running container's main process (with `all`, to every process).
    pub fn kill_container(
        &self,
        id_or_name: &str,
        signal: i32,
        all: bool,
    ) -> Result<(), RuntimeError> {
        self.with_infra_pod_lock(id_or_name, |rec| {
            require(
                rec,
                rec.state.status.is_running(),
                "kill (it is not running)",
            )?;
            Ok(self.oci()?.kill(&rec.config.id, signal, all)?)
        })
    }
}
