//! The local terminal of a foreground `run -t` / `start -a`: raw mode while attached (restored on
//! drop) and its size, which is passed on to the container's terminal.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// Puts stdin's terminal in raw mode (keys go to the container as typed, ctrl-c included) until
/// dropped. Does nothing when stdin is not a terminal.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Enters raw mode on stdin if it is a terminal.
    pub fn enter() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(RawMode { saved: None });
        }
        let saved = tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved: Some(saved) })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, saved);
        }
    }
}

/// `(rows, cols)` of the terminal on stdout, else stdin; `None` when neither is a terminal.
pub fn size() -> Option<(u16, u16)> {
    let stdout = std::io::stdout();
    let stdin = std::io::stdin();
    let ws = if stdout.is_terminal() {
        tcgetwinsize(stdout.as_fd()).ok()?
    } else if stdin.is_terminal() {
        tcgetwinsize(stdin.as_fd()).ok()?
    } else {
        return None;
    };
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
