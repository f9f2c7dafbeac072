//! The global flags: every flag that sets a configuration key, plus `--config`.
//!
//! The table is generated from the key declarations in `config.rs`, so a command line parser
//! that builds its flags from [`GLOBAL_FLAGS`](crate::GLOBAL_FLAGS) and hands their arguments to
//! [`RuntimeOptions::set_flag`](crate::RuntimeOptions::set_flag) needs no list of its own.

/// The kind of argument a global flag takes, so a command line parser can check it early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// A filesystem path (any bytes).
    Path,
    /// UTF-8 text.
    Text,
    /// An unsigned 32-bit number.
    Number,
}

/// One global flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalFlag {
    /// The long name without the leading dashes, e.g. `tmpdir`.
    pub long: &'static str,
    /// The name of its argument in help text, e.g. `DIR`.
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// What its argument must look like.
    pub kind: FlagKind,
    /// The configuration key it sets (`None` for `--config`, which names the file to read).
    pub key: Option<&'static str>,
    /// The [`RuntimeOptions`](crate::RuntimeOptions) setter it corresponds to.
    pub option: &'static str,
}

impl GlobalFlag {
    /// The flag as typed, e.g. `--tmpdir`; also what [`Source::Flag`](crate::Source::Flag)
    /// records.
    pub fn dashed(&self) -> String {
        format!("--{}", self.long)
    }
}

/// `--config`: not a key, the file the keys are read from.
pub(crate) const CONFIG_FLAG: GlobalFlag = GlobalFlag {
    long: "config",
    value_name: "PATH",
    help: "Read only this libpod.conf (it must exist).",
    kind: FlagKind::Path,
    key: None,
    option: "config_path",
};

/// The settings another rpod process must be given as this one resolved them rather than as
/// configured: see [`Config::cleanup_args`](crate::Config::cleanup_args).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// The OCI runtime binary found (`--runtime`), so the other process need not look again.
    pub runtime: &'a std::path::Path,
    /// The conmon binary found (`--conmon`).
    pub conmon: &'a std::path::Path,
    /// The SHM lock segment name in use (`--lock-name`), derived from the tmp dir when not
    /// configured.
    pub lock_name: &'a str,
}
