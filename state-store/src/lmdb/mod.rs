//! [`LmdbState`]: the persistent state in an LMDB file, through heed.
//!
//! # File and environment
//! The database is one file, `<static_dir>/rpod_state.mdb` ([`DB_FILE_NAME`]), plus LMDB's `rpod_state.mdb-lock`,
//! both mode 0600. It holds one named LMDB database per table of the [storage layout](crate#storage-layout) plus
//! `meta` (schema marker). A file that LMDB does not recognise, or an LMDB file of another program, is refused
//! with [`StateError::Damaged`] naming the file and saying to move it aside; a zero-length file is treated as
//! new.
//!
//! LMDB allows one environment per file per process (heed returns `EnvAlreadyOpened` for a second open). This
//! module keeps a process-wide registry (`canonical path → Weak<SharedEnv>`): every [`LmdbState`] on the same
//! file shares one environment, which is closed when the last handle is closed or dropped. Each handle has its
//! own namespace (fixed when it is made) and its own closed flag; [`State::view`] makes another handle on the
//! same environment.
//!
//! # Transactions and map growth
//! Every read is one read transaction; every mutation is exactly one write transaction, so a process killed at
//! any point leaves the previous or the new version, never a half-written record. Write transactions are
//! serialised across processes by LMDB's lock file.
//!
//! The map starts at [`INITIAL_MAP_SIZE`] (16 MiB). When a transaction fails with `MDB_MAP_FULL` it is aborted,
//! the map is doubled and the whole transaction is re-run. When another process grew the file beyond this
//! process's map, LMDB reports `MDB_MAP_RESIZED` on the next transaction; the map is then adopted from the file
//! and the transaction retried. Resizing needs no transaction of the environment to be active in this process:
//! every transaction holds a shared "gate" lock and a resize holds it exclusively.
//!
//! # Memory
//! LMDB reads through a shared, read-only map of the file, and the kernel maps up to 64 KiB around every page
//! fault, so a listing of every container would leave the whole file resident (≈ 9 MB for 10 000
//! containers, most of `rpod ps -a`'s memory). A read transaction therefore gives the map's pages back
//! (`MADV_DONTNEED`) every [`RELEASE_PAGES_EVERY`] values it has read: resident memory stays at a window of
//! a few hundred records, the data stays in the page cache, and pointers into the map stay valid (the next
//! access maps the same page again). The map's address comes from `/proc/self/maps`: the shared mapping
//! that contains a pointer LMDB returned (see `sys::find_map`); if it cannot be found, nothing is released.

mod sys;

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use heed::types::Bytes;
use heed::{Database, Env, MdbError, RoTxn, RwTxn, WithoutTls};

use crate::error::{Result, StateError};
use crate::logic::{self, ReadTables, ScanFn, Table, WriteTables};
use crate::records::{
    ContainerConfig, ContainerRecord, ContainerState, DbConfig, PodConfig, PodRecord, PodState,
};
use crate::State;

/// File name of the database inside the static directory.
pub const DB_FILE_NAME: &str = "rpod_state.mdb";

/// Initial size of the memory map (the map doubles whenever it is full).
pub const INITIAL_MAP_SIZE: usize = 16 << 20;

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

