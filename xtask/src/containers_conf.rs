//! Host setup for podman benchmarks: `/etc/containers/containers.conf` must
//! set `default_ulimits = []` in its `[containers]` table (podman's default
//! ulimits cannot be applied on this kind of host).
//!
//! The edit is minimal: everything except the `default_ulimits` key of the
//! `[containers]` table is kept byte for byte, and the file is replaced
//! atomically (temp file in the same directory + rename).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// The system-wide podman configuration file.
pub const PATH: &str = "/etc/containers/containers.conf";

const KEY: &str = "default_ulimits";
const WANTED_LINE: &str = "default_ulimits = []";

/// Whether `line` is a TOML table header (`[name]` or `[[name]]`), and if so
/// its name.
fn table_header(line: &str) -> Option<&str> {
    let line = strip_comment(line).trim();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(inner);
    Some(inner.trim())
}

/// `line` without a trailing `# comment` (quotes are respected).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// Whether `line` assigns `KEY`.
fn assigns_key(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix(KEY) else {
        return false;
    };
    rest.trim_start().starts_with('=')
}

/// Whether `line` is `default_ulimits = []` (modulo spacing and comments).
fn is_empty_array_assignment(line: &str) -> bool {
    strip_comment(line)
        .split_once('=')
        .is_some_and(|(_, value)| {
            value
                .chars()
                .filter(|c| !c.is_whitespace())
                .eq("[]".chars())
        })
}

/// Net `[`/`]` nesting change of a line, ignoring quoted text and comments.
fn bracket_depth_delta(line: &str) -> i32 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '#') => break,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// Returns `content` with `default_ulimits = []` set under `[containers]`,
/// or `None` if it is already set that way.
pub fn with_empty_default_ulimits(content: &str) -> Option<String> {
    let lines: Vec<&str> = content.lines().collect();
    let Some(header) = lines
        .iter()
        .position(|l| table_header(l) == Some("containers"))
    else {
        // No [containers] table: append one.
        let mut out = content.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("[containers]\n");
        out.push_str(WANTED_LINE);
        out.push('\n');
        return Some(out);
    };
    let table_end = lines[header + 1..]
        .iter()
        .position(|l| table_header(l).is_some())
        .map_or(lines.len(), |p| header + 1 + p);

    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 1);
    out.extend(lines[..=header].iter().map(|l| (*l).to_string()));
    let existing = lines[header + 1..table_end]
        .iter()
        .position(|l| assigns_key(l))
        .map(|p| header + 1 + p);
    match existing {
        Some(start) => {
            // The value may be a multi-line array: find where it closes.
            let mut end = start;
            let mut depth = bracket_depth_delta(lines[start]);
            while depth > 0 && end + 1 < table_end {
                end += 1;
                depth += bracket_depth_delta(lines[end]);
            }
            if start == end && is_empty_array_assignment(lines[start]) {
                return None;
            }
            out.extend(lines[header + 1..start].iter().map(|l| (*l).to_string()));
            let indent: String = lines[start]
                .chars()
                .take_while(|c| c.is_whitespace())
                .collect();
            out.push(format!("{indent}{WANTED_LINE}"));
            out.extend(lines[end + 1..].iter().map(|l| (*l).to_string()));
        }
        None => {
            out.push(WANTED_LINE.to_string());
            out.extend(lines[header + 1..].iter().map(|l| (*l).to_string()));
        }
    }
    let mut joined = out.join("\n");
    if content.ends_with('\n') || content.is_empty() {
        joined.push('\n');
    }
    Some(joined)
}

/// Makes sure `path` sets `default_ulimits = []` under `[containers]`,
/// creating the file (and its directory) if needed.
pub fn ensure_at(path: &Path) -> Result<()> {
    let (content, mode) = match fs::read_to_string(path) {
        Ok(c) => {
            let mode = fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644);
            (c, mode)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o644),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Some(new) = with_empty_default_ulimits(&content) else {
        eprintln!("xtask: {} already sets `{WANTED_LINE}`", path.display());
        return Ok(());
    };
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(new.as_bytes())?;
    tmp.as_file().sync_all()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    eprintln!(
        "xtask: set `{WANTED_LINE}` under [containers] in {}",
        path.display()
    );
    Ok(())
}

/// [`ensure_at`] for the system-wide [`PATH`].
pub fn ensure() -> Result<()> {
    ensure_at(Path::new(PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_from_empty() {
        assert_eq!(
            with_empty_default_ulimits("").as_deref(),
            Some("[containers]\ndefault_ulimits = []\n")
        );
    }

    #[test]
    fn appends_missing_table() {
        let input = "# comment\n[engine]\ncgroup_manager = \"cgroupfs\"";
        let want = "# comment\n[engine]\ncgroup_manager = \"cgroupfs\"\n\n[containers]\ndefault_ulimits = []\n";
        assert_eq!(with_empty_default_ulimits(input).as_deref(), Some(want));
    }

    #[test]
    fn inserts_key_under_existing_table() {
        let input = "[containers]\nlog_driver = \"k8s-file\"\n\n[engine]\nx = 1\n";
        let want =
            "[containers]\ndefault_ulimits = []\nlog_driver = \"k8s-file\"\n\n[engine]\nx = 1\n";
        assert_eq!(with_empty_default_ulimits(input).as_deref(), Some(want));
    }

    #[test]
    fn replaces_single_and_multi_line_values() {
        let input = "[containers]\n  default_ulimits = [\"nofile=1:2\"] # c\nb = 2\n";
        let want = "[containers]\n  default_ulimits = []\nb = 2\n";
        assert_eq!(with_empty_default_ulimits(input).as_deref(), Some(want));

        let input = "[containers]\ndefault_ulimits = [\n  \"nofile=1:2\", # ]\n  \"nproc=3:4\",\n]\nb = 2\n[engine]\n";
        let want = "[containers]\ndefault_ulimits = []\nb = 2\n[engine]\n";
        assert_eq!(with_empty_default_ulimits(input).as_deref(), Some(want));
    }

    #[test]
    fn ignores_commented_key_and_other_tables() {
        let input = "[engine]\ndefault_ulimits = [\"x\"]\n[containers]\n#default_ulimits = [\n#  \"nofile=1:2\",\n#]\n";
        let want = "[engine]\ndefault_ulimits = [\"x\"]\n[containers]\ndefault_ulimits = []\n#default_ulimits = [\n#  \"nofile=1:2\",\n#]\n";
        assert_eq!(with_empty_default_ulimits(input).as_deref(), Some(want));
    }

    #[test]
    fn idempotent() {
        let once = with_empty_default_ulimits("[containers]\ndefault_ulimits = [\"a\"]\n");
        let once = once.unwrap_or_default();
        assert_eq!(with_empty_default_ulimits(&once), None);
        assert_eq!(
            with_empty_default_ulimits("[ containers ] # x\n  default_ulimits=[ ] # ok\n"),
            None
        );
    }

    #[test]
    fn ensure_at_writes_atomically() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/containers.conf");
        ensure_at(&path)?;
        assert_eq!(
            fs::read_to_string(&path)?,
            "[containers]\ndefault_ulimits = []\n"
        );
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o644);
        fs::write(&path, "[engine]\nfoo = 1\n")?;
        ensure_at(&path)?;
        assert_eq!(
            fs::read_to_string(&path)?,
            "[engine]\nfoo = 1\n\n[containers]\ndefault_ulimits = []\n"
        );
        Ok(())
    }
}
