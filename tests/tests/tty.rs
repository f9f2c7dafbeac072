//! `-t`: the container's process gets a terminal (conmon holds the pty), with and without a
//! terminal on rpod's side; the local terminal's size is the container's from the start and
//! follows SIGWINCH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{available, text, Sandbox};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

#[test]
fn run_t_without_a_local_terminal_still_gives_the_process_one() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let out = sb.run_ctr(
        &["--rm", "-t"],
        &[
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo is-a-tty; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
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

/// A pseudo-terminal pair: the master, and the slave opened as a file.
fn pty(rows: u16, cols: u16) -> (OwnedFd, std::fs::File) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    set_size(&slave, rows, cols);
    (master, slave)
}

fn set_size(slave: &std::fs::File, rows: u16, cols: u16) {
    tcsetwinsize(
        slave,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
}

#[test]
fn run_it_on_a_terminal_has_its_size_input_and_resizes() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let (master, slave) = pty(40, 100);
    let mut cmd = sb.cmd();
    cmd.args(["run", "-it", "--rm", "--rootfs"])
        .arg(&sb.rootfs)
        .args([
            "sh",
            "-c",
            // The resize travels through rpod's signal thread, conmon and an ioctl: wait for it.
            "stty size; read x; echo got:$x; \
             while [ \"$(stty size)\" != '30 90' ]; do sleep 0.1; done; echo resized:$(stty size)",
        ])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    let mut child = Reaped(cmd.spawn().unwrap());
    // Everything the terminal shows, as it arrives.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
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
    let mut seen = Vec::new();
    let wait_for = |needle: &str, seen: &mut Vec<u8>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!("no {needle:?} in {:?}", String::from_utf8_lossy(seen)),
            }
        }
    };
    // The container's terminal has our size from its first instruction.
    wait_for("40 100", &mut seen);
    // A resize of our terminal reaches it (SIGWINCH to rpod, conmon's control FIFO).
    set_size(&slave, 30, 90);
    std::process::Command::new("kill")
        .args(["-WINCH", &child.0.id().to_string()])
        .status()
        .unwrap();
    let mut w = std::fs::File::from(master);
    std::io::Write::write_all(&mut w, b"hello\r").unwrap();
    wait_for("got:hello", &mut seen);
    wait_for("resized:30 90", &mut seen);
    let status = child.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    drop(slave);
    assert!(sb.ps_json().is_empty());
}

#[test]
fn exec_it_on_a_terminal_and_a_clear_error_without_one() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let out = sb.run_ctr(&["-d", "--name", "box"], &["sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // No terminal on our side: refused with a message, nothing run.
    let out = sb.run(&["exec", "-t", "box", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("terminal"),
        "{}",
        text(&out.stderr)
    );

    let (master, slave) = pty(25, 80);
    let mut cmd = sb.cmd();
    cmd.args([
        "exec",
        "-it",
        "box",
        "sh",
        "-c",
        "stty size; read x; exit ${#x}",
    ])
    .stdin(Stdio::from(slave.try_clone().unwrap()))
    .stdout(Stdio::from(slave.try_clone().unwrap()))
    .stderr(Stdio::from(slave.try_clone().unwrap()));
    let mut child = Reaped(cmd.spawn().unwrap());
    drop(slave);
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("25 80") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!("no size in {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    let mut w = std::fs::File::from(master);
    std::io::Write::write_all(&mut w, b"four\r").unwrap();
    // The exit code comes back through the terminal session.
    assert_eq!(child.wait(Duration::from_secs(20)).code(), Some(4));
    // sleep as PID 1 ignores SIGTERM: no need to wait out the stop timeout.
    sb.ok(&["kill", "box"]);
    sb.ok(&["rm", "-f", "box"]);
}

#[test]
fn detach_keys_leave_the_container_running() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    let (master, slave) = pty(24, 80);
    let mut cmd = sb.cmd();
    cmd.args(["run", "-it", "--name", "bg", "--rootfs"])
        .arg(&sb.rootfs)
        .args(["sh", "-c", "echo ready; while true; do sleep 0.1; done"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    let mut child = Reaped(cmd.spawn().unwrap());
    drop(slave);
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("ready") {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!("no output in {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    // ctrl-p ctrl-q, split over two writes.
    let mut w = std::fs::File::from(master);
    std::io::Write::write_all(&mut w, b"\x10").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::io::Write::write_all(&mut w, b"\x11").unwrap();
    assert_eq!(child.wait(Duration::from_secs(10)).code(), Some(0));
    let ps = sb.ps_json();
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["State"], "running", "{ps:?}");
    sb.ok(&["kill", "bg"]);
    sb.ok(&["rm", "-f", "bg"]);
}