/// One open LMDB environment with its database handles, shared by every [`LmdbState`] on the same file.
struct SharedEnv {
    env: Env<WithoutTls>,
    dbs: Vec<Db>,
    path: PathBuf,
    /// Held shared by every transaction, exclusively by a map resize.
    gate: RwLock<()>,
    /// Where the map is (`sys::find_map`), once found; reset by a resize (which holds `gate`
    /// exclusively). A failed lookup is not remembered, so it is tried again.
    map: Mutex<Option<(usize, usize)>>,
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

fn lmdb_err(path: &Path, op: &'static str, e: heed::Error) -> StateError {
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

fn is_map_full(e: &heed::Error) -> bool {
    matches!(e, heed::Error::Mdb(MdbError::MapFull))
}

impl SharedEnv {
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

    fn db(&self, t: Table) -> Result<Db> {
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
    fn with_write_txn<T>(&self, mut f: impl FnMut(&mut RwTxn<'_>) -> Result<T>) -> Result<T> {
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

    fn with_read_txn<T>(
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

    fn view<T>(&self, f: impl FnOnce(&dyn ReadTables) -> Result<T>) -> Result<T> {
        self.with_read_txn(|rtxn, gate| {
            f(&Reader {
                txn: rtxn,
                shared: self,
                gate,
                reads: Cell::new(0),
                inside: Cell::new(0),
            })
        })
    }

    fn update<T>(&self, mut f: impl FnMut(&mut dyn WriteTables) -> Result<T>) -> Result<T> {
        self.with_write_txn(|wtxn| {
            f(&mut Writer {
                txn: wtxn,
                shared: self,
            })
        })
    }
}

fn get_in<'t>(
    shared: &SharedEnv,
    txn: &'t RoTxn<'_>,
    t: Table,
    key: &[u8],
) -> Result<Option<&'t [u8]>> {
    shared
        .db(t)?
        .get(txn, key)
        .map_err(|e| lmdb_err(&shared.path, "reading", e))
}

fn scan_in(
    shared: &SharedEnv,
    txn: &RoTxn<'_>,
    t: Table,
    prefix: &[u8],
    f: &mut ScanFn<'_>,
) -> Result<()> {
    let db = shared.db(t)?;
    let err = |e| lmdb_err(&shared.path, "scanning", e);
    // LMDB rejects an empty key for MDB_SET_RANGE, so "everything" is a plain iteration.
    if prefix.is_empty() {
        for item in db.iter(txn).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if !f(k, v)? {
                break;
            }
        }
    } else {
        for item in db.prefix_iter(txn, prefix).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if !f(k, v)? {
                break;
            }
        }
    }
    Ok(())
}

struct Reader<'a, 't> {
    txn: &'a RoTxn<'t, WithoutTls>,
    shared: &'a SharedEnv,
    /// The environment's transaction gate, held shared for the whole read (the map cannot move).
    gate: &'a RwLockReadGuard<'a, ()>,
    /// Values read since the map's pages were last released.
    reads: Cell<u32>,
    /// The address of the last key or value read: a pointer into the map (0 = none yet).
    inside: Cell<usize>,
}

/// A read transaction gives the mapped pages back to the kernel after this many values (see
/// [`sys::release_mapped_pages`]): a listing of 10 000 containers would otherwise keep the whole database
/// file resident (the kernel maps up to 64 KiB around each page fault), which is most of `rpod ps -a`'s
/// memory. 512 values (256 containers: config and state) keep `rpod ps -a` of 10 000 containers at
/// ≈ 9.6 MiB peak and 23 ms (256: 8.9 MiB, 25 ms; 1024: 11.1 MiB, 20 ms).
const RELEASE_PAGES_EVERY: u32 = 512;

impl Reader<'_, '_> {
    fn count_read(&self) {
        let n = self.reads.get() + 1;
        if n < RELEASE_PAGES_EVERY {
            self.reads.set(n);
            return;
        }
        self.reads.set(0);
        let inside = self.inside.get();
        if inside == 0 {
            return;
        }
        let map = {
            let mut cached = self.shared.map.lock().unwrap_or_else(|e| e.into_inner());
            match *cached {
                Some((start, len)) if (start..start + len).contains(&inside) => Some((start, len)),
                _ => {
                    *cached = sys::find_map(&self.shared.env, inside);
                    *cached
                }
            }
        };
        let Some(map) = map else {
            tracing::debug!(path = %self.shared.path.display(), "LMDB map not found in /proc/self/maps");
            return;
        };
        if let Err(e) = sys::release_mapped_pages(&self.shared.env, map, self.gate) {
            tracing::debug!(path = %self.shared.path.display(), error = %e, "could not release mapped pages");
        }
    }
}

impl ReadTables for Reader<'_, '_> {
    fn path(&self) -> &Path {
        &self.shared.path
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
        let v = get_in(self.shared, self.txn, t, key)?;
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            self.inside.set(v.as_ptr() as usize);
        }
        self.count_read();
        Ok(v.map(Cow::Borrowed))
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], f: &mut ScanFn<'_>) -> Result<()> {
        scan_in(self.shared, self.txn, t, prefix, &mut |k, v| {
            // Keys are never empty; both point into the map.
            self.inside.set(k.as_ptr() as usize);
            self.count_read();
            f(k, v)
        })
    }
}

