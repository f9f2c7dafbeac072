//! `cargo xtask bench`: whole-command benchmarks of rpod against podman,
//! measured in the same run on the same host, plus `--criterion` for the
//! libraries' criterion benches ([`criterion`]).
//!
//! Wall time comes from `hyperfine` (median/mean/σ of the runs), peak RSS
//! from GNU time's `%M` (median of a few runs).
//!
//! Isolation rules:
//!
//! - every rpod case runs against its own fresh `--root/--runroot/--tmpdir`
//!   and its own SHM lock segment (`--lock-name /rpod_bench_<pid>_<n>`); an
//!   [`RpodRoot`] guard runs `rpod system reset --force`, removes whatever
//!   processes and runc containers still mention the case's directory,
//!   unlinks the segment and deletes the directories afterwards, also on
//!   failure;
//! - rpod cases that run containers also get `--cgroup-parent
//!   /rpod_bench_cg_<pid>`, removed bottom-up from every cgroup hierarchy
//!   by a [`CgroupParent`] guard;
//! - podman always runs as `podman --runtime runc ...` against the host's
//!   storage, so a podman case only ever creates objects named
//!   `rpod-bench-*`, and a [`PodmanObjects`] guard removes exactly those, by
//!   name, afterwards (and before, in case an earlier run was killed);
//! - the conmon+runc floor of `run` ([`floor`]) uses container IDs
//!   `rpod-bench-floor-<pid>-*` and its own directory, removed with their
//!   processes, runc state and cgroups by a [`floor::Floor`] guard.
//!
//! At the end the run fails if any SHM segment, cgroup, runc container,
//! process or podman object of its own is left. Each podman case runs right
//! after the rpod case it mirrors, so the two are measured side by side.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

mod criterion;
mod floor;
mod sweep;

use crate::containers_conf;
use crate::deps::{self, DepsArgs};
use crate::util::{self, shell_join};

/// File that `--write` updates, relative to the repository root.
const BENCHMARKS_MD: &str = "BENCHMARKS.md";

/// A section of BENCHMARKS.md that `--write` replaces: the text between two
/// marker lines, under a `## heading` when the markers have to be added.
struct Section {
    start: &'static str,
    end: &'static str,
    heading: &'static str,
}

/// The whole-command section.
const WHOLE_COMMANDS: Section = Section {
    start: "<!-- bench:whole-commands:start -->",
    end: "<!-- bench:whole-commands:end -->",
    heading: "Whole commands",
};

/// Name of the busybox image imported into podman for container benchmarks.
pub const PODMAN_BUSYBOX_IMAGE: &str = "rpod-bench-busybox";
/// Name of the pod infra image imported into podman: the static `catatonit`
/// with `ENTRYPOINT ["/catatonit", "-P"]`, i.e. what podman 4 builds itself
/// as `localhost/podman-pause:<version>-<stamp>` when `infra_image` is unset
/// (built here under our own name so that the benchmark only creates
/// `rpod-bench-*` objects, and without any network access).
pub const PODMAN_PAUSE_IMAGE: &str = "rpod-bench-pause";

/// Every podman object the benchmark creates has a name with this prefix.
const PODMAN_PREFIX: &str = "rpod-bench-";
/// Prefix (after `/`) of the SHM lock segments of the rpod cases; the full
/// name is `/rpod_bench_<pid>_<n>`.
const SHM_PREFIX: &str = "rpod_bench_";
/// Where `shm_open(3)` names live.
const DEV_SHM: &str = "/dev/shm";

/// Stands for the busybox rootfs directory in rpod argv tables.
const ROOTFS: &str = "{rootfs}";

/// Peak RSS goal of the rpod state-store cases.
const RPOD_RSS_TARGET_MIB: f64 = 12.0;

/// Prefix of the cgroup parent of the rpod cases that run containers; the
/// full name is `rpod_bench_cg_<pid>`, a top-level cgroup in every hierarchy
/// removed after each case.
const CGROUP_PREFIX: &str = "rpod_bench_cg_";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Replace the whole-command section of BENCHMARKS.md with the results
    /// (with `--criterion`: the criterion section).
    #[arg(long)]
    pub write: bool,
    /// Run the libraries' criterion benches (`cargo bench --workspace`)
    /// instead of the whole-command benchmarks.
    #[arg(long, conflicts_with_all = ["filter", "podman_image", "quick"])]
    pub criterion: bool,
    /// Only run cases whose name contains one of these substrings
    /// (e.g. `--filter podman`, `--filter "ps -a"`). Repeatable.
    #[arg(long, value_name = "SUBSTRING")]
    pub filter: Vec<String>,
    /// Skip the slow cases (`ps -a` with 10 000 containers, whose set-up
    /// creates 10 000 containers) for fast iteration.
    #[arg(long)]
    pub quick: bool,
    /// Measured hyperfine runs per case.
    #[arg(long, default_value_t = 30)]
    pub runs: u32,
    /// hyperfine warm-up runs per case.
    #[arg(long, default_value_t = 3)]
    pub warmup: u32,
    /// Runs under `/usr/bin/time` per case; peak RSS is their median.
    #[arg(long, default_value_t = 5)]
    pub rss_runs: u32,
    /// Import the `rpod-bench-busybox` and `rpod-bench-pause` images into
    /// podman (if absent) even when no selected case needs them.
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
    /// conmon + runc driven by a shell script, with no engine at all: the
    /// floor of `run` (see [`floor`]).
    Floor,
}

/// What one measured run executes (arguments after `rpod <isolation flags>`
/// or `podman --runtime runc`; [`ROOTFS`] stands for the busybox rootfs).
#[derive(Debug, Clone, Copy)]
enum Run {
    /// `tool args...`.
    Argv(&'static [&'static str]),
    /// `sh -c 'tool step1... && tool step2... && ...'`: every step in one
    /// measured run (the shell's own start-up is included, for both tools).
    Seq(&'static [&'static [&'static str]]),
    /// `bash $BENCH_DIR/floor/run.sh`: the conmon+runc floor (see
    /// [`floor`]).
    Floor,
}

/// The goal printed next to a case's median.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// No goal.
    None,
    /// rpod's goal: a median of at most this many milliseconds.
    AtMost(f64),
    /// podman's median in the reference measurement, in milliseconds.
    Reference(f64),
    /// rpod's goal relative to other cases of the same run: its median is at
    /// most `factor` times each named case's median.
    Relative(&'static [Relative]),
}

/// One relative goal (see [`Target::Relative`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Relative {
    /// The name of the case compared against (measured in the same run).
    case: &'static str,
    /// How the target cell names that case.
    short: &'static str,
    /// The median must be at most `factor` × the other case's median.
    factor: f64,
}

