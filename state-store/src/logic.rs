//! The rules of the state (libpod `boltdb_state_internal.go`), written once over an abstract set of sorted
//! key-value tables. Both backends run exactly this code: [`InMemoryState`](crate::InMemoryState) over
//! `BTreeMap`s (with an undo log for atomicity) and [`LmdbState`](crate::LmdbState) over LMDB named databases
//! inside one transaction.
//!
//! # Tables (mirroring libpod's Bolt buckets)
//! | table | key | value |
//! |---|---|---|
//! | `id-registry` | ID | `c` or `p` (kind) followed by the name |
//! | `name-registry` | name | ID |
//! | `ns-registry` | ID | namespace (only when non-empty) |
//! | `ctr-config` | container ID | [`ContainerConfig`] (compact encoding) |
//! | `ctr-state` | container ID | [`ContainerState`] (compact encoding) |
//! | `dependants` | `depID/dependantID` | empty |
//! | `pod-config` | pod ID | [`PodConfig`] (compact encoding) |
//! | `pod-state` | pod ID | [`PodState`] (compact encoding) |
//! | `pod-members` | `podID/ctrID` | empty |
//! | `runtime-config` | `os`, `static-dir`, … | the path |
//!
//! Because keys are sorted, "every dependant of X" and "every member of pod P" are prefix scans, and so is the
//! lookup by ID prefix: its cost grows with the number of matches, not with the number of records.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{DecodeError, Result, StateError};
use crate::records::{
    ContainerConfig, ContainerRecord, ContainerState, DbConfig, PodConfig, PodRecord, PodState,
};

/// Maximum length of an ID or a name, in bytes (LMDB keys are limited to 511 bytes; edge keys hold two IDs).
pub(crate) const MAX_ID_LEN: usize = 255;

/// The logical tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    IdRegistry,
    NameRegistry,
    NsRegistry,
    CtrConfig,
    CtrState,
    Dependants,
    PodConfig,
    PodState,
    PodMembers,
    RuntimeConfig,
}

