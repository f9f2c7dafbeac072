//! Segment names: the defaults, the per-`tmp_dir` names and validation.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::LockError;

/// Segment name used by root with the default `tmp_dir`.
pub const DEFAULT_SEGMENT_NAME: &str = "/rpod_lock";

/// Prefix of the segment name used by a rootless user with the default `tmp_dir` (followed by the UID).
pub const DEFAULT_ROOTLESS_SEGMENT_PREFIX: &str = "/rpod_rootless_lock_";

/// Longest name accepted by [`validate_segment_name`] (`NAME_MAX`).
pub const MAX_SEGMENT_NAME_LEN: usize = 255;

/// The name of the lock segment for a runtime.
///
/// * default `tmp_dir`: `/rpod_lock` for root, `/rpod_rootless_lock_<uid>` for a rootless user;
/// * any other `tmp_dir`: `/rpod_lock_<h>` or `/rpod_rootless_lock_<uid>_<h>`, where `<h>` is 16 lowercase hex
///   digits of the FNV-1a 64 hash of the `tmp_dir` path (after normalising repeated and trailing `/` and `.`
///   components), so two runtimes with separate state never share a lock table.
///
/// The hash is stable across Rust releases and platforms. Pass an absolute path, ideally the canonical one: two
/// spellings of one directory (e.g. through a symlink) give two names.
///
/// ```
/// use std::path::Path;
/// use rpod_lock::default_segment_name;
///
/// assert_eq!(default_segment_name(Path::new("/run/libpod"), true, None), "/rpod_lock");
/// assert_eq!(default_segment_name(Path::new("/run/user/1000/libpod"), true, Some(1000)), "/rpod_rootless_lock_1000");
/// let custom = default_segment_name(Path::new("/tmp/test-state"), false, None);
/// assert!(custom.starts_with("/rpod_lock_") && custom.len() == "/rpod_lock_".len() + 16);
/// ```
pub fn default_segment_name(
    tmp_dir: &Path,
    default_tmp_dir: bool,
    rootless_uid: Option<u32>,
) -> String {
    let base = match rootless_uid {
        Some(uid) => format!("{DEFAULT_ROOTLESS_SEGMENT_PREFIX}{uid}"),
        None => DEFAULT_SEGMENT_NAME.to_owned(),
    };
    if default_tmp_dir {
        return base;
    }
    let normalised: PathBuf = tmp_dir.components().collect();
    format!(
        "{base}_{:016x}",
        fnv1a_64(normalised.as_os_str().as_bytes())
    )
}

/// Checks that `name` can be used with `shm_open`: it starts with `/`, has no other `/`, is not just `/`, has no
/// NUL byte and is at most [`MAX_SEGMENT_NAME_LEN`] bytes.
pub fn validate_segment_name(name: &str) -> Result<(), LockError> {
    let reason = if !name.starts_with('/') {
        Some("it must start with '/'")
    } else if name.len() == 1 {
        Some("it must have at least one character after '/'")
    } else if name[1..].contains('/') {
        Some("it must not contain '/' after the first character")
    } else if name.len() > MAX_SEGMENT_NAME_LEN {
        Some("it must be at most 255 bytes long")
    } else if name.contains('\0') || name == "/." || name == "/.." {
        Some("it must not contain NUL bytes or be '.' or '..'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LockError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Where the segment called `name` lives on Linux: `/dev/shm<name>`.
pub fn segment_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// FNV-1a, 64-bit. Stable by definition (unlike `std`'s `DefaultHasher`).
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn names() {
        assert_eq!(
            default_segment_name(Path::new("/x"), true, None),
            "/rpod_lock"
        );
        assert_eq!(
            default_segment_name(Path::new("/x"), true, Some(1000)),
            "/rpod_rootless_lock_1000"
        );
        let a = default_segment_name(Path::new("/run/a"), false, None);
        let a2 = default_segment_name(Path::new("/run//a/"), false, None);
        let b = default_segment_name(Path::new("/run/b"), false, None);
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_eq!(a, format!("/rpod_lock_{:016x}", fnv1a_64(b"/run/a")));
        let r = default_segment_name(Path::new("/run/a"), false, Some(7));
        assert_eq!(
            r,
            format!("/rpod_rootless_lock_7_{:016x}", fnv1a_64(b"/run/a"))
        );
        for n in [&a, &b, &r] {
            assert!(validate_segment_name(n).is_ok());
        }
    }

    #[test]
    fn validation() {
        for bad in [
            "",
            "/",
            "x",
            "rpod",
            "/a/b",
            "/a\0",
            "/..",
            &format!("/{}", "a".repeat(255)),
        ] {
            let err = validate_segment_name(bad);
            assert!(
                matches!(err, Err(LockError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(validate_segment_name(&format!("/{}", "a".repeat(254))).is_ok());
        assert!(validate_segment_name("/rpod_lock").is_ok());
    }
}
