//! `attach`: a running container's output (and input) through conmon's attach socket, the
//! detach keys that leave it running, terminal resizes, and the end of a foreground session
//! (wait, show the log if the connection came too late, clean up).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rpod_oci::{AttachConn, LogStream, OciError};
use rpod_state::ContainerRecord;

use super::status::{require, StatusRules};
use crate::error::RuntimeError;
use crate::Runtime;

/// podman's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// How [`Runtime::start_attached`] connects to the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Keep the container's stdin open and connected (`-i`).
    pub stdin: bool,
    /// Initial size `(rows, cols)` of the container's terminal, for containers created with one
    /// (`-t`); usually the caller's own terminal size.
    pub console_size: Option<(u16, u16)>,
}

/// A container connected to by [`Runtime::start_attached`] or [`Runtime::attach_container`].
#[derive(Debug)]
pub struct Attached {
    /// The container's record after the start.
    pub record: ContainerRecord,
    /// The attach connection: its output (and input, if asked for).
    pub(crate) conn: Arc<AttachConn>,
    /// The container's log, opened before the start (the output is also there).
    pub(crate) log: Option<std::fs::File>,
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streamed {
    /// The container's output ended (it exited). `received` is false when conmon reset the
    /// connection before sending anything; the output is then in the log.
    Ended {
        /// Whether any output came through the connection.
        received: bool,
    },
    /// The detach keys were typed: the container keeps running.
    Detached,
}

/// Parses podman's `--detach-keys` format: comma-separated keys, each `ctrl-<c>` (`c` one of
/// `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_`) or a single ASCII character. Empty: no detach keys.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, RuntimeError> {
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
                RuntimeError::InvalidSpec(format!(
                    "invalid detach key {key:?} in {spec:?}: use ctrl-<a-z@[\\]^_> or one \
                     character, separated by commas"
                ))
            })
        })
        .collect()
}

/// Watches input for the detach keys, holding back a partial match until it is decided.
#[derive(Debug, Default, Clone)]
pub struct DetachFilter {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachFilter {
    /// A filter for this key sequence (empty: never detaches).
    pub fn new(keys: &[u8]) -> DetachFilter {
        DetachFilter {
            keys: keys.to_vec(),
            matched: 0,
        }
    }

    /// The bytes of `input` to pass on, and whether the detach keys were typed (input after
    /// them is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
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
    pub fn rest(&self) -> &[u8] {
        &self.keys[..self.matched]
    }
}

/// Copies `input` to the container's stdin through `conn` (closing it at EOF), until the
/// detach keys, which set `detached` and shut the connection down.
fn forward_input(
    conn: &AttachConn,
    mut input: impl Read,
    keys: &[u8],
    detached: &AtomicBool,
) -> Result<(), OciError> {
    let mut buf = [0u8; 8192];
    let mut filter = DetachFilter::new(keys);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let (out, detach) = filter.feed(&buf[..n]);
        conn.send_stdin(&out)?;
        if detach {
            detached.store(true, Ordering::SeqCst);
            return conn.shutdown();
        }
    }
    conn.send_stdin(filter.rest())?;
    conn.close_stdin()
}

impl Attached {
    /// Copies the container's output to `stdout` and `stderr` (as the container wrote it)
    /// until it exits; with `input`, copies it to the container's stdin, closing that at EOF,
    /// and watches it for `detach_keys`. The input is read on a thread of its own that is not
    /// joined (a terminal may never reach EOF).
    pub fn stream(
        &mut self,
        input: Option<Box<dyn Read + Send>>,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
        detach_keys: &[u8],
    ) -> Result<Streamed, RuntimeError> {
        let conn = Arc::clone(&self.conn);
        let detached = Arc::new(AtomicBool::new(false));
        if let Some(input) = input {
            let (c, d, keys) = (
                Arc::clone(&conn),
                Arc::clone(&detached),
                detach_keys.to_vec(),
            );
            std::thread::spawn(move || {
                if let Err(e) = forward_input(&c, input, &keys, &d) {
                    tracing::debug!(error = %e, "forwarding input to the container");
                }
            });
        }
        let mut received = false;
        loop {
            let chunk = match conn.recv() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(OciError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    return Ok(Streamed::Ended { received });
                }
                Err(e) => return Err(e.into()),
            };
            received = true;
            let out: &mut dyn Write = match chunk.stream {
                LogStream::Stdout => &mut *stdout,
                LogStream::Stderr => &mut *stderr,
            };
            // A closed output (a pipe whose reader left): keep draining so the container is
            // not blocked.
            let _ = out.write_all(&chunk.data).and_then(|()| out.flush());
        }
        if detached.load(Ordering::SeqCst) {
            return Ok(Streamed::Detached);
        }
        Ok(Streamed::Ended { received: true })
    }

    /// Writes the log that was opened before the start, each line to the stream it came from
    /// (for a container that exited before its output could come through the connection).
    pub fn replay_log(
        &mut self,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<(), RuntimeError> {
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        let path = Path::new(&self.record.config.log_path);
        let mut text = String::new();
        log.read_to_string(&mut text)
            .map_err(|source| RuntimeError::Read {
                path: path.to_owned(),
                source,
            })?;
        let entries = rpod_oci::parse_log_text(path, &text, &rpod_oci::LogOptions::default())?;
        for e in &entries {
            let out: &mut dyn Write = match e.stream {
                LogStream::Stdout => &mut *stdout,
                LogStream::Stderr => &mut *stderr,
            };
            let mut line = rpod_oci::format_entry(e, false);
            if !e.partial {
                line.push('\n');
            }
            if out
                .write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }
}

impl Runtime {
    /// Connects to a running container's output, and its input if it was started with stdin kept
    /// open (podman attach). The connection ends when the container exits.
    pub fn attach_container(&self, id_or_name: &str) -> Result<Attached, RuntimeError> {
        self.check_valid()?;
        let mut record = self.state.lookup_container(id_or_name)?;
        self.container_view(&mut record)?;
        require(&record, record.state.status.is_running(), "attach to")?;
        let conn = AttachConn::connect(&self.container_dir(&record.config.id))?;
        Ok(Attached {
            record,
            conn: Arc::new(conn),
            log: None,
        })
    }

    /// Sets the terminal size of a running container that has one (`-t`), through conmon.
    pub fn resize_container(
        &self,
        id_or_name: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        if !rec.config.terminal {
            return Err(RuntimeError::InvalidState {
                id: rec.config.id,
                status: "created without a terminal (-t)".to_owned(),
                action: "resize the terminal of",
            });
        }
        Ok(rpod_oci::resize_terminal(
            &self.container_dir(&rec.config.id),
            rows,
            cols,
        )?)
    }

    /// Ends a foreground session that streamed until the container exited: waits for its exit
    /// code, replays the log if the output did not come through the connection, and cleans the
    /// container up (removing it with `remove`; conmon's exit command does the same, whoever
    /// comes first wins). Returns the exit code (-1 when unknown).
    pub fn finish_attached(
        &self,
        mut attached: Attached,
        streamed: Streamed,
        remove: bool,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<i32, RuntimeError> {
        let id = attached.record.config.id.clone();
        let code = self.wait_container(&id, None)?.unwrap_or(-1);
        if streamed == (Streamed::Ended { received: false }) {
            // conmon dropped the connection before sending anything (the container exited at
            // once): the output is in the log, complete now that the container exited.
            attached.replay_log(stdout, stderr)?;
        }
        self.cleanup_container(&id, remove)?;
        Ok(code)
    }
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
