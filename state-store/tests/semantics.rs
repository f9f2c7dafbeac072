//! Rule and message checks, run against both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use rpod_state::{
    ContainerConfig, ContainerRecord, ContainerState, ContainerStatus, ErrorKind, ExecSession,
    InMemoryState, LmdbState, PodConfig, PodRecord, PodState, State, StateError,
};

fn backends(f: impl Fn(&dyn State)) {
    f(&InMemoryState::new());
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    f(&LmdbState::open(dir.path()).unwrap());
}

fn ctr(id: &str, name: &str) -> ContainerRecord {
    ContainerRecord::new(ContainerConfig::new(id, name))
}

fn member(id: &str, name: &str, pod: &str) -> ContainerRecord {
    let mut c = ContainerConfig::new(id, name);
    c.pod = Some(pod.into());
    ContainerRecord::new(c)
}

#[test]
fn lookup_order_and_messages() {
    backends(|s| {
        s.add_container(&ctr("abc123", "web")).unwrap();
        s.add_container(&ctr("abd456", "abc123x")).unwrap();
        s.add_pod(&PodRecord::new(PodConfig::new("f00d", "mypod")))
            .unwrap();

        assert_eq!(s.lookup_container("abc123").unwrap().name(), "web"); // full ID
        assert_eq!(s.lookup_container("abc123x").unwrap().id(), "abd456"); // name
        assert_eq!(s.lookup_container("abd").unwrap().id(), "abd456"); // unique prefix
        let err = s.lookup_container("ab").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AmbiguousPrefix);
        match &err {
            StateError::AmbiguousPrefix { candidates, .. } => {
                assert_eq!(candidates, &["abc123", "abd456"])
            }
            e => panic!("{e}"),
        }
        assert!(err.to_string().contains("abc123, abd456"), "{err}");

        let err = s.lookup_container("mypod").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoSuchContainer);
        assert_eq!(
            err.to_string(),
            "\"mypod\" is a pod, not a container: no such container"
        );
        let err = s.lookup_container("f0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"f0\" is a pod, not a container: no such container"
        );
        let err = s.lookup_pod("web").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoSuchPod);
        assert_eq!(
            err.to_string(),
            "\"web\" is a container, not a pod: no such pod"
        );
        assert_eq!(s.lookup_pod("f").unwrap().name(), "mypod");
        assert_eq!(
            s.lookup_container("zzz").unwrap_err().kind(),
            ErrorKind::NoSuchContainer
        );
        assert_eq!(
            s.lookup_container("").unwrap_err().kind(),
            ErrorKind::EmptyId
        );
        assert_eq!(
            s.lookup_container("").unwrap_err().to_string(),
            "name or ID cannot be empty"
        );

        // A pod and a container share neither names nor IDs.
        assert_eq!(
            s.add_pod(&PodRecord::new(PodConfig::new("x1", "web")))
                .unwrap_err()
                .kind(),
            ErrorKind::NameInUse
        );
        assert_eq!(
            s.add_container(&ctr("f00d", "other")).unwrap_err().kind(),
            ErrorKind::IdInUse
        );
    });
}

