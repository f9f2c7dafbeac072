//! The plain records the state stores: container and pod configs and states (`container`, `pod`), the
//! runtime [`DbConfig`] and the time encoding [`unix_nanos`] (here).
//!
//! The database stores them in a compact binary encoding (MessagePack arrays of the fields in
//! declaration order, behind a format byte; see the crate's storage layout); JSON records written by
//! rpod-state/1 still decode. Every field has a default (`#[serde(default)]`), so a field added at the
//! end of a record reads as its default from older records in either encoding. Times are stored as signed nanoseconds since the Unix epoch (see [`unix_nanos`]).

mod container;
mod pod;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use container::{
    ContainerConfig, ContainerRecord, ContainerState, ContainerStatus, ExecSession, Mount,
    PortMapping, Rlimit,
};
pub use pod::{PodConfig, PodRecord, PodState};

/// Serde helpers storing [`SystemTime`] as signed nanoseconds since the Unix epoch (an integer).
pub mod unix_nanos {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    /// Nanoseconds since the epoch (negative before it), saturating at the `i64` range (years 1677–2262).
    pub fn to_nanos(t: SystemTime) -> i64 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos())
                .map(|n| -n)
                .unwrap_or(i64::MIN),
        }
    }

    /// The inverse of [`to_nanos`].
    pub fn from_nanos(n: i64) -> SystemTime {
        if n >= 0 {
            UNIX_EPOCH + Duration::from_nanos(n.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
        }
    }

    /// Serialise a time.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_nanos(*t))
    }

    /// Deserialise a time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        i64::deserialize(d).map(from_nanos)
    }

    /// The same for `Option<SystemTime>` (`null` = none).
    pub mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Serialise an optional time.
        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&super::to_nanos(*t)),
                None => s.serialize_none(),
            }
        }

        /// Deserialise an optional time.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            Ok(Option::<i64>::deserialize(d)?.map(super::from_nanos))
        }
    }
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

/// The runtime paths recorded in the database when it was created (libpod `DBConfig`).
///
/// In values read by [`State::get_db_config`](crate::State::get_db_config), an empty string means "not
/// recorded". In values given to [`State::validate_db_config`](crate::State::validate_db_config), an empty
/// string means "not configured" (not compared, not written); an empty `os` stands for the running OS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DbConfig {
    /// Operating system (`linux`).
    pub os: String,
    /// libpod root directory (`static_dir`).
    pub static_dir: String,
    /// libpod temporary files directory (`tmp_dir`).
    pub tmp_dir: String,
    /// Storage temporary directory (`run_root`).
    pub run_root: String,
    /// Storage graph root (`graph_root`).
    pub graph_root: String,
    /// Volume path.
    pub volume_path: String,
}

impl DbConfig {
    /// `(stored key, libpod message label, value)` for every field, in check order.
    pub fn fields(&self) -> [(&'static str, &'static str, &str); 6] {
        [
            ("os", "OS", &self.os),
            (
                "static-dir",
                "libpod root directory (staticdir)",
                &self.static_dir,
            ),
            (
                "tmp-dir",
                "libpod temporary files directory (tmpdir)",
                &self.tmp_dir,
            ),
            (
                "run-root",
                "storage temporary directory (runroot)",
                &self.run_root,
            ),
            (
                "graph-root",
                "storage graph root directory (graphroot)",
                &self.graph_root,
            ),
            ("volume-path", "volume path", &self.volume_path),
        ]
    }

    pub(crate) fn set(&mut self, key: &str, value: String) {
        match key {
            "os" => self.os = value,
            "static-dir" => self.static_dir = value,
            "tmp-dir" => self.tmp_dir = value,
            "run-root" => self.run_root = value,
            "graph-root" => self.graph_root = value,
            "volume-path" => self.volume_path = value,
            _ => {}
        }
    }
}