struct Writer<'a, 'e> {
    txn: &'a mut RwTxn<'e>,
    shared: &'a SharedEnv,
}

impl Writer<'_, '_> {
    fn write_err(&self, op: &'static str, e: heed::Error) -> StateError {
        if is_map_full(&e) {
            // Keep the raw MapFull so that `with_write_txn` grows the map and re-runs the transaction.
            StateError::Lmdb {
                op,
                path: self.shared.path.clone(),
                source: e,
            }
        } else {
            lmdb_err(&self.shared.path, op, e)
        }
    }
}

impl ReadTables for Writer<'_, '_> {
    fn path(&self) -> &Path {
        &self.shared.path
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
        Ok(get_in(self.shared, self.txn, t, key)?.map(Cow::Borrowed))
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], f: &mut ScanFn<'_>) -> Result<()> {
        scan_in(self.shared, self.txn, t, prefix, f)
    }
}

impl WriteTables for Writer<'_, '_> {
    fn put(&mut self, t: Table, key: &[u8], val: &[u8]) -> Result<()> {
        let db = self.shared.db(t)?;
        db.put(self.txn, key, val)
            .map_err(|e| self.write_err("writing", e))
    }

    fn delete(&mut self, t: Table, key: &[u8]) -> Result<()> {
        let db = self.shared.db(t)?;
        db.delete(self.txn, key)
            .map(|_| ())
            .map_err(|e| self.write_err("deleting", e))
    }
}

/// The state in an LMDB file, through heed.
///
/// # File and environment
/// The database is one file, `<static_dir>/rpod_state.mdb` ([`DB_FILE_NAME`]), plus LMDB's `rpod_state.mdb-lock`,
/// both mode 0600. It holds one named LMDB database per table of the [storage layout](crate#storage-layout) plus
/// `meta` (schema marker). A file that LMDB does not recognise, or an LMDB file of another program, is refused
/// with [`StateError::Damaged`] naming the file and saying to move it aside; a zero-length file is treated as
/// new.
///
/// LMDB allows one environment per file per process (heed returns `EnvAlreadyOpened` for a second open). This
/// module keeps a process-wide registry (`canonical path → Weak<SharedEnv>`): every [`LmdbState`] on the same
/// file shares one environment, which is closed when the last handle is closed or dropped. Each handle has its
/// own namespace (fixed when it is made: [`with_namespace`](LmdbState::with_namespace), [`State::view`]) and its
/// own closed flag.
///
/// # Transactions and map growth
/// Every read is one read transaction; every mutation is exactly one write transaction, so a process killed at
/// any point leaves the previous or the new version, never a half-written record. Write transactions are
/// serialised across processes by LMDB's lock file.
///
/// The map starts at [`INITIAL_MAP_SIZE`] (16 MiB). When a transaction fails with `MDB_MAP_FULL` it is aborted,
/// the map is doubled and the whole transaction is re-run. When another process grew the file beyond this
/// process's map, LMDB reports `MDB_MAP_RESIZED` on the next transaction; the map is then adopted from the file
/// and the transaction retried. Resizing needs no transaction of the environment to be active in this process:
/// every transaction holds a shared "gate" lock and a resize holds it exclusively.
///
/// Handles are cheap: open one per [`Runtime`](crate#what-this-crate-owns) and share it as `Box<dyn State>`.
#[derive(Debug)]
pub struct LmdbState {
    path: PathBuf,
    /// The shared environment; `None` once this handle is closed.
    shared: RwLock<Option<Arc<SharedEnv>>>,
    /// Fixed at creation ([`with_namespace`](Self::with_namespace), [`State::view`]).
    namespace: String,
}

