//! The only `unsafe` code of the crate: opening an LMDB environment and resizing its memory map.
//!
//! heed marks both `unsafe` because LMDB maps the file into memory: undefined behaviour follows if the file is
//! modified behind LMDB's back, if unsafe flags disable its locking, or if the map is resized while a
//! transaction of the same environment is active. The callers uphold these conditions as stated below.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::RwLockWriteGuard;

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
