//! conmon's attach socket (`<bundle>/attach`, `SOCK_SEQPACKET`, created with `--full-attach`):
//! every packet from conmon is one stream byte (2 = stdout, 3 = stderr) followed by data;
//! whatever the client writes goes to the container's stdin (when conmon ran with `-i`), and a
//! half-close of the client's side closes the container's stdin.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    connect, recv, send, shutdown, socket, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType,
    UnixAddr,
};

use crate::error::{OciError, Result};
use crate::logs::LogStream;

/// conmon's read buffer is 8192 bytes plus the stream byte.
const PACKET_SIZE: usize = 8192 + 1;

/// A connection to a container's attach socket.
#[derive(Debug)]
pub struct AttachConn {
    sock: OwnedFd,
    path: PathBuf,
}

/// One chunk of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOutput {
    /// Which stream it came from.
    pub stream: LogStream,
    /// The bytes.
    pub data: Vec<u8>,
}

fn sock_err(what: &'static str, path: &Path, e: nix::Error) -> OciError {
    OciError::io(what, path.to_owned(), std::io::Error::from(e))
}

impl AttachConn {
    /// Connects to `<bundle>/attach`. The socket path can exceed `sun_path`'s 108 bytes, so the
    /// connection goes through `/proc/self/fd/<bundle fd>/attach`.
    pub fn connect(bundle: &Path) -> Result<AttachConn> {
        let path = bundle.join("attach");
        let dir =
            File::open(bundle).map_err(|e| OciError::io("opening bundle", bundle.to_owned(), e))?;
        let short = format!("/proc/self/fd/{}/attach", dir.as_raw_fd());
        let addr = UnixAddr::new(short.as_str()).map_err(|e| sock_err("addressing", &path, e))?;
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| sock_err("creating a socket for", &path, e))?;
        connect(sock.as_raw_fd(), &addr).map_err(|e| sock_err("connecting to", &path, e))?;
        Ok(AttachConn { sock, path })
    }

    /// The next chunk of output; `None` once conmon closed the connection (the container exited
    /// and its output is drained).
    pub fn recv(&self) -> Result<Option<AttachOutput>> {
        let mut buf = vec![0u8; PACKET_SIZE];
        loop {
            let n = match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(sock_err("reading", &self.path, e)),
            };
            if n == 0 {
                return Ok(None);
            }
            let stream = match buf[0] {
                2 => LogStream::Stdout,
                3 => LogStream::Stderr,
                // Other tags (stdin echo, control) carry nothing for us.
                _ => continue,
            };
            return Ok(Some(AttachOutput {
                stream,
                data: buf[1..n].to_vec(),
            }));
        }
    }

    /// Sends bytes to the container's stdin.
    pub fn send_stdin(&self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let chunk = &data[..data.len().min(PACKET_SIZE - 1)];
            match send(self.sock.as_raw_fd(), chunk, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => data = &data[n..],
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(sock_err("writing to", &self.path, e)),
            }
        }
        Ok(())
    }

    /// Ends the connection in both directions (a pending [`AttachConn::recv`] returns `None`):
    /// detaching, while the container keeps running.
    pub fn shutdown(&self) -> Result<()> {
        match shutdown(self.sock.as_raw_fd(), Shutdown::Both) {
            Ok(()) | Err(nix::Error::ENOTCONN) => Ok(()),
            Err(e) => Err(sock_err("closing", &self.path, e)),
        }
    }

    /// Closes the container's stdin (our half of the connection); output keeps coming.
    pub fn close_stdin(&self) -> Result<()> {
        match shutdown(self.sock.as_raw_fd(), Shutdown::Write) {
            Ok(()) | Err(nix::Error::ENOTCONN) => Ok(()),
            Err(e) => Err(sock_err("closing stdin of", &self.path, e)),
        }
    }
}

/// Resizes the terminal of a container started with one (conmon `-t`): writes libpod's control
/// message `1 <rows> <cols>` to conmon's `ctl` FIFO in `bundle`. Fails with `ENXIO` when no conmon
/// has the FIFO open (the container is not running).
pub fn resize_terminal(bundle: &Path, rows: u16, cols: u16) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = bundle.join("ctl");
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| OciError::io("opening conmon's control FIFO", path.clone(), e))?;
    fifo.write_all(format!("1 {rows} {cols}\n").as_bytes())
        .map_err(|e| OciError::io("writing to conmon's control FIFO", path, e))
}
