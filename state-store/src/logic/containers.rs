//! The container operations of the [`State`](crate::State) trait: lookups, listings, dependencies and
//! the rules for adding and removing a container (the pod side is in `pods`).

use super::codec::decode;
use super::objects::{
    check_new, check_unused, delete, exists, insert, read_config, read_state, record,
    rewrite_config, save_state, updated_state, visible_config,
};
use super::{
    check_same_ns, edge, edges, lookup, nonempty, utf8, Kind, ReadTables, Table, WriteTables,
};
use crate::error::{Result, StateError};
use crate::records::{ContainerConfig, ContainerRecord, ContainerState, PodConfig};

// ----- reads -----

pub(crate) fn container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<ContainerRecord> {
    record::<ContainerConfig, R>(r, ns, id)
}

pub(crate) fn has_container<R: ReadTables + ?Sized>(r: &R, ns: &str, id: &str) -> Result<bool> {
    exists(r, Kind::Ctr, ns, id)
}

pub(crate) fn lookup_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    s: &str,
) -> Result<ContainerRecord> {
    let id = lookup(r, ns, s, Kind::Ctr)?;
    container(r, ns, &id)
}

/// IDs of the containers that depend on `id`.
pub(crate) fn dependants<R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<Vec<String>> {
    edges(r, Table::Dependants, id)
}

pub(crate) fn container_in_use<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<Vec<String>> {
    visible_config::<ContainerConfig, R>(r, ns, id)?;
    dependants(r, id)
}

pub(crate) fn update_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<ContainerState> {
    updated_state::<ContainerConfig, R>(r, ns, id)
}

/// Decode a listed container; undecodable records are logged and skipped (`Ok(None)`).
pub(crate) fn listed_container<R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
    config: &[u8],
) -> Result<Option<ContainerRecord>> {
    let config: ContainerConfig = match decode(r, config, || format!("config of container {id}")) {
        Ok(c) => c,
        Err(e) => {
            Kind::Ctr.warn_skipped(id, &e, "skipping container whose config does not decode");
            return Ok(None);
        }
    };
    if !ns.is_empty() && config.namespace != ns {
        return Ok(None);
    }
    match read_state::<ContainerConfig, R>(r, id) {
        Ok(state) => Ok(Some(ContainerRecord { config, state })),
        Err(e @ (StateError::Corrupt { .. } | StateError::Internal { .. })) => {
            Kind::Ctr.warn_skipped(id, &e, "skipping container whose state is unusable");
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
    for_each_container(r, ns, &mut |rec| {
        out.push(rec);
        true
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

// ----- writes -----

/// The dependency rules: every dependency exists, is not the container itself, is in the same pod (or
/// none, like the container) and in the same namespace.
fn check_dependencies(w: &dyn WriteTables, c: &ContainerConfig, deps: &[String]) -> Result<()> {
    for dep in deps {
        if *dep == c.id {
            return Err(StateError::InvalidArg(format!(
                "container {} cannot depend on itself",
                c.id
            )));
        }
        let dep_cfg = read_config::<ContainerConfig, _>(w, dep)?.ok_or_else(|| {
            StateError::MissingDependency {
                ctr: c.id.clone(),
                dependency: dep.clone(),
            }
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
    Ok(())
}

fn add_ctr_common(w: &mut dyn WriteTables, ns: &str, rec: &ContainerRecord) -> Result<()> {
    let c = &rec.config;
    check_new(ns, c)?;
    if let Some(pod_id) = &c.pod {
        let pod = read_config::<PodConfig, _>(w, pod_id)?
            .ok_or_else(|| StateError::NoSuchPod(pod_id.clone()))?;
        check_same_ns(
            &pod.namespace,
            || format!("container {}", c.id),
            &c.namespace,
        )?;
    }
    check_unused(w, c)?;
    let deps = c.dependencies();
    check_dependencies(w, c, &deps)?;

    insert(w, c, &rec.state)?;
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
pub(crate) fn remove_ctr_common(
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
    delete(w, cfg)?;
    for dep in cfg.dependencies() {
        w.delete(Table::Dependants, &edge(&dep, &cfg.id))?;
    }
    if let Some(pod) = &cfg.pod {
        w.delete(Table::PodMembers, &edge(pod, &cfg.id))?;
    }
    Ok(())
}

pub(crate) fn remove_container(w: &mut dyn WriteTables, ns: &str, id: &str) -> Result<()> {
    let cfg = visible_config::<ContainerConfig, _>(w, ns, id)?;
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
    save_state::<ContainerConfig>(w, ns, id, state)
}

pub(crate) fn rewrite_container_config(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    new: &ContainerConfig,
) -> Result<()> {
    rewrite_config(
        w,
        ns,
        id,
        new,
        |old, new| {
            new.id == old.id
                && new.name == old.name
                && new.namespace == old.namespace
                && new.pod == old.pod
                && new.dependencies() == old.dependencies()
        },
        "ID, name, namespace, pod or dependencies",
    )
}
