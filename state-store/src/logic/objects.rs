//! What containers and pods share in the tables: an entry in the ID, name and namespace registries, a
//! config and a state record. [`Object`] describes the two config types; the functions here read, check,
//! insert and delete either kind, so that the container and pod operations only add their own rules.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode, encode};
use super::{
    check_ns, internal, nonempty, ns_visible, registry_value, validate_new, Kind, ReadTables,
    Table, WriteTables,
};
use crate::error::{Result, StateError};
use crate::records::{
    ContainerConfig, ContainerRecord, ContainerState, PodConfig, PodRecord, PodState,
};

/// A stored config type ([`ContainerConfig`], [`PodConfig`]) and what goes with it.
pub(crate) trait Object: Serialize + DeserializeOwned {
    /// The kind in the ID registry.
    const KIND: Kind;
    /// The mutable state stored next to the config.
    type State: Serialize + DeserializeOwned;
    /// Config and state together.
    type Record;
    /// The full ID.
    fn id(&self) -> &str;
    /// The unique name.
    fn name(&self) -> &str;
    /// The namespace (`""` = none).
    fn namespace(&self) -> &str;
    /// Bundle with its state.
    fn into_record(self, state: Self::State) -> Self::Record;
}

/// Implements [`Object`] for a config type with `id`, `name` and `namespace` fields.
macro_rules! impl_object {
    ($config:ty, $kind:expr, $state:ty, $record:ident) => {
        impl Object for $config {
            const KIND: Kind = $kind;
            type State = $state;
            type Record = $record;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn namespace(&self) -> &str {
                &self.namespace
            }
            fn into_record(self, state: $state) -> $record {
                $record {
                    config: self,
                    state,
                }
            }
        }
    };
}

impl_object!(ContainerConfig, Kind::Ctr, ContainerState, ContainerRecord);
impl_object!(PodConfig, Kind::Pod, PodState, PodRecord);

impl Kind {
    /// "container" or "pod", for messages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Ctr => "container",
            Kind::Pod => "pod",
        }
    }

    pub(crate) fn config_table(self) -> Table {
        match self {
            Kind::Ctr => Table::CtrConfig,
            Kind::Pod => Table::PodConfig,
        }
    }

    pub(crate) fn state_table(self) -> Table {
        match self {
            Kind::Ctr => Table::CtrState,
            Kind::Pod => Table::PodState,
        }
    }

    /// `NoSuchContainer` or `NoSuchPod`.
    pub(crate) fn not_found(self, id: &str) -> StateError {
        match self {
            Kind::Ctr => StateError::NoSuchContainer(id.to_string()),
            Kind::Pod => StateError::NoSuchPod(id.to_string()),
        }
    }

    /// Log that an object of this kind is skipped (`what` says why), with its ID as `container` or `pod`.
    pub(crate) fn warn_skipped(self, id: &str, error: &StateError, what: &str) {
        match self {
            Kind::Ctr => tracing::warn!(container = %id, error = %error, "{what}"),
            Kind::Pod => tracing::warn!(pod = %id, error = %error, "{what}"),
        }
    }
}

/// The config of the object `id`, if there is one.
pub(crate) fn read_config<C: Object, R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<Option<C>> {
    match r.get(C::KIND.config_table(), id.as_bytes())? {
        Some(b) => decode(r, &b, || format!("config of {} {id}", C::KIND.label())).map(Some),
        None => Ok(None),
    }
}

/// The state of the object `id`, which has a config (a missing state is an internal error).
pub(crate) fn read_state<C: Object, R: ReadTables + ?Sized>(r: &R, id: &str) -> Result<C::State> {
    let label = C::KIND.label();
    match r.get(C::KIND.state_table(), id.as_bytes())? {
        Some(b) => decode(r, &b, || format!("state of {label} {id}")),
        None => Err(internal(
            r,
            format!("{label} {id} has a config but no state"),
        )),
    }
}

/// The config of a visible object (EmptyId, NoSuchContainer / NoSuchPod, NsMismatch).
pub(crate) fn visible_config<C: Object, R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<C> {
    nonempty(id)?;
    let cfg = read_config::<C, R>(r, id)?.ok_or_else(|| C::KIND.not_found(id))?;
    check_ns(ns, || format!("{} {id}", C::KIND.label()), cfg.namespace())?;
    Ok(cfg)
}