impl Table {
    pub(crate) const ALL: [Table; 10] = [
        Table::IdRegistry,
        Table::NameRegistry,
        Table::NsRegistry,
        Table::CtrConfig,
        Table::CtrState,
        Table::Dependants,
        Table::PodConfig,
        Table::PodState,
        Table::PodMembers,
        Table::RuntimeConfig,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::IdRegistry => "id-registry",
            Table::NameRegistry => "name-registry",
            Table::NsRegistry => "ns-registry",
            Table::CtrConfig => "ctr-config",
            Table::CtrState => "ctr-state",
            Table::Dependants => "dependants",
            Table::PodConfig => "pod-config",
            Table::PodState => "pod-state",
            Table::PodMembers => "pod-members",
            Table::RuntimeConfig => "runtime-config",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Callback of [`ReadTables::scan_prefix`]: gets each key and value, returns `false` to stop.
pub(crate) type ScanFn<'f> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'f;

/// Read access to the tables (one consistent snapshot).
pub(crate) trait ReadTables {
    /// The database file, for error messages.
    fn path(&self) -> &Path;
    /// One value.
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>>;
    /// Every entry whose key starts with `prefix`, in key order, until `f` returns `false`.
    fn scan_prefix(&self, t: Table, prefix: &[u8], f: &mut ScanFn<'_>) -> Result<()>;
}

/// Write access (inside one transaction).
pub(crate) trait WriteTables: ReadTables {
    /// Insert or replace.
    fn put(&mut self, t: Table, key: &[u8], val: &[u8]) -> Result<()>;
    /// Delete (absent keys are fine).
    fn delete(&mut self, t: Table, key: &[u8]) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ctr,
    Pod,
}

const KIND_CTR: u8 = b'c';
const KIND_POD: u8 = b'p';

fn edge(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(b'/');
    k.extend_from_slice(b.as_bytes());
    k
}

fn registry_value(kind: Kind, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.push(if kind == Kind::Ctr {
        KIND_CTR
    } else {
        KIND_POD
    });
    v.extend_from_slice(name.as_bytes());
    v
}

/// First byte of a record in the compact encoding: MessagePack with each record as an array of its
/// fields in declaration order (no field names). JSON records (rpod-state/1) start with `{`, so
/// both decode. Every record has `#[serde(default)]`, so a field appended at the end of a record
/// reads as its default from records written before it existed; reordering, removing or retyping
/// fields needs a new format byte and a decoder for the old layout (the `compact_layout_is_stable`
/// test catches accidental changes).
pub(crate) const COMPACT_V1: u8 = 1;

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![COMPACT_V1];
    match rmp_serde::encode::write(&mut out, v) {
        Ok(()) => out,
        // Writing plain structs into a Vec does not fail; JSON (which the reader also
        // understands) is the fallback rather than a panic.
        Err(_) => serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

fn decode<T: DeserializeOwned, R: ReadTables + ?Sized>(
    r: &R,
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T> {
    let decoded = match bytes.split_first() {
        Some((&COMPACT_V1, rest)) => rmp_serde::from_slice(rest).map_err(DecodeError::from),
        _ => serde_json::from_slice(bytes).map_err(DecodeError::from),
    };
    decoded.map_err(|source| StateError::Corrupt {
        path: r.path().to_path_buf(),
        what: what(),
        source,
    })
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn internal<R: ReadTables + ?Sized>(r: &R, what: String) -> StateError {
    StateError::Internal {
        path: r.path().to_path_buf(),
        what,
    }
}

/// Validate an ID given for a lookup or an operation on an existing object.
fn nonempty(id: &str) -> Result<()> {
    if id.is_empty() {
        Err(StateError::EmptyId)
    } else {
        Ok(())
    }
}

/// Validate the ID and name of a new object.
fn validate_new(id: &str, name: &str) -> Result<()> {
    nonempty(id)?;
    if id.len() > MAX_ID_LEN || id.contains('/') {
        return Err(StateError::InvalidArg(format!(
            "ID {id:?} must be at most {MAX_ID_LEN} bytes long and must not contain '/'"
        )));
    }
    if name.is_empty() {
        return Err(StateError::InvalidArg(format!(
            "object {id} has an empty name"
        )));
    }
    if name.len() > MAX_ID_LEN {
        return Err(StateError::InvalidArg(format!(
            "name of {id} is longer than {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

fn check_ns(ns: &str, what: impl FnOnce() -> String, found: &str) -> Result<()> {
    if ns.is_empty() || ns == found {
        Ok(())
    } else {
        Err(StateError::NsMismatch {
            what: what(),
            found: found.to_string(),
            expected: ns.to_string(),
        })
    }
}

/// Strict equality of two objects' namespaces (a dependency or pod must be in the container's namespace).
fn check_same_ns(expected: &str, what: impl FnOnce() -> String, found: &str) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(StateError::NsMismatch {
            what: what(),
            found: found.to_string(),
            expected: expected.to_string(),
        })
    }
}

fn ns_visible<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &[u8]) -> Result<bool> {
    if ns.is_empty() {
        return Ok(true);
    }
    Ok(r.get(Table::NsRegistry, id)?
        .is_some_and(|v| *v == *ns.as_bytes()))
}

fn kind_of(v: &[u8]) -> Option<Kind> {
    match v.first() {
        Some(&KIND_CTR) => Some(Kind::Ctr),
        Some(&KIND_POD) => Some(Kind::Pod),
        _ => None,
    }
}

fn registered_kind<R: ReadTables + ?Sized>(r: &R, id: &[u8]) -> Result<Option<Kind>> {
    Ok(r.get(Table::IdRegistry, id)?.and_then(|v| kind_of(&v)))
}

// ----- containers: reads -----

fn read_ctr_config<R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<Option<ContainerConfig>> {
    match r.get(Table::CtrConfig, id.as_bytes())? {
        Some(b) => decode(r, &b, || format!("config of container {id}")).map(Some),
        None => Ok(None),
    }
}

fn read_ctr_state<R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<ContainerState> {
    match r.get(Table::CtrState, id.as_bytes())? {
        Some(b) => decode(r, &b, || format!("state of container {id}")),
        None => Err(internal(
            r,
            format!("container {id} has a config but no state"),
        )),
    }
}

/// The config of a visible container (EmptyId, NoSuchContainer, NsMismatch).
fn visible_ctr_config<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<ContainerConfig> {
    nonempty(id)?;
    let cfg = read_ctr_config(r, id)?.ok_or_else(|| StateError::NoSuchContainer(id.to_string()))?;
    check_ns(ns, || format!("container {id}"), &cfg.namespace)?;
    Ok(cfg)
}

pub(crate) fn container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<ContainerRecord> {
    let config = visible_ctr_config(r, ns, id)?;
    let state = read_ctr_state(r, id)?;
    Ok(ContainerRecord { config, state })
}

pub(crate) fn has_container<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<bool> {
    nonempty(id)?;
    Ok(r.get(Table::CtrConfig, id.as_bytes())?.is_some() && ns_visible(r, ns, id.as_bytes())?)
}

/// Resolve a full ID, name or unique prefix to the ID of an object of kind `want`.
fn lookup<R: ReadTables + ?Sized>(r: &R, ns: &str, s: &str, want: Kind) -> Result<String> {
    nonempty(s)?;
    let wrong_kind = || match want {
        Kind::Ctr => StateError::IsPodNotContainer(s.to_string()),
        Kind::Pod => StateError::IsContainerNotPod(s.to_string()),
    };
    // 1. full ID
    if registered_kind(r, s.as_bytes())? == Some(want) && ns_visible(r, ns, s.as_bytes())? {
        return Ok(s.to_string());
    }
    // 2. exact name
    let mut name_of_other_kind = false;
    if let Some(id) = r.get(Table::NameRegistry, s.as_bytes())? {
        if ns_visible(r, ns, &id)? {
            match registered_kind(r, &id)? {
                Some(k) if k == want => return Ok(utf8(&id)),
                Some(_) => name_of_other_kind = true,
                None => {
                    return Err(internal(
                        r,
                        format!("name {s:?} points at unregistered ID {}", utf8(&id)),
                    ))
                }
            }
        }
    }
    // 3. unique prefix over containers and pods together
    let mut candidates: Vec<(String, Option<Kind>)> = Vec::new();
    r.scan_prefix(Table::IdRegistry, s.as_bytes(), &mut |k, v| {
        if ns_visible(r, ns, k)? {
            candidates.push((utf8(k), kind_of(v)));
        }
        Ok(true)
    })?;
    match candidates.len() {
        0 if name_of_other_kind => Err(wrong_kind()),
        0 => Err(match want {
            Kind::Ctr => StateError::NoSuchContainer(s.to_string()),
            Kind::Pod => StateError::NoSuchPod(s.to_string()),
        }),
        1 => {
            let (id, kind) = candidates.swap_remove(0);
            if kind == Some(want) {
                Ok(id)
            } else {
                Err(wrong_kind())
            }
        }
        _ => Err(StateError::AmbiguousPrefix {
            prefix: s.to_string(),
            candidates: candidates.into_iter().map(|(id, _)| id).collect(),
        }),
    }
}

pub(crate) fn lookup_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    s: &str,
) -> Result<ContainerRecord> {
    let id = lookup(r, ns, s, Kind::Ctr)?;
    container(r, ns, &id)
}

fn dependants<R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<Vec<String>> {
    let prefix = edge(id, "");
    let mut out = Vec::new();
    r.scan_prefix(Table::Dependants, &prefix, &mut |k, _| {
        out.push(utf8(&k[prefix.len()..]));
        Ok(true)
    })?;
    Ok(out)
}

pub(crate) fn container_in_use<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<Vec<String>> {
    visible_ctr_config(r, ns, id)?;
    dependants(r, id)
}

pub(crate) fn update_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<ContainerState> {
    visible_ctr_config(r, ns, id)?;
    read_ctr_state(r, id)
}

/// Decode a listed container; undecodable records are logged and skipped (`Ok(None)`).
fn listed_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
    config: &[u8],
) -> Result<Option<ContainerRecord>> {
    let config: ContainerConfig = match decode(r, config, || format!("config of container {id}")) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(container = id, error = %e, "skipping container whose config does not decode");
            return Ok(None);
        }
    };
    if !ns.is_empty() && config.namespace != ns {
        return Ok(None);
    }
    match read_ctr_state(r, id) {
        Ok(state) => Ok(Some(ContainerRecord { config, state })),
        Err(e @ (StateError::Corrupt { .. } | StateError::Internal { .. })) => {
            tracing::warn!(container = id, error = %e, "skipping container whose state is unusable");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn all_containers<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
) -> Result<Vec<ContainerRecord>> {
    let mut out = Vec::new();
    r.scan_prefix(Table::CtrConfig, b"", &mut |k, v| {
        if let Some(rec) = listed_container(r, ns, &utf8(k), v)? {
            out.push(rec);
        }
        Ok(true)
    })?;
    Ok(out)
}

/// Like [`all_containers`], but hands each record to `f` as it is decoded (so a listing never
/// holds every record at once); stops early when `f` returns false.
pub(crate) fn for_each_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    f: &mut dyn FnMut(ContainerRecord) -> bool,
) -> Result<()> {
    r.scan_prefix(Table::CtrConfig, b"", &mut |k, v| {
        Ok(match listed_container(r, ns, &utf8(k), v)? {
            Some(rec) => f(rec),
            None => true,
        })
    })
}

// ----- containers: writes -----

fn add_ctr_common(w: &mut dyn WriteTables, ns: &str, rec: &ContainerRecord) -> Result<()> {
    let c = &rec.config;
    validate_new(&c.id, &c.name)?;
    check_ns(ns, || format!("container {}", c.id), &c.namespace)?;
    if let Some(pod_id) = &c.pod {
        let pod =
            read_pod_config(w, pod_id)?.ok_or_else(|| StateError::NoSuchPod(pod_id.clone()))?;
        check_same_ns(
            &pod.namespace,
            || format!("container {}", c.id),
            &c.namespace,
        )?;
    }
    if w.get(Table::IdRegistry, c.id.as_bytes())?.is_some() {
        return Err(StateError::IdInUse(c.id.clone()));
    }
    if w.get(Table::NameRegistry, c.name.as_bytes())?.is_some() {
        return Err(StateError::NameInUse(c.name.clone()));
    }
    let deps = c.dependencies();
    for dep in &deps {
        if *dep == c.id {
            return Err(StateError::InvalidArg(format!(
                "container {} cannot depend on itself",
                c.id
            )));
        }
        let dep_cfg = read_ctr_config(w, dep)?.ok_or_else(|| StateError::MissingDependency {
            ctr: c.id.clone(),
            dependency: dep.clone(),
        })?;
        match (&c.pod, &dep_cfg.pod) {
            (Some(p), Some(dp)) if p == dp => {}
            (None, None) => {}
            (Some(p), _) => {
                return Err(StateError::InvalidArg(format!(
                    "container {} is in pod {p} and cannot depend on container {dep}, which is not in the same pod",
                    c.id
                )))
            }
            (None, Some(dp)) => {
                return Err(StateError::InvalidArg(format!(
                    "container {} is not in a pod and cannot depend on container {dep}, which is in pod {dp}",
                    c.id
                )))
            }
        }
        check_same_ns(
            &c.namespace,
            || format!("dependency {dep} of container {}", c.id),
            &dep_cfg.namespace,
        )?;
    }

    let id = c.id.as_bytes();
    w.put(Table::IdRegistry, id, &registry_value(Kind::Ctr, &c.name))?;
    w.put(Table::NameRegistry, c.name.as_bytes(), id)?;
    if !c.namespace.is_empty() {
        w.put(Table::NsRegistry, id, c.namespace.as_bytes())?;
    }
    w.put(Table::CtrConfig, id, &encode(c))?;
    w.put(Table::CtrState, id, &encode(&rec.state))?;
    for dep in &deps {
        w.put(Table::Dependants, &edge(dep, &c.id), b"")?;
    }
    if let Some(pod_id) = &c.pod {
        w.put(Table::PodMembers, &edge(pod_id, &c.id), b"")?;
    }
    Ok(())
}

pub(crate) fn add_container(
    w: &mut dyn WriteTables,
    ns: &str,
    rec: &ContainerRecord,
) -> Result<()> {
    if let Some(pod) = &rec.config.pod {
        return Err(StateError::InvalidArg(format!(
            "container {} is in pod {pod}: use add_container_to_pod instead",
            rec.config.id
        )));
    }
    add_ctr_common(w, ns, rec)
}

pub(crate) fn add_container_to_pod(
    w: &mut dyn WriteTables,
    ns: &str,
    pod_id: &str,
    rec: &ContainerRecord,
) -> Result<()> {
    nonempty(pod_id)?;
    if rec.config.pod.as_deref() != Some(pod_id) {
        return Err(StateError::InvalidArg(format!(
            "container {} is not configured for pod {pod_id} (its pod is {:?})",
            rec.config.id, rec.config.pod
        )));
    }
    add_ctr_common(w, ns, rec)
}

/// Delete a container whose existence, namespace and pod membership were checked.
fn remove_ctr_common(
    w: &mut dyn WriteTables,
    cfg: &ContainerConfig,
    check_dependants: bool,
) -> Result<()> {
    if check_dependants {
        let deps = dependants(w, &cfg.id)?;
        if !deps.is_empty() {
            return Err(StateError::HasDependants {
                ctr: cfg.id.clone(),
                dependants: deps,
            });
        }
    }
    let id = cfg.id.as_bytes();
    w.delete(Table::IdRegistry, id)?;
    w.delete(Table::NameRegistry, cfg.name.as_bytes())?;
    w.delete(Table::NsRegistry, id)?;
    w.delete(Table::CtrConfig, id)?;
    w.delete(Table::CtrState, id)?;
    for dep in cfg.dependencies() {
        w.delete(Table::Dependants, &edge(&dep, &cfg.id))?;
    }
    if let Some(pod) = &cfg.pod {
        w.delete(Table::PodMembers, &edge(pod, &cfg.id))?;
    }
    Ok(())
}

pub(crate) fn remove_container(w: &mut dyn WriteTables, ns: &str, id: &str) -> Result<()> {
    let cfg = visible_ctr_config(w, ns, id)?;
    if let Some(pod) = &cfg.pod {
        return Err(StateError::PodMember {
            ctr: id.to_string(),
            pod: pod.clone(),
        });
    }
    remove_ctr_common(w, &cfg, true)
}

pub(crate) fn save_container(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    state: &ContainerState,
) -> Result<()> {
    visible_ctr_config(w, ns, id)?;
    w.put(Table::CtrState, id.as_bytes(), &encode(state))
}

pub(crate) fn rewrite_container_config(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    new: &ContainerConfig,
) -> Result<()> {
    let old = visible_ctr_config(w, ns, id)?;
    if new.id != old.id
        || new.name != old.name
        || new.namespace != old.namespace
        || new.pod != old.pod
        || new.dependencies() != old.dependencies()
    {
        return Err(StateError::InvalidArg(format!(
            "rewriting the config of container {id} must not change its ID, name, namespace, pod or dependencies"
        )));
    }
    w.put(Table::CtrConfig, id.as_bytes(), &encode(new))
}

// ----- pods -----

fn read_pod_config<R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<Option<PodConfig>> {
    match r.get(Table::PodConfig, id.as_bytes())? {
        Some(b) => decode(r, &b, || format!("config of pod {id}")).map(Some),
        None => Ok(None),
    }
}

fn read_pod_state<R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<PodState> {
    match r.get(Table::PodState, id.as_bytes())? {
        Some(b) => decode(r, &b, || format!("state of pod {id}")),
        None => Err(internal(r, format!("pod {id} has a config but no state"))),
    }
}

fn visible_pod_config<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<PodConfig> {
    nonempty(id)?;
    let cfg = read_pod_config(r, id)?.ok_or_else(|| StateError::NoSuchPod(id.to_string()))?;
    check_ns(ns, || format!("pod {id}"), &cfg.namespace)?;
    Ok(cfg)
}

pub(crate) fn pod<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<PodRecord> {
    let config = visible_pod_config(r, ns, id)?;
    let state = read_pod_state(r, id)?;
    Ok(PodRecord { config, state })
}

pub(crate) fn has_pod<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<bool> {
    nonempty(id)?;
    Ok(r.get(Table::PodConfig, id.as_bytes())?.is_some() && ns_visible(r, ns, id.as_bytes())?)
}

pub(crate) fn lookup_pod<R: ReadTables + ?Sized>(r: &R, ns: &str, s: &str) -> Result<PodRecord> {
    let id = lookup(r, ns, s, Kind::Pod)?;
    pod(r, ns, &id)
}

fn members<R: ReadTables + ?Sized>(r: &R, pod_id: &str) -> Result<Vec<String>> {
    let prefix = edge(pod_id, "");
    let mut out = Vec::new();
    r.scan_prefix(Table::PodMembers, &prefix, &mut |k, _| {
        out.push(utf8(&k[prefix.len()..]));
        Ok(true)
    })?;
    Ok(out)
}

pub(crate) fn pod_has_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    pod_id: &str,
    ctr_id: &str,
) -> Result<bool> {
    visible_pod_config(r, ns, pod_id)?;
    nonempty(ctr_id)?;
    Ok(r.get(Table::PodMembers, &edge(pod_id, ctr_id))?.is_some())
}

pub(crate) fn pod_container_ids<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    pod_id: &str,
) -> Result<Vec<String>> {
    visible_pod_config(r, ns, pod_id)?;
    members(r, pod_id)
}

pub(crate) fn pod_containers<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    pod_id: &str,
) -> Result<Vec<ContainerRecord>> {
    visible_pod_config(r, ns, pod_id)?;
    let mut out = Vec::new();
    for id in members(r, pod_id)? {
        let Some(config) = r.get(Table::CtrConfig, id.as_bytes())? else {
            return Err(internal(
                r,
                format!("pod {pod_id} lists container {id}, which has no config"),
            ));
        };
        if let Some(rec) = listed_container(r, "", &id, &config)? {
            out.push(rec);
        }
    }
    Ok(out)
}

pub(crate) fn update_pod<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<PodState> {
    visible_pod_config(r, ns, id)?;
    read_pod_state(r, id)
}

pub(crate) fn all_pods<R: ReadTables + ?Sized>(r: &R, ns: &str) -> Result<Vec<PodRecord>> {
    let mut out = Vec::new();
    r.scan_prefix(Table::PodConfig, b"", &mut |k, v| {
        let id = utf8(k);
        let config: PodConfig = match decode(r, v, || format!("config of pod {id}")) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %id, error = %e, "skipping pod whose config does not decode");
                return Ok(true);
            }
        };
        if !ns.is_empty() && config.namespace != ns {
            return Ok(true);
        }
        match read_pod_state(r, &id) {
            Ok(state) => out.push(PodRecord { config, state }),
            Err(e) => tracing::warn!(pod = %id, error = %e, "skipping pod whose state is unusable"),
        }
        Ok(true)
    })?;
    Ok(out)
}

