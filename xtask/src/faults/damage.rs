//! `cargo xtask faults --damage`: the damaged-state scenarios, run against
//! the binary. Each scenario gets a fresh sandbox with a created container
//! `c1` and a running one `c2`, damages one piece of state (the state
//! database truncated, emptied or overwritten with garbage, its `-lock`
//! file overwritten, the lock segment truncated, overwritten or removed,
//! the tmp dir wiped), then runs `ps -a`, `create`, `rm -f c1`,
//! `system reset --force` and `ps -a` again, recording each exit code,
//! signal deaths (e.g. SIGBUS from a truncated mapping), hangs and panics,
//! whether stderr names the damaged file, whether the first `ps -a` still
//! lists the containers, and what the reset left on the host (orphan
//! conmon, cgroups, ... as the fault trials check). The run fails only on a
//! panic, a signal death or a hang (unless `--report-only`).

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::killer::{Ending, Outcome};
use super::observe::{self, args};
use super::sandbox::{Round, Sandbox};
use super::schedule::Rng;
use super::{write_markdown, FaultsArgs};

/// Which piece of state a scenario damages.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The state database file.
    Db,
    /// The database's `-lock` file.
    DbLock,
    /// The lock segment in /dev/shm.
    Segment,
    /// The tmp dir.
    TmpDir,
}

/// What is done to it.
#[derive(Debug, Clone, Copy)]
enum Harm {
    /// Truncated to half its size.
    Half,
    /// Truncated to this many bytes.
    Truncate(u64),
    /// Overwritten with random bytes (same size).
    Garbage,
    /// Removed.
    Remove,
    /// Its contents removed (a directory).
    Wipe,
}

/// Every scenario: name, target, harm.
const SCENARIOS: &[(&str, Target, Harm)] = &[
    ("state DB truncated to half", Target::Db, Harm::Half),
    (
        "state DB truncated to 4096 bytes",
        Target::Db,
        Harm::Truncate(4096),
    ),
    (
        "state DB truncated to 1 byte",
        Target::Db,
        Harm::Truncate(1),
    ),
    ("state DB zero-length", Target::Db, Harm::Truncate(0)),
    ("state DB garbage", Target::Db, Harm::Garbage),
    (
        "stale DB -lock file (garbage)",
        Target::DbLock,
        Harm::Garbage,
    ),
    (
        "lock segment truncated to half",
        Target::Segment,
        Harm::Half,
    ),
    ("lock segment garbage", Target::Segment, Harm::Garbage),
    ("lock segment removed", Target::Segment, Harm::Remove),
    ("tmp dir wiped", Target::TmpDir, Harm::Wipe),
];

/// The commands run after the damage (the first three and the last are
/// checked for naming the file).
const COMMANDS: &[(&str, &[&str])] = &[
    ("ps -a", &["ps", "-a"]),
    (
        "create",
        &[
            "create",
            "--network",
            "none",
            "--name",
            "new",
            "--rootfs",
            "{rootfs}",
            "true",
        ],
    ),
    ("rm -f c1", &["rm", "-f", "c1"]),
    ("system reset --force", &["system", "reset", "--force"]),
    ("ps -a after reset", &["ps", "-a"]),
];

/// One scenario's results.
struct Row {
    name: &'static str,
    outcomes: Vec<Outcome>,
    names_file: bool,
    /// Whether the first `ps -a` still lists `c1` and `c2` (when it works).
    records_kept: Option<bool>,
    /// Kinds of leftover found after the reset (orphan conmon, ...).
    left: Vec<&'static str>,
    setup_error: Option<String>,
}

/// The static dir, as `rpod info` reports it.
fn static_dir(sb: &Sandbox) -> PathBuf {
    sb.rpod(&args(&["info", "--format", "json"]))
        .ok()
        .filter(Outcome::ok)
        .and_then(|o| serde_json::from_str::<Value>(&o.stdout).ok())
        .and_then(|v| v["store"]["staticDir"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| sb.static_dir())
}

/// Damages `path` as `harm` says.
fn damage(path: &Path, harm: Harm, rng: &mut Rng) -> Result<()> {
    match harm {
        Harm::Half | Harm::Truncate(_) => {
            let len = fs::metadata(path)?.len();
            let to = if let Harm::Truncate(n) = harm {
                n.min(len)
            } else {
                len / 2
            };
            OpenOptions::new().write(true).open(path)?.set_len(to)?;
        }
        Harm::Garbage => {
            let len = usize::try_from(fs::metadata(path)?.len())?;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
            fs::write(path, bytes)?;
        }
        Harm::Remove => fs::remove_file(path)?,
        Harm::Wipe => {
            for entry in fs::read_dir(path)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    fs::remove_dir_all(entry.path())?;
                } else {
                    fs::remove_file(entry.path())?;
                }
            }
        }
    }
    Ok(())
}

