//! The LMDB environment shared by every [`LmdbState`](super::LmdbState) on one file in this process:
//! the registry that keeps one environment per file, the schema check on open, and the transaction loops
//! with map growth (see the [`LmdbState`](super::LmdbState) docs for the rules).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use heed::types::Bytes;
use heed::{Database, Env, MdbError, RoTxn, RwTxn, WithoutTls};

use super::{check, sys, INITIAL_MAP_SIZE};
use crate::error::{Result, StateError};
use crate::logic::Table;

/// Upper bound for map growth (1 TiB).
const MAX_MAP_SIZE: usize = 1 << 40;

const META_DB: &str = "meta";
const SCHEMA_KEY: &[u8] = b"schema";
/// The schema marker of databases this version writes: records in the compact encoding.
const SCHEMA_VALUE: &[u8] = b"rpod-state/2";
/// The marker of databases with JSON records, which this version reads, and upgrades the marker
/// of on open (so that an older rpod refuses the file instead of failing on compact records).
const SCHEMA_VALUE_JSON: &[u8] = b"rpod-state/1";

type Db = Database<Bytes, Bytes>;

/// One open LMDB environment with its database handles, shared by every [`LmdbState`](super::LmdbState) on
/// the same file.
pub(super) struct SharedEnv {
    pub(super) env: Env<WithoutTls>,
    dbs: Vec<Db>,
    pub(super) path: PathBuf,
    /// Held shared by every transaction, exclusively by a map resize.
    gate: RwLock<()>,
    /// Where the map is (`sys::find_map`), once found; reset by a resize (which holds `gate`
    /// exclusively). A failed lookup is not remembered, so it is tried again.
    pub(super) map: Mutex<Option<(usize, usize)>>,
}

impl std::fmt::Debug for SharedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEnv")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<SharedEnv>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<SharedEnv>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}
fn is_damage(e: &heed::Error) -> bool {
    matches!(
        e,
        heed::Error::Mdb(
            MdbError::Invalid
                | MdbError::VersionMismatch
                | MdbError::Corrupted
                | MdbError::PageNotFound
                | MdbError::Incompatible
                | MdbError::Panic
        )
    )
}

