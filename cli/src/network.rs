//! Network options of `create`/`run`/`pod create`, `rpod port` and `rpod network …`.

use anyhow::Result;
use clap::{Args, Subcommand};
use rpod::{NetworkCreate, NetworkSpec, Runtime};

use crate::commands::Format;
use crate::output;

/// The network flags shared by `create`, `run` and `pod create`.
#[derive(Debug, Args, Clone, Default)]
pub struct NetArgs {
    /// Network mode: bridge (the default network), none, host, container:<name|id>,
    /// ns:<path>, or a comma-separated list of CNI network names [default: the `netns` setting]
    #[arg(long = "network", visible_alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// Publish a container's port on the host: [ip:][hostPort:]containerPort[/tcp|udp]
    /// (ranges allowed; repeatable)
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Static IP address on the network.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// DNS server for /etc/resolv.conf (repeatable).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain (repeatable).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// DNS option (repeatable).
    #[arg(long = "dns-opt", value_name = "OPTION")]
    pub dns_opt: Vec<String>,
    /// Extra /etc/hosts entry NAME:IP (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Do not generate /etc/hosts (keep the root filesystem's).
    #[arg(long = "no-hosts")]
    pub no_hosts: bool,
}

impl NetArgs {
    /// The library's view of these flags (checked by the library).
    pub fn spec(&self) -> NetworkSpec {
        NetworkSpec {
            mode: self.network.clone(),
            publish: self.publish.clone(),
            ip: self.ip.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_opt.clone(),
            add_hosts: self.add_host.clone(),
            no_hosts: self.no_hosts,
            publish_all: self.publish_all,
        }
    }
}

/// `rpod network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a CNI network (a configuration list in the CNI config dir).
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        /// Print names only.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "text")]
        format: Format,
    },
    /// Show networks as a JSON array, with the containers attached to them.
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks.
    #[command(visible_alias = "remove")]
    Rm {
        /// Remove the containers that use the network first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `rpod network create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver: bridge or macvlan.
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR notation (default: a free one).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway (default: the subnet's first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container addresses from this range (CIDR) of the subnet.
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    /// No IP masquerading: containers reach only the network.
    #[arg(long)]
    pub internal: bool,
    /// The bridge's name (bridge), or the parent interface (macvlan).
    #[arg(
        long = "interface-name",
        visible_alias = "macvlan",
        value_name = "NAME"
    )]
    pub interface_name: Option<String>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The network's name.
    pub name: String,
}

/// Runs a network subcommand.
pub fn run(rt: &Runtime, cmd: NetworkCommand) -> Result<u8> {
    match cmd {
        NetworkCommand::Create(a) => {
            let labels = a
                .labels
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            let created = rt.create_network(NetworkCreate {
                name: a.name,
                driver: a.driver,
                subnet: a.subnet,
                gateway: a.gateway,
                ip_range: a.ip_range,
                internal: a.internal,
                interface_name: a.interface_name,
                ipam_data_dir: None,
                labels,
            })?;
            output::line(&created.config_file.display().to_string())?;
        }
        NetworkCommand::Ls { quiet, format } => {
            let (networks, invalid) = rt.networks()?;
            for e in invalid {
                eprintln!("WARN: {e}");
            }
            if format == Format::Json {
                output::print_value(&serde_json::to_value(&networks)?, true)?;
            } else if quiet {
                for n in &networks {
                    output::line(&n.name)?;
                }
            } else {
                let mut table = output::Table::new(["NAME", "VERSION", "PLUGINS"]);
                for n in &networks {
                    table.push(n.name.clone(), [&n.name, &n.version, &n.plugins.join(",")]);
                }
                table.print(false)?;
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut docs = Vec::with_capacity(names.len());
            let mut code = 0;
            for n in &names {
                match rt.inspect_network(n) {
                    Ok(d) => docs.push(serde_json::to_value(d)?),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        code = 125;
                    }
                }
            }
            output::print_value(&serde_json::Value::Array(docs), true)?;
            return Ok(code);
        }
        NetworkCommand::Rm { force, names } => {
            return crate::run::each(&names, |n| rt.remove_network(n, force).map(|_| ()));
        }
    }
    Ok(0)
}

/// `rpod port CTR`: one line per published port.
pub fn port(rt: &Runtime, container: &str) -> Result<u8> {
    for m in rt.container_ports(container)? {
        output::line(&rpod::port_line(&m))?;
    }
    Ok(0)
}
