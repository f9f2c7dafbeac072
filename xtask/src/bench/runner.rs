//! Running one case: the paths every case shares ([`Env`]), the argv of a
//! measured run, and [`run_case`], which sets the case up under its guards
//! (fresh rpod root, cgroup parent, podman objects or the floor), creates
//! its containers, measures it and cleans up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{anyhow, ensure, Result};

use super::cases::{Case, FloorNet, Run, Tool, ROOTFS};
use super::floor;
use super::isolation::{podman_ctr_name, CgroupParent, PodmanObjects, RpodRoot, CGROUP_PREFIX};
use super::measure::measure;
use super::network::{resolve_dir, BenchNetworks};
use super::process::{command, run_capturing};
use super::report::Row;
use super::setup::PODMAN_BUSYBOX_IMAGE;
use super::BenchArgs;
use crate::util::{self, shell_join};

/// What every case shares.
pub(super) struct Env {
    /// The release rpod binary, when any rpod case is selected.
    pub(super) rpod: Option<PathBuf>,
    /// Throw-away directory holding the busybox rootfs and the rpod roots.
    pub(super) dir: tempfile::TempDir,
    /// A busybox rootfs for `rpod create --rootfs`.
    pub(super) rootfs: PathBuf,
}

impl Env {
    /// A shell line for the report, with machine-specific paths shortened.
    pub(super) fn display(&self, argv: &[String]) -> String {
        let root = util::repo_root().display().to_string();
        self.hide_dir(&shell_join(argv))
            .replace(&format!("{root}/"), "")
    }

    /// `text` with the bench directory shown as `$BENCH_DIR`.
    pub(super) fn hide_dir(&self, text: &str) -> String {
        text.replace(&self.dir.path().display().to_string(), "$BENCH_DIR")
    }
}

/// `prefix` + `args`, with [`ROOTFS`] replaced by `rootfs`.
pub(super) fn with_prefix(prefix: &[String], args: &[&str], rootfs: &Path) -> Vec<String> {
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

/// The global options (`--flag value` pairs) that start a podman argv of the table, e.g.
/// `--network-backend netavark --network-config-dir DIR` before `run`.
fn podman_global_flags<'a>(argv: &'a [&'a str]) -> &'a [&'a str] {
    let mut end = 0;
    while end + 1 < argv.len() && argv[end].starts_with("--") {
        end += 2;
    }
    &argv[..end]
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

/// Sets up, measures and cleans up one case.
pub(super) fn run_case(env: &Env, seq: usize, case: &Case, args: &BenchArgs) -> Result<Row> {
    // The guards are declared before anything is created so that they clean
    // up on every error path; they are dropped (cleaning up) at return, in
    // reverse order (the cgroup parent last, once the root is reset).
    let mut cgroup_parent = None;
    let mut rpod_root = None;
    let mut podman_objects = None;
    let mut floor = None;
    let mut networks = None;
    let mut net_conf = None;
    if case.network {
        let (guard, conf) = BenchNetworks::new(env.dir.path())?;
        networks = Some(guard);
        net_conf = Some(conf);
    }
    let prefix: Vec<String> = match case.tool {
        Tool::Rpod => {
            let mut extra = Vec::new();
            if let Some(conf) = &net_conf {
                extra.extend(["--config".to_string(), conf.display().to_string()]);
            }
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
        Tool::Floor => {
            let net = match case.run {
                Run::Floor(net) => net,
                _ => FloorNet::None,
            };
            floor.insert(floor::Floor::new(env.dir.path(), net)?).argv()
        }
        Tool::Podman => {
            let mut containers: Vec<String> = (1..=case.containers).map(podman_ctr_name).collect();
            containers.extend(case.podman_containers.iter().map(|s| (*s).to_string()));
            let pods = case.podman_pods.iter().map(|s| (*s).to_string()).collect();
            // Leftovers are removed with the case's own global flags (its network backend).
            let global = case
                .argvs()
                .first()
                .map(|argv| podman_global_flags(argv))
                .unwrap_or_default()
                .iter()
                .map(|w| resolve_dir((*w).to_string(), env.dir.path()))
                .collect();
            podman_objects = Some(PodmanObjects::new(containers, pods, global)?);
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
            .map(|a| {
                with_prefix(&prefix, a, &env.rootfs)
                    .into_iter()
                    .map(|w| resolve_dir(w, env.dir.path()))
                    .collect()
            })
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
    drop(networks);
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
    let out = util::output(&mut command(&argv)?)?;
    Ok(u32::try_from(
        out.lines().filter(|l| !l.trim().is_empty()).count(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn podman_global_options() {
        let argv = [
            "--network-backend",
            "netavark",
            "--network-config-dir",
            "d",
            "run",
            "x",
        ];
        assert_eq!(
            podman_global_flags(&argv),
            ["--network-backend", "netavark", "--network-config-dir", "d"]
        );
        assert!(podman_global_flags(&["run", "--rm", "x"]).is_empty());
        assert!(podman_global_flags(&["--flag"]).is_empty());
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
}
