//! Running containers: run, start, stop, kill, restart, pause, unpause, wait, logs, exec,
//! container cleanup.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use rpod::{format_entry, AttachOptions, ExecSpec, LogEntry, LogStream, Runtime};

use crate::ctr::CreateArgs;
use crate::output;

/// `rpod run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open and forward ours to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Keys that detach from the container with -i (empty: none).
    #[arg(long = "detach-keys", default_value = rpod::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// Writes a log entry to our stdout or stderr, as the container wrote it.
fn emit(e: &LogEntry, timestamps: bool) -> bool {
    let mut text = format_entry(e, timestamps);
    if !e.partial {
        text.push('\n');
    }
    let res = match e.stream {
        LogStream::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        }
        LogStream::Stderr => {
            let mut o = std::io::stderr().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        }
    };
    res.is_ok()
}

/// `rpod run`: create, start and (unless detached) stream the output and exit with the
/// container's exit code.
pub fn run(rt: &Runtime, args: &RunArgs) -> Result<u8> {
    let detach_keys = rpod::parse_detach_keys(&args.detach_keys)?;
    let mut spec = args.create.spec()?;
    spec.auto_remove = args.rm;
    let c = rt.new_container(spec)?;
    let id = c.config.id.clone();
    let started = if args.detach {
        rt.start_container_with(&id, args.rm).map(|_| None)
    } else {
        rt.start_attached(
            &id,
            args.rm,
            AttachOptions {
                stdin: args.interactive,
                console_size: crate::tty::size(),
            },
        )
        .map(Some)
    };
    let conn = match started {
        Ok(conn) => conn,
        Err(e) => {
            let code = e.exit_code();
            if args.rm {
                if let Err(re) = rt.remove_container(&id, true) {
                    tracing::warn!(container = %id, error = %re, "removing the container after a failed start");
                }
            }
            eprintln!("Error: {e}");
            return Ok(code);
        }
    };
    let Some(attached) = conn else {
        output::line(&id)?;
        return Ok(0);
    };
    finish_attached(rt, attached, args.interactive, args.rm, &detach_keys)
}

/// Signals passed on to an attached container (podman's `--sig-proxy`, on by default).
const PROXIED_SIGNALS: &[i32] = &[
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
];

/// Streams an attached container until it exits, then cleans it up (and removes it with `rm`);
/// returns its exit code. Signals sent to rpod meanwhile go to the container.
fn finish_attached(
    rt: &Runtime,
    mut attached: rpod::Attached,
    stdin: bool,
    rm: bool,
    detach_keys: &[u8],
) -> Result<u8> {
    let id = attached.record.config.id.clone();
    let terminal = attached.record.config.terminal;
    let mut wanted = PROXIED_SIGNALS.to_vec();
    if terminal {
        wanted.push(signal_hook::consts::SIGWINCH);
    }
    let mut signals = signal_hook::iterator::Signals::new(&wanted)?;
    let handle = signals.handle();
    let resize = || {
        if let Some((rows, cols)) = crate::tty::size() {
            if let Err(e) = rt.resize_container(&id, rows, cols) {
                tracing::debug!(container = %id, error = %e, "resizing the terminal");
            }
        }
    };
    if terminal {
        // A resize between reading the size for the start and installing the SIGWINCH
        // handler would be lost, and `attach` starts nothing: send the current size now.
        resize();
    }
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let streamed = std::thread::scope(|s| {
        // Whatever happens below (a panic included), the signal thread ends and the terminal
        // is restored before the scope returns.
        let _stop_signals = CloseOnDrop(&handle);
        // With a terminal, keys go to the container as typed while we are attached.
        let _raw = if terminal && stdin {
            match crate::tty::RawMode::enter() {
                Ok(raw) => Some(raw),
                Err(e) => {
                    tracing::warn!(error = %e, "could not put the terminal in raw mode");
                    None
                }
            }
        } else {
            None
        };
        s.spawn(|| {
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGWINCH {
                    resize();
                } else if let Err(e) = rt.kill_container(&id, sig, false) {
                    tracing::warn!(container = %id, signal = sig, error = %e, "forwarding a signal");
                }
            }
        });
        let input: Option<Box<dyn std::io::Read + Send>> = if stdin {
            Some(Box::new(std::io::stdin()))
        } else {
            None
        };
        attached.stream(input, &mut out, &mut err, detach_keys)
    })?;
    if streamed == rpod::Streamed::Detached {
        // The container keeps running, as with podman's detach keys.
        return Ok(0);
    }
    let code = rt.finish_attached(attached, streamed, rm, &mut out, &mut err)?;
    Ok(u8::try_from(code).unwrap_or(255))
}

/// Closes a signal iterator's handle when dropped (ends the thread waiting on it).
struct CloseOnDrop<'a>(&'a signal_hook::iterator::Handle);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// `rpod attach`.
pub fn attach(rt: &Runtime, name: &str, stdin: bool, detach_keys: &[u8]) -> Result<u8> {
    let attached = match rt.attach_container(name) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(e.exit_code());
        }
    };
    let rm = attached.record.config.auto_remove;
    finish_attached(rt, attached, stdin, rm, detach_keys)
}

/// `rpod start`.
pub fn start(rt: &Runtime, names: &[String], attach: bool) -> Result<u8> {
    if attach {
        if names.len() != 1 {
            bail!("you can only attach to one container at a time");
        }
        // Connect before the start, as run does, so no output is lost.
        let opts = AttachOptions {
            stdin: false,
            console_size: crate::tty::size(),
        };
        let attached = match rt.start_attached(&names[0], false, opts) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("Error: {e}");
                return Ok(e.exit_code());
            }
        };
        return finish_attached(rt, attached, false, false, &[]);
    }
    let mut failed = false;
    for n in names {
        match rt.start_container(n) {
            Ok(_) => output::line(n)?,
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 125 } else { 0 })
}

/// Applies `f` to each container or pod name, printing the name on success; 125 if any failed.
pub fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> Result<(), rpod::RuntimeError>,
) -> Result<u8> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => output::line(n)?,
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 125 } else { 0 })
}

/// `rpod logs`.
pub fn logs(
    rt: &Runtime,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<u8> {
    if follow {
        rt.follow_logs(name, tail, |e| emit(&e, timestamps))?;
    } else {
        for e in rt.logs(name, tail)? {
            if !emit(&e, timestamps) {
                break;
            }
        }
    }
    Ok(0)
}

/// `rpod exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open (stdin is inherited).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal (needs one on our stdin, stdout or stderr).
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User (`uid[:gid]` or name).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container name or ID.
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `rpod exec`: runs the command with our stdio; exits with its exit code.
pub fn exec(rt: &Runtime, a: &ExecArgs) -> Result<u8> {
    let spec = ExecSpec {
        command: a.command.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        inherit_stdio: true,
        tty: a.tty,
    };
    match rt.exec(&a.container, &spec) {
        Ok(r) => Ok(u8::try_from(r.exit_code).unwrap_or(255)),
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(e.exit_code())
        }
    }
}

/// `-t SECONDS` as a duration.
pub fn seconds(t: Option<u64>) -> Option<Duration> {
    t.map(Duration::from_secs)
}
