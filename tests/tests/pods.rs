//! Pods on real runc + conmon: the demo exchange (httpd and wget in one pod), shared PID
//! namespaces, `pod stop` and `pod rm -f` of a running pod leaving nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    cgroup_dirs, eventually, expect_code, expect_ok, expect_stderr_has, mounts_under,
    processes_mentioning, sandbox, text, Sandbox,
};

/// Member IDs of a pod (infra container included), from `pod inspect`.
fn member_ids(sb: &Sandbox, pod: &str) -> Vec<String> {
    sb.pod_inspect(pod)["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// `pod stop -t 1` and `pod rm` of `pods` (the last ones): nothing may be left of them.
fn stop_and_remove_pods(sb: &Sandbox, pods: &[&str]) {
    let ids: Vec<String> = pods.iter().flat_map(|p| member_ids(sb, p)).collect();
    sb.ok(&[&["pod", "stop", "-t", "1"], pods].concat());
    sb.ok(&[&["pod", "rm"], pods].concat());
    sb.assert_empty();
    for id in &ids {
        sb.assert_container_gone(id);
    }
}

#[test]
fn demo_httpd_and_wget_in_one_pod() {
    let Some(sb) = sandbox() else { return };
    let page = "hello from the rpod pod\n";
    std::fs::create_dir_all(sb.rootfs.join("www")).unwrap();
    std::fs::write(sb.rootfs.join("www/index.html"), page).unwrap();
    let pod_id = sb.ok(&["pod", "create", "--name", "web"]).trim().to_owned();
    assert_eq!(pod_id.len(), 64);
    let srv = sb.create_ctr(
        &["--pod", "web", "--name", "srv"],
        &["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"],
    );
    assert_eq!(sb.ok(&["pod", "start", "web"]).trim(), "web");
    // httpd needs a moment to listen: retry for up to ~5 s.
    let mut last = String::new();
    let got = eventually(Duration::from_secs(5), || {
        let out = sb.run_ctr(
            &["--rm", "--pod", "web"],
            &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
        );
        last = format!(
            "{:?}: {}{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        out.status.success() && text(&out.stdout) == page
    });
    assert!(got, "wget never got the page; last attempt: {last}");

    let pod_ps = sb.ok(&["pod", "ps", "--ctr-status"]);
    assert!(pod_ps.contains("STATUS OF CONTAINERS"), "{pod_ps}");
    let row = pod_ps.lines().find(|l| l.contains("web")).unwrap();
    assert!(row.contains("Running"), "{pod_ps}");
    assert!(row.contains("srv:running"), "{pod_ps}");
    assert!(
        row.contains(&format!("{}-infra:running", &pod_id[..12])),
        "{pod_ps}"
    );
    let ps = sb.ok(&["ps"]);
    assert!(ps.contains("srv") && ps.contains("httpd"), "{ps}");
    assert!(ps.contains(&pod_id[..12]), "{ps}");
    // The --rm'd wget containers are gone (removed by rpod run or conmon's cleanup).
    assert!(eventually(Duration::from_secs(5), || sb.ps_json().len() == 2));
    let logs = sb.run(&["logs", "srv"]);
    expect_ok(&logs);
    let members = member_ids(&sb, "web");
    assert_eq!(members.len(), 2);
    assert!(members.contains(&srv));

    // httpd is PID 1 of its container and ignores SIGTERM: do not wait the default 10 s.
    stop_and_remove_pods(&sb, &["web"]);
}

/// Creates a pod named `pod` with `share` (None: the default), members `a` (`sleep 1234`) and
/// `b` (`sleep 999`), starts it and returns what `exec b ps` prints.
fn ps_seen_from_b(sb: &Sandbox, pod: &str, share: Option<&str>) -> String {
    let mut args = vec!["pod", "create", "--name", pod];
    if let Some(s) = share {
        args.extend(["--share", s]);
    }
    sb.ok(&args);
    for (name, secs) in [("a", "1234"), ("b", "999")] {
        let name = format!("{pod}-{name}");
        let flags = ["--pod", pod, "--name", &name, "--stop-timeout", "1"];
        sb.create_ctr(&flags, &["sleep", secs]);
    }
    sb.ok(&["pod", "start", pod]);
    let out = sb.run(&["exec", &format!("{pod}-b"), "ps"]);
    expect_ok(&out);
    text(&out.stdout)
}

#[test]
fn share_pid_lets_members_see_each_other() {
    let Some(sb) = sandbox() else { return };
    let shared = ps_seen_from_b(&sb, "shared", Some("pid,net,ipc,uts"));
    assert!(shared.contains("sleep 1234"), "{shared}");
    assert!(shared.contains("sleep 999"), "{shared}");
    // The infra container's catatonit is PID 1 of the shared namespace.
    assert!(
        shared
            .lines()
            .any(|l| l.split_whitespace().next() == Some("1") && l.contains("catatonit")),
        "{shared}"
    );
    let v = sb.pod_inspect("shared");
    assert_eq!(
        v["SharedNamespaces"],
        serde_json::json!(["pid", "net", "ipc", "uts"])
    );

    let private = ps_seen_from_b(&sb, "private", None);
    assert!(!private.contains("sleep 1234"), "{private}");
    assert!(!private.contains("catatonit"), "{private}");
    // b's own sleep is PID 1 of its own namespace.
    assert!(
        private
            .lines()
            .any(|l| l.split_whitespace().next() == Some("1") && l.contains("sleep 999")),
        "{private}"
    );
    stop_and_remove_pods(&sb, &["shared", "private"]);
}

#[test]
fn pod_stop_then_rm_force_of_a_running_pod_leaves_nothing() {
    let Some(sb) = sandbox() else { return };
    let pod_id = sb.ok(&["pod", "create", "--name", "p"]).trim().to_owned();
    // Members exit on SIGTERM once their trap is set, which they report with a file in the
    // (shared) root filesystem.
    let ready = |name: &str| sb.rootfs.join(format!("ready-{name}"));
    let start_pod = || {
        for name in ["m1", "m2"] {
            let _ = std::fs::remove_file(ready(name));
        }
        sb.ok(&["pod", "start", "p"]);
        for name in ["m1", "m2"] {
            assert!(
                eventually(Duration::from_secs(5), || ready(name).exists()),
                "{name} never got ready"
            );
        }
    };
    for name in ["m1", "m2"] {
        sb.create_ctr(
            &["--pod", "p", "--name", name, "-e", &format!("NAME={name}")],
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; touch /ready-$NAME; while true; do sleep 0.1; done",
            ],
        );
    }
    start_pod();
    let ids = member_ids(&sb, "p");
    assert_eq!(ids.len(), 3);
    let ps = sb.ps_json();
    assert_eq!(ps.len(), 3);
    assert!(ps.iter().all(|c| c["State"] == "running"), "{ps:?}");
    let pod_cgroup = format!("{}/{pod_id}", sb.cgroup_parent());
    assert!(!cgroup_dirs(&pod_cgroup).is_empty(), "no pod cgroup");
    assert_eq!(
        sb.pod_inspect("p")["CgroupPath"].as_str().unwrap(),
        pod_cgroup
    );

    // pod stop: every member and the infra container exit; their conmon and runc are gone.
    let t = Instant::now();
    sb.ok(&["pod", "stop", "p"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let ps = sb.ps_json();
    assert!(ps.iter().all(|c| c["State"] == "exited"), "{ps:?}");
    assert_eq!(sb.pod_ps_json()[0]["Status"], "Exited");
    for id in &ids {
        assert!(
            eventually(Duration::from_secs(5), || processes_mentioning(id)
                .is_empty()),
            "processes left for {id}: {:?}",
            processes_mentioning(id)
        );
        assert!(!Path::new(&format!("/run/runc/{id}")).exists());
    }
    assert_eq!(sb.held_locks(), 3 + 1);

    // Start it again, then pod rm -f while it runs.
    start_pod();
    assert!(sb.ps_json().iter().all(|c| c["State"] == "running"));
    let t = Instant::now();
    assert_eq!(sb.ok(&["pod", "rm", "-f", "p"]).trim(), pod_id);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    sb.assert_empty();
    for id in &ids {
        sb.assert_container_gone(id);
    }
    assert!(processes_mentioning(&pod_id).is_empty());
    assert!(
        cgroup_dirs(&pod_cgroup).is_empty(),
        "pod cgroup left: {:?}",
        cgroup_dirs(&pod_cgroup)
    );
    assert!(
        mounts_under(sb.dir.path()).is_empty(),
        "{:?}",
        mounts_under(sb.dir.path())
    );
    let out = sb.run(&["pod", "inspect", "p"]);
    assert!(!out.status.success());
}

#[test]
fn member_of_a_never_started_pod_starts_its_infra_and_shares_its_host_name() {
    let Some(sb) = sandbox() else { return };
    sb.ok(&["pod", "create", "--name", "fresh"]);
    // No `pod start`: the infra container (and its root filesystem) come up as a dependency.
    assert!(!sb.path("root/libpod/infra-rootfs").exists());
    let out = sb.run_ctr(&["--rm", "--pod", "fresh"], &["hostname"]);
    assert!(
        out.status.success(),
        "{:?} {:?} {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "fresh\n");
    // A second member does not rename the pod (it joins the UTS namespace).
    sb.run_ctr_ok(&["-d", "--pod", "fresh", "--name", "m"], &["sleep", "100"]);
    let out = sb.run_ctr(&["--rm", "--pod", "fresh"], &["hostname"]);
    assert_eq!(text(&out.stdout), "fresh\n", "{}", text(&out.stderr));
    assert_eq!(sb.inspect("m")["Config"]["Hostname"], "fresh");
    // Its own host name cannot be set while joining the pod's UTS namespace.
    let out = sb.run_ctr(&["--rm", "--pod", "fresh", "--hostname", "x"], &["true"]);
    expect_code(&out, 125);
    expect_stderr_has(&out, "UTS namespace");
    assert!(eventually(Duration::from_secs(5), || sb.ps_json().len() == 2));
    assert_eq!(sb.held_locks(), 3);
    stop_and_remove_pods(&sb, &["fresh"]);
}

#[test]
fn concurrent_run_rm_in_a_pod_keeps_exit_codes() {
    let Some(sb) = sandbox() else { return };
    sb.ok(&["pod", "create", "--name", "p"]);
    sb.ok(&["pod", "start", "p"]);
    // `rpod run --rm` races conmon's `container cleanup --rm`, which may remove the container
    // before `run` reads its exit code.
    std::thread::scope(|s| {
        for t in 0..3 {
            let sb = &sb;
            s.spawn(move || {
                for i in 0..8 {
                    let code = 10 + t * 8 + i;
                    let script = format!("echo {code}; exit {code}");
                    let out = sb.run_ctr(&["--rm", "--pod", "p"], &["sh", "-c", &script]);
                    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
                    assert_eq!(text(&out.stdout), format!("{code}\n"));
                }
            });
        }
    });
    assert!(eventually(Duration::from_secs(5), || sb.ps_json().len() == 1));
    sb.ok(&["pod", "rm", "-f", "p"]);
    sb.assert_empty();
}