#[test]
fn dependencies_and_pods() {
    backends(|s| {
        s.add_container(&ctr("base", "base")).unwrap();
        let mut c = ContainerConfig::new("user", "user");
        c.net_ns_ctr = Some("base".into());
        c.dependencies = vec!["base".into()];
        s.add_container(&ContainerRecord::new(c)).unwrap();
        assert_eq!(
            s.container_in_use("base").unwrap(),
            vec!["user".to_string()]
        );
        let err = s.remove_container("base").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HasDependants);
        assert_eq!(
            err.to_string(),
            "container base is a dependency of the following containers: user"
        );

        let mut c = ContainerConfig::new("ghost-user", "ghost-user");
        c.dependencies = vec!["ghost".into()];
        let err = s.add_container(&ContainerRecord::new(c)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoSuchContainer);
        assert!(
            err.to_string().contains("depends on container ghost"),
            "{err}"
        );
        assert!(
            !s.has_container("ghost-user").unwrap(),
            "failed add must leave nothing"
        );
        assert!(s.lookup_container("ghost-user").is_err());

        s.add_pod(&PodRecord::new(PodConfig::new("pod1", "pod1")))
            .unwrap();
        assert_eq!(
            s.add_container(&member("m1", "m1", "pod1"))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArg
        );
        s.add_container_to_pod("pod1", &member("m1", "m1", "pod1"))
            .unwrap();
        let mut m2 = member("m2", "m2", "pod1");
        m2.config.ipc_ns_ctr = Some("m1".into());
        s.add_container_to_pod("pod1", &m2).unwrap();
        // Pod rules.
        let mut bad = member("m3", "m3", "pod1");
        bad.config.dependencies = vec!["base".into()];
        assert_eq!(
            s.add_container_to_pod("pod1", &bad).unwrap_err().kind(),
            ErrorKind::InvalidArg
        );
        let mut bad = ctr("o1", "o1");
        bad.config.dependencies = vec!["m1".into()];
        assert_eq!(
            s.add_container(&bad).unwrap_err().kind(),
            ErrorKind::InvalidArg
        );

        assert_eq!(
            s.remove_container("m1").unwrap_err().kind(),
            ErrorKind::PodExists
        );
        assert_eq!(
            s.remove_pod("pod1").unwrap_err().kind(),
            ErrorKind::NotEmpty
        );
        assert_eq!(
            s.remove_container_from_pod("pod1", "m1")
                .unwrap_err()
                .kind(),
            ErrorKind::HasDependants
        );
        assert_eq!(
            s.remove_container_from_pod("pod1", "base")
                .unwrap_err()
                .kind(),
            ErrorKind::NoSuchContainer
        );
        assert!(s.pod_has_container("pod1", "m2").unwrap());
        assert_eq!(
            s.pod_container_ids("pod1").unwrap(),
            vec!["m1".to_string(), "m2".to_string()]
        );
        assert_eq!(s.pod_containers("pod1").unwrap().len(), 2);
        s.remove_pod_containers("pod1").unwrap();
        assert!(s.pod_container_ids("pod1").unwrap().is_empty());
        assert!(!s.has_container("m1").unwrap());
        s.remove_pod("pod1").unwrap();
        assert!(!s.has_pod("pod1").unwrap());
        // Names are free again.
        s.add_container(&ctr("m1", "pod1")).unwrap();
    });
}

#[test]
fn namespaces() {
    backends(|s| {
        let mut c = ContainerConfig::new("r1", "red-one");
        c.namespace = "red".into();
        s.add_container(&ContainerRecord::new(c)).unwrap();
        s.add_container(&ctr("n1", "plain")).unwrap();
        let all = s;
        let blue = all.view("blue").unwrap();
        let s = &*blue;
        assert_eq!(s.namespace().unwrap(), "blue");
        assert_eq!(all.namespace().unwrap(), "");
        assert_eq!(s.container("r1").unwrap_err().kind(), ErrorKind::NsMismatch);
        assert!(!s.has_container("r1").unwrap());
        assert_eq!(
            s.lookup_container("red-one").unwrap_err().kind(),
            ErrorKind::NoSuchContainer
        );
        assert_eq!(
            s.lookup_container("r").unwrap_err().kind(),
            ErrorKind::NoSuchContainer
        );
        assert!(s.all_containers().unwrap().is_empty());
        assert_eq!(
            s.add_container(&ctr("n2", "x")).unwrap_err().kind(),
            ErrorKind::NsMismatch
        );
        assert_eq!(
            s.save_container("r1", &ContainerState::default())
                .unwrap_err()
                .kind(),
            ErrorKind::NsMismatch
        );
        assert_eq!(
            s.update_container("r1").unwrap_err().kind(),
            ErrorKind::NsMismatch
        );
        // A view of a view has just the namespace asked for.
        let red = s.view("red").unwrap();
        assert_eq!(red.lookup_container("r").unwrap().id(), "r1");
        assert_eq!(red.all_containers().unwrap().len(), 1);
        assert_eq!(red.view("").unwrap().all_containers().unwrap().len(), 2);
        assert_eq!(all.all_containers().unwrap().len(), 2);
        // Views share the data: what one adds, the others see.
        red.add_container(&ContainerRecord::new({
            let mut c = ContainerConfig::new("r2", "red-two");
            c.namespace = "red".into();
            c
        }))
        .unwrap();
        assert!(all.has_container("r2").unwrap());
        assert!(!s.has_container("r2").unwrap());
    });
}

