//! Checking the database file with plain reads (no memory map) before LMDB maps it.
//!
//! LMDB maps the whole file and trusts it: a page it needs that lies beyond the end of the file (a file
//! truncated behind its back) kills the process with `SIGBUS` on first access, and an existing but empty
//! file is silently initialised as a new database. So before a file is handed to LMDB, [`check_file`]
//! reads its two meta pages (LMDB's `MDB_meta`, at offsets 0 and the page size) with `pread` and refuses,
//! with [`StateError::Damaged`] naming the file, one that:
//!
//! * is empty (only a missing file is a new database),
//! * is shorter than its two meta pages,
//! * does not carry LMDB's magic `0xBEEFC0DE` or data format version 1, or has an impossible page size,
//! * is shorter than `(mm_last_pg + 1) × page size`, the end of the last page its newest meta page records,
//!   unless every page beyond the end of the file is listed as free in the free-page database (LMDB does not
//!   write pages that a transaction allocated and freed again, so a healthy file may end a few free pages
//!   early; that list is walked, again with plain reads, only in that case).
//!
//! The common case costs one `open`, one `fstat` and two small reads, so it is repeated on every
//! [`LmdbState::open`](super::LmdbState::open), also when the environment is already open in this process.
//!
//! # Residual race
//! A file that is truncated *after* the check (by another process, while this one has it mapped) is not
//! detected: LMDB's next access to a page beyond the new end of the file raises `SIGBUS`. Nothing short of
//! reading through `pread` instead of the map prevents that; the state files are rpod's own and must only be
//! removed with `rpod system reset`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind as IoErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, StateError};

/// `offsetof(MDB_page, mp_ptrs)` on 64-bit platforms.
const PAGE_HEADER: usize = 16;
/// `sizeof(MDB_page header) + sizeof(MDB_meta)` on 64-bit platforms: what LMDB reads of each meta page.
const META_BUF: usize = PAGE_HEADER + 136;
/// `MDB_MAGIC`.
const MAGIC: u32 = 0xBEEF_C0DE;
/// `MDB_DATA_VERSION` of the LMDB this crate links.
const DATA_VERSION: u32 = 1;
/// `MAX_PAGESIZE`.
const MAX_PAGE_SIZE: u64 = 0x8000;
/// `P_INVALID`: the root of an empty tree.
const NO_PAGE: u64 = u64::MAX;

const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
/// `F_BIGDATA`: the node's data is on overflow pages.
const F_BIGDATA: u16 = 0x01;
/// `NODESIZE`.
const NODE_HEADER: usize = 8;
/// Deeper B-trees than this do not fit in any file (and signal a loop in a damaged one).
const MAX_DEPTH: usize = 64;

/// How long a file that looks half-created is watched while another process holds LMDB's lock
/// (it may be creating the database right now).
const CREATION_WAIT: Duration = Duration::from_secs(2);

/// The fields of LMDB's newest meta page that the check needs.
#[derive(Debug, Clone, Copy)]
struct Meta {
    page_size: u64,
    free_root: u64,
    last_page: u64,
    txnid: u64,
}

/// What is wrong with the file, before it becomes [`StateError::Damaged`].
#[derive(Debug)]
enum Damage {
    /// The file could not be read at all.
    Io(&'static str, std::io::Error),
    /// Zero bytes.
    Empty,
    /// Too short for the two meta pages (`need` bytes, when the page size is known).
    ShortMeta {
        len: u64,
        need: Option<u64>,
        /// Its first meta page is LMDB's initial one (transaction 0, nothing beyond the metas):
        /// a creation cut short, which holds no data.
        unfinished: bool,
    },
    /// Anything else, as a reason.
    Other(String),
    /// Pages in use lie beyond the end of the file.
    Truncated { len: u64, end: u64 },
}

impl Damage {
    /// A file in this state may be one another process is creating right now.
    fn may_be_in_creation(&self) -> bool {
        matches!(self, Damage::Empty | Damage::ShortMeta { .. })
    }

