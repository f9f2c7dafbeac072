//! `-t`: the container's process gets a terminal (conmon holds the pty), with and without a
//! terminal on rpod's side; the local terminal's size is the container's from the start and
//! follows SIGWINCH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{expect_code, expect_stderr_has, sandbox, text};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

#[test]
fn run_t_without_a_local_terminal_still_gives_the_process_one() {
    let Some(sb) = sandbox() else { return };
    let script = "test -t 0 && test -t 1 && echo is-a-tty; exit 3";
    let out = sb.run_ctr(&["--rm", "-t"], &["sh", "-c", script]);
    expect_code(&out, 3);
    // The terminal turns "\n" into "\r\n", as with podman run -t.
    assert_eq!(text(&out.stdout), "is-a-tty\r\n");
    assert!(sb.ps_json().is_empty());
}

/// A child process that is killed and reaped if the test fails before waiting for it.
struct Reaped(std::process::Child);

impl Reaped {
    /// Waits up to `timeout` for the exit, killing the process after it.
    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                panic!("{} did not exit within {timeout:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A pseudo-terminal for a command: the slave becomes its stdio, and what it shows is collected
/// from the master as it arrives.
struct Terminal {
    slave: std::fs::File,
    keys: std::fs::File,
    shown: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    fn new(rows: u16, cols: u16) -> Terminal {
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let (tx, shown) = mpsc::channel::<Vec<u8>>();
        let mut reader = std::fs::File::from(master.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let t = Terminal {
            slave,
            keys: std::fs::File::from(master),
            shown,
            seen: Vec::new(),
        };
        t.set_size(rows, cols);
        t
    }

    fn set_size(&self, rows: u16, cols: u16) {
        tcsetwinsize(
            &self.slave,
            Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
    }

    /// Starts `cmd` on this terminal.
    fn spawn(&self, cmd: &mut std::process::Command) -> Reaped {
        cmd.stdin(Stdio::from(self.slave.try_clone().unwrap()))
            .stdout(Stdio::from(self.slave.try_clone().unwrap()))
            .stderr(Stdio::from(self.slave.try_clone().unwrap()));
        Reaped(cmd.spawn().unwrap())
    }

    /// Waits up to 10 s until the terminal has shown `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&self.seen).contains(needle) {
            match self
                .shown
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&self.seen)),
            }
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        std::io::Write::write_all(&mut self.keys, keys).unwrap();
    }
}

#[test]
fn run_it_on_a_terminal_has_its_size_input_and_resizes() {
    let Some(sb) = sandbox() else { return };
    let mut term = Terminal::new(40, 100);
    // The resize travels through rpod's signal thread, conmon and an ioctl: wait for it.
    let script = "stty size; read x; echo got:$x; \
         while [ \"$(stty size)\" != '30 90' ]; do sleep 0.1; done; echo resized:$(stty size)";
    let mut cmd = sb.ctr_cmd("run", &["-it", "--rm"], &["sh", "-c", script]);
    let mut child = term.spawn(&mut cmd);
    // The container's terminal has our size from its first instruction.
    term.wait_for("40 100");
    // A resize of our terminal reaches it (SIGWINCH to rpod, conmon's control FIFO).
    term.set_size(30, 90);
    std::process::Command::new("kill")
        .args(["-WINCH", &child.0.id().to_string()])
        .status()
        .unwrap();
    term.type_keys(b"hello\r");
    term.wait_for("got:hello");
    term.wait_for("resized:30 90");
    let status = child.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert!(sb.ps_json().is_empty());
}

#[test]
fn exec_it_on_a_terminal_and_a_clear_error_without_one() {
    let Some(sb) = sandbox() else { return };
    sb.run_detached("box", &["sleep", "1000"]);
    // No terminal on our side: refused with a message, nothing run.
    let out = sb.run(&["exec", "-t", "box", "true"]);
    expect_code(&out, 125);
    expect_stderr_has(&out, "terminal");

    let mut term = Terminal::new(25, 80);
    let mut cmd = sb.cmd();
    cmd.args([
        "exec",
        "-it",
        "box",
        "sh",
        "-c",
        "stty size; read x; exit ${#x}",
    ]);
    let mut child = term.spawn(&mut cmd);
    term.wait_for("25 80");
    term.type_keys(b"four\r");
    // The exit code comes back through the terminal session.
    assert_eq!(child.wait(Duration::from_secs(20)).code(), Some(4));
    // sleep as PID 1 ignores SIGTERM: no need to wait out the stop timeout.
    sb.ok(&["kill", "box"]);
    sb.ok(&["rm", "-f", "box"]);
}

#[test]
fn detach_keys_leave_the_container_running() {
    let Some(sb) = sandbox() else { return };
    let mut term = Terminal::new(24, 80);
    let script = "echo ready; while true; do sleep 0.1; done";
    let mut cmd = sb.ctr_cmd("run", &["-it", "--name", "bg"], &["sh", "-c", script]);
    let mut child = term.spawn(&mut cmd);
    term.wait_for("ready");
    // ctrl-p ctrl-q, split over two writes.
    term.type_keys(b"\x10");
    std::thread::sleep(Duration::from_millis(100));
    term.type_keys(b"\x11");
    assert_eq!(child.wait(Duration::from_secs(10)).code(), Some(0));
    let ps = sb.ps_json();
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["State"], "running", "{ps:?}");
    sb.ok(&["kill", "bg"]);
    sb.ok(&["rm", "-f", "bg"]);
}
