//! Model-based property test: random operation sequences applied to both backends and to a plain-BTreeMap model
//! must give the same results and the same error kinds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rpod_state::{
    ContainerConfig, ContainerRecord, ContainerState, ContainerStatus, ErrorKind, InMemoryState,
    LmdbState, PodConfig, PodRecord, PodState, State, StateError,
};

// Small alphabets so that collisions, shared prefixes and ambiguity happen often. "ab1" is a prefix of "ab12";
// the name "b1" is also an ID; the name "aa" is a prefix of IDs.
const IDS: [&str; 7] = ["aa1", "aa2", "ab1", "ab12", "b1", "b2", ""];
const NAMES: [&str; 6] = ["web", "db", "aa", "b1", "cache", ""];
const EXTRA_LOOKUPS: [&str; 5] = ["a", "ab", "b", "zz", "aa"];
const NSS: [&str; 3] = ["", "red", "blue"];

#[derive(Debug, Clone, PartialEq)]
enum Out {
    Unit,
    Bool(bool),
    Id(String),
    Ids(Vec<String>),
    CtrState(ContainerState),
    PodState(PodState),
}

type R = Result<Out, ErrorKind>;

#[derive(Debug, Clone)]
enum Op {
    AddCtr {
        id: usize,
        name: usize,
        ns: usize,
        deps: Vec<usize>,
        net_dep: Option<usize>,
        pod: Option<usize>,
        pod_arg: Option<usize>,
    },
    RemoveCtr(usize),
    AddPod {
        id: usize,
        name: usize,
        ns: usize,
    },
    RemovePod(usize),
    RemoveCtrFromPod(usize, usize),
    RemovePodCtrs(usize),
    /// Go on with a view of the current handle restricted to namespace `NSS[n]`.
    View(usize),
    LookupCtr(String),
    LookupPod(String),
    GetCtr(usize),
    GetPod(usize),
    HasCtr(usize),
    HasPod(usize),
    AllCtrs,
    AllPods,
    InUse(usize),
    PodHas(usize, usize),
    PodIds(usize),
    PodCtrs(usize),
    Refresh,
    SaveCtr(usize, usize, i32),
    UpdateCtr(usize),
    SavePod(usize, bool),
    UpdatePod(usize),
}

