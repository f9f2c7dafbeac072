//! The whole-database operations: the refresh after a reboot and the recorded runtime paths
//! ([`DbConfig`]).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode, encode};
use super::{utf8, Kind, ReadTables, Table, WriteTables};
use crate::error::{Result, StateError};
use crate::records::{ContainerState, DbConfig, PodState};

/// Reset every container's and pod's per-boot state, whatever its namespace; records that do not decode
/// are logged and left alone.
pub(crate) fn refresh(w: &mut dyn WriteTables) -> Result<()> {
    reset_states(w, Kind::Ctr, ContainerState::reset_for_reboot)?;
    reset_states(w, Kind::Pod, |st: &mut PodState| st.cgroup_path.clear())
}

/// Rewrite every state record of `kind` through `reset`.
fn reset_states<T: Serialize + DeserializeOwned>(
    w: &mut dyn WriteTables,
    kind: Kind,
    reset: impl Fn(&mut T),
) -> Result<()> {
    let table = kind.state_table();
    let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    w.scan_prefix(table, b"", &mut |k, v| {
        all.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    for (k, v) in all {
        let id = utf8(&k);
        match decode::<T, _>(w, &v, || format!("state of {} {id}", kind.label())) {
            Ok(mut st) => {
                reset(&mut st);
                w.put(table, &k, &encode(&st))?;
            }
            Err(e) => kind.warn_skipped(
                &id,
                &e,
                &format!(
                    "not refreshing {} whose state does not decode",
                    kind.label()
                ),
            ),
        }
    }
    Ok(())
}

/// The number of containers and pods in every namespace (the ID registry's size), without reading them.
pub(crate) fn object_count(r: &dyn ReadTables, _namespace: &str) -> Result<u64> {
    r.len(Table::IdRegistry)
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
