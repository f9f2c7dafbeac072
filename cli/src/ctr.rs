//! Container commands: create, ps, inspect, rm.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use rpod::{ContainerRecord, ContainerSpec, ContainerStatus, Runtime, RuntimeError};
use serde_json::{json, Value};

use crate::commands::Format;
use crate::{output, timefmt};

/// `rpod create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the container (generated when omitted).
    #[arg(long)]
    pub name: Option<String>,
    /// Pod to join (name or ID).
    #[arg(long)]
    pub pod: Option<String>,
    /// Root filesystem directory, used as is.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as (`uid[:gid]` or name).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Host name of the container.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u32>,
    /// Network mode: only `none` (a new, empty network namespace) is supported so far.
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Allocate a terminal for the container's process (its output is then one stream).
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Command and arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

fn parse_kv(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
        if k.is_empty() {
            bail!("invalid {what} {item:?}: the key must not be empty");
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

impl CreateArgs {
    /// The library's view of these flags.
    pub fn spec(&self) -> Result<ContainerSpec> {
        if self.network != "none" {
            bail!(
                "--network {:?} is not supported yet: use --network none (a new, empty network namespace)",
                self.network
            );
        }
        for e in &self.env {
            if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                bail!("invalid environment variable {e:?}: use KEY=VALUE");
            }
        }
        Ok(ContainerSpec {
            name: self.name.clone(),
            pod: self.pod.clone(),
            rootfs: self.rootfs.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            labels: parse_kv(&self.labels, "label")?,
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            stop_signal: None,
            stop_timeout: self.stop_timeout,
            auto_remove: false,
            terminal: self.tty,
        })
    }
}

/// `rpod ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running only).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print IDs only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter: name=, id=, status=, pod=, label= (repeatable; all must match).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One `ps` filter.
enum Filter {
    Name(String),
    Id(String),
    Status(ContainerStatus),
    Pod(String),
    Label(String, Option<String>),
}

fn parse_filters(items: &[String]) -> Result<Vec<Filter>> {
    items
        .iter()
        .map(|f| {
            let Some((k, v)) = f.split_once('=') else {
                bail!("invalid filter {f:?}: use KEY=VALUE");
            };
            Ok(match k {
                "name" => Filter::Name(v.to_owned()),
                "id" => Filter::Id(v.to_owned()),
                "status" => Filter::Status(match v {
                    // podman accepts "created" for containers not yet run.
                    "created" => ContainerStatus::Configured,
                    other => other.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "invalid status {other:?}: use configured, created, running, stopped, paused, exited or unknown"
                        )
                    })?,
                }),
                "pod" => Filter::Pod(v.to_owned()),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => Filter::Label(lk.to_owned(), Some(lv.to_owned())),
                    None => Filter::Label(v.to_owned(), None),
                },
                other => bail!("invalid filter {other:?}: use name, id, status, pod or label"),
            })
        })
        .collect()
}

fn matches(c: &ContainerRecord, f: &Filter, pod_names: &BTreeMap<String, String>) -> bool {
    match f {
        Filter::Name(n) => c.config.name.contains(n.as_str()),
        Filter::Id(p) => c.config.id.starts_with(p.as_str()),
        Filter::Status(s) => {
            c.state.status == *s
                || (*s == ContainerStatus::Configured && c.state.status == ContainerStatus::Created)
        }
        Filter::Pod(p) => c.config.pod.as_ref().is_some_and(|id| {
            id.starts_with(p.as_str()) || pod_names.get(id).is_some_and(|n| n == p)
        }),
        Filter::Label(k, v) => match (c.config.labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        },
    }
}

/// podman's status column.
fn status_text(c: &ContainerRecord) -> String {
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

/// The first 12 characters of an ID, unless `no_trunc`.
pub fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_owned()
    } else {
        id.chars().take(12).collect()
    }
}

