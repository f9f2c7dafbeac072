//! Table access inside one LMDB transaction: [`Reader`] and [`Writer`] implement the rule code's
//! `ReadTables` / `WriteTables` over the environment's named databases.
//!
//! # Memory
//! LMDB reads through a shared, read-only map of the file, and the kernel maps up to 64 KiB around every page
//! fault, so a listing of every container would leave the whole file resident (≈ 9 MB for 10 000
//! containers, most of `rpod ps -a`'s memory). A read transaction therefore gives the map's pages back
//! (`MADV_DONTNEED`) every [`RELEASE_PAGES_EVERY`] values it has read: resident memory stays at a window of
//! a few hundred records, the data stays in the page cache, and pointers into the map stay valid (the next
//! access maps the same page again). The map's address comes from `/proc/self/maps`: the shared mapping
//! that contains a pointer LMDB returned (see `sys::find_map`); if it cannot be found, nothing is released.

use std::borrow::Cow;
use std::cell::Cell;
use std::path::Path;
use std::sync::RwLockReadGuard;

use heed::{RoTxn, RwTxn, WithoutTls};

use super::env::{is_map_full, lmdb_err, SharedEnv};
use super::sys;
use crate::error::{Result, StateError};
use crate::logic::{ReadTables, ScanFn, Table, WriteTables};

impl SharedEnv {
    /// Run `f` in one read transaction.
    pub(super) fn view<T>(&self, f: impl FnOnce(&dyn ReadTables) -> Result<T>) -> Result<T> {
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

    /// Run `f` in one write transaction (re-run if the map had to grow).
    pub(super) fn update<T>(
        &self,
        mut f: impl FnMut(&mut dyn WriteTables) -> Result<T>,
    ) -> Result<T> {
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

/// The number of entries of `t` (`mdb_stat`: read from the root page, not counted).
fn len_in(shared: &SharedEnv, txn: &RoTxn<'_>, t: Table) -> Result<u64> {
    shared
        .db(t)?
        .len(txn)
        .map_err(|e| lmdb_err(&shared.path, "counting", e))
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

    fn len(&self, t: Table) -> Result<u64> {
        len_in(self.shared, self.txn, t)
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

    fn len(&self, t: Table) -> Result<u64> {
        len_in(self.shared, self.txn, t)
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
