//! Signals given by the user: a number, a name with or without `SIG` (any case), or a
//! real-time signal as `RTMIN+n` / `RTMAX-n` (podman's forms).

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::RuntimeError;

/// The highest signal number on Linux.
const MAX_SIGNAL: i32 = 64;

/// Parses a signal given as a number (1–64), `TERM`, `SIGTERM`, `sigterm`, `RTMIN+3` or
/// `SIGRTMAX-1`.
pub fn parse_signal(s: &str) -> Result<i32, RuntimeError> {
    let invalid = |why: &str| RuntimeError::InvalidSpec(format!("invalid signal {s:?}{why}"));
    if let Ok(n) = s.parse::<i64>() {
        return match i32::try_from(n) {
            Ok(n) if (1..=MAX_SIGNAL).contains(&n) => Ok(n),
            _ => Err(invalid(": numbers must be between 1 and 64")),
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rtmin = nix::libc::SIGRTMIN();
    let rtmax = nix::libc::SIGRTMAX();
    let realtime = |base: i32, rest: &str, sign: i32| -> Result<i32, RuntimeError> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse()
                .map_err(|_| invalid(": the offset must be a number"))?
        };
        let n = base + sign * off;
        if (rtmin..=rtmax).contains(&n) {
            Ok(n)
        } else {
            Err(invalid(&format!(
                ": real-time signals are RTMIN+0 to RTMIN+{}",
                rtmax - rtmin
            )))
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let rest = match rest.strip_prefix('+') {
            Some(r) => r,
            None if rest.is_empty() => "",
            None => return Err(invalid("")),
        };
        return realtime(rtmin, rest, 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let rest = match rest.strip_prefix('-') {
            Some(r) => r,
            None if rest.is_empty() => "",
            None => return Err(invalid("")),
        };
        return realtime(rtmax, rest, -1);
    }
    let canonical = match name {
        "IOT" => "ABRT",
        "POLL" => "IO",
        "CLD" => "CHLD",
        other => other,
    };
    Signal::from_str(&format!("SIG{canonical}"))
        .map(|sig| sig as i32)
        .map_err(|_| invalid(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("KILL").ok(), Some(9));
        assert_eq!(parse_signal("SIGTERM").ok(), Some(15));
        assert_eq!(parse_signal("term").ok(), Some(15));
        assert_eq!(parse_signal("IOT").ok(), Some(6));
        assert_eq!(parse_signal("POLL").ok(), Some(29));
        assert_eq!(parse_signal("WINCH").ok(), Some(28));
        let rtmin = nix::libc::SIGRTMIN();
        assert_eq!(parse_signal("RTMIN").ok(), Some(rtmin));
        assert_eq!(parse_signal("RTMIN+3").ok(), Some(rtmin + 3));
        assert_eq!(
            parse_signal("SIGRTMAX-1").ok(),
            Some(nix::libc::SIGRTMAX() - 1)
        );
        assert_eq!(parse_signal("64").ok(), Some(64));
        for bad in [
            "0",
            "65",
            "-1",
            "",
            "NOPE",
            "RTMIN+99",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+x",
            "9223372036854775807",
            "SIG",
            "KILL\n",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
    }
}
