//! `rpod-tests`: end-to-end tests of the `rpod` binary against the real runc, conmon and
//! (later) CNI plugins, each in its own sandbox (root, run root, tmp dir, lock segment, config
//! dirs) with a busybox-static root filesystem. The tests live in `tests/`; this library is empty.
//!
//! It owns no behaviour of rpod; it only checks it.

#![deny(unsafe_code)]