    fn into_error(self, path: &Path) -> StateError {
        let reason = match self {
            Damage::Io(op, source) => {
                return StateError::Io {
                    op,
                    path: path.to_path_buf(),
                    source,
                }
            }
            Damage::Empty => {
                "it is empty (0 bytes); only a missing file starts a new database".to_string()
            }
            Damage::ShortMeta { len, need, .. } => format!(
                "it is {}, shorter than LMDB's two meta pages{}: the file is truncated",
                bytes(len),
                need.map(|n| format!(" ({n} bytes)")).unwrap_or_default()
            ),
            Damage::Other(reason) => reason,
            Damage::Truncated { len, end } => format!(
                "it is {} but its last page ends at {end}: the file is truncated",
                bytes(len)
            ),
        };
        StateError::Damaged {
            path: path.to_path_buf(),
            reason,
        }
    }
}

fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

/// Check the database file at `path` (see the [module docs](self)) before LMDB maps it. A missing file is
/// fine (LMDB creates it). With `may_wait`, a file that looks like one being created (empty, or shorter than
/// its meta pages) is watched for up to two seconds while another process holds LMDB's lock on
/// `<path>-lock`; `may_wait` must be false while this process has an environment on `path` open (the check
/// opens and closes the lock file, which would drop this process's `fcntl` locks on it).
pub(super) fn check_file(path: &Path, may_wait: bool) -> Result<()> {
    let started = Instant::now();
    // The snapshot a damaged verdict was found in: a verdict is only given when two looks in a row
    // saw the same snapshot (a writer that commits meanwhile may reuse the free pages being read).
    let mut previous = None;
    let mut looks = 0;
    loop {
        let damage = match inspect(path) {
            Ok(None) => return Ok(()),
            Ok(Some((damage, txnid))) => {
                looks += 1;
                if previous != Some(txnid) && looks < 4 {
                    previous = Some(txnid);
                    continue;
                }
                damage
            }
            Err(damage) => damage,
        };
        if may_wait && damage.may_be_in_creation() && started.elapsed() < CREATION_WAIT {
            if let Some(pid) = lock_holder(path) {
                tracing::debug!(path = %path.display(), pid, "state database looks half-created and its lock is held: waiting");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            // Nobody holds the lock now; a creator may have finished in the meantime.
            if matches!(inspect(path), Ok(None)) {
                return Ok(());
            }
        }
        if let Damage::ShortMeta {
            unfinished: true, ..
        } = damage
        {
            // LMDB writes both initial meta pages when it creates the file; a file that has only
            // the first, still at transaction 0, is a creation that was killed: it holds no data
            // (records live after the meta pages), so it is removed and created again.
            if lock_holder(path).is_none() {
                tracing::warn!(path = %path.display(), "the state database's creation was cut short; creating it again");
                let _ = std::fs::remove_file(path);
                let mut lock = path.as_os_str().to_owned();
                lock.push("-lock");
                let _ = std::fs::remove_file(lock);
                return Ok(());
            }
        }
        return Err(damage.into_error(path));
    }
}

/// `Ok(None)`: missing or sound. `Ok(Some((damage, txnid)))`: damaged as seen in the snapshot of meta
/// transaction `txnid`. `Err`: damaged independently of any snapshot (the meta pages themselves).
fn inspect(path: &Path) -> std::result::Result<Option<(Damage, u64)>, Damage> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == IoErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Damage::Io("opening the state database to check it", e)),
    };
    let meta = read_meta(&file)?;
    // The size after the meta: a writer extends the file before it writes a meta page.
    let len = file
        .metadata()
        .map_err(|e| Damage::Io("inspecting the state database", e))?
        .len();
    let end = meta
        .last_page
        .checked_add(1)
        .and_then(|n| n.checked_mul(meta.page_size))
        .ok_or_else(|| {
            Damage::Other(format!(
                "its meta page records an impossible last page {}",
                meta.last_page
            ))
        })?;
    if len >= end {
        return Ok(None);
    }
    // Shorter than LMDB's recorded size: fine only if every missing page is free.
    let first_missing = len / meta.page_size;
    match missing_pages_in_use(&file, len, &meta, first_missing) {
        Ok(false) => Ok(None),
        Ok(true) => Ok(Some((Damage::Truncated { len, end }, meta.txnid))),
        Err(why) => Ok(Some((
            Damage::Other(format!(
                "it is {len} bytes but its last page ends at {end}, and its list of free pages cannot be read ({why}): the file is truncated or damaged"
            )),
            meta.txnid,
        ))),
    }
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(off..off + 8)?.try_into().ok()?))
}