pub(super) fn lmdb_err(path: &Path, op: &'static str, e: heed::Error) -> StateError {
    if is_damage(&e) {
        StateError::Damaged {
            path: path.to_path_buf(),
            reason: format!("{op}: {e}"),
        }
    } else {
        StateError::Lmdb {
            op,
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn is_map_resized(e: &heed::Error) -> bool {
    matches!(e, heed::Error::Mdb(MdbError::MapResized))
}
pub(super) fn is_map_full(e: &heed::Error) -> bool {
    matches!(e, heed::Error::Mdb(MdbError::MapFull))
}

impl SharedEnv {
    /// The environment of the database file `path` (canonical): the one already open in this process, or a
    /// newly opened one, registered for the next caller.
    pub(super) fn get_or_open(path: &Path) -> Result<Arc<SharedEnv>> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = reg.get(path).and_then(Weak::upgrade) {
            // Cheap (one fstat, two small reads): catches a file truncated since this process opened it,
            // before the next transaction touches a missing page.
            check::check_file(path, false)?;
            return Ok(shared);
        }
        // An environment of this path still being closed by another thread has its lock file open: wait
        // for it before the check may open and close that file (which drops the process's fcntl locks).
        let closed =
            heed::env_closing_event(path).is_none_or(|ev| ev.wait_timeout(Duration::from_secs(1)));
        check::check_file(path, closed)?;
        let shared = SharedEnv::open(path)?;
        reg.insert(path.to_path_buf(), Arc::downgrade(&shared));
        Ok(shared)
    }

    fn open(path: &Path) -> Result<Arc<SharedEnv>> {
        let mut tries = 0;
        let env = loop {
            match sys::open_env(path, INITIAL_MAP_SIZE, (Table::ALL.len() + 1) as u32) {
                Ok(env) => break env,
                // The previous environment on this path is still being closed by another thread.
                Err(heed::Error::EnvAlreadyOpened) if tries < 50 => {
                    tries += 1;
                    match heed::env_closing_event(path) {
                        Some(ev) => {
                            ev.wait_timeout(Duration::from_millis(100));
                        }
                        None => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                // The data file passed `check::check_file`, so what LMDB refuses is most likely the lock file.
                Err(e) if is_damage(&e) => {
                    return Err(StateError::Damaged {
                        path: path.to_path_buf(),
                        reason: format!(
                            "LMDB refused to open it ({e}) although its meta pages are sound: its lock file {}-lock may be damaged while another process has it open",
                            path.display()
                        ),
                    })
                }
                // The data file was checked to be a regular file: this is the lock file.
                Err(heed::Error::Io(e)) if e.kind() == std::io::ErrorKind::IsADirectory => {
                    return Err(StateError::Damaged {
                        path: path.to_path_buf(),
                        reason: format!(
                            "its lock file {}-lock is not a regular file ({e})",
                            path.display()
                        ),
                    })
                }
                Err(e) => return Err(lmdb_err(path, "opening the database", e)),
            }
        };
        let mut shared = SharedEnv {
            env,
            dbs: Vec::new(),
            path: path.to_path_buf(),
            gate: RwLock::new(()),
            map: Mutex::new(None),
        };
        shared.dbs = shared.init_schema()?;
        Ok(Arc::new(shared))
    }

    /// Check that the file is ours (or new) and create the named databases.
    fn init_schema(&self) -> Result<Vec<Db>> {
        let path = self.path.as_path();
        let err = |op: &'static str| move |e: heed::Error| lmdb_err(path, op, e);
        self.with_write_txn(|wtxn| {
            let meta: Option<Db> =
                self.env.open_database(wtxn, Some(META_DB)).map_err(err("opening the meta database"))?;
            let meta = match meta {
                Some(meta) => {
                    let schema = meta.get(wtxn, SCHEMA_KEY).map_err(err("reading the schema marker"))?;
                    if schema == Some(SCHEMA_VALUE_JSON) {
                        meta.put(wtxn, SCHEMA_KEY, SCHEMA_VALUE).map_err(err("upgrading the schema marker"))?;
                        tracing::info!(path = %self.path.display(), "state database upgraded to rpod-state/2 (new records in the compact encoding)");
                    } else if schema != Some(SCHEMA_VALUE) {
                        return Err(StateError::Damaged {
                            path: self.path.clone(),
                            reason: match schema.map(String::from_utf8_lossy) {
                                Some(m) if m.starts_with("rpod-state/") => format!(
                                    "schema {m} was written by a newer rpod (this one reads rpod-state/1 and rpod-state/2); use that rpod"
                                ),
                                other => format!("unknown schema marker {other:?}"),
                            },
                        });
                    }
                    meta
                }
                None => {
                    let main: Option<Db> =
                        self.env.open_database(wtxn, None).map_err(err("opening the main database"))?;
                    if let Some(main) = main {
                        if !main.is_empty(wtxn).map_err(err("inspecting the main database"))? {
                            return Err(StateError::Damaged {
                                path: self.path.clone(),
                                reason: "it is an LMDB database of another program (no rpod schema marker)".into(),
                            });
                        }
                    }
                    let meta: Db =
                        self.env.create_database(wtxn, Some(META_DB)).map_err(err("creating the meta database"))?;
                    meta.put(wtxn, SCHEMA_KEY, SCHEMA_VALUE).map_err(err("writing the schema marker"))?;
                    meta
                }
            };
            let _ = meta;
            let mut dbs = Vec::with_capacity(Table::ALL.len());
            for t in Table::ALL {
                let db: Db =
                    self.env.create_database(wtxn, Some(t.name())).map_err(err("creating the named databases"))?;
                dbs.push(db);
            }
            Ok(dbs)
        })
    }

    pub(super) fn db(&self, t: Table) -> Result<Db> {
        self.dbs
            .get(t.index())
            .copied()
            .ok_or_else(|| StateError::Internal {
                path: self.path.clone(),
                what: format!("database {} is not open", t.name()),
            })
    }

    fn gate_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adopt the map size another process recorded (after `MDB_MAP_RESIZED`).
    fn adopt_map_size(&self) -> Result<()> {
        let gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = None;
        sys::resize(&self.env, 0, &gate)
            .map_err(|e| lmdb_err(&self.path, "adopting the map size", e))?;
        tracing::debug!(path = %self.path.display(), size = self.env.info().map_size, "adopted LMDB map size");
        Ok(())
    }

    /// Double the map, unless another thread already grew it past `seen`.
    fn grow(&self, seen: usize) -> Result<()> {
        let gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let current = self.env.info().map_size;
        if current > seen {
            return Ok(());
        }
        if current >= MAX_MAP_SIZE {
            return Err(StateError::Lmdb {
                op: "growing the map",
                path: self.path.clone(),
                source: heed::Error::Mdb(MdbError::MapFull),
            });
        }
        let new = current.saturating_mul(2).min(MAX_MAP_SIZE);
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = None;
        sys::resize(&self.env, new, &gate)
            .map_err(|e| lmdb_err(&self.path, "growing the map", e))?;
        tracing::info!(path = %self.path.display(), from = current, to = new, "grew the state database map");
        Ok(())
    }

    /// Run `f` in one write transaction and commit it, growing the map and re-running on `MDB_MAP_FULL`.
    pub(super) fn with_write_txn<T>(
        &self,
        mut f: impl FnMut(&mut RwTxn<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut map_full_retries = 0;
        loop {
            let gate = self.gate_shared();
            let mut wtxn = match self.env.write_txn() {
                Ok(t) => t,
                Err(e) if is_map_resized(&e) => {
                    drop(gate);
                    self.adopt_map_size()?;
                    continue;
                }
                Err(e) => return Err(lmdb_err(&self.path, "beginning a write transaction", e)),
            };
            let seen = self.env.info().map_size;
            let outcome = match f(&mut wtxn) {
                Ok(v) => match wtxn.commit() {
                    Ok(()) => return Ok(v),
                    Err(e) if is_map_full(&e) => Err(StateError::Lmdb {
                        op: "committing",
                        path: self.path.clone(),
                        source: e,
                    }),
                    Err(e) => {
                        return Err(lmdb_err(&self.path, "committing a write transaction", e))
                    }
                },
                Err(e) => {
                    drop(wtxn);
                    Err(e)
                }
            };
            drop(gate);
            match outcome {
                Err(StateError::Lmdb {
                    source: heed::Error::Mdb(MdbError::MapFull),
                    ..
                }) if map_full_retries < 40 => {
                    map_full_retries += 1;
                    self.grow(seen)?;
                }
                Err(e) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    pub(super) fn with_read_txn<T>(
        &self,
        f: impl FnOnce(&RoTxn<'_, WithoutTls>, &RwLockReadGuard<'_, ()>) -> Result<T>,
    ) -> Result<T> {
        loop {
            let gate = self.gate_shared();
            match self.env.read_txn() {
                Ok(rtxn) => {
                    let out = f(&rtxn, &gate);
                    drop(rtxn);
                    drop(gate);
                    return out;
                }
                Err(e) if is_map_resized(&e) => {
                    drop(gate);
                    self.adopt_map_size()?;
                }
                Err(e) => return Err(lmdb_err(&self.path, "beginning a read transaction", e)),
            }
        }
    }
}
