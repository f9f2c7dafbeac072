//! `logs`: a container's k8s-file log, whole, its tail, or followed until the container exits.

use std::path::{Path, PathBuf};

use rpod_oci::{LogEntry, LogOptions, OciError};

use super::status::StatusRules;
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// The container's log entries (k8s-file), optionally only the last `tail`.
    pub fn logs(
        &self,
        id_or_name: &str,
        tail: Option<usize>,
    ) -> Result<Vec<LogEntry>, RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let opts = LogOptions {
            tail,
            ..Default::default()
        };
        match rpod_oci::read_log(Path::new(&rec.config.log_path), &opts) {
            Ok(v) => Ok(v),
            Err(OciError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Follows the container's log: existing entries (the last `tail`), then new ones until the
    /// container exits or `sink` returns false.
    pub fn follow_logs(
        &self,
        id_or_name: &str,
        tail: Option<usize>,
        sink: impl FnMut(LogEntry) -> bool,
    ) -> Result<(), RuntimeError> {
        self.check_valid()?;
        let rec = self.state.lookup_container(id_or_name)?;
        let mut view = rec.clone();
        self.sync_exit(&mut view)?;
        let opts = LogOptions {
            tail,
            ..Default::default()
        };
        let log = PathBuf::from(&rec.config.log_path);
        if !view.state.status.may_have_process() {
            let mut sink = sink;
            for e in self.logs(&rec.config.id, tail)? {
                if !sink(e) {
                    break;
                }
            }
            return Ok(());
        }
        let exits = self.exits_dir();
        rpod_oci::follow_log(&log, &opts, &exits, &rec.config.id, sink).map_err(Into::into)
    }
}
