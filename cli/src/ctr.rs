//! Container commands: create, ps, inspect, rm.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use rpod::{
    status_text, timefmt, ContainerFilter, ContainerListing, ContainerSpec, Runtime, RuntimeError,
    StatusRules,
};

use crate::commands::Format;
use crate::output;

/// `rpod create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the container (generated when omitted).
    #[arg(long)]
    pub name: Option<String>,
    /// Pod to join (name or ID).
    #[arg(long)]
    pub pod: Option<String>,
    /// Root filesystem directory, used as is, instead of an image (the first argument is
    /// then the command).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Override the image's entrypoint (JSON array or a single command; "" clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Pull the image: always, missing (when not in the store) or never.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Registry options for the pull.
    #[command(flatten)]
    pub registry: crate::image::RegistryArgs,
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
    /// Network options.
    #[command(flatten)]
    pub net: crate::network::NetArgs,
    /// Allocate a terminal for the container's process (its output is then one stream).
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// IMAGE [CMD…], or with --rootfs: CMD….
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [CMD]"
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
        let mut env = Vec::with_capacity(self.env.len());
        for e in &self.env {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() && !k.contains('\0') && !e.contains('\0') => {
                    env.push(e.clone())
                }
                // `-e NAME` copies the caller's value, and is skipped when it has none (podman).
                None if !e.is_empty() && !e.contains('\0') => {
                    if let Ok(v) = std::env::var(e) {
                        env.push(format!("{e}={v}"));
                    }
                }
                _ => bail!("invalid environment variable {e:?}: use KEY=VALUE or KEY"),
            }
        }
        let (image, rootfs, command) = match &self.rootfs {
            Some(dir) => (None, dir.clone(), self.command.clone()),
            None => match self.command.split_first() {
                Some((image, cmd)) => (Some(image.clone()), PathBuf::new(), cmd.to_vec()),
                None => bail!("give an image (or --rootfs DIR) and a command"),
            },
        };
        if image.is_none() && self.entrypoint.is_some() {
            bail!("--entrypoint needs an image: with --rootfs, give the whole command");
        }
        let entrypoint = match self.entrypoint.as_deref() {
            None => None,
            Some(e) if e.trim_start().starts_with('[') => Some(
                serde_json::from_str::<Vec<String>>(e)
                    .map_err(|err| anyhow::anyhow!("invalid --entrypoint {e:?}: {err}"))?,
            ),
            Some(e) => Some(vec![e.to_owned()]),
        };
        self.pull.parse::<rpod::PullPolicy>()?;
        Ok(ContainerSpec {
            name: self.name.clone(),
            pod: self.pod.clone(),
            rootfs,
            image,
            entrypoint,
            command,
            env,
            labels: parse_kv(&self.labels, "label")?,
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            stop_signal: None,
            stop_timeout: self.stop_timeout,
            auto_remove: false,
            terminal: self.tty,
            network: self.net.spec(),
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
    let filters = args
        .filters
        .iter()
        .map(|f| f.parse::<ContainerFilter>())
        .collect::<Result<Vec<_>, _>>()?;
    let need_pods = args.format == Format::Json
        || !args.quiet
        || filters.iter().any(|f| matches!(f, ContainerFilter::Pod(_)));
    let pod_names: BTreeMap<String, String> = if need_pods {
        rt.pod_names()?
    } else {
        BTreeMap::new()
    };
    // One container at a time: only what is printed is kept (thousands of records would
    // otherwise sit in memory at once).
    let mut quiet: Vec<(std::time::SystemTime, String)> = Vec::new();
    let mut docs: Vec<(std::time::SystemTime, ContainerListing)> = Vec::new();
    let mut table = output::Table::new([
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
        "POD ID",
    ]);
    rt.for_each_container(|c| {
        let listed = (args.all || c.state.status.is_running_or_paused())
            && filters.iter().all(|f| f.matches(&c, &pod_names));
        if !listed {
            return true;
        }
        let created = c.config.created;
        if args.quiet {
            quiet.push((created, short_id(&c.config.id, args.no_trunc)));
        } else if args.format == Format::Json {
            docs.push((created, ContainerListing::new(&c, &pod_names)));
        } else {
            table.push(
                created,
                [
                    short_id(&c.config.id, args.no_trunc),
                    c.config.image_name.clone(),
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
        let v: Vec<ContainerListing> = docs.into_iter().map(|(_, d)| d).collect();
        return output::print_value(&serde_json::to_value(v)?, true);
    }
    table.print(true)
}

/// `rpod rm`: podman's exit codes (1: a container did not exist; 2: one is running; 125: other);
/// with `ignore`, names that do not exist (any more) are skipped silently.
pub fn rm(
    rt: &Runtime,
    names: &[String],
    force: bool,
    ignore: bool,
    time: Option<u64>,
) -> Result<u8> {
    remove_each(names, ignore, |n| {
        if let (true, Some(t)) = (force, time) {
            // Stopped with the given timeout first; whatever fails here, the removal reports.
            let _ = rt.stop_container(n, Some(std::time::Duration::from_secs(t)));
        }
        rt.remove_container(n, force)
    })
}

/// Removes each of `names` with `remove`, printing the removed IDs; the worst exit code.
pub fn remove_each(
    names: &[String],
    ignore: bool,
    remove: impl Fn(&str) -> Result<String, RuntimeError>,
) -> Result<u8> {
    let mut code = 0u8;
    for n in names {
        match remove(n) {
            Ok(id) => output::line(&id)?,
            Err(e) if ignore && e.is_not_found() => {}
            Err(e) => {
                eprintln!("Error: {e}");
                code = code.max(e.rm_exit_code());
            }
        }
    }
    Ok(code)
}