/// One benchmark case.
struct Case {
    /// Unique; `--filter` matches it.
    name: &'static str,
    tool: Tool,
    run: Run,
    /// Containers created before the measurement (outside it) by running
    /// `rpod create --rootfs <busybox> true` / `podman create --name
    /// rpod-bench-ctr-<i> rpod-bench-busybox true`; removed afterwards.
    containers: u32,
    /// Report N, the number of containers `ps -a` lists (counted).
    reports_n: bool,
    /// `--num-locks` of the case's rpod root: the default (2048) cannot give
    /// a lock to 10 000 containers.
    num_locks: Option<u32>,
    /// Podman containers (besides `rpod-bench-ctr-<i>`) and pods the case
    /// creates by name: removed before and after it.
    podman_containers: &'static [&'static str],
    podman_pods: &'static [&'static str],
    target: Target,
    /// Peak RSS goal in MiB.
    rss_target_mib: Option<f64>,
    /// Skipped by `--quick`.
    slow: bool,
    /// The case runs containers (rpod: `--runtime runc --cgroup-manager
    /// cgroupfs --cgroup-parent /rpod_bench_cg_<pid>`, a parent removed after
    /// the case; at least one warm-up run, which also builds rpod's pod infra
    /// rootfs outside the measurement).
    runs_containers: bool,
    /// Never measured (reported as n/a), with the reason.
    not_measured: Option<&'static str>,
}

impl Case {
    /// A case measuring `tool args...` with no set-up and no goal.
    const fn plain(name: &'static str, tool: Tool, args: &'static [&'static str]) -> Case {
        Case {
            name,
            tool,
            run: Run::Argv(args),
            containers: 0,
            reports_n: false,
            num_locks: None,
            podman_containers: &[],
            podman_pods: &[],
            target: Target::None,
            rss_target_mib: None,
            slow: false,
            runs_containers: false,
            not_measured: None,
        }
    }

    /// `ps -a` on a store holding `containers` containers made by the case.
    const fn ps(name: &'static str, tool: Tool, containers: u32, target: Target) -> Case {
        let mut case = Case::plain(name, tool, &["ps", "-a"]);
        case.containers = containers;
        case.reports_n = true;
        case.target = target;
        if matches!(tool, Tool::Rpod) {
            case.rss_target_mib = Some(RPOD_RSS_TARGET_MIB);
        }
        case
    }

    /// One run = every step, one after the other (see [`Run::Seq`]).
    const fn seq(
        name: &'static str,
        tool: Tool,
        steps: &'static [&'static [&'static str]],
        target: Target,
    ) -> Case {
        let mut case = Case::plain(name, tool, &[]);
        case.run = Run::Seq(steps);
        case.target = target;
        if matches!(tool, Tool::Rpod) {
            case.rss_target_mib = Some(RPOD_RSS_TARGET_MIB);
        }
        case
    }

    /// Every engine argv of the case's measured run (one, or one per step;
    /// none for the floor script).
    fn argvs(&self) -> Vec<&'static [&'static str]> {
        match self.run {
            Run::Argv(a) => vec![a],
            Run::Seq(steps) => steps.to_vec(),
            Run::Floor => Vec::new(),
        }
    }

    /// Whether podman needs `image` for this case.
    fn uses_podman_image(&self, image: &str) -> bool {
        self.tool == Tool::Podman
            && self.not_measured.is_none()
            && ((image == PODMAN_BUSYBOX_IMAGE && self.containers > 0)
                || self.argvs().iter().any(|a| a.contains(&image)))
    }
}

/// The benchmark table, in report order: each podman case right after the
/// rpod case it mirrors.
const CASES: &[Case] = &[
    Case::plain("rpod info", Tool::Rpod, &["info"]),
    Case::plain("rpod config show", Tool::Rpod, &["config", "show"]),
    // `podman info` only reads state: it cannot touch any container.
    Case::plain("podman info", Tool::Podman, &["info"]),
    // `ps -a` only reads state. With no container of its own, podman lists
    // whatever the host has (N is counted and reported).
    Case::ps("rpod ps -a N=0", Tool::Rpod, 0, Target::AtMost(5.0)),
    Case::ps(
        "podman ps -a N=existing",
        Tool::Podman,
        0,
        Target::Reference(39.0),
    ),
    Case::ps("rpod ps -a N=200", Tool::Rpod, 200, Target::AtMost(10.0)),
    Case::ps(
        "podman ps -a N=200",
        Tool::Podman,
        200,
        Target::Reference(221.0),
    ),
    Case {
        num_locks: Some(12_288),
        slow: true,
        ..Case::ps(
            "rpod ps -a N=10000",
            Tool::Rpod,
            10_000,
            Target::AtMost(100.0),
        )
    },
    Case {
        not_measured: Some("creating 10 000 podman containers takes too long"),
        ..Case::ps("podman ps -a N=10000", Tool::Podman, 10_000, Target::None)
    },
    Case::seq(
        "rpod create+rm",
        Tool::Rpod,
        &[
            &["create", "--rootfs", ROOTFS, "--name", "bench", "true"],
            &["rm", "bench"],
        ],
        Target::AtMost(20.0),
    ),
    Case {
        podman_containers: &["rpod-bench-cr"],
        ..Case::seq(
            "podman create+rm",
            Tool::Podman,
            &[
                &[
                    "create",
                    "--name",
                    "rpod-bench-cr",
                    PODMAN_BUSYBOX_IMAGE,
                    "true",
                ],
                &["rm", "rpod-bench-cr"],
            ],
            Target::Reference(128.0),
        )
    },
    // Both create the pod's infra container (rpod: its built-in /pause;
    // podman: catatonit from the local rpod-bench-pause image).
    Case::seq(
        "rpod pod create+rm",
        Tool::Rpod,
        &[
            &["pod", "create", "--name", "benchpod"],
            &["pod", "rm", "benchpod"],
        ],
        Target::AtMost(30.0),
    ),
    Case {
        podman_containers: &["rpod-bench-pod-infra"],
        podman_pods: &["rpod-bench-pod"],
        ..Case::seq(
            "podman pod create+rm",
            Tool::Podman,
            &[PODMAN_POD_CREATE, &["pod", "rm", "rpod-bench-pod"]],
            Target::Reference(154.0),
        )
    },
    // Both run busybox `true` in a new, empty network namespace, wait for it
    // and remove the container; the floor does the same with conmon and runc
    // alone.
    Case {
        runs_containers: true,
        target: Target::Relative(RUN_TARGETS),
        rss_target_mib: Some(RPOD_RSS_TARGET_MIB),
        ..Case::plain(
            RPOD_RUN,
            Tool::Rpod,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--rootfs",
                ROOTFS,
                "true",
            ],
        )
    },
    Case {
        podman_containers: &["rpod-bench-run"],
        ..Case::plain(
            PODMAN_RUN,
            Tool::Podman,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--name",
                "rpod-bench-run",
                PODMAN_BUSYBOX_IMAGE,
                "true",
            ],
        )
    },
    Case {
        run: Run::Floor,
        runs_containers: true,
        ..Case::plain(FLOOR_RUN, Tool::Floor, &[])
    },
    // Both start the pod's infra container (rpod: catatonit, its rootfs
    // built on the first start, i.e. in the warm-up; podman: catatonit from
    // the local rpod-bench-pause image) and remove the running pod.
    Case {
        runs_containers: true,
        ..Case::seq(
            "rpod pod create+start+rm -f",
            Tool::Rpod,
            &[
                &["pod", "create", "--name", "benchpod"],
                &["pod", "start", "benchpod"],
                &["pod", "rm", "-f", "benchpod"],
            ],
            Target::None,
        )
    },
    Case {
        podman_containers: &["rpod-bench-pod-infra"],
        podman_pods: &["rpod-bench-pod"],
        runs_containers: true,
        ..Case::seq(
            "podman pod create+start+rm -f",
            Tool::Podman,
            &[
                PODMAN_POD_CREATE,
                &["pod", "start", "rpod-bench-pod"],
                &["pod", "rm", "-f", "rpod-bench-pod"],
            ],
            Target::None,
        )
    },
];

