//! `inspect` and `ps`: the documents podman prints for a container (podman's field names where
//! they exist), the human status column, and `ps`'s filters. They belong to the library so an
//! embedder gets the same JSON as the CLI.

use std::collections::BTreeMap;
use std::str::FromStr;

use rpod_state::{ContainerRecord, ContainerStatus};
use serde::Serialize;

use crate::error::RuntimeError;
use crate::network::InspectNetwork;
use crate::timefmt;
use crate::Runtime;

/// `State` in [`ContainerInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectState {
    /// `running`, `exited`, …
    pub status: String,
    /// Whether it runs.
    pub running: bool,
    /// Whether it is paused.
    pub paused: bool,
    /// PID of its init process (0 = none).
    pub pid: i32,
    /// PID of its conmon (0 = none).
    pub conmon_pid: i32,
    /// Exit code of the last run.
    pub exit_code: i32,
    /// Whether the last run was OOM-killed.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// RFC 3339, empty if never started.
    pub started_at: String,
    /// RFC 3339, empty if never finished.
    pub finished_at: String,
}

/// `Config` in [`ContainerInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectConfig {
    /// Host name.
    pub hostname: String,
    /// User.
    pub user: String,
    /// Environment.
    pub env: Vec<String>,
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Stop signal (number).
    pub stop_signal: u32,
    /// Seconds before SIGKILL.
    pub stop_timeout: u32,
    /// Whether it has a terminal.
    pub tty: bool,
}

/// What `rpod inspect` shows for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    /// Full ID.
    pub id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The command.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Status.
    pub state: InspectState,
    /// Name.
    pub name: String,
    /// Pod ID (empty: none).
    pub pod: String,
    /// libpod namespace.
    pub namespace: String,
    /// Whether it is a pod's infra container.
    pub is_infra: bool,
    /// Root filesystem (`--rootfs`; empty for a container from an image).
    pub rootfs: String,
    /// The image ID (empty for a `--rootfs` container).
    pub image: String,
    /// The image's name as the container was created from it.
    pub image_name: String,
    /// Log file.
    pub log_path: String,
    /// Lock ID.
    #[serde(rename = "LockID")]
    pub lock_id: u32,
    /// Containers it depends on.
    pub dependencies: Vec<String>,
    /// Exec sessions running in it.
    #[serde(rename = "ExecIDs")]
    pub exec_ids: Vec<String>,
    /// Its configuration.
    pub config: InspectConfig,
    /// Its network.
    pub network_settings: InspectNetwork,
}

impl From<&ContainerRecord> for ContainerInspect {
    fn from(c: &ContainerRecord) -> Self {
        let (cfg, st) = (&c.config, &c.state);
        let opt_time =
            |t: Option<std::time::SystemTime>| t.map(timefmt::rfc3339).unwrap_or_default();
        ContainerInspect {
            id: cfg.id.clone(),
            created: timefmt::rfc3339(cfg.created),
            path: cfg.command.first().cloned().unwrap_or_default(),
            args: cfg.command.iter().skip(1).cloned().collect(),
            state: InspectState {
                status: st.status.as_str().to_owned(),
                running: st.status == ContainerStatus::Running,
                paused: st.status == ContainerStatus::Paused,
                pid: st.pid,
                conmon_pid: st.conmon_pid,
                exit_code: st.exit_code,
                oom_killed: st.oom_killed,
                started_at: opt_time(st.started),
                finished_at: opt_time(st.finished),
            },
            name: cfg.name.clone(),
            pod: cfg.pod.clone().unwrap_or_default(),
            namespace: cfg.namespace.clone(),
            is_infra: cfg.is_infra,
            rootfs: cfg.rootfs.clone(),
            image: cfg.image_id.clone(),
            image_name: cfg.image_name.clone(),
            log_path: cfg.log_path.clone(),
            lock_id: cfg.lock_id,
            dependencies: cfg.dependencies(),
            exec_ids: st.exec_sessions.keys().cloned().collect(),
            config: InspectConfig {
                hostname: cfg.hostname.clone(),
                user: cfg.user.clone(),
                env: cfg.env.clone(),
                cmd: cfg.command.clone(),
                working_dir: cfg.working_dir.clone(),
                labels: cfg.labels.clone(),
                stop_signal: cfg.stop_signal,
                stop_timeout: cfg.stop_timeout,
                tty: cfg.terminal,
            },
            network_settings: InspectNetwork::from_record(c, None),
        }
    }
}

/// podman's `STATUS` column: `Created`, `Up 5 seconds`, `Exited (0) 2 minutes ago`, …
pub fn status_text(c: &ContainerRecord) -> String {
    let s = &c.state;
    match s.status {
        ContainerStatus::Configured | ContainerStatus::Created => "Created".to_owned(),
        ContainerStatus::Running => match s.started {
            Some(t) => format!("Up {}", timefmt::ago(t).trim_end_matches(" ago")),
            None => "Up".to_owned(),
        },
        ContainerStatus::Paused => "Paused".to_owned(),
        ContainerStatus::Stopped | ContainerStatus::Exited => match s.finished {
            Some(t) => format!("Exited ({}) {}", s.exit_code, timefmt::ago(t)),
            None => format!("Exited ({})", s.exit_code),
        },
        ContainerStatus::Unknown => "Unknown".to_owned(),
    }
}

