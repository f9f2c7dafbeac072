//! The container process' user: resolving `user[:group]` specs against the
//! rootfs' `/etc/passwd` and `/etc/group`.

use std::path::Path;

use crate::error::{OciError, Result};

/// A resolved process user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Home directory from `/etc/passwd` (when found).
    pub home: Option<String>,
}

/// A passwd/group database's text; unreadable counts as absent (no entries).
fn read_db(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Resolve a user spec (`""`, `uid`, `uid:gid`, `name`, `name:group`, ...)
/// against the rootfs' `/etc/passwd` and `/etc/group`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let passwd_path = rootfs.join("etc/passwd");
    let group_path = rootfs.join("etc/group");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = read_db(&passwd_path);
    // passwd entry: name:x:uid:gid:gecos:home:shell
    let entry = passwd.as_deref().and_then(|text| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let matches = if user_part.parse::<u32>().is_ok() {
                f[2] == user_part
            } else {
                f[0] == user_part
            };
            if !matches {
                return None;
            }
            let uid = f[2].parse::<u32>().ok()?;
            let gid = f[3].parse::<u32>().ok()?;
            Some((uid, gid, f.get(5).map(|h| h.to_string())))
        })
    });
    let (uid, default_gid, home) = match (user_part.parse::<u32>(), entry) {
        (_, Some((uid, gid, home))) => (uid, gid, home),
        (Ok(uid), None) => (uid, 0, None),
        (Err(_), None) => {
            return Err(OciError::UserNotFound {
                user: spec.to_string(),
                file: passwd_path,
                reason: "no matching entries in passwd file".into(),
            })
        }
    };
    let gid = match group_part {
        None | Some("") => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => read_db(&group_path)
                .and_then(|text| {
                    text.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        if f.len() >= 3 && f[0] == g {
                            f[2].parse::<u32>().ok()
                        } else {
                            None
                        }
                    })
                })
                .ok_or_else(|| OciError::UserNotFound {
                    user: spec.to_string(),
                    file: group_path.clone(),
                    reason: format!("no group {g:?}"),
                })?,
        },
    };
    Ok(ResolvedUser { uid, gid, home })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A rootfs with `/etc/passwd` (root, nobody, web) and `/etc/group` (webg, staff).
    pub(crate) fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let etc = d.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:1000:1001:web:/home/web:/bin/sh\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nnogroup:x:65534:\nwebg:x:1001:\nstaff:x:50:\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn users() {
        let r = rootfs();
        let u = |s: &str| resolve_user(r.path(), s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!((u("").uid, u("").gid), (0, 0));
        assert_eq!((u("web").uid, u("web").gid), (1000, 1001));
        assert_eq!(u("web").home.as_deref(), Some("/home/web"));
        assert_eq!((u("web:staff").uid, u("web:staff").gid), (1000, 50));
        assert_eq!((u("1000").uid, u("1000").gid), (1000, 1001));
        assert_eq!((u("1234:5").uid, u("1234:5").gid), (1234, 5));
        assert_eq!((u("1234").uid, u("1234").gid), (1234, 0));
        assert!(resolve_user(r.path(), "nosuch").is_err());
        assert!(resolve_user(r.path(), "web:nosuch").is_err());
    }
}