/// `podman pod create` of the pod cases: the infra container from the local
/// `rpod-bench-pause` image, named `rpod-bench-pod-infra`, with no network, as
/// rpod's pods (podman's default CNI network would also leave its bridge and
/// firewall chains on the host).
const PODMAN_POD_CREATE: &[&str] = &[
    "pod",
    "create",
    "--network",
    "none",
    "--name",
    "rpod-bench-pod",
    "--infra-image",
    PODMAN_PAUSE_IMAGE,
    "--infra-name",
    "rpod-bench-pod-infra",
];

/// The three `run` cases, measured one after the other in the same run.
const RPOD_RUN: &str = "rpod run --rm true";
const PODMAN_RUN: &str = "podman run --rm true";
const FLOOR_RUN: &str = "floor conmon+runc true";

/// rpod's `run` goals: at most a third of podman's time, and at most 20 %
/// over conmon + runc driven by a shell script.
const RUN_TARGETS: &[Relative] = &[
    Relative {
        case: PODMAN_RUN,
        short: "podman",
        factor: 0.33,
    },
    Relative {
        case: FLOOR_RUN,
        short: "floor",
        factor: 1.2,
    },
];

/// Name of the `i`-th (1-based) container a podman `ps -a` case creates.
fn podman_ctr_name(i: u32) -> String {
    format!("{PODMAN_PREFIX}ctr-{i}")
}

/// What every case shares.
struct Env {
    /// The release rpod binary, when any rpod case is selected.
    rpod: Option<PathBuf>,
    /// Throw-away directory holding the busybox rootfs and the rpod roots.
    dir: tempfile::TempDir,
    /// A busybox rootfs for `rpod create --rootfs`.
    rootfs: PathBuf,
}

impl Env {
    /// A shell line for the report, with machine-specific paths shortened.
    fn display(&self, argv: &[String]) -> String {
        let root = util::repo_root().display().to_string();
        let dir = self.dir.path().display().to_string();
        shell_join(argv)
            .replace(&dir, "$BENCH_DIR")
            .replace(&format!("{root}/"), "")
    }
}

/// A fresh rpod root for one case: its own `--root/--runroot/--tmpdir`
/// under the bench directory and its own SHM lock segment. Dropping it runs
/// `rpod system reset --force`, unlinks the segment (should reset not have)
/// and deletes the directories.
struct RpodRoot {
    /// `rpod --root ... --runroot ... --tmpdir ... --lock-name ...` (`$RPOD`
    /// in the report).
    base: Vec<String>,
    /// `base` plus the case's extra global flags (`--num-locks N`,
    /// `--runtime runc --cgroup-manager cgroupfs --cgroup-parent ...`).
    prefix: Vec<String>,
    /// `/dev/shm/rpod_bench_<pid>_<n>`.
    segment: PathBuf,
    dir: PathBuf,
}

impl RpodRoot {
    fn new(env: &Env, seq: usize, extra: &[String]) -> Result<RpodRoot> {
        let rpod = env
            .rpod
            .as_ref()
            .context("internal error: rpod binary not built")?;
        let dir = env.dir.path().join(format!("case-{seq}"));
        for sub in ["root", "runroot", "tmpdir"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let lock_name = format!("/{SHM_PREFIX}{}_{seq}", std::process::id());
        let segment = Path::new(DEV_SHM).join(&lock_name[1..]);
        // A segment of this name can only be left over by a killed earlier
        // run whose PID we reuse: it must not leak its allocations into ours.
        remove_if_exists(&segment)?;
        let mut base = vec![rpod.display().to_string()];
        for (flag, sub) in [
            ("--root", "root"),
            ("--runroot", "runroot"),
            ("--tmpdir", "tmpdir"),
        ] {
            base.push(flag.into());
            base.push(dir.join(sub).display().to_string());
        }
        base.extend(["--lock-name".to_string(), lock_name]);
        let mut prefix = base.clone();
        prefix.extend(extra.iter().cloned());
        Ok(RpodRoot {
            base,
            prefix,
            segment,
            dir,
        })
    }

    /// The argv of `rpod <isolation flags> args...`.
    fn argv(&self, args: &[&str], rootfs: &Path) -> Vec<String> {
        with_prefix(&self.prefix, args, rootfs)
    }

    /// Removes every trace of this root; errors are only reported.
    fn clean_up(&self) {
        let reset = self.argv(&["system", "reset", "--force"], Path::new(""));
        if let Err(e) = run_quiet(&reset) {
            eprintln!("xtask bench: warning: {e:#}");
        }
        // Whatever the reset did not stop (conmon, an exit command still
        // running, a runc container) mentions the case's directory.
        sweep::sweep_dir(&self.dir);
        if let Err(e) = remove_if_exists(&self.segment) {
            eprintln!("xtask bench: warning: {e:#}");
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("xtask bench: warning: removing {}: {e}", self.dir.display());
        }
    }
}

impl Drop for RpodRoot {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// The cgroup parent `/rpod_bench_cg_<pid>` of the rpod cases that run
/// containers. Dropping it removes `/sys/fs/cgroup/*/rpod_bench_cg_<pid>`,
/// bottom-up (declare it before the [`RpodRoot`], whose reset empties it).
struct CgroupParent {
    name: String,
}

impl CgroupParent {
    fn new() -> CgroupParent {
        let parent = CgroupParent {
            name: format!("{CGROUP_PREFIX}{}", std::process::id()),
        };
        parent.remove();
        parent
    }

    /// `--cgroup-parent` value.
    fn path(&self) -> String {
        format!("/{}", self.name)
    }

