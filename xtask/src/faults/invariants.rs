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
//!   name rpod derives from the tmp dir when `--lock-name` is lost);
//! - with `--network` ([`NetSnapshot`]): no network namespace file or mount,
//!   host-local lease, cached CNI result or iptables/ip6tables rule of a
//!   container that no record owns or whose record says `exited` (its
//!   network is torn down at cleanup), no rule for an
//!   address no lease holds; a running container has its namespace (its
//!   pod's, for a pod member) and an address in `inspect`; once no
//!   container is left, no port on the bridge and no rule mentioning the
//!   subnet.

use std::collections::BTreeSet;
use std::fmt;

use super::images::{self, StoreSnapshot};
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
    /// A network namespace file or mount of a container without a record.
    OrphanNetns,
    /// A host-local lease of a container without a record.
    OrphanLease,
    /// A cached CNI result of a container without a record.
    OrphanCniResult,
    /// An iptables rule of a container without a record, of an address no
    /// lease holds, or of the subnet once no container is left.
    OrphanRule,
    /// A port (veth) on the bridge once no container is left.
    BridgePort,
    /// An exited container still has network state.
    NetworkKept,
    /// A running container without its namespace or address.
    NetworkMissing,
    /// A container from an image without its writable layer.
    LayerMissing,
    /// A writable layer without its container.
    OrphanLayer,
    /// The kernel's overlay mounts and `mounts.json` disagree.
    MountCount,
    /// A mount marker of a container at rest or without a record.
    MountLeft,
    /// A running or paused container whose layer is not mounted (or not marked).
    MountMissing,
    /// An image without one of its layers or blobs.
    ImageIncomplete,
    /// A blob, image layer or layer directory no image owns, after a collection.
    Unowned,
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
            Kind::OrphanNetns => "orphan netns",
            Kind::OrphanLease => "orphan IPAM lease",
            Kind::OrphanCniResult => "orphan CNI result",
            Kind::OrphanRule => "orphan iptables rule",
            Kind::BridgePort => "port left on bridge",
            Kind::NetworkKept => "exited container keeps network",
            Kind::NetworkMissing => "running container without network",
            Kind::LayerMissing => "container without its layer",
            Kind::OrphanLayer => "orphan container layer",
            Kind::MountCount => "mount counts != kernel mounts",
            Kind::MountLeft => "mount left at rest",
            Kind::MountMissing => "running container not mounted",
            Kind::ImageIncomplete => "image without layer or blob",
            Kind::Unowned => "unowned after gc",
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
                | Kind::OrphanNetns
                | Kind::OrphanLease
                | Kind::OrphanCniResult
                | Kind::OrphanRule
                | Kind::BridgePort
                | Kind::NetworkKept
                | Kind::NetworkMissing
                | Kind::OrphanLayer
                | Kind::MountCount
                | Kind::MountLeft
                | Kind::MountMissing
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
    /// A pod's infra container.
    pub infra: bool,
    /// The image's ID (`ImageID`), empty for a container on a rootfs.
    pub image: String,
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
    /// The network's leftovers (`--network` rounds only).
    pub net: Option<NetSnapshot>,
    /// The image store (`--images` rounds only).
    pub store: Option<StoreSnapshot>,
}