/// The record of a visible object.
pub(crate) fn record<C: Object, R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<C::Record> {
    let config = visible_config::<C, R>(r, ns, id)?;
    let state = read_state::<C, R>(r, id)?;
    Ok(config.into_record(state))
}

/// Whether a visible object `id` of this kind exists.
pub(crate) fn exists(
    r: &(impl ReadTables + ?Sized),
    kind: Kind,
    ns: &str,
    id: &str,
) -> Result<bool> {
    nonempty(id)?;
    Ok(r.get(kind.config_table(), id.as_bytes())?.is_some() && ns_visible(r, ns, id.as_bytes())?)
}

/// Re-read a visible object's state.
pub(crate) fn updated_state<C: Object, R: ReadTables + ?Sized>(
    r: &R,
    ns: &str,
    id: &str,
) -> Result<C::State> {
    visible_config::<C, R>(r, ns, id)?;
    read_state::<C, R>(r, id)
}

/// Write a visible object's state.
pub(crate) fn save_state<C: Object>(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    state: &C::State,
) -> Result<()> {
    visible_config::<C, _>(w, ns, id)?;
    w.put(C::KIND.state_table(), id.as_bytes(), &encode(state))
}

/// Replace a visible object's config after `unchanged(old, new)` accepted it (else `InvalidArg` saying
/// that `fields` must not change).
pub(crate) fn rewrite_config<C: Object>(
    w: &mut dyn WriteTables,
    ns: &str,
    id: &str,
    new: &C,
    unchanged: impl FnOnce(&C, &C) -> bool,
    fields: &str,
) -> Result<()> {
    let old = visible_config::<C, _>(w, ns, id)?;
    if !unchanged(&old, new) {
        return Err(StateError::InvalidArg(format!(
            "rewriting the config of {} {id} must not change its {fields}",
            C::KIND.label()
        )));
    }
    w.put(C::KIND.config_table(), id.as_bytes(), &encode(new))
}

/// The checks every new object passes first: a valid ID and name, in the handle's namespace.
pub(crate) fn check_new<C: Object>(ns: &str, config: &C) -> Result<()> {
    validate_new(config.id(), config.name())?;
    check_ns(
        ns,
        || format!("{} {}", C::KIND.label(), config.id()),
        config.namespace(),
    )
}

/// Refuse an ID or a name that is taken (by a container or a pod).
pub(crate) fn check_unused<C: Object>(w: &dyn WriteTables, config: &C) -> Result<()> {
    if w.get(Table::IdRegistry, config.id().as_bytes())?.is_some() {
        return Err(StateError::IdInUse(config.id().to_string()));
    }
    if w.get(Table::NameRegistry, config.name().as_bytes())?
        .is_some()
    {
        return Err(StateError::NameInUse(config.name().to_string()));
    }
    Ok(())
}

/// Register a checked new object and write its config and state.
pub(crate) fn insert<C: Object>(
    w: &mut dyn WriteTables,
    config: &C,
    state: &C::State,
) -> Result<()> {
    let id = config.id().as_bytes();
    w.put(
        Table::IdRegistry,
        id,
        &registry_value(C::KIND, config.name()),
    )?;
    w.put(Table::NameRegistry, config.name().as_bytes(), id)?;
    if !config.namespace().is_empty() {
        w.put(Table::NsRegistry, id, config.namespace().as_bytes())?;
    }
    w.put(C::KIND.config_table(), id, &encode(config))?;
    w.put(C::KIND.state_table(), id, &encode(state))
}

/// Unregister an object and delete its config and state (edges are the caller's).
pub(crate) fn delete<C: Object>(w: &mut dyn WriteTables, config: &C) -> Result<()> {
    let id = config.id().as_bytes();
    w.delete(Table::IdRegistry, id)?;
    w.delete(Table::NameRegistry, config.name().as_bytes())?;
    w.delete(Table::NsRegistry, id)?;
    w.delete(C::KIND.config_table(), id)?;
    w.delete(C::KIND.state_table(), id)
}
