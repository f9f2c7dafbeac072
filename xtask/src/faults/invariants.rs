//! The invariants every trial is checked against, evaluated on a
//! [`Snapshot`] of what rpod's records say and what is on the host (pure
//! functions: the snapshot is taken by [`super::observe`]).
//!
//! - no command hangs (over [`super::killer::HANG_TIMEOUT`]), panics (exit
//!   101 or `panicked` on stderr) or dies of a signal we did not send;
//! - the state can be read (`ps -a`, `pod ps`, `system locks`);
//! - locks held == containers (infra included) + pods;
//! - no conmon, `runc init`, runc state dir (`/run/runc/<id>`) or cgroup
//!   (under the trial's cgroup parent) of a container that no record owns;
//! - no exit file (`<tmpdir>/exits/<id>` or `<id>-old`) of a container that
//!   no record owns;
//! - no lock segment of the round but the trial's own (and none under the
//!   name rpod derives from the tmp dir when `--lock-name` is lost).

use std::collections::BTreeSet;
use std::fmt;

use super::killer::{Ending, Outcome};

/// The kinds of violation, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The fixture (set-up without faults) failed.
    SetupFailed,
    /// A command ran over the hang timeout.
    Hang,
    /// A command panicked.
    Panic,
    /// A command died of a signal we did not send (SIGSEGV, SIGBUS, ...).
    Signal,
    /// `ps -a`, `pod ps` or `system locks` failed.
    StateUnreadable,
    /// Locks held != records.
    LockCount,
    /// A conmon process of a container without a record.
    OrphanConmon,
    /// A `runc init` process of a container without a record.
    OrphanRuncInit,
    /// A runc state dir of a container without a record.
    OrphanRuncState,
    /// A cgroup without a record.
    OrphanCgroup,
    /// An exit file of a container without a record.
    OrphanExitFile,
    /// A lock segment other than the trial's own.
    ForeignSegment,
    /// The verb a user runs next failed.
    RetryFailed,
    /// Removing the trial's objects (`rm -f`, `pod rm -f`) failed.
    RemoveFailed,
    /// `system reset --force` at the end of the trial failed.
    ResetFailed,
}

impl Kind {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SetupFailed => "setup failed",
            Kind::Hang => "hang",
            Kind::Panic => "panic",
            Kind::Signal => "signal death",
            Kind::StateUnreadable => "state unreadable",
            Kind::LockCount => "locks held != records",
            Kind::OrphanConmon => "orphan conmon",
            Kind::OrphanRuncInit => "orphan runc init",
            Kind::OrphanRuncState => "orphan runc state",
            Kind::OrphanCgroup => "orphan cgroup",
            Kind::OrphanExitFile => "orphan exit file",
            Kind::ForeignSegment => "foreign lock segment",
            Kind::RetryFailed => "next verb failed",
            Kind::RemoveFailed => "rm -f failed",
            Kind::ResetFailed => "system reset failed",
        }
    }

    /// Kinds that can be transient right after a command (an exiting conmon
    /// or `runc init`, a cgroup being removed): re-checked for a moment
    /// before they count.
    pub fn settles(self) -> bool {
        matches!(
            self,
            Kind::OrphanConmon
                | Kind::OrphanRuncInit
                | Kind::OrphanRuncState
                | Kind::OrphanCgroup
                | Kind::LockCount
        )
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What broke.
    pub kind: Kind,
    /// When: `setup`, `verb`, `next`, `after next`, `remove`, `after remove`.
    pub phase: &'static str,
    /// Details (IDs shortened to 12 characters).
    pub detail: String,
}

impl Violation {
    /// A `kind` violation in `phase`.
    pub fn new(kind: Kind, phase: &'static str, detail: String) -> Self {
        Self {
            kind,
            phase,
            detail,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind.name(), self.phase, self.detail)
    }
}

/// A container record, from `rpod ps -a --format json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtrRecord {
    /// Full ID.
    pub id: String,
    /// First name.
    pub name: String,
    /// `configured`, `running`, `paused`, `exited`, `stopped`, ...
    pub state: String,
    /// Pod ID, empty when none.
    pub pod: String,
}

/// A pod record, from `rpod pod ps --format json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRecord {
    /// Full ID.
    pub id: String,
    /// Name.
    pub name: String,
}

/// What rpod's records say and what is on the host, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Failures reading the state (command and message); when non-empty the
    /// record-based checks are skipped.
    pub query_errors: Vec<String>,
    /// Container records (infra containers included).
    pub containers: Vec<CtrRecord>,
    /// Pod records.
    pub pods: Vec<PodRecord>,
    /// Locks held, from `system locks`.
    pub locks_held: u64,
    /// conmon processes of the trial: PID and the container ID (`-c`).
    pub conmons: Vec<(u32, String)>,
    /// `runc init` processes in the trial's cgroups: PID and container ID
    /// (from the cgroup path; empty when unknown).
    pub runc_inits: Vec<(u32, String)>,
    /// runc state dirs whose `state.json` mentions the trial's directory.
    pub runc_states: Vec<String>,
    /// Cgroups under the trial's cgroup parent, relative to it, in any
    /// hierarchy (`<pod>/libpod-<ctr>`, `libpod-<ctr>`, ...).
    pub cgroups: Vec<String>,
    /// File names in `<tmpdir>/exits`.
    pub exit_files: Vec<String>,
    /// The round's lock segments present in /dev/shm (file names), plus the
    /// derived default name of the trial's tmp dir when present.
    pub segments: Vec<String>,
}