    fn remove(&self) {
        sweep::remove_cgroups(|name| name == self.name);
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Podman containers and pods created by one case, all named `rpod-bench-*`:
/// removed by name when the guard is created (leftovers of a killed earlier
/// run) and when it is dropped. Nothing else is ever removed.
struct PodmanObjects {
    containers: Vec<String>,
    pods: Vec<String>,
}

impl PodmanObjects {
    fn new(containers: Vec<String>, pods: Vec<String>) -> Result<PodmanObjects> {
        for name in containers.iter().chain(&pods) {
            ensure!(
                name.starts_with(PODMAN_PREFIX),
                "internal error: podman object {name:?} is not named {PODMAN_PREFIX}*"
            );
        }
        let guard = PodmanObjects { containers, pods };
        guard.remove()?;
        Ok(guard)
    }

    /// `podman pod rm -f --ignore <pods>`, then `podman rm -f --ignore
    /// <containers>` (both by name; missing ones are fine).
    fn remove(&self) -> Result<()> {
        if !self.pods.is_empty() {
            let mut cmd = podman();
            cmd.args(["pod", "rm", "--force", "--ignore"])
                .args(&self.pods);
            run_quiet_cmd(&mut cmd)?;
        }
        for chunk in self.containers.chunks(500) {
            let mut cmd = podman();
            cmd.args(["rm", "--force", "--ignore"]).args(chunk);
            run_quiet_cmd(&mut cmd)?;
        }
        Ok(())
    }
}

impl Drop for PodmanObjects {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("xtask bench: warning: removing podman's rpod-bench-* objects: {e:#}");
        }
    }
}

/// `podman --runtime runc` (podman never runs without it here).
fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// `prefix` + `args`, with [`ROOTFS`] replaced by `rootfs`.
fn with_prefix(prefix: &[String], args: &[&str], rootfs: &Path) -> Vec<String> {
    let mut argv = prefix.to_vec();
    argv.extend(args.iter().map(|a| {
        if *a == ROOTFS {
            rootfs.display().to_string()
        } else {
            (*a).to_string()
        }
    }));
    argv
}

/// What a measured run executes: `argvs[0]`, or `sh -c 'argvs[0] && argvs[1]'`.
fn measured_argv(argvs: &[Vec<String>]) -> Vec<String> {
    match argvs {
        [one] => one.clone(),
        many => {
            let line = many.iter().map(shell_join).collect::<Vec<_>>().join(" && ");
            vec!["sh".into(), "-c".into(), line]
        }
    }
}

/// Measurements of one case.
struct Measurement {
    command: String,
    median_ms: f64,
    mean_ms: f64,
    stddev_ms: Option<f64>,
    rss_kib: f64,
}

/// One line of the report.
struct Row {
    /// The case name (what [`Relative::case`] refers to).
    name: &'static str,
    /// The case name, with the counted N for `ps -a` cases.
    label: String,
    target: Target,
    rss_target_mib: Option<f64>,
    /// `Err(reason)` when the case was not measured.
    outcome: std::result::Result<Measurement, String>,
}

/// Runs the benchmarks.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.criterion {
        return criterion::run(args);
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
    let measured = |c: &&&Case| c.not_measured.is_none() && !(args.quick && c.slow);
    let needs_rpod = cases.iter().filter(measured).any(|c| c.tool == Tool::Rpod);
    let needs_podman = cases
        .iter()
        .filter(measured)
        .any(|c| c.tool == Tool::Podman)
        || args.podman_image;

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
    let rootfs = dir.path().join("rootfs");
    if needs_rpod {
        fs::create_dir(&rootfs)?;
        build_busybox_rootfs(&rootfs)?;
        remove_stale_segments()?;
    }
    remove_stale_containers();
    let env = Env { rpod, dir, rootfs };

    let uses = |image: &str| {
        cases
            .iter()
            .filter(measured)
            .any(|c| c.uses_podman_image(image))
    };
    if args.podman_image || uses(PODMAN_BUSYBOX_IMAGE) {
        ensure_podman_busybox_image()?;
    }
    if args.podman_image || uses(PODMAN_PAUSE_IMAGE) {
        ensure_podman_pause_image()?;
    }

    let shell_ms = if cases
        .iter()
        .filter(measured)
        .any(|c| matches!(c.run, Run::Seq(..)))
    {
        eprintln!("\nxtask bench: sh -c true (shell start-up, for the pair cases)");
        let argv = vec!["sh".into(), "-c".into(), "true".into()];
        Some(hyperfine(&env, "sh -c true", &argv, args.warmup, args)?.0 * 1e3)
    } else {
        None
    };

    let mut rows = Vec::new();
    for (seq, case) in cases.iter().enumerate() {
        let skip = case
            .not_measured
            .map(str::to_string)
            .or_else(|| (args.quick && case.slow).then(|| "skipped with --quick".to_string()));
        if let Some(reason) = skip {
            eprintln!("\nxtask bench: {}: not measured ({reason})", case.name);
            rows.push(Row {
                name: case.name,
                label: case.name.to_string(),
                target: case.target,
                rss_target_mib: case.rss_target_mib,
                outcome: Err(reason),
            });
            continue;
        }
        eprintln!("\nxtask bench: {}", case.name);
        rows.push(
            run_case(&env, seq, case, args)
                .with_context(|| format!("benchmark `{}` failed", case.name))?,
        );
    }
    check_nothing_left(&env, needs_podman)?;

    let report = report(&env, args, &rows, shell_ms);
    println!("\n{report}");
    if args.write {
        let path = util::repo_root().join(BENCHMARKS_MD);
        write_section(&path, &WHOLE_COMMANDS, &report)?;
        eprintln!("xtask bench: updated {}", path.display());
    }
    Ok(())
}

/// Sets up, measures and cleans up one case.
fn run_case(env: &Env, seq: usize, case: &Case, args: &BenchArgs) -> Result<Row> {
    // The guards are declared before anything is created so that they clean
    // up on every error path; they are dropped (cleaning up) at return, in
    // reverse order (the cgroup parent last, once the root is reset).
    let mut cgroup_parent = None;
    let mut rpod_root = None;
    let mut podman_objects = None;
    let mut floor = None;
    let prefix: Vec<String> = match case.tool {
        Tool::Rpod => {
            let mut extra = Vec::new();
            if let Some(n) = case.num_locks {
                extra.extend(["--num-locks".to_string(), n.to_string()]);
            }
            if case.runs_containers {
                let parent = cgroup_parent.insert(CgroupParent::new());
                extra.extend(
                    [
                        "--runtime",
                        "runc",
                        "--cgroup-manager",
                        "cgroupfs",
                        "--cgroup-parent",
                    ]
                    .map(String::from),
                );
                extra.push(parent.path());
            }
            rpod_root
                .insert(RpodRoot::new(env, seq, &extra)?)
                .prefix
                .clone()
        }
        Tool::Floor => floor.insert(floor::Floor::new(env.dir.path())?).argv(),
        Tool::Podman => {
            let mut containers: Vec<String> = (1..=case.containers).map(podman_ctr_name).collect();
            containers.extend(case.podman_containers.iter().map(|s| (*s).to_string()));
            let pods = case.podman_pods.iter().map(|s| (*s).to_string()).collect();
            podman_objects = Some(PodmanObjects::new(containers, pods)?);
            vec!["podman".into(), "--runtime".into(), "runc".into()]
        }
    };

    let mut label = case.name.to_string();
    if case.containers > 0 {
        populate(&prefix, case, &env.rootfs)?;
    }
    if case.reports_n {
        let listed = count_containers(&prefix)?;
        let ours = case.containers;
        let base = case.name.split(" N=").next().unwrap_or(case.name);
        label = if case.tool == Tool::Rpod {
            ensure!(
                listed == ours,
                "the fresh rpod root lists {listed} containers instead of {ours}"
            );
            format!("{base} N={listed}")
        } else if ours == 0 {
            format!("{base} N={listed} (pre-existing)")
        } else if listed == ours {
            format!("{base} N={listed}")
        } else {
            format!(
                "{base} N={listed} ({ours} rpod-bench + {} pre-existing)",
                listed.saturating_sub(ours)
            )
        };
        if label != case.name {
            eprintln!("xtask bench: {label}");
        }
    }

    let argv = if case.tool == Tool::Floor {
        prefix
    } else {
        let argvs: Vec<Vec<String>> = case
            .argvs()
            .iter()
            .map(|a| with_prefix(&prefix, a, &env.rootfs))
            .collect();
        measured_argv(&argvs)
    };
    let mut command = env.display(&argv);
    if let Some(root) = &rpod_root {
        command = command.replace(&env.display(&root.base), "$RPOD");
    }
    if let Some(parent) = &cgroup_parent {
        command = command.replace(&parent.name, &format!("{CGROUP_PREFIX}<pid>"));
    }
    // Containers (and rpod's pod infra rootfs) are made on the first run:
    // never inside the measurement.
    let warmup = if case.runs_containers {
        args.warmup.max(1)
    } else {
        args.warmup
    };
    let measurement = measure(env, case.name, &argv, command, warmup, args)?;
    drop(floor);
    drop(podman_objects);
    drop(rpod_root);
    drop(cgroup_parent);
    Ok(Row {
        name: case.name,
        label,
        target: case.target,
        rss_target_mib: case.rss_target_mib,
        outcome: Ok(measurement),
    })
}

/// Creates the case's `case.containers` containers, two at a time.
fn populate(prefix: &[String], case: &Case, rootfs: &Path) -> Result<()> {
    ensure!(
        case.tool != Tool::Floor,
        "internal error: the floor has no containers to create"
    );
    let n = case.containers;
    let jobs = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 2);
    let make = |i: u32| -> Vec<String> {
        match case.tool {
            Tool::Rpod | Tool::Floor => {
                with_prefix(prefix, &["create", "--rootfs", ROOTFS, "true"], rootfs)
            }
            Tool::Podman => {
                let name = podman_ctr_name(i);
                with_prefix(
                    prefix,
                    &["create", "--name", &name, PODMAN_BUSYBOX_IMAGE, "true"],
                    rootfs,
                )
            }
        }
    };
    eprintln!(
        "xtask bench: creating {n} containers ({jobs} in parallel): $ {} ...",
        shell_join(make(1))
    );
    let started = Instant::now();
    let done = AtomicU32::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                let (make, done, failed) = (&make, &done, &failed);
                s.spawn(move || -> Result<()> {
                    let mut i = 1 + u32::try_from(job)?;
                    while i <= n && !failed.load(Ordering::Relaxed) {
                        if let Err(e) = run_capturing(&make(i)) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e.context(format!("creating container {i} of {n}")));
                        }
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if d % 1000 == 0 {
                            eprintln!(
                                "xtask bench: {d}/{n} containers ({})",
                                util::fmt_secs(started.elapsed())
                            );
                        }
                        i += u32::try_from(jobs)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("a container-creating thread panicked"))??;
        }
        Ok(())
    })?;
    eprintln!(
        "xtask bench: created {n} containers in {}",
        util::fmt_secs(started.elapsed())
    );
    Ok(())
}