pub(crate) fn add_pod(w: &mut dyn WriteTables, ns: &str, rec: &PodRecord) -> Result<()> {
    let c = &rec.config;
    validate_new(&c.id, &c.name)?;
    check_ns(ns, || format!("pod {}", c.id), &c.namespace)?;
    if w.get(Table::IdRegistry, c.id.as_bytes())?.is_some() {
        return Err(StateError::IdInUse(c.id.clone()));
    }
    if w.get(Table::NameRegistry, c.name.as_bytes())?.is_some() {
        return Err(StateError::NameInUse(c.name.clone()));
    }
    let id = c.id.as_bytes();
    w.put(Table::IdRegistry, id, &registry_value(Kind::Pod, &c.name))?;
    w.put(Table::NameRegistry, c.name.as_bytes(), id)?;
    if !c.namespace.is_empty() {
        w.put(Table::NsRegistry, id, c.namespace.as_bytes())?;
    }
    w.put(Table::PodConfig, id, &encode(c))?;
    w.put(Table::PodState, id, &encode(&rec.state))?;
    Ok(())
}

pub(crate) fn remove_pod(w: &mut dyn WriteTables, ns: &str, id: &str) -> Result<()> {
    let cfg = visible_pod_config(w, ns, id)?;
    let count = members(w, id)?.len();
    if count > 0 {
        return Err(StateError::NotEmpty {
            pod: id.to_string(),
            count,
        });
    }
    let key = id.as_bytes();
    w.delete(Table::IdRegistry, key)?;
    w.delete(Table::NameRegistry, cfg.name.as_bytes())?;
    w.delete(Table::NsRegistry, key)?;
    w.delete(Table::PodConfig, key)?;
    w.delete(Table::PodState, key)?;
    Ok(())
}

