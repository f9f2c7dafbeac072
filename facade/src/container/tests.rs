//! The life cycle through its seams, without root: a recording OCI driver, network backend and
//! rootfs provider stand in for conmon + runc, CNI and mounts, and the order of their calls is
//! checked on every path (init, start, stop, the exit command's cleanup, removal, a failed
//! init, refresh after a reboot).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpod_oci::{CreateOptions, Created, ExecOptions, ExecOutput, OciError};

use crate::network::{
    NetNamespace, NetworkBackend, NetworkRequest, NetworkStatus, NetworkTeardown,
};
use crate::oci::OciDriver;
use crate::rootfs::{RootfsProvider, RootfsRequest};
use crate::{ContainerSpec, ContainerStatus, Runtime, RuntimeError, RuntimeOptions};

/// The calls made so far, in order.
#[derive(Debug, Default, Clone)]
struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    fn push(&self, call: impl Into<String>) {
        self.0.lock().unwrap().push(call.into());
    }

    /// Takes the calls recorded so far, dropping those that only read (wait, state).
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .filter(|c| !c.starts_with("oci.wait") && c != "oci.state")
            .collect()
    }
}

fn spec_written(bundle: &Path) -> &'static str {
    if bundle.join("config.json").is_file() {
        "spec written"
    } else {
        "no spec"
    }
}

#[derive(Debug)]
struct FakeOci {
    calls: Calls,
    fail_create: Arc<Mutex<bool>>,
}