/// Read `len` bytes at `off`; `None` if the file ends before.
fn read_exact_at(
    file: &File,
    off: u64,
    len: usize,
) -> std::result::Result<Option<Vec<u8>>, Damage> {
    let mut buf = vec![0u8; len];
    match file.read_exact_at(&mut buf, off) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == IoErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Damage::Io("reading the state database to check it", e)),
    }
}

/// Both meta pages, as LMDB's `mdb_env_read_header` reads them; the newer one is returned.
fn read_meta(file: &File) -> std::result::Result<Meta, Damage> {
    let len = file
        .metadata()
        .map_err(|e| Damage::Io("inspecting the state database", e))?
        .len();
    if len == 0 {
        return Err(Damage::Empty);
    }
    let first = match read_exact_at(file, 0, META_BUF)? {
        Some(first) => first,
        None => {
            // Too short for a meta page: say "not LMDB" rather than "truncated" if what is there
            // already shows that.
            let have = usize::try_from(len).unwrap_or(META_BUF).min(META_BUF);
            let prefix = read_exact_at(file, 0, have)?.unwrap_or_default();
            if let Some(magic) = u32_at(&prefix, 16).filter(|m| *m != MAGIC) {
                return Err(not_lmdb(magic));
            }
            return Err(Damage::ShortMeta {
                len,
                need: None,
                unfinished: false,
            });
        }
    };
    let m0 = parse_meta(&first, "first")?;
    let second = read_exact_at(file, m0.page_size, META_BUF)?.ok_or(Damage::ShortMeta {
        len,
        need: Some(2 * m0.page_size),
        unfinished: m0.txnid == 0 && m0.last_page <= 1,
    })?;
    let m1 = parse_meta(&second, "second")?;
    Ok(if m1.txnid > m0.txnid { m1 } else { m0 })
}

fn not_lmdb(magic: u32) -> Damage {
    Damage::Other(format!(
        "it is not an LMDB database (bad magic {magic:#010x}, expected {MAGIC:#010x})"
    ))
}

fn parse_meta(buf: &[u8], which: &str) -> std::result::Result<Meta, Damage> {
    let bad = |what: String| Damage::Other(format!("its {which} meta page {what}"));
    let field = |off| u64_at(buf, off).ok_or_else(|| bad("is cut short".into()));
    let magic = u32_at(buf, 16).ok_or_else(|| bad("is cut short".into()))?;
    if magic != MAGIC {
        return Err(if which == "first" {
            not_lmdb(magic)
        } else {
            bad(format!("has a bad magic {magic:#010x}"))
        });
    }
    let flags = u16_at(buf, 10).ok_or_else(|| bad("is cut short".into()))?;
    if flags & P_META == 0 {
        return Err(bad(format!(
            "is not marked as a meta page (flags {flags:#x})"
        )));
    }
    let version = u32_at(buf, 20).ok_or_else(|| bad("is cut short".into()))?;
    if version != DATA_VERSION {
        return Err(bad(format!(
            "records LMDB data format version {version}, this rpod reads version {DATA_VERSION}"
        )));
    }
    let page_size = u64::from(u32_at(buf, 40).ok_or_else(|| bad("is cut short".into()))?);
    if !page_size.is_power_of_two() || page_size < 2 * META_BUF as u64 || page_size > MAX_PAGE_SIZE
    {
        return Err(bad(format!("records an impossible page size {page_size}")));
    }
    Ok(Meta {
        page_size,
        free_root: field(80)?,
        last_page: field(136)?,
        txnid: field(144)?,
    })
}

