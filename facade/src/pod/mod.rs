//! Pods: one file per verb, as for containers. A pod is a record, a lock, a cgroup and usually
//! an infra container whose namespaces the members share (reference §5.6).

mod create;
mod inspect;
mod lifecycle;
mod remove;
mod status;

use std::path::PathBuf;

pub use create::{PodSpec, DEFAULT_POD_SHARE, SHAREABLE_NAMESPACES};
pub use inspect::{PodInspect, PodListing, PodMember};
pub use status::PodStatus;

use crate::Runtime;

/// libpod's default infra command, which needs the pause image rpod does not use.
const LIBPOD_PAUSE_COMMAND: &str = "/pause";

impl Runtime {
    /// The root filesystem of infra containers: `<static_dir>/infra-rootfs` (built from
    /// `init_path` when an infra container first starts).
    pub fn infra_rootfs(&self) -> PathBuf {
        self.config.values.static_dir.join("infra-rootfs")
    }

    /// The infra container's command: `infra_command` when configured (other than libpod's
    /// `/pause`, which needs the pause image), else `catatonit -P`.
    pub fn infra_command(&self) -> Vec<String> {
        let cmd = &self.config.values.infra_command;
        if self.config.sources.is_explicit("infra_command") && cmd != LIBPOD_PAUSE_COMMAND {
            vec![cmd.clone()]
        } else {
            vec!["/catatonit".to_owned(), "-P".to_owned()]
        }
    }
}
