//! The pod operations of the [`State`](crate::State) trait: lookups, listings, membership and the rules
//! for adding and removing pods and their members.

use std::collections::BTreeSet;

use super::codec::decode;
use super::containers::{dependants, listed_container, remove_ctr_common};
use super::objects::{
    check_new, check_unused, delete, exists, insert, read_config, read_state, record,
    rewrite_config, save_state, updated_state, visible_config,
};
use super::{edge, edges, internal, lookup, nonempty, utf8, Kind, ReadTables, Table, WriteTables};
use crate::error::{Result, StateError};
use crate::records::{ContainerConfig, ContainerRecord, PodConfig, PodRecord, PodState};

// ----- reads -----

pub(crate) fn pod<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<PodRecord> {
    record::<PodConfig, R>(r, ns, id)
}

pub(crate) fn has_pod<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<bool> {
    exists(r, Kind::Pod, ns, id)
}

pub(crate) fn lookup_pod<R: ReadTables + ?Sized>(r: &R, ns: &str, s: &str) -> Result<PodRecord> {
    let id = lookup(r, ns, s, Kind::Pod)?;
    pod(r, ns, &id)
}

/// IDs of the pod's members.
fn members<R: ReadTables + ?Sized>(r: &R, pod_id: &str) -> Result<Vec<String>> {
    edges(r, Table::PodMembers, pod_id)
}

pub(crate) fn pod_has_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    pod_id: &str,
    ctr_id: &str,
) -> Result<bool> {
    visible_config::<PodConfig, R>(r, ns, pod_id)?;
    nonempty(ctr_id)?;
    Ok(r.get(Table::PodMembers, &edge(pod_id, ctr_id))?.is_some())
}

pub(crate) fn pod_container_ids<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    pod_id: &str,
) -> Result<Vec<String>> {
    visible_config::<PodConfig, R>(r, ns, pod_id)?;
    members(r, pod_id)
}

pub(crate) fn pod_containers<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    pod_id: &str,
) -> Result<Vec<ContainerRecord>> {
    visible_config::<PodConfig, R>(r, ns, pod_id)?;
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
    updated_state::<PodConfig, R>(r, ns, id)
}

pub(crate) fn all_pods<R: ReadTables + ?Sized>(r: &R, ns: &str) -> Result<Vec<PodRecord>> {
    let mut out = Vec::new();
    r.scan_prefix(Table::PodConfig, b"", &mut |k, v| {
        let id = utf8(k);
        let config: PodConfig = match decode(r, v, || format!("config of pod {id}")) {
            Ok(c) => c,
            Err(e) => {
                Kind::Pod.warn_skipped(&id, &e, "skipping pod whose config does not decode");
                return Ok(true);
            }
        };
        if !ns.is_empty() && config.namespace != ns {
            return Ok(true);
        }
        match read_state::<PodConfig, R>(r, &id) {
            Ok(state) => out.push(PodRecord { config, state }),
            Err(e) => Kind::Pod.warn_skipped(&id, &e, "skipping pod whose state is unusable"),
        }
        Ok(true)
    })?;
    Ok(out)
}

// ----- writes -----

pub(crate) fn add_pod(w: &mut dyn WriteTables, ns: &str, rec: &PodRecord) -> Result<()> {
    check_new(ns, &rec.config)?;
    check_unused(w, &rec.config)?;
    insert(w, &rec.config, &rec.state)
}

pub(crate) fn remove_pod(w: &mut dyn WriteTables, ns: &str, id: &str) -> Result<()> {
    let cfg = visible_config::<PodConfig, _>(w, ns, id)?;
    let count = members(w, id)?.len();
    if count > 0 {
        return Err(StateError::NotEmpty {
            pod: id.to_string(),
            count,
        });
    }
    delete(w, &cfg)
}

pub(crate) fn remove_pod_containers(w: &mut dyn WriteTables, ns: &str, pod_id: &str) -> Result<()> {
    visible_config::<PodConfig, _>(w, ns, pod_id)?;
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
        match read_config::<ContainerConfig, _>(w, id)? {
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
    visible_config::<PodConfig, _>(w, ns, pod_id)?;
    let cfg = visible_config::<ContainerConfig, _>(w, ns, ctr_id)?;
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
    save_state::<PodConfig>(w, ns, id, state)
}

pub(crate) fn rewrite_pod_config(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    new: &PodConfig,
) -> Result<()> {
    rewrite_config(
        w,
        ns,
        id,
        new,
        |old, new| new.id == old.id && new.name == old.name && new.namespace == old.namespace,
        "ID, name or namespace",
    )
}