pub(crate) fn remove_pod_containers(w: &mut dyn WriteTables, ns: &str, pod_id: &str) -> Result<()> {
    visible_pod_config(w, ns, pod_id)?;
    let ids = members(w, pod_id)?;
    let set: BTreeSet<&String> = ids.iter().collect();
    for id in &ids {
        for d in dependants(w, id)? {
            if !set.contains(&d) {
                return Err(StateError::DependantOutsidePod {
                    ctr: id.clone(),
                    dependant: d,
                    pod: pod_id.to_string(),
                });
            }
        }
    }
    for id in &ids {
        match read_ctr_config(w, id)? {
            Some(cfg) => remove_ctr_common(w, &cfg, false)?,
            None => {
                tracing::warn!(pod = pod_id, container = %id, "pod member without a config; dropping the membership");
                w.delete(Table::PodMembers, &edge(pod_id, id))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn remove_container_from_pod(
    w: &mut dyn WriteTables,
    ns: &str,
    pod_id: &str,
    ctr_id: &str,
) -> Result<()> {
    visible_pod_config(w, ns, pod_id)?;
    let cfg = visible_ctr_config(w, ns, ctr_id)?;
    if cfg.pod.as_deref() != Some(pod_id) {
        return Err(StateError::NotInPod {
            ctr: ctr_id.to_string(),
            pod: pod_id.to_string(),
        });
    }
    remove_ctr_common(w, &cfg, true)
}

pub(crate) fn save_pod(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    state: &PodState,
) -> Result<()> {
    visible_pod_config(w, ns, id)?;
    w.put(Table::PodState, id.as_bytes(), &encode(state))
}

pub(crate) fn rewrite_pod_config(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    new: &PodConfig,
) -> Result<()> {
    let old = visible_pod_config(w, ns, id)?;
    if new.id != old.id || new.name != old.name || new.namespace != old.namespace {
        return Err(StateError::InvalidArg(format!(
            "rewriting the config of pod {id} must not change its ID, name or namespace"
        )));
    }
    w.put(Table::PodConfig, id.as_bytes(), &encode(new))
}

// ----- lifecycle -----

pub(crate) fn refresh(w: &mut dyn WriteTables) -> Result<()> {
    let mut ctrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    w.scan_prefix(Table::CtrState, b"", &mut |k, v| {
        ctrs.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    for (k, v) in ctrs {
        let id = utf8(&k);
        match decode::<ContainerState, _>(w, &v, || format!("state of container {id}")) {
            Ok(mut st) => {
                st.reset_for_reboot();
                w.put(Table::CtrState, &k, &encode(&st))?;
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "not refreshing container whose state does not decode")
            }
        }
    }
    let mut pods: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    w.scan_prefix(Table::PodState, b"", &mut |k, v| {
        pods.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    for (k, v) in pods {
        let id = utf8(&k);
        match decode::<PodState, _>(w, &v, || format!("state of pod {id}")) {
            Ok(mut st) => {
                st.cgroup_path.clear();
                w.put(Table::PodState, &k, &encode(&st))?;
            }
            Err(e) => {
                tracing::warn!(pod = %id, error = %e, "not refreshing pod whose state does not decode")
            }
        }
    }
    Ok(())
}

pub(crate) fn get_db_config<R: ReadTables + ?Sized>(r: &R) -> Result<DbConfig> {
    let mut out = DbConfig::default();
    for (key, _, _) in DbConfig::default().fields() {
        if let Some(v) = r.get(Table::RuntimeConfig, key.as_bytes())? {
            out.set(key, utf8(&v));
        }
    }
    Ok(out)
}

/// Compares `ours` with the stored paths: a differing value is [`StateError::DbMismatch`];
/// returns the `(key, value)` pairs that are not stored yet.
pub(crate) fn db_config_missing<R: ReadTables + ?Sized>(
    r: &R,
    ours: &DbConfig,
) -> Result<Vec<(&'static str, String)>> {
    let mut missing = Vec::new();
    for (key, label, value) in ours.fields() {
        let value = if key == "os" && value.is_empty() {
            std::env::consts::OS
        } else {
            value
        };
        if value.is_empty() {
            continue;
        }
        let stored = r
            .get(Table::RuntimeConfig, key.as_bytes())?
            .map(|v| utf8(&v));
        match stored {
            Some(db) if db == value => {}
            Some(db) if !db.is_empty() => {
                return Err(StateError::DbMismatch {
                    field: label,
                    db,
                    ours: value.to_string(),
                })
            }
            _ => missing.push((key, value.to_string())),
        }
    }
    Ok(missing)
}

/// Writes the paths of `ours` that are not stored yet; fails on a mismatch (see
/// [`db_config_missing`]).
pub(crate) fn validate_db_config(w: &mut dyn WriteTables, ours: &DbConfig) -> Result<()> {
    for (key, value) in db_config_missing(w, ours)? {
        w.put(Table::RuntimeConfig, key.as_bytes(), value.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::records::{ContainerStatus, ExecSession, Mount, PortMapping, Rlimit};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Every field set, so that each one shows up in the encoding.
    fn full_records() -> (ContainerConfig, ContainerState, PodConfig, PodState) {
        let mut c = ContainerConfig::new("c1", "web");
        c.namespace = "ns".into();
        c.pod = Some("p1".into());
        c.lock_id = 7;
        c.rootfs = "/r".into();
        c.command = vec!["sh".into(), "-c".into()];
        c.env = vec!["A=1".into()];
        c.working_dir = "/w".into();
        c.user = "1:2".into();
        c.hostname = "h".into();
        c.labels = BTreeMap::from([("k".into(), "v".into())]);
        c.ipc_ns_ctr = Some("i".into());
        c.mount_ns_ctr = Some("m".into());
        c.net_ns_ctr = Some("n".into());
        c.pid_ns_ctr = Some("p".into());
        c.user_ns_ctr = Some("u".into());
        c.uts_ns_ctr = Some("t".into());
        c.cgroup_ns_ctr = Some("g".into());
        c.dependencies = vec!["d".into()];
        c.port_mappings = vec![PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        c.networks = vec!["net".into()];
        c.stop_signal = 15;
        c.stop_timeout = 10;
        c.log_path = "/l".into();
        c.created = at(1_700_000_000);
        c.rlimits = vec![Rlimit {
            kind: "RLIMIT_NOFILE".into(),
            soft: 1024,
            hard: 2048,
        }];
        c.mounts = vec![Mount {
            destination: "/d".into(),
            kind: "bind".into(),
            source: "/s".into(),
            options: vec!["ro".into()],
        }];
        c.is_infra = true;
        c.auto_remove = true;
        c.terminal = true;
        let s = ContainerState {
            status: ContainerStatus::Exited,
            pid: 42,
            conmon_pid: 41,
            exit_code: 137,
            started: Some(at(1_700_000_001)),
            finished: Some(at(1_700_000_002)),
            oom_killed: true,
            netns_path: "/run/netns/x".into(),
            network_results: vec![serde_json::json!({"ip": "10.0.0.2"})],
            exec_sessions: BTreeMap::from([(
                "e1".into(),
                ExecSession {
                    command: vec!["ls".into()],
                    pid: 43,
                },
            )]),
        };
        let mut p = PodConfig::new("p1", "pod");
        p.namespace = "ns".into();
        p.lock_id = 3;
        p.labels = BTreeMap::from([("a".into(), "b".into())]);
        p.created = at(1_700_000_003);
        p.cgroup_parent = "/cg".into();
        p.infra = true;
        p.shared_namespaces = vec!["net".into()];
        let ps = PodState {
            infra_container_id: "c1".into(),
            cgroup_path: "/cg/p1".into(),
        };
        (c, s, p, ps)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn compact_layout_is_stable() {
        // If this fails, a record's fields changed. A field appended at the end only lengthens
        // that record's array (older records read it as its default): update GOLDEN. Anything
        // else (reordering, removing, retyping) would misread existing databases: add a format
        // byte and a decoder for the old layout first.
        let (c, s, p, ps) = full_records();
        let got = [
            hex(&encode(&c)),
            hex(&encode(&s)),
            hex(&encode(&p)),
            hex(&encode(&ps)),
        ];
        assert_eq!(got, GOLDEN);
    }

    /// The encodings of [`full_records`] in format [`COMPACT_V1`].
    const GOLDEN: [&str; 4] = [
        "01dc001fa26331a3776562a26e73a2703107a22f7292a27368a22d6391a3413d31a22f77a3313a32a16881a16ba176a169a16da16ea170a175a174a16791a1649194a93132372e302e302e31cd1f9050a374637091a36e65740f0aa22f6ccf17979cfe362a00009193ad524c494d49545f4e4f46494c45cd0400cd08009194a22f64a462696e64a22f7391a2726fc3c3c3",
        "019aa66578697465642a29cc89cf17979cfe71c4ca00cf17979cfead5f9400c3ac2f72756e2f6e65746e732f789181a26970a831302e302e302e3281a265319291a26c732b",
        "0199a27031a3706f64a26e730381a161a162cf17979cfee8fa5e00a32f6367c391a36e6574",
        "0192a26331a62f63672f7031",
    ];

    #[test]
    fn compact_and_json_records_round_trip() {
        let (c, s, p, ps) = full_records();
        let t = &NoTables;
        {
            let d: ContainerConfig =
                decode(t, &encode(&c), String::new).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, c);
            let d: ContainerState =
                decode(t, &encode(&s), String::new).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, s);
            let d: PodConfig =
                decode(t, &encode(&p), String::new).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, p);
            let d: PodState =
                decode(t, &encode(&ps), String::new).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, ps);
            // rpod-state/1 records (JSON) still decode, including the opaque JSON values.
            let json = serde_json::to_vec(&s).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(json.first(), Some(&b'{'));
            let d: ContainerState = decode(t, &json, String::new).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, s);
            // Compact records are much smaller.
            assert!(encode(&c).len() * 2 < serde_json::to_vec(&c).unwrap_or_default().len());
            // Garbage is a Corrupt error, whichever format it claims to be.
            for bad in [&[COMPACT_V1, 0xff, 0xff][..], b"{nope", b""] {
                match decode::<ContainerState, _>(t, bad, || "x".into()) {
                    Err(e) => assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}"),
                    Ok(v) => panic!("{bad:?} decoded as {v:?}"),
                }
            }
        }
    }

    #[test]
    fn fields_appended_later_read_as_defaults() {
        // A record written before `oom_killed` and the fields after it existed.
        #[derive(Serialize)]
        struct OldState {
            status: ContainerStatus,
            pid: i32,
            conmon_pid: i32,
            exit_code: i32,
            started: Option<i64>,
            finished: Option<i64>,
        }
        let old = OldState {
            status: ContainerStatus::Exited,
            pid: 0,
            conmon_pid: 0,
            exit_code: 3,
            started: None,
            finished: Some(5),
        };
        let got: ContainerState =
            decode(&NoTables, &encode(&old), String::new).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.status, ContainerStatus::Exited);
        assert_eq!(got.exit_code, 3);
        assert_eq!(
            got.finished,
            Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(5))
        );
        assert!(!got.oom_killed);
        assert!(got.exec_sessions.is_empty());
    }

    #[test]
    fn a_config_written_before_terminal_existed_reads_false() {
        // GOLDEN[0] before `terminal` was appended to ContainerConfig (one element shorter).
        let before = "01dc001ea26331a3776562a26e73a2703107a22f7292a27368a22d6391a3413d31a22f77a3313a32a16881a16ba176a169a16da16ea170a175a174a16791a1649194a93132372e302e302e31cd1f9050a374637091a36e65740f0aa22f6ccf17979cfe362a00009193ad524c494d49545f4e4f46494c45cd0400cd08009194a22f64a462696e64a22f7391a2726fc3c3";
        let bytes: Vec<u8> = (0..before.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&before[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let got: ContainerConfig =
            decode(&NoTables, &bytes, String::new).unwrap_or_else(|e| panic!("{e}"));
        let (mut want, _, _, _) = full_records();
        want.terminal = false;
        assert_eq!(got, want);
    }

    /// Only a path for error messages; `decode` reads nothing else.
    struct NoTables;

    impl ReadTables for NoTables {
        fn path(&self) -> &Path {
            Path::new("<test>")
        }
        fn get(&self, _: Table, _: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
            Ok(None)
        }
        fn scan_prefix(&self, _: Table, _: &[u8], _: &mut ScanFn<'_>) -> Result<()> {
            Ok(())
        }
    }
}
