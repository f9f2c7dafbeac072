//! What a benchmark case is: the engine it runs ([`Tool`]), what one
//! measured run executes ([`Run`]), the goal printed next to its median
//! ([`Target`]) and its set-up ([`Case`]). The cases themselves are in
//! [`super::table`].

use super::setup::PODMAN_BUSYBOX_IMAGE;

/// Stands for the busybox rootfs directory in rpod argv tables.
pub(crate) const ROOTFS: &str = "{rootfs}";

/// `run --rm` of `true` on the busybox rootfs, with no network.
pub(crate) const RUN_RM_TRUE: &[&str] = &[
    "run",
    "--rm",
    "--network",
    "none",
    "--rootfs",
    ROOTFS,
    "true",
];

/// Peak RSS goal of the rpod state-store cases.
pub(super) const RPOD_RSS_TARGET_MIB: f64 = 12.0;

/// Which engine a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tool {
    /// The release `rpod` binary with isolated storage directories.
    Rpod,
    /// The host's podman, always with `--runtime runc`.
    Podman,
    /// conmon + runc driven by a shell script, with no engine at all: the
    /// floor of `run` (see [`super::floor`]).
    Floor,
}

/// What one measured run executes (arguments after `rpod <isolation flags>`
/// or `podman --runtime runc`; [`ROOTFS`] stands for the busybox rootfs).
#[derive(Debug, Clone, Copy)]
pub(super) enum Run {
    /// `tool args...`.
    Argv(&'static [&'static str]),
    /// `sh -c 'tool step1... && tool step2... && ...'`: every step in one
    /// measured run (the shell's own start-up is included, for both tools).
    Seq(&'static [&'static [&'static str]]),
    /// `bash $BENCH_DIR/floor…/run.sh`: the conmon+runc floor (see
    /// [`super::floor`]), with this network around it.
    Floor(FloorNet),
}

/// The network around a floor run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FloorNet {
    /// None but runc's new, empty netns (as `--network none`).
    None,
    /// A netns and the CNI plugin chain by hand (see [`super::cni_floor`]); `publish`: with
    /// one port mapping.
    Cni { publish: bool },
}

/// The goal printed next to a case's median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Target {
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
pub(super) struct Relative {
    /// The name of the case compared against (measured in the same run).
    pub(super) case: &'static str,
    /// How the target cell names that case.
    pub(super) short: &'static str,
    /// The median must be at most `factor` × the other case's median.
    pub(super) factor: f64,
}

/// One benchmark case.
pub(super) struct Case {
    /// Unique; `--filter` matches it.
    pub(super) name: &'static str,
    /// The engine it runs.
    pub(super) tool: Tool,
    /// What one measured run executes.
    pub(super) run: Run,
    /// Containers created before the measurement (outside it) by running
    /// `rpod create --rootfs <busybox> true` / `podman create --name
    /// rpod-bench-ctr-<i> rpod-bench-busybox true`; removed afterwards.
    pub(super) containers: u32,
    /// Report N, the number of containers `ps -a` lists (counted).
    pub(super) reports_n: bool,
    /// `--num-locks` of the case's rpod root: the default (2048) cannot give
    /// a lock to 10 000 containers.
    pub(super) num_locks: Option<u32>,
    /// Podman containers (besides `rpod-bench-ctr-<i>`) the case creates by
    /// name: removed before and after it.
    pub(super) podman_containers: &'static [&'static str],
    /// Podman pods the case creates by name: removed before and after it.
    pub(super) podman_pods: &'static [&'static str],
    /// The goal printed next to the median.
    pub(super) target: Target,
    /// Peak RSS goal in MiB.
    pub(super) rss_target_mib: Option<f64>,
    /// Skipped by `--quick`.
    pub(super) slow: bool,
    /// The case runs containers (rpod: `--runtime runc --cgroup-manager
    /// cgroupfs --cgroup-parent /rpod_bench_cg_<pid>`, a parent removed after
    /// the case; at least one warm-up run, which also builds rpod's pod infra
    /// rootfs outside the measurement).
    pub(super) runs_containers: bool,
    /// Never measured (reported as n/a), with the reason.
    pub(super) not_measured: Option<&'static str>,
    /// The case uses the bench's own CNI networks (see [`super::network`]): rpod gets
    /// `--config` with its default network, podman's argv names its network config dir
    /// ([`super::network::PODMAN_NET_DIR`]); their bridges are deleted after the case.
    pub(super) network: bool,
    /// Cases of the same run whose medians this case's is compared with, with no goal (the
    /// report prints the ratios).
    pub(super) compare: &'static [&'static str],
}

impl Case {
    /// A case measuring `tool args...` with no set-up and no goal.
    pub(super) const fn plain(
        name: &'static str,
        tool: Tool,
        args: &'static [&'static str],
    ) -> Case {
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
            network: false,
            compare: &[],
        }
    }

    /// `ps -a` on a store holding `containers` containers made by the case.
    pub(super) const fn ps(
        name: &'static str,
        tool: Tool,
        containers: u32,
        target: Target,
    ) -> Case {
        let mut case = Case::plain(name, tool, &["ps", "-a"]);
        case.containers = containers;
        case.reports_n = true;
        case.target = target;
        case.with_rpod_rss_target()
    }

    /// One run = every step, one after the other (see [`Run::Seq`]).
    pub(super) const fn seq(
        name: &'static str,
        tool: Tool,
        steps: &'static [&'static [&'static str]],
        target: Target,
    ) -> Case {
        let mut case = Case::plain(name, tool, &[]);
        case.run = Run::Seq(steps);
        case.target = target;
        case.with_rpod_rss_target()
    }

    /// The case, with rpod's peak RSS goal when it is an rpod case.
    const fn with_rpod_rss_target(mut self) -> Case {
        if matches!(self.tool, Tool::Rpod) {
            self.rss_target_mib = Some(RPOD_RSS_TARGET_MIB);
        }
        self
    }

    /// Every engine argv of the case's measured run (one, or one per step;
    /// none for the floor script).
    pub(super) fn argvs(&self) -> Vec<&'static [&'static str]> {
        match self.run {
            Run::Argv(a) => vec![a],
            Run::Seq(steps) => steps.to_vec(),
            Run::Floor(_) => Vec::new(),
        }
    }

    /// Whether podman needs `image` for this case.
    pub(super) fn uses_podman_image(&self, image: &str) -> bool {
        self.tool == Tool::Podman
            && self.not_measured.is_none()
            && ((image == PODMAN_BUSYBOX_IMAGE && self.containers > 0)
                || self.argvs().iter().any(|a| a.contains(&image)))
    }
}