/// Whether any page from `first_missing` up to the last page is in use, i.e. not listed in the free-page
/// database (LMDB's invariant: every page up to `mm_last_pg` is either in use or listed there), or is a
/// page of that database itself. `Err` says why the free-page database cannot be read.
fn missing_pages_in_use(
    file: &File,
    len: u64,
    meta: &Meta,
    first_missing: u64,
) -> std::result::Result<bool, String> {
    let psize = meta.page_size;
    let page_count = len / psize;
    let page_bytes = usize::try_from(psize).map_err(|e| e.to_string())?;
    // `None`: the page lies beyond the end of the file (it is in use: it belongs to the list).
    let read_page = |pgno: u64| -> std::result::Result<Option<Vec<u8>>, String> {
        if pgno >= page_count {
            return Ok(None);
        }
        match read_exact_at(file, pgno * psize, page_bytes) {
            Ok(p) => Ok(p),
            Err(Damage::Io(_, e)) => Err(e.to_string()),
            Err(_) => Err(format!("page {pgno} cannot be read")),
        }
    };
    let mut free: BTreeSet<u64> = BTreeSet::new();
    let mut visited = 0u64;
    let mut stack: Vec<(u64, usize)> = Vec::new();
    if meta.free_root != NO_PAGE {
        stack.push((meta.free_root, 0));
    }
    while let Some((pgno, depth)) = stack.pop() {
        visited += 1;
        if depth > MAX_DEPTH || visited > page_count {
            return Err("it loops".into());
        }
        let Some(page) = read_page(pgno)? else {
            return Ok(true);
        };
        let cut = || format!("page {pgno} is cut short");
        if u64_at(&page, 0) != Some(pgno) {
            return Err(format!("page {pgno} does not carry its own number"));
        }
        let flags = u16_at(&page, 10).ok_or_else(cut)?;
        let lower = usize::from(u16_at(&page, 12).ok_or_else(cut)?);
        let keys = lower.checked_sub(PAGE_HEADER).ok_or_else(cut)? / 2;
        for i in 0..keys {
            let node = usize::from(u16_at(&page, PAGE_HEADER + 2 * i).ok_or_else(cut)?);
            let lo = u64::from(u16_at(&page, node).ok_or_else(cut)?);
            let hi = u64::from(u16_at(&page, node + 2).ok_or_else(cut)?);
            let nflags = u16_at(&page, node + 4).ok_or_else(cut)?;
            let ksize = usize::from(u16_at(&page, node + 6).ok_or_else(cut)?);
            if flags & P_BRANCH != 0 {
                stack.push((lo | hi << 16 | u64::from(nflags) << 32, depth + 1));
                continue;
            }
            if flags & P_LEAF == 0 {
                return Err(format!(
                    "page {pgno} is neither a branch nor a leaf page (flags {flags:#x})"
                ));
            }
            let data_size = usize::try_from(lo | hi << 16).map_err(|e| e.to_string())?;
            let data_at = node + NODE_HEADER + ksize;
            let idl = if nflags & F_BIGDATA != 0 {
                let ov = u64_at(&page, data_at).ok_or_else(cut)?;
                let Some(head) = read_page(ov)? else {
                    return Ok(true);
                };
                let ovflags = u16_at(&head, 10).ok_or_else(|| format!("page {ov} is cut short"))?;
                let pages =
                    u64::from(u32_at(&head, 12).ok_or_else(|| format!("page {ov} is cut short"))?);
                if ovflags & P_OVERFLOW == 0 {
                    return Err(format!(
                        "page {ov} is not an overflow page (flags {ovflags:#x})"
                    ));
                }
                if ov.saturating_add(pages) > page_count {
                    return Ok(true);
                }
                match read_exact_at(file, ov * psize + PAGE_HEADER as u64, data_size) {
                    Ok(Some(d)) => d,
                    _ => return Err(format!("overflow page {ov} cannot be read")),
                }
            } else {
                page.get(data_at..data_at + data_size)
                    .ok_or_else(cut)?
                    .to_vec()
            };
            // An MDB_IDL: a count, then that many page numbers.
            let count = u64_at(&idl, 0).ok_or_else(cut)?;
            for j in 0..count {
                let off = usize::try_from(j + 1).map_err(|e| e.to_string())? * 8;
                let free_page = u64_at(&idl, off)
                    .ok_or_else(|| format!("a free list on page {pgno} is cut short"))?;
                if free_page >= first_missing {
                    free.insert(free_page);
                }
            }
        }
    }
    Ok((first_missing..=meta.last_page).any(|p| !free.contains(&p)))
}

/// The process that holds LMDB's lock on `<path>-lock` (any process with the environment open, or
/// creating it), if any.
fn lock_holder(path: &Path) -> Option<i32> {
    let mut lock = PathBuf::from(path).into_os_string();
    lock.push("-lock");
    let file = File::open(&lock).ok()?;
    // What LMDB's `mdb_env_excl_lock` takes: byte 0, exclusively while creating, shared while open.
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 1,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETLK(&mut probe)).ok()?;
    (probe.l_type != libc::F_UNLCK as libc::c_short).then_some(probe.l_pid)
}
