//! Running containers: run, start, stop, kill, restart, pause, unpause, wait, logs, exec,
//! container cleanup.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use rpod::oci::{format_entry, LogEntry, LogStream};
use rpod::{AttachOptions, ExecSpec, Runtime};

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
    #[arg(long = "detach-keys", default_value = DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// Parses a signal given as a number, `TERM` or `SIGTERM`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}: numbers must be between 1 and 64");
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    let n = match name.as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => bail!("invalid signal {s:?}"),
    };
    Ok(n)
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
    let detach_keys = parse_detach_keys(&args.detach_keys)?;
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
    attached: rpod::Attached,
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
        stream_attached(attached.conn, stdin, detach_keys)
    })?;
    let streamed = match streamed {
        // The container keeps running, as with podman's detach keys.
        Streamed::Detached => return Ok(0),
        Streamed::Ended(received) => received,
    };
    let code = rt.wait_container(&id, None)?.unwrap_or(-1);
    if !streamed {
        // conmon dropped the connection before sending anything (the container exited at
        // once): the output is in the log, which is complete now that the container exited.
        if let Some(mut log) = attached.log {
            print_log_file(
                &mut log,
                std::path::Path::new(&attached.record.config.log_path),
            )?;
        }
    }
    // conmon's exit command cleans up (and removes with --rm) too; whoever comes first wins.
    rt.cleanup_container(&id, rm)?;
    Ok(u8::try_from(code).unwrap_or(255))
}

/// Closes a signal iterator's handle when dropped (ends the thread waiting on it).
struct CloseOnDrop<'a>(&'a signal_hook::iterator::Handle);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Prints a k8s-file log read from an open file, each line to the stream it came from.
fn print_log_file(log: &mut std::fs::File, path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let mut text = String::new();
    log.read_to_string(&mut text)?;
    let entries = rpod::oci::parse_log_text(path, &text, &rpod::oci::LogOptions::default())
        .map_err(rpod::RuntimeError::Oci)?;
    for e in &entries {
        if !emit(e, false) {
            break;
        }
    }
    Ok(())
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streamed {
    /// The container's output ended (it exited); `false` when conmon reset the connection before
    /// sending anything, so the caller shows the log instead.
    Ended(bool),
    /// The user typed the detach keys: the container keeps running.
    Detached,
}

/// podman's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Parses podman's `--detach-keys` format: comma-separated keys, each `ctrl-<c>` (`c` one of
/// `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_`) or a single ASCII character. Empty: no detach keys.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|key| {
            let byte = match key.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                    b @ b'a'..=b'z' => Some(b - b'a' + 1),
                    b @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_') => Some(b & 0x1f),
                    _ => None,
                },
                Some(_) => None,
                None if key.len() == 1 && key.is_ascii() => Some(key.as_bytes()[0]),
                None => None,
            };
            byte.ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid detach key {key:?} in {spec:?}: use ctrl-<a-z@[\\]^_> or one character, separated by commas"
                )
            })
        })
        .collect()
}

/// Watches input for the detach keys, holding back a partial match until it is decided.
#[derive(Debug, Default)]
struct DetachFilter {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachFilter {
    fn new(keys: &[u8]) -> DetachFilter {
        DetachFilter {
            keys: keys.to_vec(),
            matched: 0,
        }
    }

    /// The bytes of `input` to pass on, and whether the detach keys were typed (input after
    /// them is dropped).
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (input.to_vec(), false);
        }
        let mut out = Vec::with_capacity(input.len() + self.keys.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            // Not the sequence after all: pass on what was held back, then look at `b` again
            // as a possible start (a mismatch happens only after a partial match, so the
            // sequence has at least two keys here).
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = usize::from(b == self.keys[0]);
            if self.matched == 0 {
                out.push(b);
            }
        }
        (out, false)
    }

    /// What is still held back (at the end of the input).
    fn rest(&self) -> &[u8] {
        &self.keys[..self.matched]
    }
}

/// Copies the container's output to ours until it exits; with `stdin`, our input to the
/// container's (closing it at our EOF), watching for the detach keys.
fn stream_attached(
    conn: rpod::oci::AttachConn,
    stdin: bool,
    detach_keys: &[u8],
) -> Result<Streamed> {
    let conn = std::sync::Arc::new(conn);
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if stdin {
        let c = std::sync::Arc::clone(&conn);
        let d = std::sync::Arc::clone(&detached);
        let keys = detach_keys.to_vec();
        // Not joined: a terminal's stdin may never reach EOF; the process ends anyway.
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 8192];
            let mut input = std::io::stdin().lock();
            let mut filter = DetachFilter::new(&keys);
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let (out, detach) = filter.feed(&buf[..n]);
                if c.send_stdin(&out).is_err() {
                    return;
                }
                if detach {
                    d.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = c.shutdown();
                    return;
                }
            }
            let _ = c.send_stdin(filter.rest());
            let _ = c.close_stdin();
        });
    }
    let mut received = false;
    loop {
        let chunk = match conn.recv() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(rpod::oci::OciError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                return Ok(Streamed::Ended(received));
            }
            Err(e) => return Err(rpod::RuntimeError::Oci(e).into()),
        };
        received = true;
        let res = match chunk.stream {
            LogStream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(&chunk.data).and_then(|()| o.flush())
            }
            LogStream::Stderr => {
                let mut o = std::io::stderr().lock();
                o.write_all(&chunk.data).and_then(|()| o.flush())
            }
        };
        if res.is_err() {
            // Our output is gone (closed pipe): keep draining so the container is not blocked.
            continue;
        }
    }
    if detached.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(Streamed::Detached);
    }
    Ok(Streamed::Ended(true))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_filter() {
        let mut f = DetachFilter::new(&[0x10, 0x11]);
        // ctrl-p followed by something else passes both on.
        assert_eq!(f.feed(b"a\x10b"), (b"a\x10b".to_vec(), false));
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p is passed on, then detach.
        assert_eq!(f.feed(b"x\x10\x10\x11tail"), (b"x\x10".to_vec(), true));
        // Split over reads: the ctrl-p is held back until the next byte decides.
        let mut f = DetachFilter::new(&[0x10, 0x11]);
        assert_eq!(f.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(f.rest(), b"\x10");
        assert_eq!(f.feed(b"\x11"), (Vec::new(), true));
        let mut f = DetachFilter::new(&[0x10, 0x11]);
        assert_eq!(f.feed(b"\x10"), (Vec::new(), false));
        assert_eq!(f.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(f.rest(), b"");
        // No keys: everything passes.
        let mut f = DetachFilter::new(&[]);
        assert_eq!(f.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
        // One key.
        let mut f = DetachFilter::new(b"q");
        assert_eq!(f.feed(b"abqc"), (b"ab".to_vec(), true));
    }

    #[test]
    fn detach_key_specs() {
        assert_eq!(
            parse_detach_keys(DEFAULT_DETACH_KEYS).ok(),
            Some(vec![0x10, 0x11])
        );
        assert_eq!(parse_detach_keys("").ok(), Some(vec![]));
        assert_eq!(
            parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-_").ok(),
            Some(vec![1, b'x', 0, 0x1f])
        );
        for bad in ["ctrl-", "ctrl-A", "ctrl-ab", "xy", "a,,b", "é"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
    }
}
