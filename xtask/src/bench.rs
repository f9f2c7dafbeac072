//! `cargo xtask bench`: whole-command benchmarks of rpod against podman,
//! measured in the same run on the same host, plus `--criterion` for the
//! libraries' criterion benches.
//!
//! Wall time comes from `hyperfine` (median/mean/σ of the runs), peak RSS
//! from GNU time's `%M` (median of a few runs). rpod runs with its own
//! throw-away `--root/--runroot/--tmpdir`; podman always runs as
//! `podman --runtime runc ...` against the host's storage, so every podman
//! case must only touch containers/images that the benchmark itself
//! creates (names start with `rpod-bench-`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::containers_conf;
use crate::deps::{self, DepsArgs};
use crate::util::{self, shell_join};

/// File that `--write` updates, relative to the repository root.
const BENCHMARKS_MD: &str = "BENCHMARKS.md";
const START_MARKER: &str = "<!-- bench:whole-commands:start -->";
const END_MARKER: &str = "<!-- bench:whole-commands:end -->";

/// Name of the busybox image imported into podman for `run` benchmarks.
pub const PODMAN_BUSYBOX_IMAGE: &str = "rpod-bench-busybox";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Replace the whole-command section of BENCHMARKS.md with the results.
    #[arg(long)]
    pub write: bool,
    /// Run the libraries' criterion benches (`cargo bench --workspace`)
    /// instead of the whole-command benchmarks.
    #[arg(long, conflicts_with_all = ["write", "filter", "podman_image"])]
    pub criterion: bool,
    /// Only run cases whose name contains one of these substrings
    /// (e.g. `--filter podman`). Repeatable.
    #[arg(long, value_name = "SUBSTRING")]
    pub filter: Vec<String>,
    /// Measured hyperfine runs per case.
    #[arg(long, default_value_t = 30)]
    pub runs: u32,
    /// hyperfine warm-up runs per case.
    #[arg(long, default_value_t = 3)]
    pub warmup: u32,
    /// Runs under `/usr/bin/time` per case; peak RSS is their median.
    #[arg(long, default_value_t = 5)]
    pub rss_runs: u32,
    /// Import the `rpod-bench-busybox` image into podman (if absent) first.
    #[arg(long)]
    pub podman_image: bool,
    /// Do not check/install Debian packages (podman, hyperfine, time, ...).
    #[arg(long)]
    pub skip_deps: bool,
}

/// Which engine a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// The release `rpod` binary with isolated storage directories.
    Rpod,
    /// The host's podman, always with `--runtime runc`.
    Podman,
}

/// One benchmark case: `tool args...` is measured; `prepare` (same tool)
/// runs before every measured run, outside the measurement.
///
/// To add e.g. `create`+`rm`: use `prepare` for the `rm`/`create` half, or
/// a case per half. Podman cases must only use names starting with
/// `rpod-bench-` so they never touch containers the benchmark did not
/// create.
struct Case {
    name: &'static str,
    tool: Tool,
    args: &'static [&'static str],
    prepare: Option<&'static [&'static str]>,
}

/// The benchmark table, in report order.
const CASES: &[Case] = &[
    Case {
        name: "rpod info",
        tool: Tool::Rpod,
        args: &["info"],
        prepare: None,
    },
    Case {
        name: "rpod config show",
        tool: Tool::Rpod,
        args: &["config", "show"],
        prepare: None,
    },
    // `podman info` only reads state: it cannot touch any container.
    Case {
        name: "podman info",
        tool: Tool::Podman,
        args: &["info"],
        prepare: None,
    },
];

/// Where the tools live for this run.
struct Env {
    /// The release rpod binary, when any rpod case is selected.
    rpod: Option<PathBuf>,
    /// Throw-away directory holding rpod's `root`, `runroot` and `tmpdir`.
    dir: tempfile::TempDir,
}

impl Env {
    /// The argv of `tool args...` (rpod gets its isolated directories).
    fn argv(&self, tool: Tool, args: &[&str]) -> Result<Vec<String>> {
        let mut argv: Vec<String> = match tool {
            Tool::Rpod => {
                let rpod = self
                    .rpod
                    .as_ref()
                    .context("internal error: rpod binary not built")?;
                let d = self.dir.path();
                vec![
                    rpod.display().to_string(),
                    "--root".into(),
                    d.join("root").display().to_string(),
                    "--runroot".into(),
                    d.join("runroot").display().to_string(),
                    "--tmpdir".into(),
                    d.join("tmpdir").display().to_string(),
                ]
            }
            Tool::Podman => vec!["podman".into(), "--runtime".into(), "runc".into()],
        };
        argv.extend(args.iter().map(|a| (*a).to_string()));
        Ok(argv)
    }

