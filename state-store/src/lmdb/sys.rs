//! The only `unsafe` code of the crate: opening an LMDB environment and resizing its memory map.
//!
//! heed marks both `unsafe` because LMDB maps the file into memory: undefined behaviour follows if the file is
//! modified behind LMDB's back, if unsafe flags disable its locking, or if the map is resized while a
//! transaction of the same environment is active. The callers uphold these conditions as stated below.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use heed::{Env, EnvFlags, EnvOpenOptions, WithoutTls};

/// Open (or create) the single-file environment at `path` (`NO_SUB_DIR`: the data file plus `<path>-lock`),
/// with mode 0600 (heed's fixed mode), read transactions not tied to threads (`NO_TLS`).
pub(super) fn open_env(
    path: &Path,
    map_size: usize,
    max_dbs: u32,
) -> heed::Result<Env<WithoutTls>> {
    let mut opts = EnvOpenOptions::new().read_txn_without_tls();
    opts.map_size(map_size).max_dbs(max_dbs);
    // SAFETY: `NO_SUB_DIR` only changes the file layout (no directory, `-lock` suffix). It is not one of the
    // flags that weaken LMDB's guarantees (`NO_SYNC`, `NO_META_SYNC`, `NO_LOCK`, `WRITE_MAP` + `MAP_ASYNC`).
    unsafe {
        opts.flags(EnvFlags::NO_SUB_DIR);
    }
    // SAFETY: the file is only ever accessed through LMDB with its lock file (no `NO_LOCK`), so readers and
    // writers in every process are coordinated by LMDB itself; this crate never writes or truncates it by other
    // means. The crate keeps one environment per path per process (the registry in `lmdb::registry`, and heed
    // refuses a second one with `EnvAlreadyOpened`). The state directory is documented to be on a local
    // filesystem, as LMDB requires.
    unsafe { opts.open(path) }
}

/// Resize the map of `env` to `new_size` bytes (0 = adopt the size another process recorded).
///
/// `_exclusive` proves that the caller holds the environment's transaction gate exclusively: every
/// transaction of this environment in this process is begun and finished while holding the gate shared, so
/// none is active now, which is LMDB's precondition for `mdb_env_set_mapsize`.
pub(super) fn resize(
    env: &Env<WithoutTls>,
    new_size: usize,
    _exclusive: &RwLockWriteGuard<'_, ()>,
) -> heed::Result<()> {
    // SAFETY: no transaction of `env` is active in this process (see `_exclusive` above); other processes are
    // unaffected by a resize of this process's map.
    unsafe { env.resize(new_size) }
}

/// The environment's memory map as the kernel lists it in `/proc/self/maps`: `(start, length)` of the
/// shared mapping at file offset 0, at least the map size long, that contains `inside`, an address
/// LMDB handed out in a read transaction of `env` (read transactions only ever return pointers into
/// the map). LMDB's own `mdb_env_info` reports the map address only for `MDB_FIXEDMAP` environments,
/// and matching by address (not by device and inode) also works where `stat` and the mapping disagree
/// on the device (overlayfs, btrfs subvolumes). `None` when not found.
pub(super) fn find_map(env: &Env<WithoutTls>, inside: usize) -> Option<(usize, usize)> {
    let want_size = env.info().map_size;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
        let (start, end) = range.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        let ours = (start..end).contains(&inside)
            && perms.as_bytes().get(3) == Some(&b's')
            && u64::from_str_radix(offset, 16).ok()? == 0
            && end.checked_sub(start)? >= want_size;
        ours.then_some((start, end - start))
    })
}

/// Drop this process's page-table entries for the environment's memory map (`MADV_DONTNEED`), so that a
/// long read (listing every container) does not keep the whole file resident: each page is mapped while it
/// is read and then given back. The data stays in the page cache; the next access maps it again.
///
/// Returns the `madvise` error, if any (callers only log it: releasing is an optimisation).
/// `map` is what [`find_map`] returned for `env` with an address from a read transaction of `env`, found
/// after its last resize: the caller holds the environment's transaction gate (shared) across both, so the
/// map has not moved since.
pub(super) fn release_mapped_pages(
    _env: &Env<WithoutTls>,
    map: (usize, usize),
    _gate: &RwLockReadGuard<'_, ()>,
) -> std::io::Result<()> {
    let (start, len) = map;
    // SAFETY: `start .. start + len` is the mapping LMDB created for this environment with
    // `mmap(PROT_READ, MAP_SHARED, fd)` (the environment is opened without `WRITE_MAP`, see `open_env`), as the
    // kernel listed it (`find_map`: the shared mapping at offset 0 containing memory LMDB returned from this
    // environment's read transaction). It stays mapped and in place while `_env` is
    // borrowed and `_gate` is held: LMDB only unmaps on close (the environment is alive) and remaps on resize,
    // which needs the gate exclusively; a resize also makes the caller look the map up again. For a shared file mapping, `MADV_DONTNEED`
    // only removes page-table entries: no memory that references may point to is freed, and the next access
    // faults the same page-cache page back in, with the file's current contents. Pages of the snapshot an
    // active read transaction sees are never rewritten by LMDB while that transaction lives (MVCC), so every
    // pointer into the map reads the same bytes before and after.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