impl LmdbState {
    /// Open (creating it and the directory if needed) `<static_dir>/rpod_state.mdb`.
    pub fn open(static_dir: impl AsRef<Path>) -> Result<LmdbState> {
        let dir = static_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            op: "creating the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open_file(dir.join(DB_FILE_NAME))
    }

    /// Open (creating it if needed) the database file at `path`; its directory must exist.
    pub fn open_file(path: impl AsRef<Path>) -> Result<LmdbState> {
        let path = path.as_ref();
        let (dir, file) = match (path.parent(), path.file_name()) {
            (Some(dir), Some(file)) => (
                if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                },
                file,
            ),
            _ => {
                return Err(StateError::InvalidArg(format!(
                    "{} is not a file path",
                    path.display()
                )))
            }
        };
        let dir = std::fs::canonicalize(dir).map_err(|source| StateError::Io {
            op: "resolving the state directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(file);
        if let Ok(md) = std::fs::metadata(&path) {
            if !md.is_file() {
                return Err(StateError::Damaged {
                    path,
                    reason: "it is not a regular file".into(),
                });
            }
        }
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        let shared = match reg.get(&path).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let shared = SharedEnv::open(&path)?;
                reg.insert(path.clone(), Arc::downgrade(&shared));
                shared
            }
        };
        drop(reg);
        Ok(LmdbState {
            path,
            shared: RwLock::new(Some(shared)),
            namespace: String::new(),
        })
    }

    /// The same handle restricted to `namespace` (`""` = every namespace); see the
    /// [namespace rules](State#namespaces). Use [`State::view`] for a second handle on the same file.
    #[must_use]
    pub fn with_namespace(self, namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            ..self
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current size of the memory map in bytes (grows by doubling).
    pub fn map_size(&self) -> Result<usize> {
        Ok(self.env()?.env.info().map_size)
    }

    fn env(&self) -> Result<Arc<SharedEnv>> {
        self.shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StateError::DbClosed)
    }

    fn with_read<T>(&self, f: impl FnOnce(&dyn ReadTables, &str) -> Result<T>) -> Result<T> {
        self.env()?.view(|r| f(r, &self.namespace))
    }

    fn with_write<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTables, &str) -> Result<T>,
    ) -> Result<T> {
        self.env()?.update(|w| f(w, &self.namespace))
    }
}

impl State for LmdbState {
    fn close(&self) -> Result<()> {
        self.shared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(())
    }

    fn refresh(&self) -> Result<()> {
        self.with_write(|w, _| logic::refresh(w))
    }

    fn get_db_config(&self) -> Result<DbConfig> {
        self.with_read(|r, _| logic::get_db_config(r))
    }

    fn validate_db_config(&self, ours: &DbConfig) -> Result<()> {
        // Every rpod command validates at start-up; only the first one on a new database has
        // anything to write, so check in a read transaction and take the writer lock only then.
        if self
            .with_read(|r, _| logic::db_config_missing(r, ours))?
            .is_empty()
        {
            return Ok(());
        }
        self.with_write(|w, _| logic::validate_db_config(w, ours))
    }

    fn namespace(&self) -> Result<String> {
        self.env()?;
        Ok(self.namespace.clone())
    }

    fn view(&self, namespace: &str) -> Result<Box<dyn State>> {
        Ok(Box::new(LmdbState {
            path: self.path.clone(),
            shared: RwLock::new(Some(self.env()?)),
            namespace: namespace.to_string(),
        }))
    }

    state_record_methods!();
}
