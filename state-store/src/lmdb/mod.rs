//! [`LmdbState`]: the persistent state in an LMDB file, through heed. The struct's documentation gives the
//! rules (file, environment sharing, transactions, map growth); this module owns the handle and the trait
//! implementation, [`env`] the shared environment (registry, schema, transaction loops, map growth),
//! [`tables`] the table access inside a transaction (and giving mapped pages back), [`check`] the check of
//! the file before LMDB maps it, and [`sys`] the only `unsafe` code.

mod check;
mod env;
mod sys;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StateError};
use crate::handle::Handle;
use crate::logic::{self, ReadTables, WriteTables};
use crate::records::{
    ContainerConfig, ContainerRecord, ContainerState, DbConfig, PodConfig, PodRecord, PodState,
};
use crate::State;
use env::SharedEnv;

/// File name of the database inside the static directory.
pub const DB_FILE_NAME: &str = "rpod_state.mdb";

/// Initial size of the memory map (the map doubles whenever it is full).
pub const INITIAL_MAP_SIZE: usize = 16 << 20;

/// The state in an LMDB file, through heed.
///
/// # File and environment
/// The database is one file, `<static_dir>/rpod_state.mdb` ([`DB_FILE_NAME`]), plus LMDB's `rpod_state.mdb-lock`,
/// both mode 0600. It holds one named LMDB database per table of the [storage layout](crate#storage-layout) plus
/// `meta` (schema marker). Only a missing file is a new database. Before LMDB maps an existing file, its meta
/// pages are read with plain reads and a file that is empty, truncated (shorter than the last page LMDB
/// recorded, where that page is in use) or not LMDB is refused; so is an LMDB file of another program. The
/// error is [`StateError::Damaged`] ([`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt)), naming the file and
/// the way back (`rpod system reset --force`). The check is repeated (one `fstat`, two small reads) on every
/// open, also of an environment already open in this process; a file truncated while it is mapped is not
/// detected and kills the process with `SIGBUS` on the next access to a missing page. A stale or damaged
/// `-lock` file is re-initialised by LMDB when no process has the database open.
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
    /// The shared environment, this handle's namespace (fixed at creation) and closed flag.
    handle: Handle<SharedEnv>,
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
        let shared = SharedEnv::get_or_open(&path)?;
        Ok(LmdbState {
            path,
            handle: Handle::new(shared),
        })
    }

    /// The same handle restricted to `namespace` (`""` = every namespace); see the
    /// [namespace rules](State#namespaces). Use [`State::view`] for a second handle on the same file.
    #[must_use]
    pub fn with_namespace(self, namespace: &str) -> Self {
        Self {
            handle: self.handle.with_namespace(namespace),
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
        self.handle.data()
    }

    fn with_read<T>(&self, f: impl FnOnce(&dyn ReadTables, &str) -> Result<T>) -> Result<T> {
        self.env()?.view(|r| f(r, self.handle.namespace()))
    }

    fn with_write<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTables, &str) -> Result<T>,
    ) -> Result<T> {
        self.env()?.update(|w| f(w, self.handle.namespace()))
    }
}

impl State for LmdbState {
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

    fn view(&self, namespace: &str) -> Result<Box<dyn State>> {
        Ok(Box::new(LmdbState {
            path: self.path.clone(),
            handle: self.handle.view(namespace)?,
        }))
    }

    state_record_methods!();
}
