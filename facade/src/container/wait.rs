//! `wait`: until a container has exited, without holding its lock (the exit file is watched);
//! also the exit code of a container removed meanwhile (`run --rm`).

use std::time::Duration;

use super::status::StatusRules;
use crate::error::RuntimeError;
use crate::Runtime;

impl Runtime {
    /// Waits until the container has exited and returns its exit code. Does not hold the
    /// container's lock while waiting (it watches the exit file).
    pub fn wait_container(
        &self,
        id_or_name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<i32>, RuntimeError> {
        self.check_valid()?;
        let rec = match self.state.lookup_container(id_or_name) {
            Ok(rec) => rec,
            // Already removed (`run --rm` racing conmon's `cleanup --rm`): a full ID's exit
            // file still has the code.
            Err(e) if e.is_not_found() => {
                return match self.removed_exit_code(id_or_name) {
                    Some(code) => Ok(Some(code)),
                    None => Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let id = rec.config.id.clone();
        let mut waited = None;
        if rec.state.status.may_have_process() {
            // The exit file may be retired (cleanup) or the record removed (`--rm`) by another
            // process between our read and the wait: re-check the record now and then instead
            // of waiting for a file that will not come.
            // A timeout beyond what the clock can represent means no timeout.
            let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
            // Short slices first: when conmon's `cleanup --rm` retires the exit file before we
            // look (`run --rm` of a quick command), the record check finds out within ms, not
            // after a whole slice; long waits settle at one check every 500 ms.
            let mut next_slice = Duration::from_millis(5);
            loop {
                let mut slice = next_slice;
                next_slice = (next_slice * 2).min(Duration::from_millis(500));
                if let Some(d) = deadline {
                    slice = slice.min(d.saturating_duration_since(std::time::Instant::now()));
                }
                if let Some(code) = self.oci()?.wait_exit(&id, Some(slice))? {
                    waited = Some(code);
                    break;
                }
                match self.state.container(&id) {
                    Ok(mut r) => {
                        self.sync_exit(&mut r)?;
                        if !r.state.status.may_have_process() {
                            break;
                        }
                    }
                    Err(e) if e.is_not_found() => break,
                    Err(e) => return Err(e.into()),
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Ok(None);
                }
            }
        }
        match self.with_container(&id, |rec| Ok(rec.state.exit_code)) {
            Ok(code) => Ok(Some(code)),
            // Removed in the meantime (--rm): the exit file still has the code.
            Err(RuntimeError::State(e)) if e.is_not_found() => {
                Ok(waited.or_else(|| self.removed_exit_code(&id)))
            }
            Err(e) => Err(e),
        }
    }

    /// The exit code of a removed container from its exit file (kept, as by libpod, until the
    /// tmp dir is wiped at reboot), current or retired.
    fn removed_exit_code(&self, id: &str) -> Option<i32> {
        // Only a full container ID names an exit file (never a path a user typed).
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let exits = self.exits_dir();
        [id.to_owned(), format!("{id}-old"), format!("removed/{id}")]
            .iter()
            .find_map(|f| {
                rpod_oci::read_exit_file(&exits, f, None)
                    .ok()
                    .flatten()
                    .map(|i| i.code)
            })
    }
}
