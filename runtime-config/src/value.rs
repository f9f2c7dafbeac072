//! The value types of configuration keys, and how each is read, merged and passed as a flag.
//!
//! Every key of [`RuntimeConfig`](crate::RuntimeConfig) has a type implementing [`KeyValue`]:
//! what a file or option gives (its `Raw` form) and how that raw value is stored. Keys that have a
//! global flag also implement [`FlagValue`] (how the value is spelled on a command line), and the
//! flag's argument type implements [`FromFlag`] (how it is parsed from one).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::flags::FlagKind;

/// Which cgroup manager rpod asks the OCI runtime to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    /// Plain cgroupfs directories.
    Cgroupfs,
    /// systemd scopes and slices.
    Systemd,
}

impl CgroupManager {
    /// The TOML / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupManager::Cgroupfs => "cgroupfs",
            CgroupManager::Systemd => "systemd",
        }
    }

    /// Parses the TOML / CLI spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cgroupfs" => Some(CgroupManager::Cgroupfs),
            "systemd" => Some(CgroupManager::Systemd),
            _ => None,
        }
    }
}

impl fmt::Display for CgroupManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which state backend the runtime opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// The persistent LMDB database in the static dir (default).
    #[default]
    Lmdb,
    /// An in-process store that forgets everything on exit (tests, embedding).
    Memory,
}

impl StateBackend {
    /// The TOML / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackend::Lmdb => "lmdb",
            StateBackend::Memory => "memory",
        }
    }

    /// Parses the TOML / CLI spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lmdb" => Some(StateBackend::Lmdb),
            "memory" => Some(StateBackend::Memory),
            _ => None,
        }
    }
}

/// A raw value a key cannot hold: the value as given and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) value: String,
    pub(crate) reason: &'static str,
}

/// The type of a configuration key.
pub(crate) trait KeyValue {
    /// The value as a file or option gives it, before it is checked.
    type Raw: fmt::Debug + Clone + PartialEq + Eq + DeserializeOwned;

    /// Stores `raw` (replacing the value, or adding to it for tables), or rejects it.
    fn merge(&mut self, raw: Self::Raw) -> Result<(), Rejected>;
}

/// Types stored as given.
macro_rules! plain_values {
    ($($ty:ty),* $(,)?) => {$(
        impl KeyValue for $ty {
            type Raw = $ty;
            fn merge(&mut self, raw: $ty) -> Result<(), Rejected> {
                *self = raw;
                Ok(())
            }
        }
    )*};
}

plain_values!(String, PathBuf, Vec<String>, bool, i64, u32);

/// An optional name (`lock_name`): giving one sets it.
impl KeyValue for Option<String> {
    type Raw = String;
    fn merge(&mut self, raw: String) -> Result<(), Rejected> {
        *self = Some(raw);
        Ok(())
    }
}

/// A table (`runtimes`): a later layer adds entries and replaces those of the same name.
impl KeyValue for BTreeMap<String, Vec<String>> {
    type Raw = BTreeMap<String, Vec<String>>;
    fn merge(&mut self, raw: Self::Raw) -> Result<(), Rejected> {
        self.extend(raw);
        Ok(())
    }
}

/// Enumerations, given by their TOML / CLI spelling.
macro_rules! spelled_values {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl KeyValue for $ty {
            type Raw = String;
            fn merge(&mut self, raw: String) -> Result<(), Rejected> {
                *self = <$ty>::parse(&raw).ok_or(Rejected {
                    value: raw,
                    reason: $expected,
                })?;
                Ok(())
            }
        }

        impl FlagValue for $ty {
            fn flag_value(&self) -> Option<String> {
                Some(self.as_str().to_owned())
            }
        }
    )*};
}

spelled_values!(
    CgroupManager => "must be \"cgroupfs\" or \"systemd\"",
    StateBackend => "must be \"lmdb\" or \"memory\"",
);

/// How a value is passed as a global flag to another rpod process; `None` when it is unset and
/// the flag is left out.
pub(crate) trait FlagValue {
    /// The flag's argument, if the flag is to be given.
    fn flag_value(&self) -> Option<String>;
}

impl FlagValue for Path {
    fn flag_value(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

/// An empty string means "unset" (`namespace`, `cgroup_parent`).
impl FlagValue for str {
    fn flag_value(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.to_owned())
    }
}

impl FlagValue for Option<String> {
    fn flag_value(&self) -> Option<String> {
        self.clone()
    }
}

impl FlagValue for u32 {
    fn flag_value(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// A flag argument type: parsed from the command line.
pub(crate) trait FromFlag: Sized {
    /// What a command line parser should accept.
    const KIND: FlagKind;
    /// Parses the argument, or says why it cannot be.
    fn from_flag(arg: &OsStr) -> Result<Self, String>;
}

impl FromFlag for PathBuf {
    const KIND: FlagKind = FlagKind::Path;
    fn from_flag(arg: &OsStr) -> Result<Self, String> {
        Ok(PathBuf::from(arg))
    }
}

fn utf8(arg: &OsStr) -> Result<&str, String> {
    arg.to_str().ok_or_else(|| "is not valid UTF-8".to_owned())
}

impl FromFlag for String {
    const KIND: FlagKind = FlagKind::Text;
    fn from_flag(arg: &OsStr) -> Result<Self, String> {
        utf8(arg).map(str::to_owned)
    }
}

impl FromFlag for u32 {
    const KIND: FlagKind = FlagKind::Number;
    fn from_flag(arg: &OsStr) -> Result<Self, String> {
        utf8(arg)?.parse().map_err(|e| format!("{e}"))
    }
}

/// Conversion of an option's argument into the raw value of the key it sets.
pub(crate) trait IntoRaw<R> {
    /// The raw value.
    fn into_raw(self) -> R;
}

impl<T> IntoRaw<T> for T {
    fn into_raw(self) -> T {
        self
    }
}

/// `--cni-config-dir` is a path; the key is a string.
impl IntoRaw<String> for PathBuf {
    fn into_raw(self) -> String {
        self.display().to_string()
    }
}

/// `--conmon` names one binary; the key is a list of candidates.
impl IntoRaw<Vec<String>> for PathBuf {
    fn into_raw(self) -> Vec<String> {
        vec![self.display().to_string()]
    }
}