/// One row of `rpod ps --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerListing {
    /// Full ID.
    pub id: String,
    /// Its name (podman lists names).
    pub names: Vec<String>,
    /// Command and arguments.
    pub command: Vec<String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// `running`, `exited`, …
    pub state: String,
    /// The human status ([`status_text`]).
    pub status: String,
    /// Exit code of the last run.
    pub exit_code: i32,
    /// Whether it has exited.
    pub exited: bool,
    /// PID of its init process.
    pub pid: i32,
    /// Pod ID (empty: none).
    pub pod: String,
    /// Pod name (empty: none).
    pub pod_name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// libpod namespace.
    pub namespace: String,
    /// Whether it is a pod's infra container.
    pub is_infra: bool,
    /// The image name it was created from (empty for `--rootfs`).
    pub image: String,
    /// The image's ID.
    #[serde(rename = "ImageID")]
    pub image_id: String,
}

impl ContainerListing {
    /// The row for `c`; `pod_names` maps pod IDs to names.
    pub fn new(c: &ContainerRecord, pod_names: &BTreeMap<String, String>) -> Self {
        let pod = c.config.pod.clone().unwrap_or_default();
        ContainerListing {
            id: c.config.id.clone(),
            names: vec![c.config.name.clone()],
            command: c.config.command.clone(),
            created: timefmt::rfc3339(c.config.created),
            state: c.state.status.as_str().to_owned(),
            status: status_text(c),
            exit_code: c.state.exit_code,
            exited: matches!(
                c.state.status,
                ContainerStatus::Exited | ContainerStatus::Stopped
            ),
            pid: c.state.pid,
            pod_name: pod_names.get(&pod).cloned().unwrap_or_default(),
            pod,
            labels: c.config.labels.clone(),
            namespace: c.config.namespace.clone(),
            is_infra: c.config.is_infra,
            image: c.config.image_name.clone(),
            image_id: c.config.image_id.clone(),
        }
    }
}

/// One `ps --filter KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerFilter {
    /// `name=`: the name contains the text.
    Name(String),
    /// `id=`: the ID starts with the text.
    Id(String),
    /// `status=`: the status (`created` also matches containers never run).
    Status(ContainerStatus),
    /// `pod=`: the pod's ID prefix or name.
    Pod(String),
    /// `label=KEY` or `label=KEY=VALUE`.
    Label(String, Option<String>),
}

impl FromStr for ContainerFilter {
    type Err = RuntimeError;

    fn from_str(f: &str) -> Result<Self, Self::Err> {
        let invalid = |msg: String| RuntimeError::InvalidSpec(msg);
        let Some((k, v)) = f.split_once('=') else {
            return Err(invalid(format!("invalid filter {f:?}: use KEY=VALUE")));
        };
        Ok(match k {
            "name" => ContainerFilter::Name(v.to_owned()),
            "id" => ContainerFilter::Id(v.to_owned()),
            "status" => ContainerFilter::Status(match v {
                // podman accepts "created" for containers not yet run.
                "created" => ContainerStatus::Configured,
                other => other.parse().map_err(|_| {
                    invalid(format!(
                        "invalid status {other:?}: use configured, created, running, stopped, \
                         paused, exited or unknown"
                    ))
                })?,
            }),
            "pod" => ContainerFilter::Pod(v.to_owned()),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => ContainerFilter::Label(lk.to_owned(), Some(lv.to_owned())),
                None => ContainerFilter::Label(v.to_owned(), None),
            },
            other => {
                return Err(invalid(format!(
                    "invalid filter {other:?}: use name, id, status, pod or label"
                )))
            }
        })
    }
}

impl ContainerFilter {
    /// Whether `c` passes; `pod_names` maps pod IDs to names.
    pub fn matches(&self, c: &ContainerRecord, pod_names: &BTreeMap<String, String>) -> bool {
        match self {
            ContainerFilter::Name(n) => c.config.name.contains(n.as_str()),
            ContainerFilter::Id(p) => c.config.id.starts_with(p.as_str()),
            ContainerFilter::Status(s) => {
                c.state.status == *s
                    || (*s == ContainerStatus::Configured
                        && c.state.status == ContainerStatus::Created)
            }
            ContainerFilter::Pod(p) => c.config.pod.as_ref().is_some_and(|id| {
                id.starts_with(p.as_str()) || pod_names.get(id).is_some_and(|n| n == p)
            }),
            ContainerFilter::Label(k, v) => match (c.config.labels.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            },
        }
    }
}

impl Runtime {
    /// The `inspect` document of a container, its status brought up to date.
    pub fn inspect_container(&self, id_or_name: &str) -> Result<ContainerInspect, RuntimeError> {
        let mut rec = self.lookup_container(id_or_name)?;
        self.container_view(&mut rec)?;
        let mut doc = ContainerInspect::from(&rec);
        // A container in another's network shows that network.
        if let Some(owner) = self.network_owner(&rec)? {
            doc.network_settings = InspectNetwork::from_record(&rec, Some(&owner));
        }
        Ok(doc)
    }

    /// Pod IDs mapped to their names (for `ps`'s pod column and filter).
    pub fn pod_names(&self) -> Result<BTreeMap<String, String>, RuntimeError> {
        Ok(self
            .pods()?
            .into_iter()
            .map(|p| (p.config.id, p.config.name))
            .collect())
    }
}