/// How many containers `<prefix> ps -a -q` lists.
fn count_containers(prefix: &[String]) -> Result<u32> {
    let argv = with_prefix(prefix, &["ps", "-a", "-q"], Path::new(""));
    let (program, rest) = argv.split_first().context("empty command")?;
    let out = util::output(Command::new(program).args(rest))?;
    Ok(u32::try_from(
        out.lines().filter(|l| !l.trim().is_empty()).count(),
    )?)
}

/// Builds `rpod` in release mode and returns the binary's path. The build
/// honours `CARGO_TARGET_DIR` (a relative one is taken, as cargo does, from
/// the directory `cargo xtask` was started in).
fn build_rpod() -> Result<PathBuf> {
    let mut cmd = cargo()?;
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
                eprintln!("xtask bench: rpod binary: {}", exe.display());
                return Ok(exe);
            }
        }
    }
    bail!("`cargo build --release -p rpod-cli` produced no `rpod` binary")
}

/// [`util::cargo`], honouring `CARGO_TARGET_DIR` (a relative one is taken,
/// as cargo does, from the directory `cargo xtask` was started in).
fn cargo() -> Result<Command> {
    let mut cmd = util::cargo();
    if let Some(target_dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let target_dir = PathBuf::from(target_dir);
        if target_dir.is_relative() {
            // util::cargo() runs in the repository root, not in our cwd.
            cmd.env(
                "CARGO_TARGET_DIR",
                std::env::current_dir()?.join(target_dir),
            );
        }
    }
    Ok(cmd)
}

/// Benchmarks `argv` (shown as `command`): hyperfine for wall time, GNU
/// time for peak RSS.
fn measure(
    env: &Env,
    name: &str,
    argv: &[String],
    command: String,
    warmup: u32,
    args: &BenchArgs,
) -> Result<Measurement> {
    let (median, mean, stddev) = hyperfine(env, name, argv, warmup, args)?;

    let mut rss = Vec::new();
    let rss_path = env.dir.path().join("time.out");
    for _ in 0..args.rss_runs {
        let mut time = Command::new("/usr/bin/time");
        time.arg("-o").arg(&rss_path).args(["-f", "%M"]).args(argv);
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
        command,
        median_ms: median * 1e3,
        mean_ms: mean * 1e3,
        stddev_ms: stddev.map(|s| s * 1e3),
        rss_kib: median_of(&mut rss),
    })
}