/// Whether `s` is a full 64-hex-digit ID.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The object ID a cgroup directory name stands for: `libpod-<id>`,
/// `libpod-conmon-<id>` or a bare `<id>` (a pod's cgroup).
pub fn cgroup_id(component: &str) -> Option<&str> {
    let id = component
        .strip_prefix("libpod-conmon-")
        .or_else(|| component.strip_prefix("libpod-"))
        .unwrap_or(component);
    let id = id.strip_suffix(".scope").unwrap_or(id);
    is_id(id).then_some(id)
}

/// The container ID of an exit file name (`<id>` or `<id>-old`).
pub fn exit_file_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix("-old").unwrap_or(name);
    is_id(id).then_some(id)
}

/// The first 12 characters of an ID.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Violations in how a command ended (hang, panic, signal death). A kill of
/// ours is not a violation.
pub fn check_outcome(outcome: &Outcome, phase: &'static str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut add = |kind, detail: String| found.push(Violation::new(kind, phase, detail));
    match outcome.ending {
        Ending::Hung => add(
            Kind::Hang,
            format!("`{}` ran over the timeout", outcome.line),
        ),
        Ending::Signal(_) => add(
            Kind::Signal,
            format!("`{}` died of {}", outcome.line, outcome.ending.short()),
        ),
        Ending::Code(_) | Ending::Killed => {}
    }
    if outcome.panicked() {
        let line = outcome
            .stderr
            .lines()
            .find(|l| l.contains("panicked"))
            .unwrap_or_else(|| outcome.first_err_line());
        add(
            Kind::Panic,
            format!(
                "`{}` ({}): {}",
                outcome.line,
                outcome.ending.short(),
                line.trim()
            ),
        );
    }
    found
}

/// What the snapshot is judged against.
#[derive(Debug, Clone)]
pub struct Expect {
    /// File name (in /dev/shm) of the trial's own lock segment.
    pub own_segment: String,
}

