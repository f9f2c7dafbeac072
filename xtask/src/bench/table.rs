//! The benchmark table: every case, in report order, each podman case right
//! after the rpod case it mirrors (`info`, `ps -a`, `create+rm`, pods and
//! `run --rm`, with the conmon+runc floor next to the `run` cases).

use super::cases::{
    Case, FloorNet, Relative, Run, Target, Tool, ROOTFS, RPOD_RSS_TARGET_MIB, RUN_RM_TRUE,
};
use super::network::{NETAVARK_NET, NETAVARK_NET_DIR, PODMAN_NET, PODMAN_NET_DIR};
use super::setup::{PODMAN_BUSYBOX_IMAGE, PODMAN_PAUSE_IMAGE};

/// The benchmark table, in report order: each podman case right after the
/// rpod case it mirrors.
pub(super) const CASES: &[Case] = &[
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
        ..Case::plain(RPOD_RUN, Tool::Rpod, RUN_RM_TRUE)
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
        run: Run::Floor(FloorNet::None),
        runs_containers: true,
        ..Case::plain(FLOOR_RUN, Tool::Floor, &[])
    },
    // `run --rm true` on a CNI bridge network (each engine on a network of the bench's own:
    // see `network`), without and with one published port; the floor is the same plugin
    // chain run by hand around the conmon+runc floor.
    Case {
        runs_containers: true,
        network: true,
        rss_target_mib: Some(RPOD_RSS_TARGET_MIB),
        target: Target::Relative(NET_TARGETS),
        compare: &[PODMAN_CNI_RUN, PODMAN_NETAVARK_RUN],
        ..Case::plain(RPOD_NET_RUN, Tool::Rpod, RPOD_NET_ARGS)
    },
    Case {
        podman_containers: &["rpod-bench-netrun"],
        network: true,
        ..Case::plain(PODMAN_CNI_RUN, Tool::Podman, PODMAN_CNI_ARGS)
    },
    Case {
        podman_containers: &["rpod-bench-netrun"],
        network: true,
        ..Case::plain(PODMAN_NETAVARK_RUN, Tool::Podman, PODMAN_NETAVARK_ARGS)
    },
    Case {
        run: Run::Floor(FloorNet::Cni { publish: false }),
        runs_containers: true,
        ..Case::plain(FLOOR_CNI_RUN, Tool::Floor, &[])
    },
    Case {
        runs_containers: true,
        network: true,
        rss_target_mib: Some(RPOD_RSS_TARGET_MIB),
        target: Target::Relative(NET_PUBLISH_TARGETS),
        compare: &[PODMAN_CNI_PUBLISH_RUN, PODMAN_NETAVARK_PUBLISH_RUN],
        ..Case::plain(
            RPOD_NET_PUBLISH_RUN,
            Tool::Rpod,
            &[
                "run",
                "--rm",
                "--network",
                "bridge",
                "-p",
                RPOD_PUBLISH,
                "--rootfs",
                ROOTFS,
                "true",
            ],
        )
    },
    Case {
        podman_containers: &["rpod-bench-netrun"],
        network: true,
        ..Case::plain(
            PODMAN_CNI_PUBLISH_RUN,
            Tool::Podman,
            &[
                "--network-backend",
                "cni",
                "--network-config-dir",
                PODMAN_NET_DIR,
                "run",
                "--rm",
                "--network",
                PODMAN_NET,
                "-p",
                PODMAN_PUBLISH,
                "--name",
                "rpod-bench-netrun",
                PODMAN_BUSYBOX_IMAGE,
                "true",
            ],
        )
    },
    Case {
        podman_containers: &["rpod-bench-netrun"],
        network: true,
        ..Case::plain(
            PODMAN_NETAVARK_PUBLISH_RUN,
            Tool::Podman,
            &[
                "--network-backend",
                "netavark",
                "--network-config-dir",
                NETAVARK_NET_DIR,
                "run",
                "--rm",
                "--network",
                NETAVARK_NET,
                "-p",
                NETAVARK_PUBLISH,
                "--name",
                "rpod-bench-netrun",
                PODMAN_BUSYBOX_IMAGE,
                "true",
            ],
        )
    },
    Case {
        run: Run::Floor(FloorNet::Cni { publish: true }),
        runs_containers: true,
        ..Case::plain(FLOOR_CNI_PUBLISH_RUN, Tool::Floor, &[])
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

// The network `run` cases.

/// rpod's network `run` case.
pub(super) const RPOD_NET_RUN: &str = "rpod run --rm --network true";
/// Its argv: the default network of the case's own configuration (see `network`).
const RPOD_NET_ARGS: &[&str] = &[
    "run",
    "--rm",
    "--network",
    "bridge",
    "--rootfs",
    ROOTFS,
    "true",
];
/// rpod's network `run` case with one published port.
pub(super) const RPOD_NET_PUBLISH_RUN: &str = "rpod run --rm --network -p true";
/// podman's network `run` case on the CNI backend, named with `--network-backend` (the
/// default of this host's podman 4.3.1, but podman picks netavark on a host whose store is new
/// when netavark is installed).
pub(super) const PODMAN_CNI_RUN: &str = "podman run --rm --network (cni) true";
/// The same with one published port.
pub(super) const PODMAN_CNI_PUBLISH_RUN: &str = "podman run --rm --network (cni) -p true";
/// Its argv: the backend, the bench's own network config dir and network.
const PODMAN_CNI_ARGS: &[&str] = &[
    "--network-backend",
    "cni",
    "--network-config-dir",
    PODMAN_NET_DIR,
    "run",
    "--rm",
    "--network",
    PODMAN_NET,
    "--name",
    "rpod-bench-netrun",
    PODMAN_BUSYBOX_IMAGE,
    "true",
];
/// podman's network `run` case on the netavark backend (`--network-backend netavark`, on the
/// bench's own netavark network; the host's default backend is left as it is).
pub(super) const PODMAN_NETAVARK_RUN: &str = "podman run --rm --network (netavark) true";
/// The same with one published port.
pub(super) const PODMAN_NETAVARK_PUBLISH_RUN: &str = "podman run --rm --network (netavark) -p true";
/// Its argv: the backend, the bench's own network config dir and network.
const PODMAN_NETAVARK_ARGS: &[&str] = &[
    "--network-backend",
    "netavark",
    "--network-config-dir",
    NETAVARK_NET_DIR,
    "run",
    "--rm",
    "--network",
    NETAVARK_NET,
    "--name",
    "rpod-bench-netrun",
    PODMAN_BUSYBOX_IMAGE,
    "true",
];
/// The published port of rpod's `-p` case (loopback only).
const RPOD_PUBLISH: &str = "127.0.0.1:28480:80";
/// The published port of podman's `-p` case (loopback only).
const PODMAN_PUBLISH: &str = "127.0.0.1:28481:80";
/// The published port of podman's netavark `-p` case (loopback only).
const NETAVARK_PUBLISH: &str = "127.0.0.1:28483:80";
/// The CNI floor of the network `run` case: a netns and the plugin chain by hand around the
/// conmon+runc floor (see `cni_floor`).
pub(super) const FLOOR_CNI_RUN: &str = "floor netns+CNI+conmon+runc true";
/// The same with one port mapping.
pub(super) const FLOOR_CNI_PUBLISH_RUN: &str = "floor netns+CNI+conmon+runc -p true";

/// rpod's network `run` goal: at most 10 % over the CNI floor (the same plugin chain by hand
/// around conmon + runc).
pub(super) const NET_TARGETS: &[Relative] = &[Relative {
    case: FLOOR_CNI_RUN,
    short: "floor",
    factor: 1.1,
}];
/// The same with one published port.
pub(super) const NET_PUBLISH_TARGETS: &[Relative] = &[Relative {
    case: FLOOR_CNI_PUBLISH_RUN,
    short: "floor",
    factor: 1.1,
}];

// The three `run` cases, measured one after the other in the same run.

/// rpod's `run` case.
pub(super) const RPOD_RUN: &str = "rpod run --rm true";
/// podman's `run` case.
pub(super) const PODMAN_RUN: &str = "podman run --rm true";
/// The conmon+runc floor of `run`.
pub(super) const FLOOR_RUN: &str = "floor conmon+runc true";

/// rpod's `run` goals: at most a third of podman's time, and at most 20 %
/// over conmon + runc driven by a shell script.
pub(super) const RUN_TARGETS: &[Relative] = &[
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::isolation::PODMAN_PREFIX;

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
            for other in case.compare {
                assert!(CASES.iter().any(|c| c.name == *other), "{other}");
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
        assert!(find(FLOOR_RUN).is_some_and(|c| matches!(c.run, Run::Floor(FloorNet::None))));
        for (name, publish) in [(FLOOR_CNI_RUN, false), (FLOOR_CNI_PUBLISH_RUN, true)] {
            let case = find(name).map(|c| (c.run, c.runs_containers, c.not_measured));
            assert!(
                matches!(case, Some((Run::Floor(FloorNet::Cni { publish: p }), true, None)) if p == publish),
                "{name}"
            );
        }
        // podman's container has a name of ours, removed by the guard.
        assert!(find(PODMAN_RUN).is_some_and(|c| c.podman_containers == ["rpod-bench-run"]));
    }

    #[test]
    fn network_cases() {
        let find = |name: &str| CASES.iter().find(|c| c.name == name);
        for (rpod, floor, podman) in [
            (
                RPOD_NET_RUN,
                FLOOR_CNI_RUN,
                [PODMAN_CNI_RUN, PODMAN_NETAVARK_RUN],
            ),
            (
                RPOD_NET_PUBLISH_RUN,
                FLOOR_CNI_PUBLISH_RUN,
                [PODMAN_CNI_PUBLISH_RUN, PODMAN_NETAVARK_PUBLISH_RUN],
            ),
        ] {
            let case = find(rpod);
            assert!(
                case.is_some_and(|c| matches!(c.target, Target::Relative([goal])
                    if goal.case == floor && goal.factor == 1.1)
                    && c.compare == podman
                    && c.rss_target_mib == Some(12.0)),
                "{rpod}"
            );
            for name in podman {
                let case = find(name);
                assert!(case.is_some_and(|c| c.network && c.not_measured.is_none()));
                // Every podman network case names its backend and the bench's own network
                // config dir, and never podman's default network.
                let argv = case.map(|c| c.argvs()[0]).unwrap_or_default();
                let backend = if name.contains("netavark") {
                    [
                        "--network-backend",
                        "netavark",
                        "--network-config-dir",
                        NETAVARK_NET_DIR,
                    ]
                } else {
                    [
                        "--network-backend",
                        "cni",
                        "--network-config-dir",
                        PODMAN_NET_DIR,
                    ]
                };
                assert_eq!(argv[..4], backend, "{name}");
                let net = argv.windows(2).find(|w| w[0] == "--network").map(|w| w[1]);
                assert!(
                    net.is_some_and(|n| n == PODMAN_NET || n == NETAVARK_NET),
                    "{name}"
                );
            }
        }
    }
}