/// Runs one scenario in sandbox `tag`.
fn scenario(
    round: &Round,
    seq: u64,
    name: &'static str,
    target: Target,
    harm: Harm,
) -> Result<Row> {
    let sb = round.sandbox(&format!("d{seq}"), false)?;
    let rootfs = sb.rootfs.display().to_string();
    let mut row = Row {
        name,
        outcomes: Vec::new(),
        names_file: false,
        records_kept: None,
        left: Vec::new(),
        setup_error: None,
    };
    let long = "trap 'exit 0' TERM; sleep 1000 & wait";
    for step in [
        args(&[
            "create",
            "--network",
            "none",
            "--name",
            "c1",
            "--rootfs",
            &rootfs,
            "true",
        ]),
        args(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "c2",
            "--rootfs",
            &rootfs,
            "sh",
            "-c",
            long,
        ]),
    ] {
        let o = sb.rpod(&step)?;
        if !o.ok() {
            row.setup_error = Some(format!(
                "`{}` ({}): {}",
                o.line,
                o.ending.short(),
                o.first_err_line()
            ));
            return Ok(row);
        }
    }
    let path = match target {
        Target::Db => static_dir(&sb).join("rpod_state.mdb"),
        Target::DbLock => static_dir(&sb).join("rpod_state.mdb-lock"),
        Target::Segment => sb.segment(),
        Target::TmpDir => sb.tmp(),
    };
    let mut rng = Rng::new(0x5EED + seq);
    damage(&path, harm, &mut rng).with_context(|| format!("damaging {}", path.display()))?;
    let full = path.display().to_string();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (_, words) in COMMANDS {
        let argv: Vec<String> = words
            .iter()
            .map(|w| {
                if *w == "{rootfs}" {
                    rootfs.clone()
                } else {
                    (*w).to_string()
                }
            })
            .collect();
        let o = sb.rpod(&argv)?;
        if !o.ok()
            && (o.stderr.contains(&full)
                || (!file_name.is_empty() && o.stderr.contains(&file_name)))
        {
            row.names_file = true;
        }
        row.outcomes.push(o);
    }
    row.records_kept = row
        .outcomes
        .first()
        .filter(|o| o.ok())
        .map(|o| o.stdout.contains("c1") && o.stdout.contains("c2"));
    let mut left: Vec<&'static str> = observe::check(&sb, &round.segment_prefix(), "after reset")
        .iter()
        .map(|v| v.kind.name())
        .collect();
    left.sort_unstable();
    left.dedup();
    row.left = left;
    Ok(row)
}

/// A table cell for one command.
fn cell(o: &Outcome) -> String {
    let mut text = o.ending.short();
    if o.panicked() {
        text.push_str(" (panic)");
    }
    text
}

/// Whether the command died badly (panic, signal, hang).
fn fatal(o: &Outcome) -> bool {
    o.panicked() || matches!(o.ending, Ending::Signal(_) | Ending::Hung)
}

/// Runs every scenario and prints the table.
pub fn run(round: &Round, opts: &FaultsArgs) -> Result<()> {
    let mut rows = Vec::new();
    for (seq, (name, target, harm)) in (0u64..).zip(SCENARIOS) {
        println!("xtask faults: damage: {name}");
        rows.push(scenario(round, seq, name, *target, *harm)?);
    }
    let mut text = String::new();
    let _ = write!(text, "| damage |");
    for (name, _) in COMMANDS {
        let _ = write!(text, " {name} |");
    }
    let _ = writeln!(
        text,
        " stderr names the file | reset ok | first `ps -a` lists c1, c2 | left after reset |"
    );
    let _ = writeln!(
        text,
        "|---|{}---|---|---|---|",
        "---|".repeat(COMMANDS.len())
    );
    let mut fatal_rows = 0;
    let mut details = String::new();
    for row in &rows {
        if let Some(e) = &row.setup_error {
            let _ = writeln!(
                text,
                "| {} | set-up failed: {} |",
                row.name,
                e.replace('|', "\\|")
            );
            fatal_rows += 1;
            continue;
        }
        let _ = write!(text, "| {} |", row.name);
        for o in &row.outcomes {
            let _ = write!(text, " {} |", cell(o));
        }
        let reset_ok = row.outcomes.get(3).is_some_and(Outcome::ok);
        let yes = |b: bool| if b { "yes" } else { "no" };
        let kept = row.records_kept.map_or("-", yes);
        let left = if row.left.is_empty() {
            "nothing".to_string()
        } else {
            row.left.join(", ")
        };
        // Only a failing command is expected to name the file.
        let any_failed = row.outcomes.iter().any(|o| !o.ok());
        let names = if any_failed { yes(row.names_file) } else { "-" };
        let _ = writeln!(text, " {names} | {} | {kept} | {left} |", yes(reset_ok));
        if row.outcomes.iter().any(fatal) {
            fatal_rows += 1;
        }
        for ((label, _), o) in COMMANDS.iter().zip(&row.outcomes) {
            if !o.ok() {
                let _ = writeln!(
                    details,
                    "- {}: `{label}` → {}: {}",
                    row.name,
                    cell(o),
                    o.first_err_line()
                );
            }
        }
    }
    if !details.is_empty() {
        let _ = write!(
            text,
            "\nFailed commands (first line of stderr):\n\n{details}"
        );
    }
    let text = round.hide_paths(&text);
    println!("\n{text}");
    if let Some(path) = &opts.write {
        write_markdown(path, "Damaged state", opts, &text)?;
    }
    if fatal_rows > 0 && !opts.report_only {
        bail!("{fatal_rows} damage scenario(s) ended in a panic, a signal death or a hang (--report-only to exit 0)");
    }
    Ok(())
}