/// The violations in `snap`, tagged with `phase`.
pub fn evaluate(snap: &Snapshot, expect: &Expect, phase: &'static str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut add = |kind, detail: String| found.push(Violation::new(kind, phase, detail));
    for segment in &snap.segments {
        if *segment != expect.own_segment {
            add(Kind::ForeignSegment, format!("/dev/shm/{segment}"));
        }
    }
    if !snap.query_errors.is_empty() {
        for e in &snap.query_errors {
            add(Kind::StateUnreadable, e.clone());
        }
        return found;
    }
    let records = snap.containers.len() + snap.pods.len();
    if u64::try_from(records).ok() != Some(snap.locks_held) {
        add(
            Kind::LockCount,
            format!(
                "{} locks held, {} records ({} containers, {} pods)",
                snap.locks_held,
                records,
                snap.containers.len(),
                snap.pods.len()
            ),
        );
    }
    let ctrs: BTreeSet<&str> = snap.containers.iter().map(|c| c.id.as_str()).collect();
    let owned: BTreeSet<&str> = ctrs
        .iter()
        .copied()
        .chain(snap.pods.iter().map(|p| p.id.as_str()))
        .collect();
    for (pid, id) in &snap.conmons {
        if !ctrs.contains(id.as_str()) {
            add(Kind::OrphanConmon, format!("conmon {pid} of {}", short(id)));
        }
    }
    for (pid, id) in &snap.runc_inits {
        if !ctrs.contains(id.as_str()) {
            let of = if id.is_empty() {
                "an unknown container"
            } else {
                short(id)
            };
            add(Kind::OrphanRuncInit, format!("runc init {pid} of {of}"));
        }
    }
    for id in &snap.runc_states {
        if !ctrs.contains(id.as_str()) {
            add(Kind::OrphanRuncState, format!("/run/runc/{}", short(id)));
        }
    }
    // Report only the topmost unowned cgroup of each subtree.
    let mut orphans: Vec<&str> = Vec::new();
    let mut cgroups: Vec<&String> = snap.cgroups.iter().collect();
    cgroups.sort();
    cgroups.dedup();
    for path in cgroups {
        if orphans.iter().any(|o| {
            path.strip_prefix(o)
                .is_some_and(|rest| rest.starts_with('/'))
        }) {
            continue;
        }
        let last = path.rsplit('/').next().unwrap_or(path);
        if !cgroup_id(last).is_some_and(|id| owned.contains(id)) {
            orphans.push(path);
        }
    }
    for path in orphans {
        let shown: Vec<&str> = path
            .split('/')
            .map(|c| cgroup_id(c).map_or(c, short))
            .collect();
        add(Kind::OrphanCgroup, shown.join("/"));
    }
    for name in &snap.exit_files {
        if !exit_file_id(name).is_some_and(|id| ctrs.contains(id)) {
            let shown =
                exit_file_id(name).map_or(name.clone(), |id| name.replacen(id, short(id), 1));
            add(Kind::OrphanExitFile, format!("exits/{shown}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn clean() -> (Snapshot, Expect) {
        let (a, b, p) = (id('a'), id('b'), id('c'));
        let snap = Snapshot {
            containers: vec![
                CtrRecord {
                    id: a.clone(),
                    name: "t".into(),
                    state: "running".into(),
                    pod: String::new(),
                },
                CtrRecord {
                    id: b.clone(),
                    name: "infra".into(),
                    state: "running".into(),
                    pod: p.clone(),
                },
            ],
            pods: vec![PodRecord {
                id: p.clone(),
                name: "p".into(),
            }],
            locks_held: 3,
            conmons: vec![(10, a.clone()), (11, b.clone())],
            runc_states: vec![a.clone(), b.clone()],
            cgroups: vec![format!("libpod-{a}"), p.clone(), format!("{p}/libpod-{b}")],
            exit_files: vec![a.clone(), format!("{b}-old")],
            segments: vec!["rpod_faults_1_t1".into()],
            ..Snapshot::default()
        };
        let expect = Expect {
            own_segment: "rpod_faults_1_t1".into(),
        };
        (snap, expect)
    }

    #[test]
    fn clean_snapshot_has_no_violation() {
        let (snap, expect) = clean();
        assert_eq!(evaluate(&snap, &expect, "x"), Vec::new());
    }

    #[test]
    fn every_leftover_is_found() {
        let (mut snap, expect) = clean();
        let gone = id('d');
        snap.conmons.push((12, gone.clone()));
        snap.runc_inits.push((13, gone.clone()));
        snap.runc_inits.push((14, String::new()));
        snap.runc_states.push(gone.clone());
        snap.cgroups.push(format!("libpod-{gone}"));
        snap.cgroups.push(gone.clone());
        snap.cgroups.push(format!("{gone}/libpod-{}", id('a')));
        snap.exit_files.push(format!("{gone}-old"));
        snap.exit_files.push("junk".into());
        snap.segments.push("rpod_faults_1_t0".into());
        snap.locks_held = 4;
        let found = evaluate(&snap, &expect, "after next");
        let kinds: Vec<Kind> = found.iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::ForeignSegment,
                Kind::LockCount,
                Kind::OrphanConmon,
                Kind::OrphanRuncInit,
                Kind::OrphanRuncInit,
                Kind::OrphanRuncState,
                // The pod cgroup `ddd…` once (its child is not repeated),
                // and `libpod-ddd…`.
                Kind::OrphanCgroup,
                Kind::OrphanCgroup,
                Kind::OrphanExitFile,
                Kind::OrphanExitFile,
            ]
        );
        assert!(found.iter().all(|v| v.phase == "after next"));
        assert!(found[2].detail.contains("dddddddddddd"));
        assert!(!found[2].detail.contains("ddddddddddddd"));
        assert_eq!(found[8].detail, "exits/dddddddddddd-old");
    }

    #[test]
    fn unreadable_state_skips_record_checks() {
        let (mut snap, expect) = clean();
        snap.query_errors.push("`rpod ps -a` (125): boom".into());
        snap.containers.clear();
        let found = evaluate(&snap, &expect, "x");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::StateUnreadable);
    }

    #[test]
    fn outcomes() {
        let outcome = |ending, stderr: &str| Outcome {
            line: "rpod x".into(),
            ending,
            stdout: String::new(),
            stderr: stderr.into(),
            elapsed: Duration::ZERO,
        };
        assert!(check_outcome(&outcome(Ending::Code(125), "Error: x"), "v").is_empty());
        assert!(check_outcome(&outcome(Ending::Killed, ""), "v").is_empty());
        let kinds = |o| {
            check_outcome(&o, "v")
                .iter()
                .map(|v| v.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(outcome(Ending::Code(101), "")), vec![Kind::Panic]);
        assert_eq!(
            kinds(outcome(Ending::Code(1), "thread 'main' panicked at x")),
            vec![Kind::Panic]
        );
        assert_eq!(kinds(outcome(Ending::Signal(7), "")), vec![Kind::Signal]);
        assert_eq!(kinds(outcome(Ending::Hung, "")), vec![Kind::Hang]);
    }

    #[test]
    fn names() {
        assert_eq!(
            cgroup_id(&format!("libpod-conmon-{}", id('e'))),
            Some(id('e').as_str())
        );
        assert_eq!(cgroup_id("libpod-short"), None);
        assert_eq!(
            exit_file_id(&format!("{}-old", id('f'))),
            Some(id('f').as_str())
        );
        assert_eq!(exit_file_id("x-old"), None);
    }
}
