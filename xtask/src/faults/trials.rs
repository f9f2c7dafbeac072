//! The mutating verbs under test and one trial of each: the fixture the
//! verb needs (made without faults), the verb itself killed at the planned
//! delay, the verb a user runs next (the verb again; its target state
//! counts as success when the retry is refused because the first run got
//! there), then `rm -f`/`pod rm -f` of everything, with the invariants
//! checked after the next verb and after the removal, and finally
//! `system reset --force` (which must work too).

use std::time::Duration;

use anyhow::Result;

use super::invariants::{check_outcome, short, CtrRecord, Kind, PodRecord, Violation};
use super::killer::{self, Ending};
use super::observe::{self, args};
use super::sandbox::{self, Round, Sandbox};
use super::schedule::{KillMode, TrialPlan};

/// Stands for the round's rootfs in argument lists.
const ROOTFS: &str = "{rootfs}";

/// What the world must look like after the verb for a refused retry to be
/// fine (e.g. `pause` of a container the killed `pause` did pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The retry itself must succeed.
    None,
    /// Container `t` exists.
    CtrExists,
    /// Container `t` is absent.
    CtrGone,
    /// Container `t` is in one of these states.
    CtrState(&'static [&'static str]),
    /// Pod `p` exists.
    PodExists,
    /// Pod `p` is absent.
    PodGone,
    /// Every container of pod `p` is running.
    PodRunning,
    /// No container of pod `p` is running or paused.
    PodStopped,
}

/// A verb under test.
#[derive(Debug, Clone, Copy)]
pub struct Verb {
    /// Name for `--verbs` and the report.
    pub name: &'static str,
    /// Commands that set the verb up (must all succeed).
    pub fixture: &'static [&'static [&'static str]],
    /// The verb (also run again as the next verb).
    pub command: &'static [&'static str],
    /// What makes a refused retry fine.
    pub target: Target,
}

// Long-running containers run `sh -c "trap 'exit 0' TERM; sleep 1000 &
// wait"`: they exit on SIGTERM at once (a plain `sleep` as PID 1 ignores
// it, and every stop and `rm -f` would wait for the stop timeout).

/// `create` container `t`.
const CREATE_T: &[&str] = &[
    "create",
    "--network",
    "none",
    "--name",
    "t",
    "--rootfs",
    ROOTFS,
    "sh",
    "-c",
    "trap 'exit 0' TERM; sleep 1000 & wait",
];
/// `run -d` container `t`.
const RUN_T: &[&str] = &[
    "run",
    "-d",
    "--network",
    "none",
    "--name",
    "t",
    "--rootfs",
    ROOTFS,
    "sh",
    "-c",
    "trap 'exit 0' TERM; sleep 1000 & wait",
];
/// `pod create` pod `p`.
const POD_P: &[&str] = &["pod", "create", "--name", "p"];
/// `create` container `m` in pod `p`.
const MEMBER_M: &[&str] = &[
    "create",
    "--pod",
    "p",
    "--name",
    "m",
    "--rootfs",
    ROOTFS,
    "sh",
    "-c",
    "trap 'exit 0' TERM; sleep 1000 & wait",
];
/// `pod start` pod `p`.
const POD_START: &[&str] = &["pod", "start", "p"];
/// The states of a container that is not running.
const NOT_RUNNING: &[&str] = &["exited", "stopped", "configured", "created"];

/// Every verb, in report order.
pub const VERBS: &[Verb] = &[
    Verb {
        name: "create",
        fixture: &[],
        command: CREATE_T,
        target: Target::CtrExists,
    },
    Verb {
        name: "start",
        fixture: &[CREATE_T],
        command: &["start", "t"],
        target: Target::CtrState(&["running"]),
    },
    Verb {
        name: "run-d",
        fixture: &[],
        command: RUN_T,
        // A refused retry ("name in use") is fine: the orphan checks tell
        // whether what the killed run left is consistent.
        target: Target::CtrExists,
    },
    Verb {
        name: "run-rm",
        fixture: &[],
        command: &[
            "run",
            "--rm",
            "--network",
            "none",
            "--rootfs",
            ROOTFS,
            "true",
        ],
        target: Target::None,
    },
    Verb {
        name: "stop",
        fixture: &[RUN_T],
        command: &["stop", "-t", "2", "t"],
        target: Target::CtrState(NOT_RUNNING),
    },
    Verb {
        name: "kill",
        fixture: &[RUN_T],
        command: &["kill", "t"],
        target: Target::CtrState(NOT_RUNNING),
    },
    Verb {
        name: "restart",
        fixture: &[RUN_T],
        command: &["restart", "t"],
        target: Target::CtrState(&["running"]),
    },
    Verb {
        name: "rm-f",
        fixture: &[RUN_T],
        command: &["rm", "-f", "t"],
        target: Target::CtrGone,
    },
    Verb {
        name: "pause",
        fixture: &[RUN_T],
        command: &["pause", "t"],
        target: Target::CtrState(&["paused"]),
    },
    Verb {
        name: "unpause",
        fixture: &[RUN_T, &["pause", "t"]],
        command: &["unpause", "t"],
        target: Target::CtrState(&["running"]),
    },
    Verb {
        name: "pod-create",
        fixture: &[],
        command: POD_P,
        target: Target::PodExists,
    },
    Verb {
        name: "pod-start",
        fixture: &[POD_P, MEMBER_M],
        command: POD_START,
        target: Target::PodRunning,
    },
    Verb {
        name: "pod-stop",
        fixture: &[POD_P, MEMBER_M, POD_START],
        command: &["pod", "stop", "-t", "2", "p"],
        target: Target::PodStopped,
    },
    Verb {
        name: "pod-rm-f",
        fixture: &[POD_P, MEMBER_M, POD_START],
        command: &["pod", "rm", "-f", "p"],
        target: Target::PodGone,
    },
    Verb {
        name: "exec",
        fixture: &[RUN_T],
        command: &["exec", "t", "true"],
        target: Target::None,
    },
];

