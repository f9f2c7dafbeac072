//! Flags and subcommands.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use rpod::{ConfigEnv, ContainerRecord, Runtime, StatusRules};

use crate::global::GlobalFlags;
use crate::{ctr, output, pod, run};

/// rpod: a daemonless container engine (podman's libpod in Rust).
#[derive(Debug, Parser)]
#[command(
    name = "rpod",
    version = rpod::VERSION,
    disable_version_flag = false,
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of informational commands.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable.
    Text,
    /// JSON.
    Json,
}

/// Output formats of `config show`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ConfigFormat {
    /// TOML, loadable as libpod.conf.
    Toml,
    /// JSON.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show host, store and registry information.
    Info {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "text")]
        format: Format,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create a container (state: created) and print its ID.
    Create(ctr::CreateArgs),
    /// List containers.
    Ps(ctr::PsArgs),
    /// Create and start a container; stream its output and exit with its exit code.
    Run(run::RunArgs),
    /// Start containers.
    Start {
        /// Stream the container's output and exit with its exit code.
        #[arg(short = 'a', long)]
        attach: bool,
        /// Container names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Attach to a running container: its output, and our input unless --no-stdin; exits with
    /// the container's exit code. Signals sent to rpod go to the container.
    Attach {
        /// Do not forward our stdin.
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        /// Keys that detach, leaving the container running (empty: none).
        #[arg(long = "detach-keys", default_value = rpod::DEFAULT_DETACH_KEYS)]
        detach_keys: String,
        /// Container name or ID.
        name: String,
    },
    /// Stop running containers (stop signal, then SIGKILL after the timeout).
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's stop timeout).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Every running or paused container.
        #[arg(short = 'a', long, conflicts_with = "names")]
        all: bool,
        /// Container names or IDs.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Send a signal to running containers.
    Kill {
        /// Signal name or number.
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        /// Every running container.
        #[arg(short = 'a', long, conflicts_with = "names")]
        all: bool,
        /// Container names or IDs.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Restart containers.
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Every container but pods' infra containers (started again with their members).
        #[arg(short = 'a', long, conflicts_with = "names")]
        all: bool,
        /// Container names or IDs.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Pause running containers.
    Pause {
        /// Every running container.
        #[arg(short = 'a', long, conflicts_with = "names")]
        all: bool,
        /// Container names or IDs.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Unpause paused containers.
    Unpause {
        /// Every paused container.
        #[arg(short = 'a', long, conflicts_with = "names")]
        all: bool,
        /// Container names or IDs.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        /// Container names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show a container's output.
    Logs {
        /// Keep streaming until the container exits.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Container name or ID.
        container: String,
    },
    /// Run a command in a running container.
    Exec(run::ExecArgs),
    /// Container maintenance.
    Container {
        #[command(subcommand)]
        command: ContainerCommand,
    },
    /// Show containers (or pods) as a JSON array.
    Inspect {
        /// Container or pod names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Remove running containers too (stopping them first).
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove every container (except pods' infra containers, removed with their pod).
        #[arg(short = 'a', long, conflicts_with = "names")]
        all: bool,
        /// Ignore names and IDs that do not exist.
        #[arg(short = 'i', long)]
        ignore: bool,
        /// With force: seconds to wait after the stop signal before SIGKILL (default: each
        /// container's stop timeout).
        #[arg(short = 't', long = "time", value_name = "SECONDS")]
        time: Option<u64>,
        /// Container names or IDs.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// List a container's published ports.
    Port {
        /// Container name or ID.
        container: String,
    },
    /// Pull an image from a registry.
    Pull(crate::image::PullArgs),
    /// List images.
    Images(crate::image::ImagesArgs),
    /// Remove images.
    Rmi(crate::image::RmiArgs),
    /// Add names to an image.
    Tag(crate::image::TagArgs),
    /// Remove names from an image (all when none given).
    Untag(crate::image::UntagArgs),
    /// Create an image from a root filesystem tarball.
    Import(crate::image::ImportArgs),
    /// Load images from a docker-archive or oci-archive.
    Load(crate::image::LoadArgs),
    /// Save images to a docker-archive or oci-archive.
    Save(crate::image::SaveArgs),
    /// Push an image to a registry.
    Push(crate::image::PushArgs),
    /// Manage images.
    Image {
        #[command(subcommand)]
        command: crate::image::ImageCommand,
    },
    /// Mount containers' root filesystems and print where.
    Mount {
        /// Container names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Give back a mount of containers' root filesystems.
    #[command(alias = "unmount")]
    Umount {
        /// Container names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Manage CNI networks.
    Network {
        #[command(subcommand)]
        command: crate::network::NetworkCommand,
    },
    /// Manage pods.
    Pod {
        #[command(subcommand)]
        command: pod::PodCommand,
    },
    /// Manage rpod itself.
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Show the rpod version.
    Version {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "text")]
        format: Format,
    },
}

/// `rpod config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration.
    Show {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "toml")]
        format: ConfigFormat,
        /// One line per key: value and where it came from.
        #[arg(long)]
        explain: bool,
    },
}

/// `rpod container …`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Release what an exited container holds (run by conmon after the exit).
    Cleanup {
        /// Remove the container too.
        #[arg(long)]
        rm: bool,
        /// Container names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `rpod system …`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the lock table: total, free and held locks, and who holds a lock right now.
    Locks {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value = "text")]
        format: Format,
    },
    /// Recreate the lock table with the configured num_locks and give every container and pod a
    /// fresh lock (required after changing num_locks).
    Renumber,
    /// Remove every container, pod and all state of this root.
    Reset {
        /// Do not ask; required.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let options = cli.global.options();
    match cli.command {
        Command::Info { format } => {
            let rt = Runtime::new(options)?;
            let info = rt.info()?;
            output::print_value(&serde_json::to_value(&info)?, format == Format::Json)?;
        }
        Command::Config {
            command: ConfigCommand::Show { format, explain },
        } => {
            let cfg = rpod::load_config(&ConfigEnv::detect(), &options)?;
            if explain {
                for (key, value, source) in cfg.explain()? {
                    output::line(&format!("{key} = {value}  # {source}"))?;
                }
            } else {
                match format {
                    ConfigFormat::Toml => output::raw(&cfg.values.to_toml()?)?,
                    ConfigFormat::Json => {
                        output::print_value(&serde_json::to_value(&cfg.values)?, true)?
                    }
                }
            }
        }
        Command::Create(args) => {
            // Everything the user can get wrong is checked before anything is written.
            let spec = args.spec()?;
            if let Some(name) = &spec.name {
                rpod::validate_name(name)?;
            }
            let rt = Runtime::new(options)?;
            if let Some(image) = &spec.image {
                crate::image::ensure(&rt, image, &args.pull, &args.registry)?;
            }
            let c = rt.new_container(spec)?;
            output::line(&c.config.id)?;
        }
        Command::Run(args) => {
            let spec = args.create.spec()?;
            if let Some(name) = &spec.name {
                rpod::validate_name(name)?;
            }
            let rt = Runtime::new(options)?;
            if let Some(image) = &spec.image {
                crate::image::ensure(&rt, image, &args.create.pull, &args.create.registry)?;
            }
            return run::run(&rt, &args);
        }
        Command::Start { attach, names } => {
            let rt = Runtime::new(options)?;
            return run::start(&rt, &names, attach);
        }
        Command::Attach {
            no_stdin,
            detach_keys,
            name,
        } => {
            let keys = rpod::parse_detach_keys(&detach_keys)?;
            let rt = Runtime::new(options)?;
            return run::attach(&rt, &name, !no_stdin, &keys);
        }
        Command::Stop { time, all, names } => {
            let rt = Runtime::new(options)?;
            let names = names_or_all(&rt, names, all, |c| c.state.status.is_running_or_paused())?;
            return run::each(&names, |n| {
                // Stopping a container that is not running succeeds, as in podman.
                match rt.stop_container(n, run::seconds(time)) {
                    Ok(_) | Err(rpod::RuntimeError::AlreadyStopped { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            });
        }
        Command::Kill { signal, all, names } => {
            let sig = rpod::parse_signal(&signal)?;
            let rt = Runtime::new(options)?;
            let names = names_or_all(&rt, names, all, |c| c.state.status.is_running())?;
            return run::each(&names, |n| rt.kill_container(n, sig, false));
        }
        Command::Restart { time, all, names } => {
            let rt = Runtime::new(options)?;
            let names = names_or_all(&rt, names, all, |c| !c.config.is_infra)?;
            return run::each(&names, |n| {
                rt.restart_container(n, run::seconds(time)).map(|_| ())
            });
        }
        Command::Pause { all, names } => {
            let rt = Runtime::new(options)?;
            let names = names_or_all(&rt, names, all, |c| c.state.status.is_running())?;
            return run::each(&names, |n| rt.pause_container(n));
        }
        Command::Unpause { all, names } => {
            let rt = Runtime::new(options)?;
            let names = names_or_all(&rt, names, all, |c| c.state.status.is_paused())?;
            return run::each(&names, |n| rt.unpause_container(n));
        }
        Command::Wait { names } => {
            let rt = Runtime::new(options)?;
            for n in &names {
                let code = rt.wait_container(n, None)?.unwrap_or(-1);
                output::line(&code.to_string())?;
            }
        }
        Command::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => {
            let rt = Runtime::new(options)?;
            return run::logs(&rt, &container, follow, tail, timestamps);
        }
        Command::Exec(args) => {
            let rt = Runtime::new(options)?;
            return run::exec(&rt, &args);
        }
        Command::Container {
            command: ContainerCommand::Cleanup { rm, names },
        } => {
            // conmon runs this when a container exits, possibly after `system reset` removed the
            // root: then there is nothing to clean up, and nothing must be created again.
            let rt = match Runtime::builder(options).existing_state_only().build() {
                Ok(rt) => rt,
                Err(e @ rpod::RuntimeError::NoState { .. }) => {
                    tracing::debug!("{e}: nothing to clean up");
                    return Ok(0);
                }
                Err(e) => return Err(e.into()),
            };
            for n in &names {
                rt.cleanup_container(n, rm)?;
            }
        }
        Command::Ps(args) => {
            let rt = Runtime::new(options)?;
            ctr::ps(&rt, &args)?;
        }
        Command::Inspect { names } => {
            let rt = Runtime::new(options)?;
            let mut docs = Vec::new();
            let mut missing = Vec::new();
            for n in &names {
                match rt.inspect_container(n) {
                    Ok(c) => docs.push(serde_json::to_value(&c)?),
                    Err(e) if e.is_not_found() => match rt.lookup_pod(n) {
                        Ok(p) => docs.push(serde_json::to_value(&p)?),
                        Err(_) => missing.push(n.clone()),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
            output::print_value(&serde_json::Value::Array(docs), true)?;
            if !missing.is_empty() {
                anyhow::bail!("no such container or pod: {}", missing.join(", "));
            }
        }
        Command::Rm {
            force,
            all,
            ignore,
            time,
            names,
        } => {
            let rt = Runtime::new(options)?;
            let names = if all {
                // The records as stored (no status sync): one odd container must not stop the
                // removal of the others; each removal syncs its own.
                rt.containers()?
                    .into_iter()
                    .filter(|c| !c.config.is_infra)
                    .map(|c| c.config.id)
                    .collect()
            } else {
                names
            };
            return ctr::rm(&rt, &names, force, ignore || all, time);
        }
        Command::Pod { command } => {
            let rt = Runtime::new(options)?;
            return pod::run(&rt, command);
        }
        Command::Port { container } => {
            let rt = Runtime::new(options)?;
            return crate::network::port(&rt, &container);
        }
        Command::Pull(args) => {
            let rt = Runtime::new(options)?;
            crate::image::pull(&rt, &args)?;
        }
        Command::Images(args) => {
            let rt = Runtime::new(options)?;
            crate::image::images(&rt, &args)?;
        }
        Command::Rmi(args) => {
            let rt = Runtime::new(options)?;
            return crate::image::rmi(&rt, &args);
        }
        Command::Tag(a) => {
            let rt = Runtime::new(options)?;
            rt.tag_image(&a.image, &a.names)?;
        }
        Command::Untag(a) => {
            let rt = Runtime::new(options)?;
            rt.untag_image(&a.image, &a.names)?;
        }
        Command::Import(args) => {
            let rt = Runtime::new(options)?;
            crate::image::import(&rt, &args)?;
        }
        Command::Load(args) => {
            let rt = Runtime::new(options)?;
            crate::image::load(&rt, &args)?;
        }
        Command::Save(args) => {
            let rt = Runtime::new(options)?;
            crate::image::save(&rt, &args)?;
        }
        Command::Push(args) => {
            let rt = Runtime::new(options)?;
            crate::image::push(&rt, &args)?;
        }
        Command::Image { command } => {
            let rt = Runtime::new(options)?;
            return crate::image::run(&rt, &command);
        }
        Command::Mount { names } => {
            let rt = Runtime::new(options)?;
            crate::image::mount(&rt, &names)?;
        }
        Command::Umount { names } => {
            let rt = Runtime::new(options)?;
            crate::image::umount(&rt, &names)?;
        }
        Command::Network { command } => {
            let rt = Runtime::new(options)?;
            return crate::network::run(&rt, command);
        }
        Command::System {
            command: SystemCommand::Reset { force },
        } => {
            if !force {
                anyhow::bail!("system reset removes every container, pod and all state of this root: rerun with --force");
            }
            let env = ConfigEnv::detect();
            let opened = match Runtime::new(options.clone()) {
                Err(e) if e.is_unusable_lock_segment() => {
                    // Start the table over; the runtime then reserves every recorded lock again
                    // and the reset stops and removes the objects as usual.
                    tracing::warn!("{e}");
                    let (path, _) = rpod::remove_lock_segment(&env, &options)?;
                    tracing::warn!(
                        "removed the lock segment {path}; it is recreated for the reset"
                    );
                    Runtime::new(options.clone())
                }
                other => other,
            };
            match opened {
                Ok(rt) => rt.reset()?,
                Err(e @ rpod::RuntimeError::LockConflicts(_)) => {
                    tracing::warn!("{e}");
                    tracing::warn!("removing the state without opening it");
                    rpod::reset_unreadable(&env, &options)?;
                }
                Err(e) if e.is_corrupt_state() => {
                    // The usual way out of a damaged database: start over, without reading it.
                    tracing::warn!("{e}");
                    tracing::warn!(
                        "removing the damaged state without reading it: containers that still run \
                         are found by their bundles and deleted"
                    );
                    rpod::reset_unreadable(&env, &options)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::System {
            command: SystemCommand::Locks { format },
        } => {
            let rt = Runtime::new(options)?;
            let report = rt.lock_report()?;
            if format == Format::Json {
                output::print_value(&serde_json::to_value(&report)?, true)?;
            } else {
                output::line(&format!("segment: {}", report.segment))?;
                output::line(&format!("total:   {}", report.total))?;
                output::line(&format!("free:    {}", report.free))?;
                output::line(&format!("held:    {}", report.held))?;
                if report.locked.is_empty() {
                    output::line("no lock is locked right now")?;
                } else {
                    output::line("LOCK ID  HOLDER PID")?;
                    for h in &report.locked {
                        output::line(&format!("{:<8} {}", h.id, h.pid))?;
                    }
                }
            }
        }
        Command::System {
            command: SystemCommand::Renumber,
        } => {
            let rt = Runtime::renumber(&ConfigEnv::detect(), options)?;
            let report = rt.lock_report()?;
            output::line(&format!(
                "renumbered: lock segment {} now holds {} locks",
                report.segment, report.total
            ))?;
        }
        Command::Version { format } => {
            let v = serde_json::json!({
                "version": rpod::VERSION,
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
            });
            if format == Format::Json {
                output::print_value(&v, true)?;
            } else {
                output::line(&format!("Version:      {}", rpod::VERSION))?;
                output::line(&format!(
                    "OS/Arch:      {}/{}",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ))?;
            }
        }
    }
    Ok(0)
}

/// The containers a command applies to: `names`, or with `all` the ID of every container that
/// `wanted` accepts (its status brought up to date; one that cannot be is skipped), pods'
/// members before their infra containers.
fn names_or_all(
    rt: &Runtime,
    names: Vec<String>,
    all: bool,
    wanted: impl Fn(&ContainerRecord) -> bool,
) -> Result<Vec<String>> {
    if !all {
        return Ok(names);
    }
    let (mut members, mut infra) = (Vec::new(), Vec::new());
    for mut c in rt.containers()? {
        if let Err(e) = rt.container_view(&mut c) {
            tracing::warn!(container = %c.config.id, error = %e, "skipped");
            continue;
        }
        if wanted(&c) {
            if c.config.is_infra {
                infra.push(c.config.id);
            } else {
                members.push(c.config.id);
            }
        }
    }
    members.extend(infra);
    Ok(members)
}