/// What a sandbox's CNI network has on the host, at one moment.
#[derive(Debug, Clone, Default)]
pub struct NetSnapshot {
    /// The subnet's address prefix, `10.83.<k>.`.
    pub prefix: String,
    /// File names in `<tmpdir>/netns` (`rpod-<id>`).
    pub netns_files: Vec<String>,
    /// File names of the mounts under `<tmpdir>/netns`.
    pub netns_mounts: Vec<String>,
    /// host-local leases: address (the file name) and the first line of
    /// the file (the container ID).
    pub leases: Vec<(String, String)>,
    /// File names in `<static_dir>/cni/results`.
    pub cache_files: Vec<String>,
    /// iptables and ip6tables rules quoting the sandbox's network or
    /// mentioning the subnet (`iptables nat: -A ...`).
    pub rules: Vec<String>,
    /// Interfaces on the bridge (`/sys/class/net/<bridge>/brif`).
    pub bridge_ports: Vec<String>,
    /// Running containers and their `inspect` `NetworkSettings.IPAddress`.
    pub addresses: Vec<(String, String)>,
    /// Failures looking (`iptables-save`, `inspect`).
    pub errors: Vec<String>,
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

/// The full IDs in `text` (runs of exactly 64 hex digits).
pub fn ids_in(text: &str) -> Vec<&str> {
    let mut ids = Vec::new();
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, b) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (b.is_ascii_hexdigit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s == 64 {
                    ids.push(&text[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    ids
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
    /// The image store was just collected (a successful `import`, `load` or
    /// `image prune`): nothing may be left that no image owns.
    pub gc_clean: bool,
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
    if let Some(net) = &snap.net {
        found.extend(evaluate_net(snap, net, phase));
    }
    if let Some(store) = &snap.store {
        found.extend(images::evaluate(
            store,
            &snap.containers,
            expect.gc_clean,
            phase,
        ));
    }
    found
}

/// States in which a container has no network: torn down at cleanup. (A
/// `configured` container may keep what a killed `init` set up: rpod finds
/// it by the container's ID at the next start or removal, and the checks
/// after the removal see whether it did.)
const NETWORKLESS: &[&str] = &["exited"];

/// The network invariants (see the module documentation).
fn evaluate_net(snap: &Snapshot, net: &NetSnapshot, phase: &'static str) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut add = |kind, detail: String| found.push(Violation::new(kind, phase, detail));
    for e in &net.errors {
        add(Kind::StateUnreadable, e.clone());
    }
    let record = |id: &str| snap.containers.iter().find(|c| c.id == id);
    // The kind to report `what` (of container `id`) as, if it is a leftover.
    let judge = |id: &str, orphan: Kind, what: &str| -> Option<(Kind, String)> {
        match record(id) {
            None => Some((orphan, format!("{what} of {}", short(id)))),
            Some(c) if NETWORKLESS.contains(&c.state.as_str()) => Some((
                Kind::NetworkKept,
                format!("{what} of {} container {}", c.state, short(id)),
            )),
            Some(_) => None,
        }
    };
    for (names, what) in [
        (&net.netns_files, "netns file"),
        (&net.netns_mounts, "netns mount"),
    ] {
        for name in names {
            match name.strip_prefix("rpod-").filter(|id| is_id(id)) {
                Some(id) => {
                    if let Some((k, d)) = judge(id, Kind::OrphanNetns, what) {
                        add(k, d);
                    }
                }
                None => add(Kind::OrphanNetns, format!("{what} netns/{name}")),
            }
        }
    }
    let mut leased: Vec<(&str, &str)> = Vec::new();
    for (ip, owner) in &net.leases {
        if is_id(owner) {
            leased.push((ip, owner));
            if let Some((k, d)) = judge(owner, Kind::OrphanLease, &format!("lease {ip}")) {
                add(k, d);
            }
        }
    }
    for name in &net.cache_files {
        for id in ids_in(name) {
            let what = format!("cni/results/{}", name.replacen(id, short(id), 1));
            if let Some((k, d)) = judge(id, Kind::OrphanCniResult, &what) {
                add(k, d);
            }
        }
    }
    let no_containers = snap.query_errors.is_empty() && snap.containers.is_empty();
    for rule in &net.rules {
        let mut reported = false;
        for id in ids_in(rule) {
            if let Some((k, d)) = judge(id, Kind::OrphanRule, "rule") {
                add(k, format!("{d}: {rule}"));
                reported = true;
            }
        }
        for ip in addresses_in(rule, &net.prefix) {
            if reported {
                break;
            }
            let found = match leased.iter().find(|(l, _)| *l == ip) {
                Some((_, owner)) => judge(owner, Kind::OrphanRule, &format!("rule for {ip}")),
                None => Some((Kind::OrphanRule, format!("for {ip}, which no lease holds"))),
            };
            if let Some((k, d)) = found {
                add(k, format!("{d}: {rule}"));
                reported = true;
            }
        }
        if no_containers && !reported {
            add(Kind::OrphanRule, format!("left with no container: {rule}"));
        }
    }
    if no_containers {
        for port in &net.bridge_ports {
            add(Kind::BridgePort, port.clone());
        }
    }
    for c in snap.containers.iter().filter(|c| c.state == "running") {
        let own = c.pod.is_empty() || c.infra;
        let file = format!("rpod-{}", c.id);
        if own && !(net.netns_files.contains(&file) && net.netns_mounts.contains(&file)) {
            add(
                Kind::NetworkMissing,
                format!("{} runs without netns/{}", short(&c.id), short(&file)),
            );
        }
        let address = net.addresses.iter().find(|(id, _)| *id == c.id);
        if address.is_none_or(|(_, ip)| ip.is_empty()) {
            add(
                Kind::NetworkMissing,
                format!("{} runs without an IPAddress in inspect", short(&c.id)),
            );
        }
    }
    found
}

/// The host addresses of the subnet `prefix` in `text` (not the network
/// address `<prefix>0`).
fn addresses_in(text: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        {
            continue;
        }
        let host: String = text[at + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if !host.is_empty() && host != "0" {
            found.push(format!("{prefix}{host}"));
        }
    }
    found.sort();
    found.dedup();
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
                    infra: false,
                    image: String::new(),
                },
                CtrRecord {
                    id: b.clone(),
                    name: "infra".into(),
                    state: "running".into(),
                    pod: p.clone(),
                    infra: true,
                    image: String::new(),
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
            gc_clean: false,
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

    /// A clean snapshot of a network round: `a` runs with 10.83.7.3, the
    /// pod's infra `b` with 10.83.7.4.
    fn clean_net() -> (Snapshot, Expect) {
        let (mut snap, expect) = clean();
        let (a, b) = (id('a'), id('b'));
        let rule = |ip: &str, c: &str| {
            format!("iptables nat: -A POSTROUTING -s {ip}/32 -m comment --comment \"name: \\\"n\\\" id: \\\"{c}\\\"\" -j CNI-1")
        };
        snap.net = Some(NetSnapshot {
            prefix: "10.83.7.".into(),
            netns_files: vec![format!("rpod-{a}"), format!("rpod-{b}")],
            netns_mounts: vec![format!("rpod-{a}"), format!("rpod-{b}")],
            leases: vec![
                ("10.83.7.3".into(), a.clone()),
                ("10.83.7.4".into(), b.clone()),
                ("last_reserved_ip.0".into(), "10.83.7.4".into()),
            ],
            cache_files: vec![format!("n-{a}-eth0.json"), format!("n-{b}-eth0.json")],
            rules: vec![
                rule("10.83.7.3", &a),
                rule("10.83.7.4", &b),
                "iptables filter: -A CNI-FORWARD -s 10.83.7.3/32 -j ACCEPT".into(),
                "iptables nat: -A CNI-DN-1 -s 10.83.7.0/24 -j CNI-HOSTPORT-SETMARK".into(),
            ],
            bridge_ports: vec!["veth1".into(), "veth2".into()],
            addresses: vec![(a, "10.83.7.3".into()), (b, "10.83.7.4".into())],
            errors: Vec::new(),
        });
        (snap, expect)
    }

    #[test]
    fn clean_network_has_no_violation() {
        let (snap, expect) = clean_net();
        assert_eq!(evaluate(&snap, &expect, "x"), Vec::new());
    }

    #[test]
    fn network_leftovers_are_found() {
        let (mut snap, expect) = clean_net();
        let gone = id('d');
        if let Some(net) = snap.net.as_mut() {
            net.netns_files.push(format!("rpod-{gone}"));
            net.netns_mounts.push(format!("rpod-{gone}"));
            net.leases.push(("10.83.7.9".into(), gone.clone()));
            net.cache_files.push(format!(".n-{gone}-eth0.json.tmp-0a"));
            net.rules.push(format!("iptables nat: -A CNI-HOSTPORT-DNAT -m comment --comment \"dnat id: {gone}\" -j CNI-DN-2"));
            net.rules
                .push("iptables filter: -A CNI-FORWARD -d 10.83.7.8/32 -j ACCEPT".into());
            // `a` exited: what it keeps counts; `b` runs without an address.
            net.addresses[1].1 = String::new();
        }
        snap.containers[0].state = "exited".into();
        let found = evaluate(&snap, &expect, "after next");
        let kinds: Vec<Kind> = found.iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::NetworkKept,
                Kind::OrphanNetns,
                Kind::NetworkKept,
                Kind::OrphanNetns,
                Kind::NetworkKept,
                Kind::OrphanLease,
                Kind::NetworkKept,
                Kind::OrphanCniResult,
                Kind::NetworkKept,
                Kind::NetworkKept,
                Kind::OrphanRule,
                Kind::OrphanRule,
                Kind::NetworkMissing,
            ],
            "{found:#?}"
        );
        assert_eq!(found[5].detail, "lease 10.83.7.9 of dddddddddddd");
        assert!(found[10]
            .detail
            .starts_with("rule of dddddddddddd: iptables nat"));
        assert!(found[11]
            .detail
            .starts_with("for 10.83.7.8, which no lease holds"));
    }

    #[test]
    fn no_container_leaves_no_port_and_no_rule() {
        let (mut snap, expect) = clean_net();
        snap.containers.clear();
        snap.pods.clear();
        snap.locks_held = 0;
        snap.conmons.clear();
        snap.runc_states.clear();
        snap.cgroups.clear();
        snap.exit_files.clear();
        if let Some(net) = snap.net.as_mut() {
            net.netns_files.clear();
            net.netns_mounts.clear();
            net.leases.clear();
            net.cache_files.clear();
            net.addresses.clear();
            net.rules.truncate(1);
            net.rules
                .push("iptables nat: -A CNI-DN-1 -s 10.83.7.0/24 -j CNI-HOSTPORT-SETMARK".into());
            net.bridge_ports.truncate(1);
        }
        let kinds: Vec<Kind> = evaluate(&snap, &expect, "after remove")
            .iter()
            .map(|v| v.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![Kind::OrphanRule, Kind::OrphanRule, Kind::BridgePort]
        );
    }

    #[test]
    fn ids_and_addresses_in_text() {
        let a = id('a');
        assert_eq!(ids_in(&format!("x-{a}-eth0.json")), vec![a.as_str()]);
        assert!(ids_in(&format!("{a}0")).is_empty());
        assert_eq!(
            addresses_in(
                "-s 10.83.7.0/24 -d 10.83.7.12/32 --to 10.83.7.3:80 110.83.7.5",
                "10.83.7."
            ),
            vec!["10.83.7.12".to_string(), "10.83.7.3".to_string()]
        );
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