/// The verbs named in `list` (comma-separated; `run -d` = `run-d`), or all.
pub fn select(list: Option<&str>) -> Result<Vec<Verb>, String> {
    let Some(list) = list else {
        return Ok(VERBS.to_vec());
    };
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let norm = name.replace(' ', "-").replace("--", "-");
        let verb = VERBS.iter().find(|v| v.name == norm).ok_or_else(|| {
            let known: Vec<&str> = VERBS.iter().map(|v| v.name).collect();
            format!("unknown verb {name:?} (known: {})", known.join(", "))
        })?;
        chosen.push(*verb);
    }
    if chosen.is_empty() {
        return Err("--verbs names no verb".into());
    }
    Ok(chosen)
}

impl Verb {
    fn argv(&self, sb: &Sandbox, words: &[&str]) -> Vec<String> {
        let rootfs = sb.rootfs.display().to_string();
        words
            .iter()
            .map(|w| {
                if *w == ROOTFS {
                    rootfs.clone()
                } else {
                    (*w).to_string()
                }
            })
            .collect()
    }

    /// Whether the records show the verb's target state.
    pub fn reached(&self, ctrs: &[CtrRecord], pods: &[PodRecord]) -> bool {
        let t = ctrs.iter().find(|c| c.name == "t");
        let p = pods.iter().find(|p| p.name == "p");
        let members = |p: &PodRecord| ctrs.iter().filter(|c| c.pod == p.id).collect::<Vec<_>>();
        match self.target {
            Target::None => false,
            Target::CtrExists => t.is_some(),
            Target::CtrGone => t.is_none(),
            Target::CtrState(states) => t.is_some_and(|t| states.contains(&t.state.as_str())),
            Target::PodExists => p.is_some(),
            Target::PodGone => p.is_none(),
            Target::PodRunning => p.is_some_and(|p| {
                let m = members(p);
                !m.is_empty() && m.iter().all(|c| c.state == "running")
            }),
            Target::PodStopped => p.is_some_and(|p| {
                members(p)
                    .iter()
                    .all(|c| c.state != "running" && c.state != "paused")
            }),
        }
    }
}

/// What one trial found.
#[derive(Debug, Clone)]
pub struct TrialResult {
    /// The verb's name.
    pub verb: &'static str,
    /// The plan (`None` for a calibration run without a kill).
    pub plan: Option<TrialPlan>,
    /// The kill delay used.
    pub delay: Option<Duration>,
    /// How the verb ended (`Killed` when the kill hit it).
    pub ending: Ending,
    /// How long the verb ran.
    pub elapsed: Duration,
    /// Every broken invariant.
    pub violations: Vec<Violation>,
}

