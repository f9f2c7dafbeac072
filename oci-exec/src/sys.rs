//! The only module with `unsafe` code: mapping inherited file descriptors onto
//! fixed numbers (3, 4, ...) in a child process before `exec`.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg};

/// Lowest fd number used for the temporary duplicates (raised above the highest target when
/// a target is at or above it).
const HIGH_FD_BASE: RawFd = 64;

/// File descriptors to install in a child at fixed numbers.
///
/// The sources are duplicated (close-on-exec) at or above [`HIGH_FD_BASE`] and above every
/// target, so that `dup2` onto the targets can never clobber another source.
pub(crate) struct ChildFds {
    mapped: Vec<(OwnedFd, RawFd)>,
}

impl ChildFds {
    /// Duplicate each `(fd, target)`; the originals stay owned by the caller.
    pub(crate) fn new(pairs: &[(&OwnedFd, RawFd)]) -> nix::Result<Self> {
        let mut mapped = Vec::with_capacity(pairs.len());
        let base = pairs
            .iter()
            .map(|(_, target)| target.saturating_add(1))
            .fold(HIGH_FD_BASE, RawFd::max);
        for (fd, target) in pairs {
            let raw = fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(base))?;
            // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` just returned `raw` as a fresh
            // descriptor that nothing else owns, so taking ownership is sound.
            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
            mapped.push((owned, *target));
        }
        Ok(ChildFds { mapped })
    }

    /// Arrange for the child spawned from `cmd` to receive the descriptors at
    /// their targets (without close-on-exec). `self` must outlive the spawn.
    pub(crate) fn install(&self, cmd: &mut Command) {
        let pairs: Vec<(RawFd, RawFd)> = self
            .mapped
            .iter()
            .map(|(fd, target)| (fd.as_raw_fd(), *target))
            .collect();
        // SAFETY: the closure runs in the forked child before exec and only
        // calls dup2(2), which is async-signal-safe; it does not allocate
        // (`pairs` was built in the parent and is only iterated). Every source
        // is above every target, so no dup2 overwrites
        // a source that is still needed. dup2 clears FD_CLOEXEC on the target.
        unsafe {
            cmd.pre_exec(move || {
                for (src, dst) in &pairs {
                    nix::unistd::dup2(*src, *dst).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
    }
}