fn truncate(s: &str, n: usize, no_trunc: bool) -> String {
    if no_trunc || s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

/// `rpod ps`.
pub fn ps(rt: &Runtime, args: &PsArgs) -> Result<()> {
    let filters = parse_filters(&args.filters)?;
    let need_pods = args.format == Format::Json
        || !args.quiet
        || filters.iter().any(|f| matches!(f, Filter::Pod(_)));
    let pod_names: BTreeMap<String, String> = if need_pods {
        rt.pods()?
            .into_iter()
            .map(|p| (p.config.id, p.config.name))
            .collect()
    } else {
        BTreeMap::new()
    };
    // One container at a time: only what is printed is kept (thousands of records would
    // otherwise sit in memory at once).
    let mut quiet: Vec<(std::time::SystemTime, String)> = Vec::new();
    let mut docs: Vec<(std::time::SystemTime, Value)> = Vec::new();
    let mut table = output::Table::new([
        "CONTAINER ID",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
        "POD ID",
    ]);
    rt.for_each_container(|c| {
        let listed = (args.all
            || matches!(
                c.state.status,
                ContainerStatus::Running | ContainerStatus::Paused
            ))
            && filters.iter().all(|f| matches(&c, f, &pod_names));
        if !listed {
            return true;
        }
        let created = c.config.created;
        if args.quiet {
            quiet.push((created, short_id(&c.config.id, args.no_trunc)));
        } else if args.format == Format::Json {
            docs.push((created, ps_json(&c, &pod_names)));
        } else {
            table.push(
                created,
                [
                    short_id(&c.config.id, args.no_trunc),
                    truncate(&c.config.command.join(" "), 20, args.no_trunc),
                    timefmt::ago(created),
                    status_text(&c),
                    c.config.name.clone(),
                    c.config
                        .pod
                        .as_ref()
                        .map(|p| short_id(p, args.no_trunc))
                        .unwrap_or_default(),
                ],
            );
        }
        true
    })?;
    // Newest first, as podman.
    let newest_first = |a: &std::time::SystemTime, b: &std::time::SystemTime| b.cmp(a);
    if args.quiet {
        quiet.sort_by(|a, b| newest_first(&a.0, &b.0));
        let mut out = String::new();
        for (_, id) in quiet {
            out.push_str(&id);
            out.push('\n');
        }
        return output::raw(&out);
    }
    if args.format == Format::Json {
        docs.sort_by(|a, b| newest_first(&a.0, &b.0));
        let v: Vec<Value> = docs.into_iter().map(|(_, d)| d).collect();
        return output::print_value(&Value::Array(v), true);
    }
    table.print(true)
}

fn ps_json(c: &ContainerRecord, pod_names: &BTreeMap<String, String>) -> Value {
    let pod = c.config.pod.clone().unwrap_or_default();
    json!({
        "Id": c.config.id,
        "Names": [c.config.name],
        "Command": c.config.command,
        "Created": timefmt::rfc3339(c.config.created),
        "State": c.state.status.as_str(),
        "Status": status_text(c),
        "ExitCode": c.state.exit_code,
        "Exited": matches!(c.state.status, ContainerStatus::Exited | ContainerStatus::Stopped),
        "Pid": c.state.pid,
        "Pod": pod,
        "PodName": pod_names.get(&pod).cloned().unwrap_or_default(),
        "Labels": c.config.labels,
        "Namespace": c.config.namespace,
        "IsInfra": c.config.is_infra,
    })
}

/// The `inspect` document of a container (podman's field names where they exist).
pub fn inspect_json(c: &ContainerRecord) -> Value {
    let (cfg, st) = (&c.config, &c.state);
    let opt_time = |t: Option<std::time::SystemTime>| t.map(timefmt::rfc3339).unwrap_or_default();
    json!({
        "Id": cfg.id,
        "Created": timefmt::rfc3339(cfg.created),
        "Path": cfg.command.first().cloned().unwrap_or_default(),
        "Args": cfg.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status == ContainerStatus::Running,
            "Paused": st.status == ContainerStatus::Paused,
            "Pid": st.pid,
            "ConmonPid": st.conmon_pid,
            "ExitCode": st.exit_code,
            "OOMKilled": st.oom_killed,
            "StartedAt": opt_time(st.started),
            "FinishedAt": opt_time(st.finished),
        },
        "Name": cfg.name,
        "Pod": cfg.pod.clone().unwrap_or_default(),
        "Namespace": cfg.namespace,
        "IsInfra": cfg.is_infra,
        "Rootfs": cfg.rootfs,
        "LogPath": cfg.log_path,
        "LockID": cfg.lock_id,
        "Dependencies": cfg.dependencies(),
        "ExecIDs": st.exec_sessions.keys().collect::<Vec<_>>(),
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.user,
            "Env": cfg.env,
            "Cmd": cfg.command,
            "WorkingDir": cfg.working_dir,
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
            "Tty": cfg.terminal,
        },
        "NetworkSettings": { "SandboxKey": st.netns_path },
    })
}

/// `rpod rm`: podman's exit codes (1: a container did not exist; 2: one is running; 125: other);
/// with `ignore`, names that do not exist (any more) are skipped silently.
pub fn rm(rt: &Runtime, names: &[String], force: bool, ignore: bool) -> Result<u8> {
    let mut code = 0u8;
    for n in names {
        match rt.remove_container(n, force) {
            Ok(id) => output::line(&id)?,
            Err(RuntimeError::State(s)) if ignore && s.is_not_found() => {}
            Err(e) => {
                eprintln!("Error: {e}");
                let c = match &e {
                    RuntimeError::State(s) if s.is_not_found() => 1,
                    RuntimeError::ContainerRunning { .. } => 2,
                    _ => 125,
                };
                code = code.max(c);
            }
        }
    }
    Ok(code)
}
