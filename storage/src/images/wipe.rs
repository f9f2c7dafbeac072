//! Removing a whole image store (`rpod system reset`), mounts first.

use std::path::{Path, PathBuf};

use super::StoreOptions;

/// The directories a store keeps under the graph root and run root.
fn store_dirs(options: &StoreOptions) -> Vec<PathBuf> {
    let g = &options.graph_root;
    let mut dirs = vec![g.join("images"), g.join("blobs")];
    for d in ["overlay", "vfs"] {
        dirs.push(g.join(d));
        dirs.push(g.join(format!("{d}-layers")));
        dirs.push(options.run_root.join(format!("{d}-layers")));
    }
    dirs.push(options.run_root.join("rpod-mounted"));
    dirs
}

/// Mount points at or below `root`, deepest first, from `/proc/self/mountinfo`.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(root))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount under the store's directories, then deletes them. Goes on after errors
/// and returns them all (each naming its path).
pub fn remove_store(options: &StoreOptions) -> Vec<String> {
    let mut errors = Vec::new();
    for dir in store_dirs(options) {
        for m in mounts_under(&dir) {
            if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                errors.push(format!("unmounting {}: {e}", m.display()));
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("removing {}: {e}", dir.display())),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