impl OciDriver for FakeOci {
    fn create(&self, opts: &CreateOptions) -> Result<Created, OciError> {
        self.calls
            .push(format!("oci.create ({})", spec_written(&opts.bundle)));
        // Set the spec aside, so the next init's setup shows whether it came before the spec.
        let _ = std::fs::rename(
            opts.bundle.join("config.json"),
            opts.bundle.join("config.json.seen"),
        );
        if *self.fail_create.lock().unwrap() {
            return Err(OciError::CreateFailed {
                id: opts.id.clone(),
                runtime: PathBuf::from("fake-runc"),
                message: "fake create failure".into(),
            });
        }
        Ok(Created {
            pid: 4242,
            conmon_pid: Some(4241),
        })
    }
    fn start(&self, _id: &str) -> Result<(), OciError> {
        self.calls.push("oci.start");
        Ok(())
    }
    fn kill(&self, _id: &str, signal: i32, _all: bool) -> Result<(), OciError> {
        self.calls.push(format!("oci.kill {signal}"));
        Ok(())
    }
    fn delete(&self, _id: &str, _force: bool) -> Result<(), OciError> {
        self.calls.push("oci.delete");
        Ok(())
    }
    fn pause(&self, _id: &str) -> Result<(), OciError> {
        self.calls.push("oci.pause");
        Ok(())
    }
    fn state(&self, id: &str) -> Result<rpod_oci::RuntimeState, OciError> {
        self.calls.push("oci.state");
        Err(OciError::NotFound {
            id: id.to_owned(),
            runtime: PathBuf::from("fake-runc"),
        })
    }
    fn resume(&self, _id: &str) -> Result<(), OciError> {
        self.calls.push("oci.resume");
        Ok(())
    }
    fn stop(&self, _id: &str, _t: Duration, _s: Option<i32>) -> Result<i32, OciError> {
        self.calls.push("oci.stop");
        Ok(143)
    }
    fn exec(&self, _id: &str, _opts: &ExecOptions) -> Result<ExecOutput, OciError> {
        self.calls.push("oci.exec");
        Ok(ExecOutput {
            exit_code: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
    fn wait_exit(&self, _id: &str, _t: Option<Duration>) -> Result<Option<i32>, OciError> {
        self.calls.push("oci.wait");
        Ok(Some(0))
    }
    fn remove_conmon_files(&self, _id: &str, _bundle: &Path) -> Result<(), OciError> {
        Ok(())
    }
}

#[derive(Debug)]
struct FakeNetwork {
    calls: Calls,
    static_dir: PathBuf,
}

impl NetworkBackend for FakeNetwork {
    fn name(&self) -> &str {
        "fake"
    }
    fn setup(&self, request: &NetworkRequest) -> Result<NetworkStatus, RuntimeError> {
        let bundle = self
            .static_dir
            .join("containers")
            .join(&request.container_id);
        self.calls
            .push(format!("net.setup ({})", spec_written(&bundle)));
        Ok(NetworkStatus {
            namespace: NetNamespace::New,
            owned_netns: Some(PathBuf::from(format!(
                "/run/fake-netns/{}",
                request.container_id
            ))),
            results: vec![serde_json::json!({"ip": "10.99.0.2"})],
        })
    }
    fn teardown(&self, teardown: &NetworkTeardown) -> Result<(), RuntimeError> {
        self.calls
            .push(format!("net.teardown ({} results)", teardown.results.len()));
        Ok(())
    }
}

#[derive(Debug)]
struct FakeRootfs {
    calls: Calls,
}

impl RootfsProvider for FakeRootfs {
    fn prepare(&self, request: &RootfsRequest) -> Result<PathBuf, RuntimeError> {
        self.calls.push("rootfs.prepare");
        Ok(request.rootfs.clone())
    }
    fn release(&self, _request: &RootfsRequest) -> Result<(), RuntimeError> {
        self.calls.push("rootfs.release");
        Ok(())
    }
}

struct Harness {
    dir: tempfile::TempDir,
    rt: Runtime,
    calls: Calls,
    fail_create: Arc<Mutex<bool>>,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    std::fs::create_dir_all(p("rootfs")).unwrap();
    let calls = Calls::default();
    let fail_create = Arc::new(Mutex::new(false));
    let options = RuntimeOptions::new()
        .netns("none")
        .cni_config_dir("/nonexistent/rpod-cni")
        .graph_root(p("root"))
        .run_root(p("runroot"))
        .tmp_dir(p("tmp"))
        .static_dir(p("static"))
        .state_backend("memory")
        .runtime("/bin/true")
        .conmon("/bin/true");
    let rt = Runtime::builder(options)
        .env(crate::ConfigEnv::sandboxed(dir.path()))
        .network_backend(Arc::new(FakeNetwork {
            calls: calls.clone(),
            static_dir: p("static"),
        }))
        .rootfs_provider(Arc::new(FakeRootfs {
            calls: calls.clone(),
        }))
        .oci_driver(Arc::new(FakeOci {
            calls: calls.clone(),
            fail_create: Arc::clone(&fail_create),
        }))
        .build()
        .unwrap();
    Harness {
        dir,
        rt,
        calls,
        fail_create,
    }
}

impl Harness {
    fn create(&self) -> String {
        let c = self
            .rt
            .new_container(ContainerSpec {
                rootfs: self.dir.path().join("rootfs"),
                command: vec!["sleep".into(), "1".into()],
                ..Default::default()
            })
            .unwrap();
        c.config.id
    }

    fn status(&self, id: &str) -> ContainerStatus {
        self.rt.lookup_container(id).unwrap().state.status
    }
}

const INIT: [&str; 4] = [
    "rootfs.prepare",
    "net.setup (no spec)",
    "oci.create (spec written)",
    "oci.start",
];
const CLEANUP: [&str; 3] = ["oci.delete", "net.teardown (1 results)", "rootfs.release"];

#[test]
fn start_sets_up_before_the_spec_and_stop_tears_down() {
    let h = harness();
    let id = h.create();
    h.rt.start_container(&id).unwrap();
    assert_eq!(h.calls.take(), INIT);
    let rec = h.rt.lookup_container(&id).unwrap();
    assert_eq!(rec.state.netns_path, format!("/run/fake-netns/{id}"));
    assert_eq!(rec.state.network_results.len(), 1);

    h.rt.stop_container(&id, None).unwrap();
    let mut want = vec!["oci.stop"];
    want.extend(CLEANUP);
    assert_eq!(h.calls.take(), want);
    let rec = h.rt.lookup_container(&id).unwrap();
    assert_eq!(rec.state.status, ContainerStatus::Exited);
    assert!(rec.state.netns_path.is_empty() && rec.state.network_results.is_empty());
}

#[test]
fn exit_command_cleanup_tears_down() {
    let h = harness();
    let id = h.create();
    h.rt.start_container(&id).unwrap();
    h.calls.take();
    // conmon writes the exit file when the process exits; its exit command runs cleanup.
    let exits = h.rt.exits_dir();
    std::fs::create_dir_all(&exits).unwrap();
    std::fs::write(exits.join(&id), "0").unwrap();
    h.rt.cleanup_container(&id, false).unwrap();
    assert_eq!(h.calls.take(), CLEANUP);
    assert_eq!(h.status(&id), ContainerStatus::Exited);
    // A second cleanup (conmon's and the foreground run's) releases nothing twice.
    h.rt.cleanup_container(&id, false).unwrap();
    assert_eq!(h.calls.take(), Vec::<String>::new());
    // Starting again sets everything up again.
    h.rt.start_container(&id).unwrap();
    assert_eq!(h.calls.take(), INIT);
}

#[test]
fn forced_removal_tears_down() {
    let h = harness();
    let id = h.create();
    h.rt.start_container(&id).unwrap();
    h.calls.take();
    h.rt.remove_container(&id, true).unwrap();
    let mut want = vec!["oci.stop"];
    want.extend(CLEANUP);
    assert_eq!(h.calls.take(), want);
    assert!(h.rt.lookup_container(&id).unwrap_err().is_not_found());
}

#[test]
fn failed_init_undoes_every_step_in_reverse() {
    let h = harness();
    let id = h.create();
    *h.fail_create.lock().unwrap() = true;
    let err = h.rt.start_container(&id).unwrap_err();
    assert!(err.to_string().contains("fake create failure"), "{err}");
    assert_eq!(
        h.calls.take(),
        [
            "rootfs.prepare",
            "net.setup (no spec)",
            "oci.create (spec written)",
            "oci.delete",
            "net.teardown (1 results)",
            "rootfs.release",
        ]
    );
    let rec = h.rt.lookup_container(&id).unwrap();
    assert_eq!(rec.state.status, ContainerStatus::Configured);
    assert!(rec.state.netns_path.is_empty());
    // Nothing is left to release: removal tears nothing down.
    h.rt.remove_container(&id, false).unwrap();
    assert_eq!(h.calls.take(), Vec::<String>::new());
}

#[test]
fn refresh_after_reboot_tears_down() {
    let h = harness();
    let running = h.create();
    let never_started = h.create();
    h.rt.start_container(&running).unwrap();
    h.calls.take();
    h.rt.refresh(true).unwrap();
    assert_eq!(
        h.calls.take(),
        ["net.teardown (1 results)", "rootfs.release"]
    );
    let rec = h.rt.lookup_container(&running).unwrap();
    assert_eq!(rec.state.status, ContainerStatus::Configured);
    assert!(rec.state.network_results.is_empty());
    assert_eq!(h.status(&never_started), ContainerStatus::Configured);
}