    /// A shell line for the report, with machine-specific paths shortened.
    fn display(&self, argv: &[String]) -> String {
        let root = util::repo_root().display().to_string();
        let dir = self.dir.path().display().to_string();
        shell_join(argv)
            .replace(&dir, "$BENCH_DIR")
            .replace(&format!("{root}/"), "")
    }
}

/// Measurements of one case.
struct Measurement {
    name: &'static str,
    command: String,
    median_ms: f64,
    mean_ms: f64,
    stddev_ms: Option<f64>,
    rss_kib: f64,
}

/// Runs the benchmarks.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.criterion {
        println!("xtask bench: cargo bench --workspace");
        return util::run(util::cargo().args(["bench", "--workspace"]));
    }
    ensure!(args.runs >= 2, "--runs must be at least 2");
    ensure!(args.rss_runs >= 1, "--rss-runs must be at least 1");

    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| args.filter.is_empty() || args.filter.iter().any(|f| c.name.contains(f)))
        .collect();
    ensure!(
        !cases.is_empty(),
        "no benchmark case matches {:?}",
        args.filter
    );
    let needs_rpod = cases.iter().any(|c| c.tool == Tool::Rpod);
    let needs_podman = cases.iter().any(|c| c.tool == Tool::Podman) || args.podman_image;

    if !args.skip_deps {
        deps::run(DepsArgs { with_podman: true })?;
    }
    if needs_podman {
        containers_conf::ensure()?;
    }
    let rpod = if needs_rpod {
        Some(build_rpod()?)
    } else {
        None
    };

    let dir = tempfile::Builder::new().prefix("rpod-bench-").tempdir()?;
    for sub in ["root", "runroot", "tmpdir"] {
        fs::create_dir(dir.path().join(sub))?;
    }
    let env = Env { rpod, dir };

    if args.podman_image {
        ensure_podman_busybox_image()?;
    }

    let mut results = Vec::new();
    for case in cases {
        eprintln!("\nxtask bench: {}", case.name);
        results.push(
            measure(&env, case, args)
                .with_context(|| format!("benchmark `{}` failed", case.name))?,
        );
    }

    let report = report(args, &results);
    println!("\n{report}");
    if args.write {
        let path = util::repo_root().join(BENCHMARKS_MD);
        write_section(&path, &report)?;
        eprintln!("xtask bench: updated {}", path.display());
    }
    Ok(())
}

/// Builds `rpod` in release mode and returns the binary's path.
fn build_rpod() -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "rpod-cli",
        "--message-format=json-render-diagnostics",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    eprintln!("xtask bench: $ {}", util::display_cmd(&cmd));
    let out = cmd
        .output()
        .context("failed to start cargo to build rpod")?;
    if !out.status.success() {
        bail!(
            "building the rpod CLI failed ({}): `cargo build --release -p rpod-cli` must succeed \
             before rpod can be benchmarked (use `--filter podman` to measure podman alone)",
            util::describe_status(out.status)
        );
    }
    // cargo reports each built artifact as a JSON line; find the binary.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            let exe = PathBuf::from(exe);
            if exe.file_name().is_some_and(|n| n == "rpod") {
                return Ok(exe);
            }
        }
    }
    bail!("`cargo build --release -p rpod-cli` produced no `rpod` binary")
}

