//! Reading configuration files into [`Layer`]s: `libpod.conf` and the parts of
//! `containers.conf` rpod understands, with file, line and column on errors and unknown keys
//! logged.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{Layer, RawEngine, RawNetwork};
use crate::error::ConfigError;

/// Keys that later libpod versions added to `libpod.conf` (and distributions still ship) that rpod
/// does not use: logged at debug level rather than warned about.
const LATER_LIBPOD_KEYS: &[&str] = &[
    "lock_type",
    "runtime_supports_json",
    "runtime_supports_nocgroups",
    "runtime_supports_kvm",
    "events_logger",
    "events_logfile_path",
    "detach_keys",
    "sdnotify",
];

/// The parts of `containers.conf` rpod understands.
#[derive(Debug, Default, Deserialize)]
struct RawContainersConf {
    engine: Option<RawEngine>,
    network: Option<RawNetwork>,
}

/// Reads a `libpod.conf`; unknown keys are warned about (or logged, for later libpod keys).
pub(crate) fn read_libpod_conf(path: &Path) -> Result<Layer, ConfigError> {
    let text = read_file(path)?;
    let mut unknown = Vec::new();
    let layer: Layer = parse_toml(path, &text, &mut unknown)?;
    for key in unknown {
        if LATER_LIBPOD_KEYS.contains(&key.as_str()) {
            tracing::debug!(file = %path.display(), key = %key, "libpod.conf key not used by rpod");
        } else {
            tracing::warn!(file = %path.display(), key = %key, "unknown configuration key ignored");
        }
    }
    Ok(layer)
}

/// Reads a `containers.conf` layer: its `[engine]` and `[network]` keys that mean the same as a
/// `libpod.conf` key.
pub(crate) fn read_containers_conf(path: &Path) -> Result<Layer, ConfigError> {
    let text = read_file(path)?;
    let mut unknown = Vec::new();
    let raw: RawContainersConf = parse_toml(path, &text, &mut unknown)?;
    for key in unknown {
        // Keys of containers.conf that have no libpod.conf meaning are legitimate there.
        tracing::debug!(file = %path.display(), key = %key, "containers.conf key not used by rpod");
    }
    Ok(Layer::from_containers_conf(
        raw.engine.unwrap_or_default(),
        raw.network.unwrap_or_default(),
    ))
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses `text` as `T`, collecting the keys `T` does not know; errors carry file, line and column.
fn parse_toml<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    unknown: &mut Vec<String>,
) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_ignored::deserialize(de, |p| unknown.push(p.to_string())).map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\n", 2), (2, 1));
    }
}
