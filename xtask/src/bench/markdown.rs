//! Writing reports into BENCHMARKS.md: each report replaces its own section,
//! the text between two marker lines, leaving the rest of the file as it is.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::util;

/// File that `--write` updates, relative to the repository root.
const BENCHMARKS_MD: &str = "BENCHMARKS.md";

/// A section of BENCHMARKS.md that `--write` replaces: the text between two
/// marker lines, under a `## heading` when the markers have to be added.
pub(super) struct Section {
    /// The marker line before the section.
    pub(super) start: &'static str,
    /// The marker line after the section.
    pub(super) end: &'static str,
    /// The `##` heading put above the markers when they are added.
    pub(super) heading: &'static str,
}

/// The whole-command section.
pub(super) const WHOLE_COMMANDS: Section = Section {
    start: "<!-- bench:whole-commands:start -->",
    end: "<!-- bench:whole-commands:end -->",
    heading: "Whole commands",
};

/// `doc` with the text between the markers of `which` replaced by
/// `section`; a missing file or missing markers get them added.
fn replace_section(doc: Option<&str>, which: &Section, section: &str) -> String {
    let (start_marker, end_marker) = (which.start, which.end);
    let block = format!("{start_marker}\n{}\n{end_marker}", section.trim_end());
    let heading = which.heading;
    let Some(doc) = doc else {
        return format!(
            "# rpod benchmarks\n\n\
             Numbers are produced by `cargo xtask bench --write` (rpod and podman \
             measured in the same run on the same host); criterion benches of the \
             libraries run with `cargo xtask bench --criterion --write`.\n\n\
             ## {heading}\n\n{block}\n"
        );
    };
    if let Some(start) = doc.find(start_marker) {
        if let Some(end_rel) = doc[start..].find(end_marker) {
            let end = start + end_rel + end_marker.len();
            return format!("{}{block}{}", &doc[..start], &doc[end..]);
        }
    }
    let mut out = doc.trim_end().to_string();
    out.push_str(&format!("\n\n## {heading}\n\n{block}\n"));
    out
}

/// Replaces the section `which` of the repository's BENCHMARKS.md with
/// `section` and says so.
pub(super) fn update(which: &Section, section: &str) -> Result<()> {
    let path = util::repo_root().join(BENCHMARKS_MD);
    write_section(&path, which, section)?;
    eprintln!("xtask bench: updated {}", path.display());
    Ok(())
}

/// Replaces the section `which` of `path` (atomically).
fn write_section(path: &Path, which: &Section, section: &str) -> Result<()> {
    let old = match fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = replace_section(old.as_deref(), which, section);
    let dir = path.parent().context("BENCHMARKS.md has no parent")?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    fs::write(tmp.path(), new)?;
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::criterion;

    #[test]
    fn section_replacement() {
        let (start, end) = (WHOLE_COMMANDS.start, WHOLE_COMMANDS.end);
        let fresh = replace_section(None, &WHOLE_COMMANDS, "table\n");
        assert!(fresh.starts_with("# rpod benchmarks"));
        assert!(fresh.contains(&format!("## Whole commands\n\n{start}\ntable\n{end}\n")));

        let doc = format!("intro\n{start}\nold\n{end}\ntail\n");
        assert_eq!(
            replace_section(Some(&doc), &WHOLE_COMMANDS, "new"),
            format!("intro\n{start}\nnew\n{end}\ntail\n")
        );

        let appended = replace_section(Some("# Title\n"), &WHOLE_COMMANDS, "new");
        assert_eq!(
            appended,
            format!("# Title\n\n## Whole commands\n\n{start}\nnew\n{end}\n")
        );

        // The two sections are independent.
        let (cs, ce) = (criterion::SECTION.start, criterion::SECTION.end);
        let both = replace_section(Some(&appended), &criterion::SECTION, "crit");
        assert_eq!(
            both,
            format!("{appended}\n## Criterion benches\n\n{cs}\ncrit\n{ce}\n")
        );
        let again = replace_section(Some(&both), &WHOLE_COMMANDS, "newer");
        assert!(again.contains(&format!("{start}\nnewer\n{end}")));
        assert!(again.contains(&format!("{cs}\ncrit\n{ce}")));
    }
}
