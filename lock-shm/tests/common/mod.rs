//! Helpers shared by the integration tests: unique segment names that are always unlinked, child processes made
//! by re-executing the test binary, and log capture.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rpod_lock::ShmLockManager;

/// Environment variable that turns a test function into a child-process role.
pub const CHILD_ENV: &str = "RPOD_LOCK_CHILD";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique segment name, unlinked on drop (also when the test panics).
#[derive(Debug)]
pub struct TestSegment {
    pub name: String,
}

impl TestSegment {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "/rpod_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        // In case a previous crashed run left one with the same name (practically impossible).
        let _ = ShmLockManager::unlink(&name);
        Self { name }
    }

    pub fn path(&self) -> String {
        format!("/dev/shm{}", self.name)
    }
}

impl Drop for TestSegment {
    fn drop(&mut self) {
        let _ = ShmLockManager::unlink(&self.name);
    }
}

/// The role this process plays if it is a child started by [`spawn_child`].
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Reads an environment variable a child needs.
pub fn child_env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child needs {key}"))
}

/// Prints a line the parent looks for (prefixed so libtest's own output is ignored).
pub fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nRPOD_CHILD {line}").unwrap();
    out.flush().unwrap();
}

/// A child process, killed and reaped on drop.
pub struct ChildProc {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl ChildProc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next reported line (without the prefix); panics if the child exits first.
    pub fn next_report(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child {} exited without reporting", self.pid());
            // libtest may have printed "test <name> ... " without a newline before our line.
            if let Some((_, rest)) = line.trim_end().split_once("RPOD_CHILD ") {
                return rest.to_owned();
            }
        }
    }

    /// Waits for the child and asserts it succeeded.
    pub fn wait_success(mut self) {
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "child {} failed: {status}",
            self.child.id()
        );
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that re-runs this test binary as a child playing `role` in test `test_name`.
pub fn child_command(test_name: &str, role: &str, envs: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Starts a child.
pub fn spawn_child(test_name: &str, role: &str, envs: &[(&str, String)]) -> ChildProc {
    spawn_command(child_command(test_name, role, envs))
}

pub fn spawn_command(mut cmd: Command) -> ChildProc {
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    ChildProc { child, stdout }
}

/// A buffer that collects formatted tracing output.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `f` with tracing output of this thread captured; returns its result and the log text.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    (result, buffer.contents())
}
