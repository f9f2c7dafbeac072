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
//!
//! # Modules
//! This module owns the tables, the ID registry, the shared checks and the lookup; `objects` what containers
//! and pods share (reading, checking and writing a config and its state); `containers`, `pods` and
//! `lifecycle` (refresh, DB config) the operations of the [`State`](crate::State) trait; `codec` the record
//! encoding.

mod codec;
mod containers;
mod lifecycle;
mod objects;
mod pods;

use std::borrow::Cow;
use std::path::Path;

use crate::error::{Result, StateError};

pub(crate) use containers::*;
pub(crate) use lifecycle::*;
pub(crate) use pods::*;

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
    /// The number of entries in the table, without reading them (O(1) in both backends).
    fn len(&self, t: Table) -> Result<u64>;
}

/// Write access (inside one transaction).
pub(crate) trait WriteTables: ReadTables {
    /// Insert or replace.
    fn put(&mut self, t: Table, key: &[u8], val: &[u8]) -> Result<()>;
    /// Delete (absent keys are fine).
    fn delete(&mut self, t: Table, key: &[u8]) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ctr,
    Pod,
}

const KIND_CTR: u8 = b'c';
const KIND_POD: u8 = b'p';

pub(crate) fn edge(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(b'/');
    k.extend_from_slice(b.as_bytes());
    k
}

pub(crate) fn registry_value(kind: Kind, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.push(if kind == Kind::Ctr {
        KIND_CTR
    } else {
        KIND_POD
    });
    v.extend_from_slice(name.as_bytes());
    v
}

pub(crate) fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn internal<R: ReadTables + ?Sized>(r: &R, what: String) -> StateError {
    StateError::Internal {
        path: r.path().to_path_buf(),
        what,
    }
}

/// Validate an ID given for a lookup or an operation on an existing object.
pub(crate) fn nonempty(id: &str) -> Result<()> {
    if id.is_empty() {
        Err(StateError::EmptyId)
    } else {
        Ok(())
    }
}

/// Validate the ID and name of a new object.
pub(crate) fn validate_new(id: &str, name: &str) -> Result<()> {
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

pub(crate) fn check_ns(ns: &str, what: impl FnOnce() -> String, found: &str) -> Result<()> {
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
pub(crate) fn check_same_ns(
    expected: &str,
    what: impl FnOnce() -> String,
    found: &str,
) -> Result<()> {
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

pub(crate) fn ns_visible<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &[u8]) -> Result<bool> {
    if ns.is_empty() {
        return Ok(true);
    }
    Ok(r.get(Table::NsRegistry, id)?
        .is_some_and(|v| *v == *ns.as_bytes()))
}

pub(crate) fn kind_of(v: &[u8]) -> Option<Kind> {
    match v.first() {
        Some(&KIND_CTR) => Some(Kind::Ctr),
        Some(&KIND_POD) => Some(Kind::Pod),
        _ => None,
    }
}

pub(crate) fn registered_kind<R: ReadTables + ?Sized>(r: &R, id: &[u8]) -> Result<Option<Kind>> {
    Ok(r.get(Table::IdRegistry, id)?.and_then(|v| kind_of(&v)))
}

/// Resolve a full ID, name or unique prefix to the ID of an object of kind `want`.
pub(crate) fn lookup<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    s: &str,
    want: Kind,
) -> Result<String> {
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

/// The IDs after `from/` in an edge table ([`Table::Dependants`], [`Table::PodMembers`]), in key order.
pub(crate) fn edges<R: ReadTables + ?Sized>(r: &R, t: Table, from: &str) -> Result<Vec<String>> {
    let prefix = edge(from, "");
    let mut out = Vec::new();
    r.scan_prefix(t, &prefix, &mut |k, _| {
        out.push(utf8(&k[prefix.len()..]));
        Ok(true)
    })?;
    Ok(out)
}