/// Runs one trial of `verb` in a fresh sandbox `tag`; `kill` is the delay
/// and mode (`None`: a calibration run, not killed).
pub fn run_trial(
    round: &Round,
    tag: &str,
    verb: &Verb,
    plan: Option<TrialPlan>,
    kill: Option<(Duration, KillMode)>,
) -> Result<TrialResult> {
    let sb = round.sandbox(tag)?;
    let prefix = round.segment_prefix();
    let mut result = TrialResult {
        verb: verb.name,
        plan,
        delay: kill.map(|(d, _)| d),
        ending: Ending::Code(-1),
        elapsed: Duration::ZERO,
        violations: Vec::new(),
    };
    let v = &mut result.violations;

    for step in verb.fixture {
        let o = sb.rpod(&verb.argv(&sb, step))?;
        v.extend(check_outcome(&o, "setup"));
        if !o.ok() {
            v.push(Violation {
                kind: Kind::SetupFailed,
                phase: "setup",
                detail: format!(
                    "`{}` ({}): {}",
                    o.line,
                    o.ending.short(),
                    o.first_err_line()
                ),
            });
            return Ok(result);
        }
    }

    let argv = verb.argv(&sb, verb.command);
    let line = sandbox::display(&argv);
    let o = match kill {
        Some((delay, mode)) => killer::run_killed(&mut sb.cmd(&argv), &line, delay, mode)?,
        None => killer::run(&mut sb.cmd(&argv), &line)?,
    };
    result.ending = o.ending;
    result.elapsed = o.elapsed;
    v.extend(check_outcome(&o, "verb"));
    if kill.is_none() && !o.ok() {
        v.push(Violation {
            kind: Kind::SetupFailed,
            phase: "verb",
            detail: format!(
                "unkilled `{}` ({}): {}",
                o.line,
                o.ending.short(),
                o.first_err_line()
            ),
        });
    }

    // The verb a user runs next: the same again.
    let o = sb.rpod(&argv)?;
    v.extend(check_outcome(&o, "next"));
    if !o.ok() && !matches!(o.ending, Ending::Hung) {
        let reached = match observe::records(&sb) {
            Ok((ctrs, pods)) => verb.reached(&ctrs, &pods),
            Err(_) => false,
        };
        if !reached {
            v.push(Violation {
                kind: Kind::RetryFailed,
                phase: "next",
                detail: format!(
                    "`{}` ({}): {}",
                    o.line,
                    o.ending.short(),
                    o.first_err_line()
                ),
            });
        }
    }
    v.extend(observe::check(&sb, &prefix, "after next"));

    // Then the user removes everything: every pod, then every container.
    match observe::records(&sb) {
        Ok((_, pods)) => {
            for pod in pods {
                let o = sb.rpod(&args(&["pod", "rm", "-f", &pod.id]))?;
                v.extend(check_outcome(&o, "remove"));
                if !o.ok() {
                    v.push(Violation {
                        kind: Kind::RemoveFailed,
                        phase: "remove",
                        detail: format!(
                            "`rpod pod rm -f {}` ({}): {}",
                            short(&pod.id),
                            o.ending.short(),
                            o.first_err_line()
                        ),
                    });
                }
            }
        }
        Err(e) => v.push(Violation {
            kind: Kind::StateUnreadable,
            phase: "remove",
            detail: e,
        }),
    }
    let o = sb.rpod(&args(&["rm", "-f", "--all"]))?;
    v.extend(check_outcome(&o, "remove"));
    if !o.ok() {
        v.push(Violation {
            kind: Kind::RemoveFailed,
            phase: "remove",
            detail: format!(
                "`{}` ({}): {}",
                o.line,
                o.ending.short(),
                o.first_err_line()
            ),
        });
    }
    v.extend(observe::check(&sb, &prefix, "after remove"));

    // Last, what the sandbox's clean-up relies on first.
    let o = sb.rpod(&args(&["system", "reset", "--force"]))?;
    v.extend(check_outcome(&o, "reset"));
    if !o.ok() {
        v.push(Violation {
            kind: Kind::ResetFailed,
            phase: "reset",
            detail: format!(
                "`{}` ({}): {}",
                o.line,
                o.ending.short(),
                o.first_err_line()
            ),
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(name: &str, state: &str, pod: &str) -> CtrRecord {
        CtrRecord {
            id: format!("{name}-id"),
            name: name.into(),
            state: state.into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn selecting_verbs() {
        assert_eq!(select(None).map(|v| v.len()), Ok(VERBS.len()));
        let names = |s| select(Some(s)).map(|v| v.iter().map(|v| v.name).collect::<Vec<_>>());
        assert_eq!(
            names("run -d, rm-f,pod rm -f"),
            Ok(vec!["run-d", "rm-f", "pod-rm-f"])
        );
        assert!(names("frobnicate").is_err());
        assert!(names(",").is_err());
    }

    #[test]
    fn target_states() {
        let verb = |n: &str| VERBS.iter().find(|v| v.name == n).copied();
        let pause = verb("pause");
        assert!(pause.is_some_and(|v| v.reached(&[ctr("t", "paused", "")], &[])));
        assert!(!pause.is_some_and(|v| v.reached(&[ctr("t", "running", "")], &[])));
        let pods = [PodRecord {
            id: "p-id".into(),
            name: "p".into(),
        }];
        let members = [ctr("infra", "running", "p-id"), ctr("m", "exited", "p-id")];
        assert!(!verb("pod-start").is_some_and(|v| v.reached(&members, &pods)));
        assert!(!verb("pod-stop").is_some_and(|v| v.reached(&members, &pods)));
        let stopped = [ctr("infra", "stopped", "p-id"), ctr("m", "exited", "p-id")];
        assert!(verb("pod-stop").is_some_and(|v| v.reached(&stopped, &pods)));
        assert!(verb("pod-rm-f").is_some_and(|v| v.reached(&[], &[])));
        assert!(!verb("exec").is_some_and(|v| v.reached(&[ctr("t", "running", "")], &[])));
    }
}
