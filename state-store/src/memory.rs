//! [`InMemoryState`]: the state in process memory, for tests of the layers above and for `--no-state` runs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::error::Result;
use crate::handle::Handle;
use crate::logic::{ReadTables, ScanFn, Table, WriteTables};
use crate::records::{
    ContainerConfig, ContainerRecord, ContainerState, DbConfig, PodConfig, PodRecord, PodState,
};
use crate::State;

const MEMORY_PATH: &str = "<memory>";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
struct Tables {
    maps: [Map; Table::ALL.len()],
}

impl Tables {
    fn map(&self, t: Table) -> &Map {
        &self.maps[t.index()]
    }
}

fn scan(map: &Map, prefix: &[u8], f: &mut ScanFn<'_>) -> Result<()> {
    for (k, v) in map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded)) {
        if !k.starts_with(prefix) || !f(k, v)? {
            break;
        }
    }
    Ok(())
}

impl ReadTables for Tables {
    fn path(&self) -> &Path {
        Path::new(MEMORY_PATH)
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
        Ok(self.map(t).get(key).map(|v| Cow::Borrowed(v.as_slice())))
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], f: &mut ScanFn<'_>) -> Result<()> {
        scan(self.map(t), prefix, f)
    }

    fn len(&self, t: Table) -> Result<u64> {
        Ok(self.map(t).len() as u64)
    }
}

/// A write "transaction" over the maps: every change is recorded in an undo log and rolled back unless the
/// operation succeeds, so that a failed mutation leaves nothing behind (the same all-or-nothing behaviour as an
/// LMDB write transaction).
struct Txn<'a> {
    tables: &'a mut Tables,
    undo: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl Txn<'_> {
    fn rollback(mut self) {
        while let Some((t, k, old)) = self.undo.pop() {
            let map = &mut self.tables.maps[t.index()];
            match old {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
    }
}

impl ReadTables for Txn<'_> {
    fn path(&self) -> &Path {
        Path::new(MEMORY_PATH)
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
        self.tables.get(t, key)
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], f: &mut ScanFn<'_>) -> Result<()> {
        self.tables.scan_prefix(t, prefix, f)
    }

    fn len(&self, t: Table) -> Result<u64> {
        self.tables.len(t)
    }
}

impl WriteTables for Txn<'_> {
    fn put(&mut self, t: Table, key: &[u8], val: &[u8]) -> Result<()> {
        let old = self.tables.maps[t.index()].insert(key.to_vec(), val.to_vec());
        self.undo.push((t, key.to_vec(), old));
        Ok(())
    }

    fn delete(&mut self, t: Table, key: &[u8]) -> Result<()> {
        if let Some(old) = self.tables.maps[t.index()].remove(key) {
            self.undo.push((t, key.to_vec(), Some(old)));
        }
        Ok(())
    }
}

/// The state kept in memory. It applies exactly the same rules as [`LmdbState`](crate::LmdbState) (both run
/// the crate's shared rule code), stores the same record encoding, and forgets everything when the last
/// handle on the data is closed or dropped. [`State::get_db_config`] returns an empty [`DbConfig`] and
/// [`State::validate_db_config`] accepts anything, as in libpod.
///
/// The tables sit behind one `RwLock` shared by this handle and its [views](State::view); each handle has
/// its own namespace (fixed at creation) and its own closed flag.
#[derive(Debug)]
pub struct InMemoryState {
    handle: Handle<RwLock<Tables>>,
}

impl Default for InMemoryState {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryState {
    /// An empty state that sees every namespace.
    pub fn new() -> Self {
        Self {
            handle: Handle::new(Arc::default()),
        }
    }

    /// The same handle restricted to `namespace` (`""` = every namespace); see the
    /// [namespace rules](State#namespaces). Use [`State::view`] for a second handle on the same data.
    #[must_use]
    pub fn with_namespace(self, namespace: &str) -> Self {
        Self {
            handle: self.handle.with_namespace(namespace),
        }
    }

    fn with_read<T>(&self, f: impl FnOnce(&Tables, &str) -> Result<T>) -> Result<T> {
        let data = self.handle.data()?;
        // A poisoned lock only means another thread panicked mid-operation; the undo log ran or the maps are
        // consistent per operation, so keep going (here and below).
        let g = data.read().unwrap_or_else(|e| e.into_inner());
        f(&g, self.handle.namespace())
    }

    fn with_write<T>(&self, f: impl FnOnce(&mut dyn WriteTables, &str) -> Result<T>) -> Result<T> {
        let data = self.handle.data()?;
        let mut g = data.write().unwrap_or_else(|e| e.into_inner());
        let mut txn = Txn {
            tables: &mut g,
            undo: Vec::new(),
        };
        match f(&mut txn, self.handle.namespace()) {
            Ok(v) => Ok(v),
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }
}

impl State for InMemoryState {
    fn get_db_config(&self) -> Result<DbConfig> {
        self.handle.data()?;
        Ok(DbConfig::default())
    }

    fn validate_db_config(&self, _ours: &DbConfig) -> Result<()> {
        self.handle.data()?;
        Ok(())
    }

    fn view(&self, namespace: &str) -> Result<Box<dyn State>> {
        Ok(Box::new(InMemoryState {
            handle: self.handle.view(namespace)?,
        }))
    }

    state_record_methods!();
}
