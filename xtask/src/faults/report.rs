//! The report of a fault-injection round: the table verb × trials ×
//! failures, the violation kinds with a trial that replays each, and the
//! list of every failed trial's violations (with seed, trial number and
//! delay), as markdown (printed, and written with `--write`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::invariants::Kind;
use super::killer::Ending;
use super::trials::TrialResult;

/// Everything the report needs.
pub struct Round<'a> {
    /// The round's seed.
    pub seed: u64,
    /// A `--network` round.
    pub network: bool,
    /// An `--images` round.
    pub images: bool,
    /// The verbs, in order, with their measured typical duration.
    pub verbs: Vec<(&'static str, Duration)>,
    /// The calibration runs (not killed).
    pub baseline: &'a [TrialResult],
    /// The trials.
    pub trials: &'a [TrialResult],
    /// The command that replays a trial, with `{seed}`, `{trial}` and
    /// `{delay}` to fill in.
    pub replay: &'a str,
}

fn ms(d: Duration) -> String {
    if d.is_zero() {
        // Not measured (`--delay-ms`).
        return "-".into();
    }
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The replay command of one trial.
fn replay(round: &Round<'_>, t: &TrialResult) -> String {
    let trial = t.plan.as_ref().map_or(0, |p| p.trial);
    let delay = t.delay.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    round
        .replay
        .replace("{seed}", &round.seed.to_string())
        .replace("{trial}", &trial.to_string())
        .replace("{delay}", &format!("{delay:.3}"))
}

/// How a trial is named in lists.
fn trial_label(t: &TrialResult) -> String {
    match &t.plan {
        Some(p) => format!(
            "trial {} ({}{}, delay {}, kill {}, verb {})",
            p.trial,
            t.verb,
            if t.published { " -p" } else { "" },
            t.delay.map_or_else(|| "-".into(), ms),
            p.mode.name(),
            if t.ending == Ending::Killed {
                "killed".to_string()
            } else {
                format!("ended first: {}", t.ending.short())
            }
        ),
        None => format!("run of {} without a kill", t.verb),
    }
}

/// The violations of one trial, grouped by kind and phase.
fn grouped(t: &TrialResult) -> Vec<String> {
    let mut groups: BTreeMap<(Kind, &str), Vec<&str>> = BTreeMap::new();
    for v in &t.violations {
        groups.entry((v.kind, v.phase)).or_default().push(&v.detail);
    }
    groups
        .into_iter()
        .map(|((kind, phase), details)| {
            let shown: Vec<&str> = details.iter().take(3).copied().collect();
            let more = if details.len() > 3 {
                format!(" (+{} more)", details.len() - 3)
            } else {
                String::new()
            };
            format!(
                "{} ×{} ({phase}): {}{more}",
                kind.name(),
                details.len(),
                shown.join("; ")
            )
        })
        .collect()
}

/// The whole report as markdown.
pub fn markdown(round: &Round<'_>) -> String {
    let mut out = String::new();
    let failed = |ts: &[&TrialResult]| ts.iter().filter(|t| !t.violations.is_empty()).count();
    let _ = writeln!(
        out,
        "Seed {} · {} trials · {} verbs{}{}\n",
        round.seed,
        round.trials.len(),
        round.verbs.len(),
        if round.network {
            " · on a CNI bridge network (a port published in half the trials)"
        } else {
            ""
        },
        if round.images {
            " · containers from an imported image, image verbs too"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "| verb | typical duration | trials | killed mid-verb | failed trials | baseline failed |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (verb, duration) in &round.verbs {
        let trials: Vec<&TrialResult> = round.trials.iter().filter(|t| t.verb == *verb).collect();
        let killed = trials.iter().filter(|t| t.ending == Ending::Killed).count();
        let base: Vec<&TrialResult> = round.baseline.iter().filter(|t| t.verb == *verb).collect();
        let _ = writeln!(
            out,
            "| {verb} | {} | {} | {killed} | {} | {}/{} |",
            ms(*duration),
            trials.len(),
            failed(&trials),
            failed(&base),
            base.len()
        );
    }
    let all: Vec<&TrialResult> = round.trials.iter().collect();
    let _ = writeln!(
        out,
        "| **all** | | {} | {} | {} | {}/{} |",
        all.len(),
        all.iter().filter(|t| t.ending == Ending::Killed).count(),
        failed(&all),
        failed(&round.baseline.iter().collect::<Vec<_>>()),
        round.baseline.len()
    );

    // Each kind: how many trials, which verbs, one trial to replay.
    let mut kinds: BTreeMap<Kind, Vec<&TrialResult>> = BTreeMap::new();
    for t in round.trials {
        let mut seen: Vec<Kind> = t.violations.iter().map(|v| v.kind).collect();
        seen.sort();
        seen.dedup();
        for k in seen {
            kinds.entry(k).or_default().push(t);
        }
    }
    let mut base_kinds: BTreeMap<Kind, usize> = BTreeMap::new();
    for t in round.baseline {
        let mut seen: Vec<Kind> = t.violations.iter().map(|v| v.kind).collect();
        seen.sort();
        seen.dedup();
        for k in seen {
            *base_kinds.entry(k).or_default() += 1;
        }
    }
    if !kinds.is_empty() || !base_kinds.is_empty() {
        let _ = writeln!(
            out,
            "\n| violation | trials | also without a kill | verbs | example | replay |"
        );
        let _ = writeln!(out, "|---|---:|---:|---|---|---|");
        let mut all_kinds: Vec<Kind> = kinds.keys().chain(base_kinds.keys()).copied().collect();
        all_kinds.sort();
        all_kinds.dedup();
        for kind in all_kinds {
            let ts = kinds.get(&kind).cloned().unwrap_or_default();
            let mut verbs: Vec<&str> = ts.iter().map(|t| t.verb).collect();
            verbs.dedup();
            verbs.sort_unstable();
            verbs.dedup();
            let example = ts
                .first()
                .and_then(|t| t.violations.iter().find(|v| v.kind == kind))
                .or_else(|| {
                    round
                        .baseline
                        .iter()
                        .flat_map(|t| &t.violations)
                        .find(|v| v.kind == kind)
                })
                .map_or_else(String::new, |v| format!("{} ({})", v.detail, v.phase));
            let replay_cmd = ts
                .first()
                .map_or_else(|| "-".to_string(), |t| format!("`{}`", replay(round, t)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                kind.name(),
                ts.len(),
                base_kinds.get(&kind).copied().unwrap_or(0),
                verbs.join(", "),
                example.replace('|', "\\|"),
                replay_cmd
            );
        }
    }

    // The baseline runs, folded: kind, phase, how many runs, which verbs.
    let mut folded: BTreeMap<(Kind, &str), Vec<&str>> = BTreeMap::new();
    for t in round.baseline {
        let mut seen: Vec<(Kind, &str)> = t.violations.iter().map(|v| (v.kind, v.phase)).collect();
        seen.sort();
        seen.dedup();
        for key in seen {
            folded.entry(key).or_default().push(t.verb);
        }
    }
    if !folded.is_empty() {
        let _ = writeln!(
            out,
            "
Without a kill (the runs that measured the durations):
"
        );
        for ((kind, phase), verbs) in &folded {
            let mut names = verbs.clone();
            names.sort_unstable();
            names.dedup();
            let _ = writeln!(
                out,
                "- {} ({phase}): {} of {} runs ({})",
                kind.name(),
                verbs.len(),
                round.baseline.len(),
                names.join(", ")
            );
        }
    }
    let failures: Vec<&TrialResult> = round
        .trials
        .iter()
        .filter(|t| !t.violations.is_empty())
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nViolations (seed {}):\n", round.seed);
        for t in failures {
            let _ = writeln!(out, "- {}:", trial_label(t));
            for g in grouped(t) {
                let _ = writeln!(out, "  - {g}");
            }
        }
    }
    out
}

/// The title of a file [`replace_section`] writes from scratch.
const FILE_TITLE: &str = "# Reliability\n\nWritten by `cargo xtask faults --write`; each section is replaced by the run that made it.\n";

/// `existing` (a markdown file, possibly empty) with the section between
/// the `<!-- faults: KEY -->` markers replaced by `section`, or with it
/// appended when there is none.
pub fn replace_section(existing: &str, key: &str, section: &str) -> String {
    let begin = format!("<!-- faults: {key} -->");
    let end = format!("<!-- /faults: {key} -->");
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    if let (Some(b), Some(e)) = (existing.find(&begin), existing.find(&end)) {
        if b < e {
            return format!("{}{block}{}", &existing[..b], &existing[e + end.len()..]);
        }
    }
    let head = if existing.trim().is_empty() {
        FILE_TITLE.to_string()
    } else {
        existing.trim_end().to_string() + "\n"
    };
    format!("{head}\n{block}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::invariants::Violation;
    use crate::faults::schedule::{KillMode, TrialPlan};

    #[test]
    fn sections() {
        let one = replace_section("", "Kills", "## Kills\n\nA\n");
        assert!(one.starts_with("# Reliability"));
        let two = replace_section(&one, "Damage", "## Damage\n\nB\n");
        let three = replace_section(&two, "Kills", "## Kills\n\nC\n");
        assert!(three.contains("C") && three.contains("B") && !three.contains("\nA\n"));
        assert_eq!(three.matches("<!-- faults: Kills -->").count(), 1);
        assert_eq!(replace_section(&three, "Kills", "## Kills\n\nC\n"), three);
    }

    #[test]
    fn table_and_list() {
        let v = |kind, detail: &str| Violation {
            kind,
            phase: "after remove",
            detail: detail.into(),
        };
        let plan = TrialPlan {
            trial: 2,
            verb: 0,
            fraction: 0.5,
            mode: KillMode::Group,
            publish: false,
        };
        let trials = vec![
            TrialResult {
                verb: "create",
                plan: Some(plan.clone()),
                delay: Some(Duration::from_millis(5)),
                ending: Ending::Killed,
                published: false,
                elapsed: Duration::from_millis(5),
                violations: vec![
                    v(Kind::OrphanExitFile, "exits/a-old"),
                    v(Kind::OrphanExitFile, "exits/b-old"),
                ],
            },
            TrialResult {
                verb: "create",
                plan: Some(TrialPlan { trial: 3, ..plan }),
                delay: Some(Duration::from_millis(50)),
                ending: Ending::Code(0),
                published: false,
                elapsed: Duration::from_millis(9),
                violations: vec![],
            },
        ];
        let text = markdown(&Round {
            seed: 9,
            network: false,
            images: false,
            verbs: vec![
                ("create", Duration::from_millis(10)),
                ("start", Duration::from_millis(20)),
            ],
            baseline: &[],
            trials: &trials,
            replay: "cargo xtask faults --seed {seed} --trial {trial} --delay-ms {delay}",
        });
        assert!(
            text.contains("| create | 10.0 ms | 2 | 1 | 1 | 0/0 |"),
            "{text}"
        );
        assert!(
            text.contains("| start | 20.0 ms | 0 | 0 | 0 | 0/0 |"),
            "{text}"
        );
        assert!(
            text.contains("| orphan exit file | 1 | 0 | create |"),
            "{text}"
        );
        assert!(
            text.contains("--seed 9 --trial 2 --delay-ms 5.000"),
            "{text}"
        );
        assert!(
            text.contains("trial 2 (create, delay 5.0 ms, kill group, verb killed)"),
            "{text}"
        );
        assert!(
            text.contains("orphan exit file ×2 (after remove): exits/a-old; exits/b-old"),
            "{text}"
        );
    }
}