/// Two threads sharing one handle each work through their own view: neither sees the other's namespace, at
/// no point (a handle-wide namespace switch would show up here), and a view of "" sees everything.
#[test]
fn views_in_two_threads_do_not_see_each_other() {
    backends(|s| {
        let rounds = 40;
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for ns in ["red", "blue"] {
                let barrier = &barrier;
                scope.spawn(move || {
                    let view = s.view(ns).unwrap();
                    barrier.wait();
                    for i in 0..rounds {
                        let mut c = ContainerConfig::new(format!("{ns}-{i}"), format!("{ns}{i}"));
                        c.namespace = ns.into();
                        view.add_container(&ContainerRecord::new(c)).unwrap();
                        let seen = view.all_containers().unwrap();
                        assert_eq!(seen.len(), i + 1, "{ns} sees {seen:?}");
                        assert!(seen.iter().all(|c| c.config.namespace == ns), "{seen:?}");
                        assert_eq!(view.namespace().unwrap(), ns);
                    }
                });
            }
        });
        assert_eq!(s.namespace().unwrap(), "");
        let all = s.view("").unwrap();
        assert_eq!(all.all_containers().unwrap().len(), 2 * rounds);
        assert_eq!(s.all_containers().unwrap().len(), 2 * rounds);
        assert_eq!(
            all.view("red")
                .unwrap()
                .container("blue-0")
                .unwrap_err()
                .kind(),
            ErrorKind::NsMismatch
        );
    });
}

#[test]
fn refresh_resets_per_boot_state() {
    backends(|s| {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let running = ContainerState {
            status: ContainerStatus::Running,
            pid: 42,
            conmon_pid: 41,
            exit_code: 3,
            started: Some(t),
            finished: Some(t),
            oom_killed: true,
            netns_path: "/run/netns/x".into(),
            network_results: vec![serde_json::json!({"ip": "10.88.0.2"})],
            exec_sessions: [(
                "e".to_string(),
                ExecSession {
                    command: vec!["sh".into()],
                    pid: 7,
                },
            )]
            .into(),
        };
        s.add_container(&ctr("a", "a")).unwrap();
        s.add_container(&ctr("b", "b")).unwrap();
        s.save_container("a", &running).unwrap();
        s.save_container(
            "b",
            &ContainerState {
                status: ContainerStatus::Exited,
                ..running.clone()
            },
        )
        .unwrap();
        s.add_pod(&PodRecord::new(PodConfig::new("p", "p")))
            .unwrap();
        s.save_pod(
            "p",
            &PodState {
                infra_container_id: "a".into(),
                cgroup_path: "/sys/fs/cgroup/p".into(),
            },
        )
        .unwrap();
        s.view("elsewhere").unwrap().refresh().unwrap(); // refresh ignores the namespace

        let a = s.update_container("a").unwrap();
        assert_eq!(a.status, ContainerStatus::Configured);
        assert_eq!((a.pid, a.conmon_pid, a.exit_code), (0, 0, 3));
        assert_eq!(
            (a.started, a.finished, a.oom_killed),
            (Some(t), Some(t), true)
        );
        assert!(
            a.netns_path.is_empty() && a.network_results.is_empty() && a.exec_sessions.is_empty()
        );
        assert_eq!(
            s.update_container("b").unwrap().status,
            ContainerStatus::Exited
        );
        assert_eq!(
            s.update_pod("p").unwrap(),
            PodState {
                infra_container_id: "a".into(),
                cgroup_path: String::new()
            }
        );
    });
}