/// `(median, mean, stddev)` in seconds of `argv` under hyperfine.
fn hyperfine(
    env: &Env,
    name: &str,
    argv: &[String],
    warmup: u32,
    args: &BenchArgs,
) -> Result<(f64, f64, Option<f64>)> {
    let json_path = env.dir.path().join("hyperfine.json");
    let mut hf = Command::new("hyperfine");
    hf.args(["-N", "--warmup", &warmup.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .arg("--export-json")
        .arg(&json_path)
        .args(["--command-name", name])
        .arg(shell_join(argv));
    // Keep our stdout for the report: hyperfine's progress goes to stderr.
    hf.stdin(Stdio::null()).stdout(std::io::stderr());
    util::run(&mut hf)?;
    let json: Value = serde_json::from_str(
        &fs::read_to_string(&json_path).context("reading hyperfine's JSON export")?,
    )
    .context("parsing hyperfine's JSON export")?;
    parse_hyperfine(&json)
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

/// Runs `argv` with stdout discarded; on failure the error carries stderr.
fn run_capturing(argv: &[String]) -> Result<()> {
    let (program, rest) = argv.split_first().context("empty command")?;
    let out = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("failed to start `{}`", shell_join(argv)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            shell_join(argv),
            util::describe_status(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the file at `path`; a missing file is fine.
fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The PID in a segment name `rpod_bench_<pid>_<n>` of ours.
fn segment_pid(file_name: &str) -> Option<u32> {
    let (pid, seq) = file_name.strip_prefix(SHM_PREFIX)?.split_once('_')?;
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_num(seq) {
        return None;
    }
    is_num(pid).then(|| pid.parse().ok()).flatten()
}

/// Our segments in /dev/shm whose PID `keep` rejects.
fn our_segments(keep: impl Fn(u32) -> bool) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(DEV_SHM).with_context(|| format!("listing {DEV_SHM}"))? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(pid) = segment_pid(&name.to_string_lossy()) {
            if !keep(pid) {
                found.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// Unlinks the segments left behind by benchmark runs that were killed
/// (their PID is gone, or is ours: we have not created any yet).
fn remove_stale_segments() -> Result<()> {
    let me = std::process::id();
    let stale = our_segments(|pid| pid != me && Path::new(&format!("/proc/{pid}")).exists())?;
    for path in stale {
        eprintln!(
            "xtask bench: removing {} (left by a killed run)",
            path.display()
        );
        remove_if_exists(&path)?;
    }
    Ok(())
}

/// Removes what benchmark runs that were killed left on the host (their
/// PID is gone): the cgroup parents `rpod_bench_cg_<pid>`, and the floor's
/// runc containers and cgroups `rpod-bench-floor-<pid>-*`. Failures are
/// warnings.
fn remove_stale_containers() {
    let stale_floor = |name: &str| sweep::is_stale(name, floor::ID_PREFIX);
    sweep::delete_runc_containers(|id, _| stale_floor(id));
    sweep::remove_cgroups(|name| sweep::is_stale(name, CGROUP_PREFIX) || stale_floor(name));
}

/// Fails if this run left an SHM segment, a process, runc state or a cgroup
/// of its containers, or a podman `rpod-bench-*` container or pod behind
/// (the guards should have removed them all).
fn check_nothing_left(env: &Env, check_podman: bool) -> Result<()> {
    let me = std::process::id();
    let segments = our_segments(|pid| pid != me)?;
    ensure!(
        segments.is_empty(),
        "SHM segments left behind: {segments:?}"
    );
    let ours = |name: &str| {
        sweep::name_pid(name, CGROUP_PREFIX) == Some(me)
            || sweep::name_pid(name, floor::ID_PREFIX) == Some(me)
    };
    let cgroups = sweep::cgroups(ours);
    ensure!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let dir = env.dir.path().display().to_string();
    let containers = sweep::runc_containers(|id, state| ours(id) || state.contains(&dir));
    ensure!(
        containers.is_empty(),
        "runc containers left behind: {containers:?}"
    );
    let processes = sweep::processes_mentioning(&dir);
    ensure!(processes.is_empty(), "processes left behind: {processes:?}");
    if check_podman {
        let filter = format!("name=^{PODMAN_PREFIX}");
        let ctrs = util::output(podman().args([
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}}",
        ]))?;
        let pods = util::output(podman().args([
            "pod",
            "ps",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ]))?;
        ensure!(
            ctrs.is_empty() && pods.is_empty(),
            "podman objects left behind: containers {ctrs:?}, pods {pods:?}"
        );
    }
    Ok(())
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

/// Formats a millisecond goal: `5` → `5`, `2.5` → `2.5`.
fn fmt_goal(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The target cell: `≤ 5 ms ✓` (met) / `≤ 5 ms ✗`, `ref. 39 ms`, or `–`.
///
/// A relative goal reads `≤ 0.33× podman ✓, ≤ 1.2× floor ✗`, with `median_of`
/// giving the other cases' medians (no mark when one was not measured).
fn target_cell(
    target: Target,
    median_ms: Option<f64>,
    median_of: &dyn Fn(&str) -> Option<f64>,
) -> String {
    let mark = |goal: Option<f64>| match (median_ms, goal) {
        (Some(m), Some(goal)) if m <= goal => " ✓",
        (Some(_), Some(_)) => " ✗",
        _ => "",
    };
    match target {
        Target::None => "–".to_string(),
        Target::AtMost(goal) => format!("≤ {} ms{}", fmt_goal(goal), mark(Some(goal))),
        Target::Reference(ms) => format!("ref. {} ms", fmt_goal(ms)),
        Target::Relative(goals) => goals
            .iter()
            .map(|r| {
                let goal = median_of(r.case).map(|other| r.factor * other);
                format!("≤ {}× {}{}", fmt_goal(r.factor), r.short, mark(goal))
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The "Ratios" lines of the relative goals: `rpod run --rm true / podman
/// run --rm true = 0.31 (goal ≤ 0.33 ✓)`, one per goal.
fn ratio_lines(rows: &[Row], median_of: &dyn Fn(&str) -> Option<f64>) -> Vec<String> {
    let mut lines = Vec::new();
    for row in rows {
        let Target::Relative(goals) = row.target else {
            continue;
        };
        for r in goals {
            let ratio = match (median_of(row.name), median_of(r.case)) {
                (Some(m), Some(other)) if other > 0.0 => Some(m / other),
                _ => None,
            };
            let shown = match ratio {
                Some(x) if x <= r.factor => format!("{x:.2} (goal ≤ {} ✓)", fmt_goal(r.factor)),
                Some(x) => format!("{x:.2} (goal ≤ {} ✗)", fmt_goal(r.factor)),
                None => format!("n/a (goal ≤ {})", fmt_goal(r.factor)),
            };
            lines.push(format!("`{}` / `{}` = {shown}", row.name, r.case));
        }
    }
    lines
}

/// The RSS target cell: `≤ 12 MiB ✓` / `≤ 12 MiB ✗`, or `–`.
fn rss_target_cell(target_mib: Option<f64>, rss_mib: Option<f64>) -> String {
    match target_mib {
        None => "–".to_string(),
        Some(goal) => {
            let mark = match rss_mib {
                Some(m) if m <= goal => " ✓",
                Some(_) => " ✗",
                None => "",
            };
            format!("≤ {} MiB{mark}", fmt_goal(goal))
        }
    }
}

/// The markdown report: environment stamp, results table, exact commands.
fn report(env: &Env, args: &BenchArgs, rows: &[Row], shell_ms: Option<f64>) -> String {
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
    let load = load_average();
    out.push_str(&format!(
        "Date: {date} · kernel `{kernel}` · {cores} cores · load average at the end \
         (1/5/15 min): {load}\n\n"
    ));
    out.push_str(&format!(
        "Versions: rpod `{rev}` · {podman} · {runc} · {hyperfine}\n\n"
    ));
    let median_of = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .and_then(|r| r.outcome.as_ref().ok())
            .map(|m| m.median_ms)
    };
    out.push_str("| case | median (ms) | mean ± σ (ms) | target | peak RSS (MiB) | RSS target |\n");
    out.push_str("|---|---:|---:|---|---:|---|\n");
    for row in rows {
        match &row.outcome {
            Ok(m) => {
                let sd = m
                    .stddev_ms
                    .map_or_else(|| "?".to_string(), |s| format!("{s:.2}"));
                let rss_mib = m.rss_kib / 1024.0;
                out.push_str(&format!(
                    "| {} | {:.2} | {:.2} ± {sd} | {} | {rss_mib:.1} | {} |\n",
                    row.label,
                    m.median_ms,
                    m.mean_ms,
                    target_cell(row.target, Some(m.median_ms), &median_of),
                    rss_target_cell(row.rss_target_mib, Some(rss_mib)),
                ));
            }
            Err(_) => out.push_str(&format!(
                "| {} | n/a | n/a | {} | n/a | {} |\n",
                row.label,
                target_cell(row.target, None, &median_of),
                rss_target_cell(row.rss_target_mib, None),
            )),
        }
    }
    let ratios = ratio_lines(rows, &median_of);
    if !ratios.is_empty() {
        out.push_str(&format!("\nRatios (medians): {}.\n", ratios.join(" · ")));
    }
    out.push_str(&format!(
        "\nWall time: `hyperfine -N --warmup {} --runs {}` (at least 1 warm-up run for the \
         cases that run containers). Peak RSS: median of {} runs of `/usr/bin/time -f %M`, \
         the largest of the command and the children it waited for. `$BENCH_DIR` is a fresh \
         temporary directory. Targets: rpod's goals (✓ met / ✗ missed by the median); \
         `ref.` is podman's median in the reference measurement; `≤ 0.33× podman` compares \
         with another case's median in this run.\n\n",
        args.warmup, args.runs, args.rss_runs
    ));
    out.push_str(
        "- Each rpod case runs on its own fresh root (`$BENCH_DIR/case-<n>`) with its own SHM \
         lock segment (`--lock-name`), removed afterwards with `rpod system reset --force`. \
         Podman uses the host's storage; every podman object the benchmark creates is named \
         `rpod-bench-*` and removed by name after its case.\n",
    );
    let has = |what: &str| rows.iter().any(|r| r.label.contains(what));
    if has("ps -a") {
        out.push_str(
            "- `ps -a` cases: N is the number of containers `ps -a -q` listed before the \
         measurement. rpod's containers are made by `rpod create --rootfs $BENCH_DIR/rootfs \
         true` (busybox rootfs; `--num-locks 12288` for N=10000, as the default 2048 locks \
         cannot hold them), podman's by `podman --runtime runc create --name \
         rpod-bench-ctr-<i> rpod-bench-busybox true`; both outside the measurement, 2 at a \
         time. podman's N=0 case lists whatever containers the host has (\"pre-existing\").\n",
        );
    }
    if let Some(ms) = shell_ms {
        out.push_str(&format!(
            "- `create+rm`, `pod create+rm` and `pod create+start+rm -f`: one run is all the \
             commands, as `sh -c '… && …'`; the shell's own start-up (`sh -c true`: {ms:.2} ms \
             in this run) is included, for both tools.\n",
        ));
    }
    if has("pod create") {
        out.push_str(
            "- `pod create…`: both create the pod's infra container: rpod from the host's \
             static `catatonit`, podman with `--infra-image rpod-bench-pause --infra-name \
             rpod-bench-pod-infra`, a local image holding the host's static `catatonit` with \
             `ENTRYPOINT [\"/catatonit\", \"-P\"]`: what podman 4.3 would otherwise build \
             itself as `localhost/podman-pause:<version>-<stamp>` (no network needed either \
             way), imported under our own name so that only `rpod-bench-*` objects are \
             created. `pod create+start+rm -f` also starts the infra container (rpod builds \
             its infra rootfs on the first start, in the warm-up) and force-removes the \
             running pod.\n",
        );
    }
    if has("run --rm") || has("floor") {
        out.push_str(
            "- `run --rm true`: busybox `true` in a new, empty network namespace \
             (`--network none`), waited for and removed, all in one command. rpod runs it on \
             runc (`--runtime runc --cgroup-manager cgroupfs`, as podman here) under the \
             cgroup parent `/rpod_bench_cg_<pid>`, removed (bottom-up, in every hierarchy) \
             after the case; podman on its overlay storage, named `rpod-bench-run`. The \
             floor is conmon + runc with no engine: `$BENCH_DIR/floor/run.sh` (below) does \
             podman 4.3's exact conmon handshake (protocols.md §2.1–2.4, \"floor B\" of \
             §2.7) on a bundle made once outside the measurement (busybox rootfs, `runc \
             spec` with `terminal=false`, `args=[\"true\"]`), with a fresh container ID per \
             run: queue the start byte, start conmon, read the SYNC line, `runc start`, spin \
             until conmon's exit file appears, `runc delete --force`. Its container IDs are \
             `rpod-bench-floor-<pid>-*`; their runc state, cgroups (runc's default \
             `/<ID>`) and conmon processes are checked and removed after the case.\n",
        );
    }
    let skipped: Vec<_> = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|why| (&r.label, why)))
        .collect();
    if !skipped.is_empty() {
        out.push_str("\nNot measured:\n\n");
        for (label, why) in skipped {
            out.push_str(&format!("- {label}: {why}\n"));
        }
    }
    out.push_str("\nCommands");
    if let Some(rpod) = &env.rpod {
        out.push_str(&format!(
            " (`$RPOD` is `{} --root $BENCH_DIR/case-<n>/root --runroot \
             $BENCH_DIR/case-<n>/runroot --tmpdir $BENCH_DIR/case-<n>/tmpdir --lock-name \
             /rpod_bench_<pid>_<n>`: the case's own root and lock segment)",
            env.display(&[rpod.display().to_string()])
        ));
    }
    out.push_str(":\n\n");
    for row in rows {
        if let Ok(m) = &row.outcome {
            out.push_str(&format!("- {}: `{}`\n", row.label, m.command));
        }
    }
    if rows
        .iter()
        .any(|r| r.name == FLOOR_RUN && r.outcome.is_ok())
    {
        let script = floor::display_script(env.dir.path());
        out.push_str(&format!(
            "\nThe floor script, `$BENCH_DIR/floor/run.sh` (`$XTASK_PID` is the \
             benchmark's PID):\n\n```bash\n{}```\n",
            script.replace(&env.dir.path().display().to_string(), "$BENCH_DIR")
        ));
    }
    out
}

/// The 1/5/15-minute load averages, e.g. `1.02 0.87 0.80`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_string(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
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

/// Whether podman has `image`.
fn podman_image_exists(image: &str) -> Result<bool> {
    let exists = podman()
        .args(["image", "exists", image])
        .stdin(Stdio::null())
        .status()
        .context("failed to run podman")?;
    Ok(exists.success())
}

/// Imports the contents of `rootfs` into podman as `image`, with
/// `podman import --change` for each of `changes`.
fn podman_import(rootfs: &Path, image: &str, changes: &[&str]) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to run tar")?;
    let tar_out = tar.stdout.take().context("tar has no stdout")?;
    let mut import = podman();
    import.arg("import");
    for change in changes {
        import.args(["--change", change]);
    }
    let import = import
        .args(["-", image])
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
    eprintln!("xtask bench: imported podman image {image}");
    Ok(())
}

/// Makes sure podman has the `rpod-bench-busybox` image: a rootfs holding
/// the host's static busybox (`/bin/busybox`) and a symlink per applet,
/// imported with `podman import`. Does nothing if the image exists, and
/// touches no other image or container.
pub fn ensure_podman_busybox_image() -> Result<()> {
    if podman_image_exists(PODMAN_BUSYBOX_IMAGE)? {
        eprintln!("xtask bench: podman image {PODMAN_BUSYBOX_IMAGE} already exists");
        return Ok(());
    }
    let rootfs = tempfile::Builder::new()
        .prefix("rpod-bench-rootfs-")
        .tempdir()?;
    build_busybox_rootfs(rootfs.path())?;
    podman_import(rootfs.path(), PODMAN_BUSYBOX_IMAGE, &[])
}

/// Makes sure podman has the `rpod-bench-pause` pod infra image (see
/// [`PODMAN_PAUSE_IMAGE`]), built from the host's static
/// `/usr/bin/catatonit`. Does nothing if the image exists, and touches no
/// other image or container.
pub fn ensure_podman_pause_image() -> Result<()> {
    if podman_image_exists(PODMAN_PAUSE_IMAGE)? {
        eprintln!("xtask bench: podman image {PODMAN_PAUSE_IMAGE} already exists");
        return Ok(());
    }
    let catatonit = Path::new("/usr/bin/catatonit");
    ensure!(
        catatonit.exists(),
        "{} not found (install catatonit)",
        catatonit.display()
    );
    let rootfs = tempfile::Builder::new()
        .prefix("rpod-bench-pause-")
        .tempdir()?;
    for sub in ["dev", "etc", "proc", "sys"] {
        fs::create_dir(rootfs.path().join(sub))?;
    }
    fs::copy(catatonit, rootfs.path().join("catatonit"))?;
    podman_import(
        rootfs.path(),
        PODMAN_PAUSE_IMAGE,
        &[r#"ENTRYPOINT ["/catatonit", "-P"]"#],
    )
}

/// Lays out a minimal busybox rootfs in `dir`.
pub(crate) fn build_busybox_rootfs(dir: &Path) -> Result<()> {
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
                Tool::Floor => "floor ",
            };
            assert!(case.name.starts_with(prefix), "{}", case.name);
            assert_eq!(
                case.argvs().is_empty(),
                case.tool == Tool::Floor,
                "{}",
                case.name
            );
            if let Target::Relative(goals) = case.target {
                // Compared cases exist and are measured in the same run.
                for goal in goals {
                    assert!(CASES.iter().any(|c| c.name == goal.case), "{}", goal.case);
                }
            }
            if case.tool != Tool::Podman {
                // rpod never touches the host's podman objects anyway.
                assert!(case.podman_containers.is_empty() && case.podman_pods.is_empty());
                continue;
            }
            // Every podman object is ours and removed by the case's guard.
            for name in case.podman_containers.iter().chain(case.podman_pods) {
                assert!(name.starts_with(PODMAN_PREFIX), "{name}");
            }
            for argv in case.argvs() {
                for pair in argv.windows(2) {
                    if matches!(pair[0], "--name" | "--infra-name") {
                        let name = pair[1];
                        assert!(
                            case.podman_containers.contains(&name)
                                || case.podman_pods.contains(&name),
                            "{}: {name} is created but not cleaned up",
                            case.name
                        );
                    }
                }
                // Never a command that acts on all containers or pods.
                assert!(!argv.contains(&"--all"), "{}", case.name);
                assert!(!argv.contains(&"-a") || argv[0] == "ps", "{}", case.name);
            }
        }
    }

    #[test]
    fn quick_skips_only_the_10000_case() {
        let slow: Vec<_> = CASES.iter().filter(|c| c.slow).map(|c| c.name).collect();
        assert_eq!(slow, ["rpod ps -a N=10000"]);
        let big = CASES
            .iter()
            .find(|c| c.name == "rpod ps -a N=10000")
            .map(|c| c.num_locks);
        assert!(big.flatten().is_some_and(|n| n > 10_000));
    }

    #[test]
    fn run_cases() {
        let find = |name: &str| CASES.iter().find(|c| c.name == name);
        let rpod = find(RPOD_RUN).map(|c| (c.runs_containers, c.rss_target_mib, c.target));
        assert_eq!(
            rpod,
            Some((true, Some(12.0), Target::Relative(RUN_TARGETS)))
        );
        assert!(find(FLOOR_RUN).is_some_and(|c| matches!(c.run, Run::Floor)));
        // podman's container has a name of ours, removed by the guard.
        assert!(find(PODMAN_RUN).is_some_and(|c| c.podman_containers == ["rpod-bench-run"]));
    }

    #[test]
    fn ratio_line() {
        let row = |name: &'static str, target, ms: f64| Row {
            name,
            label: name.to_string(),
            target,
            rss_target_mib: None,
            outcome: Ok(Measurement {
                command: String::new(),
                median_ms: ms,
                mean_ms: ms,
                stddev_ms: None,
                rss_kib: 0.0,
            }),
        };
        let rows = [
            row(RPOD_RUN, Target::Relative(RUN_TARGETS), 66.0),
            row(PODMAN_RUN, Target::None, 220.0),
            row(FLOOR_RUN, Target::None, 50.0),
        ];
        let median_of = |name: &str| {
            rows.iter()
                .find(|r| r.name == name)
                .and_then(|r| r.outcome.as_ref().ok())
                .map(|m| m.median_ms)
        };
        assert_eq!(
            ratio_lines(&rows, &median_of),
            [
                "`rpod run --rm true` / `podman run --rm true` = 0.30 (goal ≤ 0.33 ✓)",
                "`rpod run --rm true` / `floor conmon+runc true` = 1.32 (goal ≤ 1.2 ✗)",
            ]
        );
        // A compared case that was not measured.
        let only_rpod = |name: &str| (name == RPOD_RUN).then_some(66.0);
        assert_eq!(
            ratio_lines(&rows, &only_rpod),
            [
                "`rpod run --rm true` / `podman run --rm true` = n/a (goal ≤ 0.33)",
                "`rpod run --rm true` / `floor conmon+runc true` = n/a (goal ≤ 1.2)",
            ]
        );
    }

    #[test]
    fn pair_is_one_shell_line() {
        let a = vec!["rpod".to_string(), "create".into(), "x y".into()];
        let b = vec!["rpod".to_string(), "rm".into(), "x".into()];
        assert_eq!(measured_argv(std::slice::from_ref(&a)), a);
        assert_eq!(
            measured_argv(&[a, b]),
            ["sh", "-c", "rpod create 'x y' && rpod rm x"]
        );
    }

    #[test]
    fn rootfs_placeholder() {
        let argv = with_prefix(
            &["rpod".to_string()],
            &["create", "--rootfs", ROOTFS, "true"],
            Path::new("/r"),
        );
        assert_eq!(argv, ["rpod", "create", "--rootfs", "/r", "true"]);
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_pid("rpod_bench_123_4"), Some(123));
        assert_eq!(segment_pid("rpod_bench_123_"), None);
        assert_eq!(segment_pid("rpod_bench_x_4"), None);
        assert_eq!(segment_pid("rpod_bench_try1"), None);
        assert_eq!(segment_pid("libpod_lock"), None);
    }

    #[test]
    fn target_cells() {
        let none = |_: &str| None;
        assert_eq!(
            target_cell(Target::AtMost(5.0), Some(4.2), &none),
            "≤ 5 ms ✓"
        );
        assert_eq!(
            target_cell(Target::AtMost(5.0), Some(5.1), &none),
            "≤ 5 ms ✗"
        );
        assert_eq!(target_cell(Target::AtMost(2.5), None, &none), "≤ 2.5 ms");
        assert_eq!(
            target_cell(Target::Reference(39.0), Some(50.0), &none),
            "ref. 39 ms"
        );
        assert_eq!(target_cell(Target::None, Some(1.0), &none), "–");
        let others = |case: &str| match case {
            PODMAN_RUN => Some(300.0),
            FLOOR_RUN => Some(60.0),
            _ => None,
        };
        assert_eq!(
            target_cell(Target::Relative(RUN_TARGETS), Some(70.0), &others),
            "≤ 0.33× podman ✓, ≤ 1.2× floor ✓"
        );
        assert_eq!(
            target_cell(Target::Relative(RUN_TARGETS), Some(100.0), &others),
            "≤ 0.33× podman ✗, ≤ 1.2× floor ✗"
        );
        assert_eq!(
            target_cell(Target::Relative(RUN_TARGETS), Some(70.0), &none),
            "≤ 0.33× podman, ≤ 1.2× floor"
        );
        assert_eq!(rss_target_cell(Some(12.0), Some(13.0)), "≤ 12 MiB ✗");
        assert_eq!(rss_target_cell(Some(12.0), Some(3.0)), "≤ 12 MiB ✓");
        assert_eq!(rss_target_cell(None, Some(3.0)), "–");
    }
}
