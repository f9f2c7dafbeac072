//! A pod's status, derived from its members' (podman's rules).

use std::fmt;

use rpod_state::{ContainerRecord, ContainerStatus};
use serde::Serialize;

/// podman's pod status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PodStatus {
    /// No member has run yet (or there are none).
    Created,
    /// Every member runs.
    Running,
    /// Every member is paused.
    Paused,
    /// Every member has exited.
    Exited,
    /// Some members run, others do not.
    Degraded,
    /// None runs, not all have exited.
    Stopped,
}

impl PodStatus {
    /// The status of a pod with these members (their statuses up to date).
    pub fn of(members: &[ContainerRecord]) -> PodStatus {
        use ContainerStatus as S;
        let count = |f: &dyn Fn(S) -> bool| members.iter().filter(|c| f(c.state.status)).count();
        let running = count(&|s| s == S::Running);
        let paused = count(&|s| s == S::Paused);
        let stopped = count(&|s| matches!(s, S::Stopped | S::Exited));
        let n = members.len();
        if n == 0 || count(&|s| matches!(s, S::Configured | S::Created)) == n {
            PodStatus::Created
        } else if running == n {
            PodStatus::Running
        } else if paused == n {
            PodStatus::Paused
        } else if stopped == n {
            PodStatus::Exited
        } else if running > 0 {
            PodStatus::Degraded
        } else {
            PodStatus::Stopped
        }
    }

    /// The name podman prints.
    pub fn as_str(self) -> &'static str {
        match self {
            PodStatus::Created => "Created",
            PodStatus::Running => "Running",
            PodStatus::Paused => "Paused",
            PodStatus::Exited => "Exited",
            PodStatus::Degraded => "Degraded",
            PodStatus::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for PodStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpod_state::ContainerConfig;

    fn member(status: ContainerStatus) -> ContainerRecord {
        let mut r = ContainerRecord::new(ContainerConfig::new("x", "x"));
        r.state.status = status;
        r
    }

    #[test]
    fn podman_rules() {
        use ContainerStatus as S;
        let of = |ss: &[S]| PodStatus::of(&ss.iter().map(|s| member(*s)).collect::<Vec<_>>());
        assert_eq!(of(&[]), PodStatus::Created);
        assert_eq!(of(&[S::Configured, S::Created]), PodStatus::Created);
        assert_eq!(of(&[S::Running, S::Running]), PodStatus::Running);
        assert_eq!(of(&[S::Paused]), PodStatus::Paused);
        assert_eq!(of(&[S::Exited, S::Stopped]), PodStatus::Exited);
        assert_eq!(of(&[S::Running, S::Exited]), PodStatus::Degraded);
        assert_eq!(of(&[S::Paused, S::Exited]), PodStatus::Stopped);
    }
}