#[test]
fn rewrite_config_and_close() {
    backends(|s| {
        s.add_container(&ctr("a", "a")).unwrap();
        let mut cfg = s.container("a").unwrap().config;
        cfg.lock_id = 77;
        s.rewrite_container_config("a", &cfg).unwrap();
        assert_eq!(s.lookup_container("a").unwrap().config.lock_id, 77);
        cfg.name = "renamed".into();
        assert_eq!(
            s.rewrite_container_config("a", &cfg).unwrap_err().kind(),
            ErrorKind::InvalidArg
        );
        let view = s.view("").unwrap();
        s.close().unwrap();
        s.close().unwrap();
        assert_eq!(s.all_containers().unwrap_err().kind(), ErrorKind::DbClosed);
        assert_eq!(
            s.add_container(&ctr("b", "b")).unwrap_err().kind(),
            ErrorKind::DbClosed
        );
        assert_eq!(
            s.view("x").err().map(|e| e.kind()),
            Some(ErrorKind::DbClosed)
        );
        assert_eq!(s.namespace().unwrap_err().kind(), ErrorKind::DbClosed);
        // A view taken before has its own closed flag and still sees the data.
        assert_eq!(view.container("a").unwrap().config.lock_id, 77);
        view.close().unwrap();
        assert_eq!(
            view.all_containers().unwrap_err().kind(),
            ErrorKind::DbClosed
        );
    });
}

#[test]
fn records_are_forward_and_backward_compatible() {
    // An old record with only a few fields decodes with defaults; unknown fields are ignored.
    let old = r#"{"id":"abc","name":"web","created":1000000000,"unknown_future_field":[1,2]}"#;
    let c: ContainerConfig = serde_json::from_str(old).unwrap();
    assert_eq!(
        (c.id.as_str(), c.name.as_str(), c.stop_timeout),
        ("abc", "web", 10)
    );
    assert_eq!(c.created, UNIX_EPOCH + Duration::from_secs(1));
    let st: ContainerState = serde_json::from_str(r#"{"status":"running","pid":5}"#).unwrap();
    assert_eq!((st.status, st.pid), (ContainerStatus::Running, 5));
    for status in ContainerStatus::ALL {
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(json, format!("\"{status}\""));
        assert_eq!(
            status.to_string().parse::<ContainerStatus>().unwrap(),
            status
        );
    }
    assert_eq!(ContainerStatus::Exited.as_str(), "exited");
    // Dependencies are the union, sorted, without duplicates.
    let mut c = ContainerConfig::new("x", "x");
    c.net_ns_ctr = Some("b".into());
    c.ipc_ns_ctr = Some("a".into());
    c.dependencies = vec!["b".into(), "c".into()];
    assert_eq!(c.dependencies(), vec!["a", "b", "c"]);
}

#[test]
fn for_each_container_streams_what_all_containers_lists() {
    backends(|s| {
        for i in 0..20 {
            s.add_container(&ctr(
                &format!("{i:02x}{}", "a".repeat(62)),
                &format!("c{i}"),
            ))
            .unwrap();
        }
        s.add_pod(&PodRecord::new(PodConfig::new("f".repeat(64), "p")))
            .unwrap();
        s.add_container_to_pod(
            &"f".repeat(64),
            &member(&"e".repeat(64), "m", &"f".repeat(64)),
        )
        .unwrap();
        let all: Vec<String> = s
            .all_containers()
            .unwrap()
            .into_iter()
            .map(|c| c.config.id)
            .collect();
        let mut streamed = Vec::new();
        s.for_each_container(&mut |c| {
            streamed.push(c.config.id);
            true
        })
        .unwrap();
        assert_eq!(streamed, all);
        assert_eq!(streamed.len(), 21);
        // Stops early when asked to.
        let mut n = 0;
        s.for_each_container(&mut |_| {
            n += 1;
            n < 5
        })
        .unwrap();
        assert_eq!(n, 5);
    });
}

#[test]
fn object_count_counts_containers_and_pods_of_every_namespace() {
    backends(|s| {
        assert_eq!(s.object_count().unwrap(), 0);
        let ns = s.view("ns1").unwrap();
        let mut c = ContainerConfig::new("c1", "one");
        c.namespace = "ns1".into();
        ns.add_container(&ContainerRecord::new(c)).unwrap();
        s.add_container(&ctr("c2", "two")).unwrap();
        s.add_pod(&PodRecord::new(PodConfig::new("p1", "pod")))
            .unwrap();
        s.add_container_to_pod("p1", &member("c3", "three", "p1"))
            .unwrap();
        let other = s.view("other").unwrap();
        for view in [s, ns.as_ref(), other.as_ref()] {
            assert_eq!(view.object_count().unwrap(), 4, "namespaces do not filter");
        }
        s.remove_container("c2").unwrap();
        s.remove_pod_containers("p1").unwrap();
        assert_eq!(s.object_count().unwrap(), 2);
    });
}