/// A fixed starting structure (pod "ab1" with members "aa1" ← "aa2", and "b1" ← "ab12" outside pods), prepended
/// to half of the sequences so that pod membership and dependency edges are always exercised.
fn setup_ops() -> Vec<Op> {
    let add = |id, name, deps: Vec<usize>, pod: Option<usize>| Op::AddCtr {
        id,
        name,
        ns: 0,
        deps,
        net_dep: None,
        pod,
        pod_arg: pod,
    };
    vec![
        Op::AddPod {
            id: 2,
            name: 4,
            ns: 0,
        },
        add(0, 0, vec![], Some(2)),
        add(1, 1, vec![0], Some(2)),
        add(4, 2, vec![], None),
        Op::AddCtr {
            id: 3,
            name: 3,
            ns: 0,
            deps: vec![],
            net_dep: Some(4),
            pod: None,
            pod_arg: None,
        },
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    (any::<bool>(), proptest::collection::vec(op(), 1..80)).prop_map(|(setup, ops)| {
        if setup {
            setup_ops().into_iter().chain(ops).collect()
        } else {
            ops
        }
    })
}

fn lookup_string() -> impl Strategy<Value = String> {
    let all: Vec<String> = IDS
        .iter()
        .chain(NAMES.iter())
        .chain(EXTRA_LOOKUPS.iter())
        .map(|s| s.to_string())
        .collect();
    proptest::sample::select(all)
}

fn id() -> impl Strategy<Value = usize> {
    prop_oneof![10 => 0..IDS.len() - 1, 1 => Just(IDS.len() - 1)]
}

/// Pods mostly use two IDs so that containers often name an existing pod.
fn pod_id() -> impl Strategy<Value = usize> {
    prop_oneof![4 => proptest::sample::select(vec![2usize, 5]), 1 => id()]
}

/// Dependencies and removals mostly target two container IDs, so that edges exist and block removals.
fn dep_id() -> impl Strategy<Value = usize> {
    prop_oneof![3 => proptest::sample::select(vec![0usize, 4]), 1 => 0..IDS.len() - 1]
}

/// Containers mostly use the IDs that pods do not, so that pod members get added.
fn ctr_id() -> impl Strategy<Value = usize> {
    prop_oneof![4 => proptest::sample::select(vec![0usize, 1, 3, 4]), 1 => id()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => (ctr_id(), 0..NAMES.len(), prop_oneof![3 => Just(0usize), 1 => 1..NSS.len()],
               prop_oneof![2 => Just(Vec::new()), 1 => proptest::collection::vec(dep_id(), 1..3)],
               proptest::option::weighted(0.2, dep_id()), proptest::option::weighted(0.4, pod_id()),
               0..10u8, proptest::option::weighted(0.5, pod_id()))
            .prop_map(|(id, name, ns, deps, net_dep, pod, mode, other)| {
                // Mostly consistent pod arguments, sometimes deliberately wrong.
                let pod_arg = if mode < 8 { pod } else { other };
                // Pod members mostly depend on nothing (or on each other, by chance).
                let (deps, net_dep) = if pod.is_some() && mode < 5 { (Vec::new(), None) } else { (deps, net_dep) };
                Op::AddCtr { id, name, ns, deps, net_dep, pod, pod_arg }
            }),
        4 => prop_oneof![dep_id(), id()].prop_map(Op::RemoveCtr),
        8 => (pod_id(), 0..NAMES.len(), prop_oneof![3 => Just(0usize), 1 => 1..NSS.len()]).prop_map(|(id, name, ns)| Op::AddPod { id, name, ns }),
        2 => pod_id().prop_map(Op::RemovePod),
        4 => (pod_id(), ctr_id()).prop_map(|(p, c)| Op::RemoveCtrFromPod(p, c)),
        2 => pod_id().prop_map(Op::RemovePodCtrs),
        1 => (0..NSS.len()).prop_map(Op::View),
        5 => lookup_string().prop_map(Op::LookupCtr),
        4 => lookup_string().prop_map(Op::LookupPod),
        2 => id().prop_map(Op::GetCtr),
        2 => id().prop_map(Op::GetPod),
        2 => id().prop_map(Op::HasCtr),
        2 => id().prop_map(Op::HasPod),
        2 => Just(Op::AllCtrs),
        2 => Just(Op::AllPods),
        2 => dep_id().prop_map(Op::InUse),
        2 => (pod_id(), ctr_id()).prop_map(|(p, c)| Op::PodHas(p, c)),
        1 => pod_id().prop_map(Op::PodIds),
        1 => pod_id().prop_map(Op::PodCtrs),
        1 => Just(Op::Refresh),
        3 => (id(), 0..7usize, 0..100i32).prop_map(|(i, s, p)| Op::SaveCtr(i, s, p)),
        2 => id().prop_map(Op::UpdateCtr),
        2 => (id(), any::<bool>()).prop_map(|(i, b)| Op::SavePod(i, b)),
        1 => id().prop_map(Op::UpdatePod),
    ]
}

fn ctr_config(op: &Op) -> Option<ContainerConfig> {
    let Op::AddCtr {
        id,
        name,
        ns,
        deps,
        net_dep,
        pod,
        ..
    } = op
    else {
        return None;
    };
    let mut c = ContainerConfig::new(IDS[*id], NAMES[*name]);
    c.namespace = NSS[*ns].to_string();
    c.dependencies = deps.iter().map(|d| IDS[*d].to_string()).collect();
    c.net_ns_ctr = net_dep.map(|d| IDS[d].to_string());
    c.pod = pod.map(|p| IDS[p].to_string());
    c.labels.insert("k".into(), "v".into());
    c.created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    Some(c)
}

fn running_state(status: usize, pid: i32) -> ContainerState {
    let mut st = ContainerState {
        status: ContainerStatus::ALL[status],
        pid,
        conmon_pid: pid + 1,
        exit_code: pid % 3,
        ..Default::default()
    };
    st.netns_path = format!("/run/netns/x{pid}");
    st.network_results = vec![serde_json::json!({"ip": pid})];
    st.exec_sessions.insert(
        "e1".into(),
        rpod_state::ExecSession {
            command: vec!["sh".into()],
            pid,
        },
    );
    st
}

// ----- the model -----

#[derive(Debug, Clone)]
struct MCtr {
    name: String,
    ns: String,
    pod: Option<String>,
    deps: BTreeSet<String>,
    state: ContainerState,
}

#[derive(Debug, Clone)]
struct MPod {
    name: String,
    ns: String,
    state: PodState,
}

#[derive(Debug, Default)]
struct Model {
    ctrs: BTreeMap<String, MCtr>,
    pods: BTreeMap<String, MPod>,
    ns: String,
}

impl Model {
    fn visible(&self, obj_ns: &str) -> bool {
        self.ns.is_empty() || self.ns == obj_ns
    }

    fn dependants(&self, id: &str) -> Vec<String> {
        self.ctrs
            .iter()
            .filter(|(_, c)| c.deps.contains(id))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn members(&self, pod: &str) -> Vec<String> {
        self.ctrs
            .iter()
            .filter(|(_, c)| c.pod.as_deref() == Some(pod))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn ctr(&self, id: &str) -> Result<&MCtr, ErrorKind> {
        if id.is_empty() {
            return Err(ErrorKind::EmptyId);
        }
        let c = self.ctrs.get(id).ok_or(ErrorKind::NoSuchContainer)?;
        if !self.visible(&c.ns) {
            return Err(ErrorKind::NsMismatch);
        }
        Ok(c)
    }

    fn pod(&self, id: &str) -> Result<&MPod, ErrorKind> {
        if id.is_empty() {
            return Err(ErrorKind::EmptyId);
        }
        let p = self.pods.get(id).ok_or(ErrorKind::NoSuchPod)?;
        if !self.visible(&p.ns) {
            return Err(ErrorKind::NsMismatch);
        }
        Ok(p)
    }

    fn name_taken(&self, name: &str) -> bool {
        self.ctrs.values().any(|c| c.name == name) || self.pods.values().any(|p| p.name == name)
    }

    fn lookup(&self, s: &str, want_ctr: bool) -> Result<String, ErrorKind> {
        let not_found = if want_ctr {
            ErrorKind::NoSuchContainer
        } else {
            ErrorKind::NoSuchPod
        };
        if s.is_empty() {
            return Err(ErrorKind::EmptyId);
        }
        if want_ctr {
            if let Some(c) = self.ctrs.get(s) {
                if self.visible(&c.ns) {
                    return Ok(s.to_string());
                }
            }
        } else if let Some(p) = self.pods.get(s) {
            if self.visible(&p.ns) {
                return Ok(s.to_string());
            }
        }
        let by_name = self
            .ctrs
            .iter()
            .map(|(id, c)| (id, &c.name, &c.ns, true))
            .chain(self.pods.iter().map(|(id, p)| (id, &p.name, &p.ns, false)))
            .find(|(_, n, _, _)| *n == s);
        let mut other = false;
        if let Some((id, _, ns, is_ctr)) = by_name {
            if self.visible(ns) {
                if is_ctr == want_ctr {
                    return Ok(id.clone());
                }
                other = true;
            }
        }
        let mut cands: Vec<(String, bool)> = self
            .ctrs
            .iter()
            .filter(|(id, c)| id.starts_with(s) && self.visible(&c.ns))
            .map(|(id, _)| (id.clone(), true))
            .chain(
                self.pods
                    .iter()
                    .filter(|(id, p)| id.starts_with(s) && self.visible(&p.ns))
                    .map(|(id, _)| (id.clone(), false)),
            )
            .collect();
        match cands.len() {
            0 => Err(not_found).map_err(|e| if other { not_found } else { e }),
            1 => {
                let (id, is_ctr) = cands.remove(0);
                if is_ctr == want_ctr {
                    Ok(id)
                } else {
                    Err(not_found)
                }
            }
            _ => Err(ErrorKind::AmbiguousPrefix),
        }
    }

    fn add_ctr(&mut self, c: &ContainerConfig, pod_arg: Option<&str>) -> R {
        match pod_arg {
            None => {
                if c.pod.is_some() {
                    return Err(ErrorKind::InvalidArg);
                }
            }
            Some(p) => {
                if p.is_empty() {
                    return Err(ErrorKind::EmptyId);
                }
                if c.pod.as_deref() != Some(p) {
                    return Err(ErrorKind::InvalidArg);
                }
            }
        }
        if c.id.is_empty() {
            return Err(ErrorKind::EmptyId);
        }
        if c.name.is_empty() {
            return Err(ErrorKind::InvalidArg);
        }
        if !self.visible(&c.namespace) {
            return Err(ErrorKind::NsMismatch);
        }
        if let Some(p) = &c.pod {
            let pod = self.pods.get(p).ok_or(ErrorKind::NoSuchPod)?;
            if pod.ns != c.namespace {
                return Err(ErrorKind::NsMismatch);
            }
        }
        if self.ctrs.contains_key(&c.id) || self.pods.contains_key(&c.id) {
            return Err(ErrorKind::IdInUse);
        }
        if self.name_taken(&c.name) {
            return Err(ErrorKind::NameInUse);
        }
        let deps: BTreeSet<String> = c.dependencies().into_iter().collect();
        for d in &deps {
            if *d == c.id {
                return Err(ErrorKind::InvalidArg);
            }
            let dep = self.ctrs.get(d).ok_or(ErrorKind::NoSuchContainer)?;
            if dep.pod != c.pod {
                return Err(ErrorKind::InvalidArg);
            }
            if dep.ns != c.namespace {
                return Err(ErrorKind::NsMismatch);
            }
        }
        self.ctrs.insert(
            c.id.clone(),
            MCtr {
                name: c.name.clone(),
                ns: c.namespace.clone(),
                pod: c.pod.clone(),
                deps,
                state: ContainerState::configured(),
            },
        );
        Ok(Out::Unit)
    }

    fn apply(&mut self, op: &Op) -> R {
        match op {
            Op::AddCtr { pod_arg, .. } => {
                let c = ctr_config(op).ok_or(ErrorKind::Internal)?;
                self.add_ctr(&c, pod_arg.map(|p| IDS[p]))
            }
            Op::RemoveCtr(i) => {
                let id = IDS[*i];
                let c = self.ctr(id)?;
                if c.pod.is_some() {
                    return Err(ErrorKind::PodExists);
                }
                if !self.dependants(id).is_empty() {
                    return Err(ErrorKind::HasDependants);
                }
                self.ctrs.remove(id);
                Ok(Out::Unit)
            }
            Op::AddPod { id, name, ns } => {
                let (id, name, ns) = (IDS[*id], NAMES[*name], NSS[*ns]);
                if id.is_empty() {
                    return Err(ErrorKind::EmptyId);
                }
                if name.is_empty() {
                    return Err(ErrorKind::InvalidArg);
                }
                if !self.visible(ns) {
                    return Err(ErrorKind::NsMismatch);
                }
                if self.ctrs.contains_key(id) || self.pods.contains_key(id) {
                    return Err(ErrorKind::IdInUse);
                }
                if self.name_taken(name) {
                    return Err(ErrorKind::NameInUse);
                }
                self.pods.insert(
                    id.into(),
                    MPod {
                        name: name.into(),
                        ns: ns.into(),
                        state: PodState::default(),
                    },
                );
                Ok(Out::Unit)
            }
            Op::RemovePod(i) => {
                let id = IDS[*i];
                self.pod(id)?;
                if !self.members(id).is_empty() {
                    return Err(ErrorKind::NotEmpty);
                }
                self.pods.remove(id);
                Ok(Out::Unit)
            }
            Op::RemoveCtrFromPod(p, c) => {
                let (p, c) = (IDS[*p], IDS[*c]);
                self.pod(p)?;
                let ctr = self.ctr(c)?;
                if ctr.pod.as_deref() != Some(p) {
                    return Err(ErrorKind::NoSuchContainer);
                }
                if !self.dependants(c).is_empty() {
                    return Err(ErrorKind::HasDependants);
                }
                self.ctrs.remove(c);
                Ok(Out::Unit)
            }
            Op::RemovePodCtrs(p) => {
                let p = IDS[*p];
                self.pod(p)?;
                let members = self.members(p);
                for m in &members {
                    if self.dependants(m).iter().any(|d| !members.contains(d)) {
                        return Err(ErrorKind::HasDependants);
                    }
                }
                for m in members {
                    self.ctrs.remove(&m);
                }
                Ok(Out::Unit)
            }
            Op::View(n) => {
                self.ns = NSS[*n].to_string();
                Ok(Out::Unit)
            }
            Op::LookupCtr(s) => self.lookup(s, true).map(Out::Id),
            Op::LookupPod(s) => self.lookup(s, false).map(Out::Id),
            Op::GetCtr(i) => self.ctr(IDS[*i]).map(|_| Out::Id(IDS[*i].into())),
            Op::GetPod(i) => self.pod(IDS[*i]).map(|_| Out::Id(IDS[*i].into())),
            Op::HasCtr(i) => {
                let id = IDS[*i];
                if id.is_empty() {
                    return Err(ErrorKind::EmptyId);
                }
                Ok(Out::Bool(
                    self.ctrs.get(id).is_some_and(|c| self.visible(&c.ns)),
                ))
            }
            Op::HasPod(i) => {
                let id = IDS[*i];
                if id.is_empty() {
                    return Err(ErrorKind::EmptyId);
                }
                Ok(Out::Bool(
                    self.pods.get(id).is_some_and(|p| self.visible(&p.ns)),
                ))
            }
            Op::AllCtrs => Ok(Out::Ids(
                self.ctrs
                    .iter()
                    .filter(|(_, c)| self.visible(&c.ns))
                    .map(|(k, _)| k.clone())
                    .collect(),
            )),
            Op::AllPods => Ok(Out::Ids(
                self.pods
                    .iter()
                    .filter(|(_, p)| self.visible(&p.ns))
                    .map(|(k, _)| k.clone())
                    .collect(),
            )),
            Op::InUse(i) => {
                self.ctr(IDS[*i])?;
                Ok(Out::Ids(self.dependants(IDS[*i])))
            }
            Op::PodHas(p, c) => {
                self.pod(IDS[*p])?;
                if IDS[*c].is_empty() {
                    return Err(ErrorKind::EmptyId);
                }
                Ok(Out::Bool(
                    self.ctrs
                        .get(IDS[*c])
                        .is_some_and(|x| x.pod.as_deref() == Some(IDS[*p])),
                ))
            }
            Op::PodIds(p) | Op::PodCtrs(p) => {
                self.pod(IDS[*p])?;
                Ok(Out::Ids(self.members(IDS[*p])))
            }
            Op::Refresh => {
                for c in self.ctrs.values_mut() {
                    let st = &mut c.state;
                    st.pid = 0;
                    st.conmon_pid = 0;
                    st.netns_path.clear();
                    st.network_results.clear();
                    st.exec_sessions.clear();
                    if st.status != ContainerStatus::Exited {
                        st.status = ContainerStatus::Configured;
                    }
                }
                for p in self.pods.values_mut() {
                    p.state.cgroup_path.clear();
                }
                Ok(Out::Unit)
            }
            Op::SaveCtr(i, s, pid) => {
                self.ctr(IDS[*i])?;
                if let Some(c) = self.ctrs.get_mut(IDS[*i]) {
                    c.state = running_state(*s, *pid);
                }
                Ok(Out::Unit)
            }
            Op::UpdateCtr(i) => self.ctr(IDS[*i]).map(|c| Out::CtrState(c.state.clone())),
            Op::SavePod(i, b) => {
                self.pod(IDS[*i])?;
                if let Some(p) = self.pods.get_mut(IDS[*i]) {
                    p.state = pod_state(*b);
                }
                Ok(Out::Unit)
            }
            Op::UpdatePod(i) => self.pod(IDS[*i]).map(|p| Out::PodState(p.state.clone())),
        }
    }
}

fn pod_state(b: bool) -> PodState {
    PodState {
        infra_container_id: if b { "aa1".into() } else { String::new() },
        cgroup_path: "/sys/fs/cgroup/pod".into(),
    }
}

// ----- applying to a real backend -----

fn kind<T>(r: Result<T, StateError>) -> Result<T, ErrorKind> {
    r.map_err(|e| e.kind())
}

fn ids(v: Vec<ContainerRecord>) -> Out {
    Out::Ids(v.into_iter().map(|r| r.config.id).collect())
}

/// Applies `op` to the backend through the handle `s`; [`Op::View`] replaces the handle with a view of it.
fn apply(s: &mut Box<dyn State>, op: &Op) -> R {
    let unit = |r: Result<(), StateError>| kind(r).map(|()| Out::Unit);
    match op {
        Op::AddCtr { pod_arg, .. } => {
            let rec = ContainerRecord::new(ctr_config(op).ok_or(ErrorKind::Internal)?);
            match pod_arg {
                None => unit(s.add_container(&rec)),
                Some(p) => unit(s.add_container_to_pod(IDS[*p], &rec)),
            }
        }
        Op::RemoveCtr(i) => unit(s.remove_container(IDS[*i])),
        Op::AddPod { id, name, ns } => {
            let mut c = PodConfig::new(IDS[*id], NAMES[*name]);
            c.namespace = NSS[*ns].into();
            c.created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
            unit(s.add_pod(&PodRecord::new(c)))
        }
        Op::RemovePod(i) => unit(s.remove_pod(IDS[*i])),
        Op::RemoveCtrFromPod(p, c) => unit(s.remove_container_from_pod(IDS[*p], IDS[*c])),
        Op::RemovePodCtrs(p) => unit(s.remove_pod_containers(IDS[*p])),
        Op::View(n) => {
            *s = kind(s.view(NSS[*n]))?;
            Ok(Out::Unit)
        }
        Op::LookupCtr(x) => kind(s.lookup_container(x)).map(|r| Out::Id(r.config.id)),
        Op::LookupPod(x) => kind(s.lookup_pod(x)).map(|r| Out::Id(r.config.id)),
        Op::GetCtr(i) => kind(s.container(IDS[*i])).map(|r| Out::Id(r.config.id)),
        Op::GetPod(i) => kind(s.pod(IDS[*i])).map(|r| Out::Id(r.config.id)),
        Op::HasCtr(i) => kind(s.has_container(IDS[*i])).map(Out::Bool),
        Op::HasPod(i) => kind(s.has_pod(IDS[*i])).map(Out::Bool),
        Op::AllCtrs => kind(s.all_containers()).map(ids),
        Op::AllPods => {
            kind(s.all_pods()).map(|v| Out::Ids(v.into_iter().map(|p| p.config.id).collect()))
        }
        Op::InUse(i) => kind(s.container_in_use(IDS[*i])).map(Out::Ids),
        Op::PodHas(p, c) => kind(s.pod_has_container(IDS[*p], IDS[*c])).map(Out::Bool),
        Op::PodIds(p) => kind(s.pod_container_ids(IDS[*p])).map(Out::Ids),
        Op::PodCtrs(p) => kind(s.pod_containers(IDS[*p])).map(ids),
        Op::Refresh => unit(s.refresh()),
        Op::SaveCtr(i, st, pid) => unit(s.save_container(IDS[*i], &running_state(*st, *pid))),
        Op::UpdateCtr(i) => kind(s.update_container(IDS[*i])).map(Out::CtrState),
        Op::SavePod(i, b) => unit(s.save_pod(IDS[*i], &pod_state(*b))),
        Op::UpdatePod(i) => kind(s.update_pod(IDS[*i])).map(Out::PodState),
    }
}

fn fast_tempdir() -> tempfile::TempDir {
    // LMDB fsyncs every commit; /dev/shm (tmpfs) keeps the property test fast where it exists.
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree_with_model(ops in ops()) {
        let dir = fast_tempdir();
        let mut lmdb: Box<dyn State> =
            Box::new(LmdbState::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?);
        let mut mem: Box<dyn State> = Box::new(InMemoryState::new());
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got_mem = apply(&mut mem, op);
            let got_lmdb = apply(&mut lmdb, op);
            prop_assert_eq!(&got_mem, &want, "in-memory differs from the model at step {} ({:?})", i, op);
            prop_assert_eq!(&got_lmdb, &want, "LMDB differs from the model at step {} ({:?})", i, op);
        }
        // Final full comparison: every visible container's full record matches between the backends.
        prop_assert_eq!(mem.all_containers().map_err(|e| e.kind()), lmdb.all_containers().map_err(|e| e.kind()));
        prop_assert_eq!(mem.all_pods().map_err(|e| e.kind()), lmdb.all_pods().map_err(|e| e.kind()));
    }
}

/// The generator must reach the interesting outcomes; otherwise the property above proves little.
#[test]
fn generator_reaches_interesting_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..256 {
        let ops = ops()
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        let mut model = Model::default();
        for op in &ops {
            let r = model.apply(op);
            let mut name = format!("{op:?}")
                .split([' ', '('])
                .next()
                .unwrap_or_default()
                .to_string();
            if let Op::AddCtr { pod: Some(_), .. } = op {
                name.push_str("InPod");
            }
            let key = match &r {
                Ok(Out::Ids(v)) if !v.is_empty() => format!("{name}:some"),
                Ok(_) => format!("{name}:ok"),
                Err(k) => format!("{name}:{k:?}"),
            };
            *seen.entry(key).or_default() += 1;
        }
    }
    for must in [
        "AddCtr:ok",
        "AddCtr:IdInUse",
        "AddCtr:NameInUse",
        "AddCtr:InvalidArg",
        "AddCtr:NsMismatch",
        "AddCtr:NoSuchContainer",
        "LookupCtr:ok",
        "LookupCtr:AmbiguousPrefix",
        "LookupCtr:NoSuchContainer",
        "LookupPod:ok",
        "RemoveCtr:HasDependants",
        "RemoveCtr:PodExists",
        "RemovePod:NotEmpty",
        "RemoveCtrFromPod:ok",
        "RemovePodCtrs:ok",
        "InUse:some",
        "GetCtr:NsMismatch",
        "AllCtrs:some",
        "PodIds:some",
        "RemoveCtrFromPod:HasDependants",
    ] {
        assert!(
            seen.get(must).copied().unwrap_or(0) > 0,
            "generator never produced {must}; saw {seen:?}"
        );
    }
}
