//! Resource limits for the container process: the requested [`Rlimit`]s,
//! each clamped to the caller's own hard limit, as OCI `process.rlimits`.

use std::str::FromStr;

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use crate::error::{OciError, Result};

/// One resource limit request (`name` like `nofile` or `RLIMIT_NOFILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// Limit name: `nofile`, `RLIMIT_NOFILE`, `nproc`, ...
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// `nofile`, `NOFILE` or `RLIMIT_NOFILE` → the OCI rlimit type.
fn rlimit_type(name: &str) -> Result<PosixRlimitType> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    PosixRlimitType::from_str(&full)
        .map_err(|_| OciError::InvalidArgument(format!("unknown rlimit {name:?}")))
}

/// The host resource to read the caller's hard limit from.
fn nix_resource(t: PosixRlimitType) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match t {
        PosixRlimitType::RlimitCpu => R::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => R::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => R::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => R::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => R::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => R::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => R::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => R::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => R::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => R::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => R::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => R::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => R::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => R::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => R::RLIMIT_RTTIME,
    })
}

/// Clamp a requested limit pair to the caller's hard limit `max_hard`
/// (the container can never get more than the caller has).
pub fn clamp_rlimit(soft: u64, hard: u64, max_hard: u64) -> (u64, u64) {
    let hard = hard.min(max_hard);
    let soft = soft.min(hard);
    (soft, hard)
}
/// Build the spec's rlimits from the requests, each clamped to what the caller has.
pub(crate) fn build_rlimits(input: &[Rlimit]) -> Result<Vec<PosixRlimit>> {
    let mut out = Vec::with_capacity(input.len());
    for r in input {
        let typ = rlimit_type(&r.name)?;
        let max_hard = match nix_resource(typ) {
            Some(res) => {
                nix::sys::resource::getrlimit(res)
                    .map_err(|e| OciError::sys("getrlimit", e))?
                    .1
            }
            None => u64::MAX,
        };
        let (soft, hard) = clamp_rlimit(r.soft, r.hard, max_hard);
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp() {
        assert_eq!(clamp_rlimit(1_048_576, 1_048_576, 20000), (20000, 20000));
        assert_eq!(clamp_rlimit(100, 200, 20000), (100, 200));
        assert_eq!(clamp_rlimit(30000, 10, 20000), (10, 10));
        assert_eq!(clamp_rlimit(5, u64::MAX, u64::MAX), (5, u64::MAX));
    }

    #[test]
    fn rlimits_never_exceed_caller() {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = build_rlimits(&[Rlimit {
            name: "nofile".into(),
            soft: u64::MAX - 1,
            hard: u64::MAX - 1,
        }])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r[0].typ(), PosixRlimitType::RlimitNofile);
        assert!(r[0].hard() <= hard);
        assert!(r[0].soft() <= r[0].hard());
        assert!(build_rlimits(&[Rlimit {
            name: "bogus".into(),
            soft: 1,
            hard: 1
        }])
        .is_err());
    }
}
