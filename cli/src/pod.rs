//! Pod commands: pod create, pod ps, pod inspect, pod rm.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::{Args, Subcommand};
use rpod::{timefmt, PodListing, PodSpec, PodStatus, Runtime};
use serde_json::Value;

use crate::commands::Format;
use crate::output;

/// `rpod pod …`.
#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Create a pod.
    Create(Box<PodCreateArgs>),
    /// Start pods (the infra container first, then every member).
    Start {
        /// Pod names or IDs.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Stop pods (members, then the infra container).
    Stop {
        /// Seconds to wait before SIGKILL (default: each container's stop timeout).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Pod names or IDs.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Send a signal to every running container of pods.
    Kill {
        /// Signal name or number.
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        /// Pod names or IDs.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Restart pods.
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Pod names or IDs.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// List pods.
    Ps {
        /// Show the status of each container of the pod.
        #[arg(long = "ctr-status")]
        ctr_status: bool,
        /// Print IDs only.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Do not truncate IDs.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Show a pod and its containers as JSON.
    Inspect {
        /// Pod names or IDs.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pods and their containers.
    Rm {
        /// Remove running pods too.
        #[arg(short = 'f', long)]
        force: bool,
        /// Pod names or IDs.
        #[arg(required = true)]
        pods: Vec<String>,
    },
}

/// `rpod pod create`.
#[derive(Debug, Args)]
pub struct PodCreateArgs {
    /// Name of the pod (generated when omitted).
    #[arg(long)]
    pub name: Option<String>,
    /// Create an infra container (required to share namespaces).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub infra: bool,
    /// Namespaces to share: any of cgroup, ipc, net, pid, uts, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub share: Option<Vec<String>>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The pod's network (its infra container's; members join it).
    #[command(flatten)]
    pub net: crate::network::NetArgs,
}

/// Runs a pod subcommand.
pub fn run(rt: &Runtime, cmd: PodCommand) -> Result<u8> {
    match cmd {
        PodCommand::Create(a) => {
            let mut labels = BTreeMap::new();
            for l in &a.labels {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                if k.is_empty() {
                    anyhow::bail!("invalid label {l:?}: the key must not be empty");
                }
                labels.insert(k.to_owned(), v.to_owned());
            }
            let share = a
                .share
                .map(|s| s.into_iter().filter(|x| !x.is_empty()).collect());
            let pod = rt.new_pod(PodSpec {
                name: a.name,
                labels,
                infra: a.infra,
                share,
                network: a.net.spec(),
            })?;
            output::line(&pod.config.id)?;
        }
        PodCommand::Start { pods } => {
            return crate::run::each(&pods, |p| rt.start_pod(p).map(|_| ()));
        }
        PodCommand::Stop { time, pods } => {
            let t = time.map(std::time::Duration::from_secs);
            return crate::run::each(&pods, |p| rt.stop_pod(p, t).map(|_| ()));
        }
        PodCommand::Kill { signal, pods } => {
            let sig = rpod::parse_signal(&signal)?;
            return crate::run::each(&pods, |p| rt.kill_pod(p, sig).map(|_| ()));
        }
        PodCommand::Restart { time, pods } => {
            let t = time.map(std::time::Duration::from_secs);
            return crate::run::each(&pods, |p| rt.restart_pod(p, t).map(|_| ()));
        }
        PodCommand::Ps {
            ctr_status,
            quiet,
            no_trunc,
            format,
        } => {
            let mut pods = rt.pods()?;
            pods.sort_by_key(|p| std::cmp::Reverse(p.config.created));
            if quiet {
                let mut s = String::new();
                for p in &pods {
                    s.push_str(&crate::ctr::short_id(&p.config.id, no_trunc));
                    s.push('\n');
                }
                return output::raw(&s).map(|()| 0);
            }
            let mut docs = Vec::new();
            let mut table = output::Table::new([
                "POD ID",
                "NAME",
                "STATUS",
                "CREATED",
                "INFRA ID",
                if ctr_status {
                    "STATUS OF CONTAINERS"
                } else {
                    "# OF CONTAINERS"
                },
            ]);
            for p in &pods {
                let members = rt.pod_members_view(&p.config.id)?;
                if format == Format::Json {
                    docs.push(serde_json::to_value(PodListing::new(p, &members))?);
                } else {
                    let infra = &p.state.infra_container_id;
                    table.push(
                        (),
                        [
                            crate::ctr::short_id(&p.config.id, no_trunc),
                            p.config.name.clone(),
                            PodStatus::of(&members).to_string(),
                            timefmt::ago(p.config.created),
                            crate::ctr::short_id(infra, no_trunc),
                            if ctr_status {
                                members
                                    .iter()
                                    .map(|c| format!("{}:{}", c.config.name, c.state.status))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            } else {
                                members.len().to_string()
                            },
                        ],
                    );
                }
            }
            if format == Format::Json {
                output::print_value(&Value::Array(docs), true)?;
            } else {
                table.print(false)?;
            }
        }
        PodCommand::Inspect { pods } => {
            let mut docs = Vec::new();
            for name in &pods {
                docs.push(serde_json::to_value(rt.inspect_pod(name)?)?);
            }
            let v = if docs.len() == 1 {
                docs.remove(0)
            } else {
                Value::Array(docs)
            };
            output::print_value(&v, true)?;
        }
        PodCommand::Rm { force, pods } => {
            return crate::ctr::remove_each(&pods, false, |p| rt.remove_pod(p, force));
        }
    }
    Ok(0)
}
