//! The mutating verbs under test and one trial of each: the fixture the
//! verb needs (made without faults), the verb itself killed at the planned
//! delay, the verb a user runs next (the verb again; its target state
//! counts as success when the retry is refused because the first run got
//! there), then `rm -f`/`pod rm -f` of everything, with the invariants
//! checked after the next verb and after the removal, and finally
//! `system reset --force` (which must work too).
//!
//! In a `--network` round the same verbs run on the sandbox's CNI bridge
//! network (`--netns bridge`, no `--network none`), and in the trials whose
//! plan says so `create`, `run -d` and `pod create` publish a loopback port
//! (`-p 127.0.0.1:<free port>:80`: port reservation and portmap).
//!
//! In an `--images` round ([`super::images`]) every container runs from the
//! round's image (`--pull never localhost/fltimg` instead of `--rootfs`),
//! the image verbs ([`IMAGE_VERBS`]) join, the removal ends with `image
//! prune`, and the store's invariants are checked too (with "nothing
//! unowned" after a successful `import`/`load` retry and after the prune).

use std::time::Duration;

use anyhow::Result;

use super::images::{self, RoundImages};
use super::invariants::{check_outcome, short, CtrRecord, Kind, PodRecord, Violation};
use super::killer::{self, Ending, Outcome};
use super::observe::{self, args};
use super::sandbox::{self, Round, Sandbox};
use super::schedule::{KillMode, TrialPlan};
use crate::bench::{ROOTFS, RUN_RM_TRUE};

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
    /// No image of this name exists.
    ImageGone(&'static str),
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

/// Stands for the options and command of a long-running container on the
/// round's rootfs: `--rootfs <rootfs> sh -c "trap 'exit 0' TERM; sleep 1000
/// & wait"`. It exits on SIGTERM at once (a plain `sleep` as PID 1 ignores
/// it, and every stop and `rm -f` would wait for the stop timeout).
const SLEEPER: &str = "{sleeper}";
/// Stands for `-p 127.0.0.1:<port>:80` when the sandbox publishes a port,
/// else for nothing.
const PUBLISH: &str = "{publish}";
/// Stands for the round's extra tarball (`--images`).
const TARBALL: &str = "{tarball}";
/// Stands for the round's saved archive (`--images`).
const ARCHIVE: &str = "{archive}";

/// `create` container `t` (`--network none` is dropped in `--network`
/// rounds, here and in [`RUN_RM_TRUE`], so the default, `--netns bridge`,
/// applies).
const CREATE_T: &[&str] = &[
    "create",
    "--network",
    "none",
    PUBLISH,
    "--name",
    "t",
    SLEEPER,
];
/// `run -d` container `t`.
const RUN_T: &[&str] = &[
    "run",
    "-d",
    "--network",
    "none",
    PUBLISH,
    "--name",
    "t",
    SLEEPER,
];
/// `pod create` pod `p`.
const POD_P: &[&str] = &["pod", "create", PUBLISH, "--name", "p"];
/// `create` container `m` in pod `p`.
const MEMBER_M: &[&str] = &["create", "--pod", "p", "--name", "m", SLEEPER];
/// `pod start` pod `p`.
const POD_START: &[&str] = &["pod", "start", "p"];
/// The states of a container that is not running.
const NOT_RUNNING: &[&str] = &["exited", "stopped", "configured", "created"];

/// A [`Verb`] (in a table, one a line).
const fn verb(
    name: &'static str,
    fixture: &'static [&'static [&'static str]],
    command: &'static [&'static str],
    target: Target,
) -> Verb {
    Verb {
        name,
        fixture,
        command,
        target,
    }
}

/// Target: container `t` is paused.
const PAUSED: Target = Target::CtrState(&["paused"]);
/// `pause` container `t`.
const PAUSE_T: &[&str] = &["pause", "t"];
/// `pod stop` pod `p`.
const POD_STOP: &[&str] = &["pod", "stop", "-t", "2", "p"];
/// `pod rm -f` pod `p`.
const POD_RM_F: &[&str] = &["pod", "rm", "-f", "p"];
/// Target: container `t` runs.
const T_RUNNING: Target = Target::CtrState(&["running"]);
/// Target: container `t` does not run.
const T_STOPPED: Target = Target::CtrState(NOT_RUNNING);
/// The fixture of the pod verbs: pod `p` with member `m`.
const POD_PM: &[&[&str]] = &[POD_P, MEMBER_M];
/// The same, started.
const POD_PM_STARTED: &[&[&str]] = &[POD_P, MEMBER_M, POD_START];

/// Every verb, in report order. A refused `run -d` retry ("name in use")
/// is fine: the orphan checks tell whether what the killed run left is
/// consistent.
pub const VERBS: &[Verb] = &[
    verb("create", &[], CREATE_T, Target::CtrExists),
    verb("start", &[CREATE_T], &["start", "t"], T_RUNNING),
    verb("run-d", &[], RUN_T, Target::CtrExists),
    verb("run-rm", &[], RUN_RM_TRUE, Target::None),
    verb("stop", &[RUN_T], &["stop", "-t", "2", "t"], T_STOPPED),
    verb("kill", &[RUN_T], &["kill", "t"], T_STOPPED),
    verb("restart", &[RUN_T], &["restart", "t"], T_RUNNING),
    verb("rm-f", &[RUN_T], &["rm", "-f", "t"], Target::CtrGone),
    verb("pause", &[RUN_T], &["pause", "t"], PAUSED),
    verb("unpause", &[RUN_T, PAUSE_T], &["unpause", "t"], T_RUNNING),
    verb("pod-create", &[], POD_P, Target::PodExists),
    verb("pod-start", POD_PM, POD_START, Target::PodRunning),
    verb("pod-stop", POD_PM_STARTED, POD_STOP, Target::PodStopped),
    verb("pod-rm-f", POD_PM_STARTED, POD_RM_F, Target::PodGone),
    verb("exec", &[RUN_T], &["exec", "t", "true"], Target::None),
];

/// The image verbs of an `--images` round (after [`VERBS`], whose
/// containers then run from the round's image): `import` of a tarball,
/// `load -i` of an archive, `rmi` of an unused image, `rmi -f` of the image
/// a running container uses, `mount` of a container.
pub const IMAGE_VERBS: &[Verb] = &[
    verb(
        "import",
        &[],
        &["import", "-q", TARBALL, images::IMPORTED],
        Target::None,
    ),
    verb("load", &[], &["load", "-q", "-i", ARCHIVE], Target::None),
    verb(
        "rmi",
        &[&["import", "-q", TARBALL, images::SPARE]],
        &["rmi", images::SPARE],
        Target::ImageGone(images::SPARE),
    ),
    verb(
        "rmi-f",
        &[RUN_T],
        &["rmi", "-f", images::IMAGE],
        Target::ImageGone(images::IMAGE),
    ),
    verb("mount", &[CREATE_T], &["mount", "t"], Target::None),
];

/// The verbs of a round (with `images`, [`VERBS`] then [`IMAGE_VERBS`]).
pub fn all(images: bool) -> Vec<Verb> {
    let mut verbs = VERBS.to_vec();
    if images {
        verbs.extend_from_slice(IMAGE_VERBS);
    }
    verbs
}

/// The verbs named in `list` (comma-separated; `run -d` = `run-d`), or all
/// (with `images`, the image verbs too).
pub fn select(list: Option<&str>, images: bool) -> Result<Vec<Verb>, String> {
    let known = all(images);
    let Some(list) = list else {
        return Ok(known);
    };
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let norm = name.replace(' ', "-").replace("--", "-");
        let verb = known.iter().find(|v| v.name == norm).ok_or_else(|| {
            let known: Vec<&str> = known.iter().map(|v| v.name).collect();
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
        // The root filesystem: the round's rootfs, or (`--images`) its image.
        let root: [&str; 3] = if sb.images.is_some() {
            ["--pull", "never", images::IMAGE]
        } else {
            ["--rootfs", &rootfs, ""]
        };
        let root = root
            .iter()
            .filter(|w| !w.is_empty())
            .map(|w| (*w).to_string());
        let sleep = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];
        let file = |f: fn(&RoundImages) -> &std::path::Path| {
            sb.images
                .as_ref()
                .map_or_else(String::new, |i| f(i).display().to_string())
        };
        let mut argv = Vec::new();
        let mut words = words.iter().peekable();
        while let Some(word) = words.next() {
            match *word {
                "--network" if sb.net.is_some() && words.peek() == Some(&&"none") => {
                    words.next();
                }
                "--rootfs" if sb.images.is_some() && words.peek() == Some(&&ROOTFS) => {
                    words.next();
                    argv.extend(root.clone());
                }
                SLEEPER => {
                    argv.extend(root.clone());
                    argv.extend(sleep.map(str::to_string));
                }
                TARBALL => argv.push(file(|i| &i.extra_tar)),
                ARCHIVE => argv.push(file(|i| &i.archive)),
                PUBLISH => {
                    if let Some(port) = sb.net.as_ref().and_then(|n| n.port) {
                        argv.extend(["-p".into(), format!("127.0.0.1:{port}:80")]);
                    }
                }
                ROOTFS => argv.push(rootfs.clone()),
                w => argv.push(w.to_string()),
            }
        }
        argv
    }

    /// Whether the records show the verb's target state (`images`: the
    /// images' names, needed by the image targets only).
    pub fn reached(&self, ctrs: &[CtrRecord], pods: &[PodRecord], images: &[String]) -> bool {
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
            Target::ImageGone(name) => !images.iter().any(|n| n == name),
        }
    }

    /// Whether the target is an image's.
    fn image_target(&self) -> bool {
        matches!(self.target, Target::ImageGone(_))
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
    /// The containers published a port (`--network` rounds).
    pub published: bool,
    /// How long the verb ran.
    pub elapsed: Duration,
    /// Every broken invariant.
    pub violations: Vec<Violation>,
}

/// A `kind` violation in `phase`: the command `what` (`o`) failed.
fn failed(kind: Kind, phase: &'static str, what: &str, o: &Outcome) -> Violation {
    let detail = format!("`{what}` ({}): {}", o.ending.short(), o.first_err_line());
    Violation::new(kind, phase, detail)
}

/// Runs one trial of `verb` in a fresh sandbox `tag`; `kill` is the delay
/// and mode (`None`: a calibration run, not killed); `publish`: in a
/// `--network` round, the containers publish a port.
pub fn run_trial(
    round: &Round,
    tag: &str,
    verb: &Verb,
    plan: Option<TrialPlan>,
    kill: Option<(Duration, KillMode)>,
    publish: bool,
) -> Result<TrialResult> {
    let sb = round.sandbox(tag, publish)?;
    let prefix = round.segment_prefix();
    let mut result = TrialResult {
        verb: verb.name,
        plan,
        delay: kill.map(|(d, _)| d),
        ending: Ending::Code(-1),
        published: sb.net.as_ref().is_some_and(|n| n.port.is_some()),
        elapsed: Duration::ZERO,
        violations: Vec::new(),
    };
    let v = &mut result.violations;

    for step in verb.fixture {
        let o = sb.rpod(&verb.argv(&sb, step))?;
        v.extend(check_outcome(&o, "setup"));
        if !o.ok() {
            v.push(failed(Kind::SetupFailed, "setup", &o.line, &o));
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
        let mut unkilled = failed(Kind::SetupFailed, "verb", &o.line, &o);
        unkilled.detail.insert_str(0, "unkilled ");
        v.push(unkilled);
    }

    // The verb a user runs next: the same again.
    let o = sb.rpod(&argv)?;
    v.extend(check_outcome(&o, "next"));
    // A successful import or load collects the store afterwards.
    let collected = o.ok() && matches!(verb.command.first(), Some(&("import" | "load")));
    if !o.ok() && !matches!(o.ending, Ending::Hung) {
        let images = if verb.image_target() {
            observe::image_names(&sb).unwrap_or_default()
        } else {
            Vec::new()
        };
        let reached = match observe::records(&sb) {
            Ok((ctrs, pods)) => verb.reached(&ctrs, &pods, &images),
            Err(_) => false,
        };
        if !reached {
            v.push(failed(Kind::RetryFailed, "next", &o.line, &o));
        }
    }
    v.extend(observe::check_store(&sb, &prefix, "after next", collected));

    // Then the user removes everything: every pod, then every container.
    match observe::records(&sb) {
        Ok((_, pods)) => {
            for pod in pods {
                let o = sb.rpod(&args(&["pod", "rm", "-f", &pod.id]))?;
                v.extend(check_outcome(&o, "remove"));
                if !o.ok() {
                    v.push(failed(
                        Kind::RemoveFailed,
                        "remove",
                        &format!("rpod pod rm -f {}", short(&pod.id)),
                        &o,
                    ));
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
        v.push(failed(Kind::RemoveFailed, "remove", &o.line, &o));
    }
    // With images, `image prune` too: it collects what a killed removal of
    // an image left.
    let mut collected = false;
    if sb.images.is_some() {
        let o = sb.rpod(&args(&["image", "prune"]))?;
        v.extend(check_outcome(&o, "remove"));
        if !o.ok() {
            v.push(failed(Kind::RemoveFailed, "remove", &o.line, &o));
        }
        collected = o.ok();
    }
    v.extend(observe::check_store(
        &sb,
        &prefix,
        "after remove",
        collected,
    ));

    // Last, what the sandbox's clean-up relies on first.
    let o = sb.rpod(&args(&["system", "reset", "--force"]))?;
    v.extend(check_outcome(&o, "reset"));
    if !o.ok() {
        v.push(failed(Kind::ResetFailed, "reset", &o.line, &o));
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
            infra: false,
            image: String::new(),
        }
    }

    #[test]
    fn selecting_verbs() {
        assert_eq!(select(None, false).map(|v| v.len()), Ok(VERBS.len()));
        assert_eq!(
            select(None, true).map(|v| v.len()),
            Ok(VERBS.len() + IMAGE_VERBS.len())
        );
        assert!(select(Some("rmi"), false).is_err());
        assert!(select(Some("rmi,load"), true).is_ok());
        let names =
            |s| select(Some(s), false).map(|v| v.iter().map(|v| v.name).collect::<Vec<_>>());
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
        assert!(pause.is_some_and(|v| v.reached(&[ctr("t", "paused", "")], &[], &[])));
        assert!(!pause.is_some_and(|v| v.reached(&[ctr("t", "running", "")], &[], &[])));
        let pods = [PodRecord {
            id: "p-id".into(),
            name: "p".into(),
        }];
        let members = [ctr("infra", "running", "p-id"), ctr("m", "exited", "p-id")];
        assert!(!verb("pod-start").is_some_and(|v| v.reached(&members, &pods, &[])));
        assert!(!verb("pod-stop").is_some_and(|v| v.reached(&members, &pods, &[])));
        let stopped = [ctr("infra", "stopped", "p-id"), ctr("m", "exited", "p-id")];
        assert!(verb("pod-stop").is_some_and(|v| v.reached(&stopped, &pods, &[])));
        assert!(verb("pod-rm-f").is_some_and(|v| v.reached(&[], &[], &[])));
        assert!(!verb("exec").is_some_and(|v| v.reached(&[ctr("t", "running", "")], &[], &[])));
    }
}
