//! Which verbs a container's status allows: the state machine of libpod (reference §3) as
//! predicates, so each verb asks one question instead of matching every status itself.

use rpod_state::{ContainerRecord, ContainerStatus};

use crate::error::RuntimeError;

/// The life-cycle rules, as questions on a [`ContainerStatus`].
pub trait StatusRules: Copy {
    /// A process may still run (or be about to): the exit file decides whether it still does.
    fn may_have_process(self) -> bool;
    /// Running or paused: removal needs force, cleanup must wait.
    fn is_running_or_paused(self) -> bool;
    /// The OCI runtime still knows the container (created, or exited but not yet deleted).
    fn runtime_knows(self) -> bool;
    /// `start` is allowed (a running container is a no-op start).
    fn can_start(self) -> bool;
    /// `start` must first create the container in the runtime (init).
    fn needs_init(self) -> bool;
    /// `stop` has something to stop.
    fn can_stop(self) -> bool;
    /// `stop` of a container that already stopped (podman treats this as success).
    fn is_stopped(self) -> bool;
    /// `kill`, `pause`, `exec` and `attach` need a running container.
    fn is_running(self) -> bool;
    /// `unpause` needs a paused container.
    fn is_paused(self) -> bool;
    /// `restart` is allowed.
    fn can_restart(self) -> bool;
}

impl StatusRules for ContainerStatus {
    fn may_have_process(self) -> bool {
        matches!(
            self,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
        )
    }

    fn is_running_or_paused(self) -> bool {
        matches!(self, ContainerStatus::Running | ContainerStatus::Paused)
    }

    fn runtime_knows(self) -> bool {
        matches!(self, ContainerStatus::Stopped | ContainerStatus::Created)
    }

    fn can_start(self) -> bool {
        !matches!(self, ContainerStatus::Paused | ContainerStatus::Unknown)
    }

    fn needs_init(self) -> bool {
        matches!(
            self,
            ContainerStatus::Configured | ContainerStatus::Exited | ContainerStatus::Stopped
        )
    }

    fn can_stop(self) -> bool {
        matches!(
            self,
            ContainerStatus::Running | ContainerStatus::Created | ContainerStatus::Paused
        )
    }

    fn is_stopped(self) -> bool {
        matches!(self, ContainerStatus::Stopped | ContainerStatus::Exited)
    }

    fn is_running(self) -> bool {
        self == ContainerStatus::Running
    }

    fn is_paused(self) -> bool {
        self == ContainerStatus::Paused
    }

    fn can_restart(self) -> bool {
        !matches!(self, ContainerStatus::Paused | ContainerStatus::Unknown)
    }
}

/// `Ok` when `allowed`, else the error saying the container's status forbids `action`.
pub(crate) fn require(
    rec: &ContainerRecord,
    allowed: bool,
    action: &'static str,
) -> Result<(), RuntimeError> {
    if allowed {
        Ok(())
    } else {
        Err(RuntimeError::InvalidState {
            id: rec.config.id.clone(),
            status: rec.state.status.to_string(),
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_libpod() {
        use ContainerStatus as S;
        for s in S::ALL {
            // Exactly one of: startable without init (created, running), needs init, refused.
            let outcome = (s.can_start(), s.needs_init());
            match s {
                S::Created | S::Running => assert_eq!(outcome, (true, false), "{s}"),
                S::Configured | S::Exited | S::Stopped => assert_eq!(outcome, (true, true), "{s}"),
                S::Paused | S::Unknown => assert!(!outcome.0, "{s}"),
            }
            assert!(!(s.can_stop() && s.is_stopped()), "{s}");
            assert_eq!(s.runtime_knows(), matches!(s, S::Stopped | S::Created));
        }
    }
}