/// Benchmarks one case: hyperfine for wall time, GNU time for peak RSS.
fn measure(env: &Env, case: &Case, args: &BenchArgs) -> Result<Measurement> {
    let argv = env.argv(case.tool, case.args)?;
    let prepare = case.prepare.map(|p| env.argv(case.tool, p)).transpose()?;

    let json_path = env.dir.path().join("hyperfine.json");
    let mut hf = Command::new("hyperfine");
    hf.args(["-N", "--warmup", &args.warmup.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .arg("--export-json")
        .arg(&json_path)
        .args(["--command-name", case.name]);
    if let Some(prepare) = &prepare {
        hf.arg("--prepare").arg(shell_join(prepare));
    }
    hf.arg(shell_join(&argv));
    // Keep our stdout for the report: hyperfine's progress goes to stderr.
    hf.stdin(Stdio::null()).stdout(std::io::stderr());
    util::run(&mut hf)?;
    let json: Value = serde_json::from_str(
        &fs::read_to_string(&json_path).context("reading hyperfine's JSON export")?,
    )
    .context("parsing hyperfine's JSON export")?;
    let (median, mean, stddev) = parse_hyperfine(&json)?;

    let mut rss = Vec::new();
    let rss_path = env.dir.path().join("time.out");
    for _ in 0..args.rss_runs {
        if let Some(prepare) = &prepare {
            run_quiet(prepare)?;
        }
        let mut time = Command::new("/usr/bin/time");
        time.arg("-o").arg(&rss_path).args(["-f", "%M"]).args(&argv);
        run_quiet_cmd(&mut time)?;
        let text = fs::read_to_string(&rss_path)?;
        let kib: f64 = text
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .parse()
            .with_context(|| format!("unexpected /usr/bin/time output {text:?}"))?;
        rss.push(kib);
    }

    Ok(Measurement {
        name: case.name,
        command: env.display(&argv),
        median_ms: median * 1e3,
        mean_ms: mean * 1e3,
        stddev_ms: stddev.map(|s| s * 1e3),
        rss_kib: median_of(&mut rss),
    })
}

/// `(median, mean, stddev)` in seconds from hyperfine's JSON export.
fn parse_hyperfine(json: &Value) -> Result<(f64, f64, Option<f64>)> {
    let r = &json["results"][0];
    let median = r["median"]
        .as_f64()
        .context("hyperfine JSON: no results[0].median")?;
    let mean = r["mean"]
        .as_f64()
        .context("hyperfine JSON: no results[0].mean")?;
    Ok((median, mean, r["stddev"].as_f64()))
}

/// Runs `argv` with output discarded; fails on a non-zero exit.
fn run_quiet(argv: &[String]) -> Result<()> {
    let (program, rest) = argv.split_first().context("empty command")?;
    run_quiet_cmd(Command::new(program).args(rest))
}

fn run_quiet_cmd(cmd: &mut Command) -> Result<()> {
    util::run(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Median of `values` (sorted in place); 0 when empty.
fn median_of(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The markdown report: environment stamp, results table, exact commands.
fn report(args: &BenchArgs, results: &[Measurement]) -> String {
    let invocation = std::env::args().skip(1).collect::<Vec<_>>();
    let rev = git_rev();
    let date = util::first_line_or_unknown("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = util::first_line_or_unknown("uname", &["-r"]);
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let podman = util::first_line_or_unknown("podman", &["--version"]);
    let runc = util::first_line_or_unknown("runc", &["--version"]);
    let hyperfine = util::first_line_or_unknown("hyperfine", &["--version"]);

    let mut out = String::new();
    out.push_str(&format!(
        "Command: `cargo xtask {}`\n\n",
        shell_join(&invocation)
    ));
    out.push_str(&format!(
        "Date: {date} · kernel `{kernel}` · {cores} cores\n\n"
    ));
    out.push_str(&format!(
        "Versions: rpod `{rev}` · {podman} · {runc} · {hyperfine}\n\n"
    ));
    out.push_str("| case | median (ms) | mean ± σ (ms) | peak RSS (MiB) |\n");
    out.push_str("|---|---:|---:|---:|\n");
    for m in results {
        let sd = m
            .stddev_ms
            .map_or_else(|| "?".to_string(), |s| format!("{s:.2}"));
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} ± {sd} | {:.1} |\n",
            m.name,
            m.median_ms,
            m.mean_ms,
            m.rss_kib / 1024.0
        ));
    }
    out.push_str(&format!(
        "\nWall time: `hyperfine -N --warmup {} --runs {}`. Peak RSS: median of {} runs of \
         `/usr/bin/time -f %M`. `$BENCH_DIR` is a fresh temporary directory.\n\n",
        args.warmup, args.runs, args.rss_runs
    ));
    for m in results {
        out.push_str(&format!("- {}: `{}`\n", m.name, m.command));
    }
    out
}

/// `git rev-parse --short HEAD`, with `-dirty` for uncommitted changes.
fn git_rev() -> String {
    let root = util::repo_root();
    let rev = util::first_line_or_unknown(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty && rev != "unknown" {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

/// `doc` with the text between the whole-command markers replaced by
/// `section`; a missing file or missing markers get them added.
fn replace_section(doc: Option<&str>, section: &str) -> String {
    let block = format!("{START_MARKER}\n{}\n{END_MARKER}", section.trim_end());
    let Some(doc) = doc else {
        return format!(
            "# rpod benchmarks\n\n\
             Numbers are produced by `cargo xtask bench --write` (rpod and podman \
             measured in the same run on the same host); criterion benches of the \
             libraries run with `cargo xtask bench --criterion`.\n\n\
             ## Whole commands\n\n{block}\n"
        );
    };
    if let Some(start) = doc.find(START_MARKER) {
        if let Some(end_rel) = doc[start..].find(END_MARKER) {
            let end = start + end_rel + END_MARKER.len();
            return format!("{}{block}{}", &doc[..start], &doc[end..]);
        }
    }
    let mut out = doc.trim_end().to_string();
    out.push_str(&format!("\n\n## Whole commands\n\n{block}\n"));
    out
}

/// Replaces the whole-command section of `path` (atomically).
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = match fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = replace_section(old.as_deref(), section);
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

/// Makes sure podman has the `rpod-bench-busybox` image: a rootfs holding
/// the host's static busybox (`/bin/busybox`) and a symlink per applet,
/// imported with `podman import`. Does nothing if the image exists, and
/// touches no other image or container.
pub fn ensure_podman_busybox_image() -> Result<()> {
    let exists = Command::new("podman")
        .args(["--runtime", "runc", "image", "exists", PODMAN_BUSYBOX_IMAGE])
        .stdin(Stdio::null())
        .status()
        .context("failed to run podman")?;
    if exists.success() {
        eprintln!("xtask bench: podman image {PODMAN_BUSYBOX_IMAGE} already exists");
        return Ok(());
    }

    let rootfs = tempfile::Builder::new()
        .prefix("rpod-bench-rootfs-")
        .tempdir()?;
    build_busybox_rootfs(rootfs.path())?;

    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs.path())
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to run tar")?;
    let tar_out = tar.stdout.take().context("tar has no stdout")?;
    let import = Command::new("podman")
        .args(["--runtime", "runc", "import", "-", PODMAN_BUSYBOX_IMAGE])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .status()
        .context("failed to run podman import")?;
    let tar_status = tar.wait()?;
    ensure!(
        tar_status.success(),
        "tar failed ({})",
        util::describe_status(tar_status)
    );
    ensure!(
        import.success(),
        "podman import failed ({})",
        util::describe_status(import)
    );
    eprintln!("xtask bench: imported podman image {PODMAN_BUSYBOX_IMAGE}");
    Ok(())
}

/// Lays out a minimal busybox rootfs in `dir`.
fn build_busybox_rootfs(dir: &Path) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.exists(),
        "{} not found (install busybox-static)",
        busybox.display()
    );
    for sub in ["bin", "dev", "etc", "proc", "root", "sys", "tmp", "var/www"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )?;
    fs::copy(busybox, dir.join("bin/busybox"))?;
    let list = util::output(Command::new(busybox).arg("--list"))?;
    let mut applets: Vec<&str> = list.lines().map(str::trim).collect();
    // Make sure the applets the benchmarks rely on are there.
    for needed in ["sh", "echo", "true", "cat", "ls", "sleep", "wget", "httpd"] {
        ensure!(
            applets.contains(&needed),
            "{} has no `{needed}` applet",
            busybox.display()
        );
    }
    applets.retain(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'));
    for applet in applets {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median() {
        assert_eq!(median_of(&mut []), 0.0);
        assert_eq!(median_of(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn hyperfine_json() -> Result<()> {
        let json: Value = serde_json::from_str(
            r#"{"results":[{"command":"x","mean":0.012,"stddev":0.001,"median":0.011}]}"#,
        )?;
        assert_eq!(parse_hyperfine(&json)?, (0.011, 0.012, Some(0.001)));
        assert!(parse_hyperfine(&serde_json::json!({"results": []})).is_err());
        Ok(())
    }

    #[test]
    fn section_replacement() {
        let fresh = replace_section(None, "table\n");
        assert!(fresh.starts_with("# rpod benchmarks"));
        assert!(fresh.contains(&format!("{START_MARKER}\ntable\n{END_MARKER}\n")));

        let doc = format!("intro\n{START_MARKER}\nold\n{END_MARKER}\ntail\n");
        assert_eq!(
            replace_section(Some(&doc), "new"),
            format!("intro\n{START_MARKER}\nnew\n{END_MARKER}\ntail\n")
        );

        let appended = replace_section(Some("# Title\n"), "new");
        assert_eq!(
            appended,
            format!("# Title\n\n## Whole commands\n\n{START_MARKER}\nnew\n{END_MARKER}\n")
        );
    }

    #[test]
    fn case_table_is_sane() {
        let mut names: Vec<_> = CASES.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CASES.len(), "duplicate case names");
        for case in CASES {
            let prefix = match case.tool {
                Tool::Rpod => "rpod ",
                Tool::Podman => "podman ",
            };
            assert!(case.name.starts_with(prefix), "{}", case.name);
        }
    }
}
