//! The conmon + runc floor of `run --rm true`: podman's exact handshake with
//! conmon (`/work/shared/reference/protocols.md` §2.1–2.4; "floor B" of
//! §2.7), driven by a bash script with no engine at all.
//!
//! Made once, outside the measurement, under `$BENCH_DIR/floor/`:
//!
//! - `rootfs/`: the busybox rootfs;
//! - `bundle/config.json`: `runc spec` with `process.terminal=false`,
//!   `process.args=["true"]` and `root.path` = the rootfs (read-only, as
//!   `runc spec` has it), reused by every run with a fresh container ID;
//! - `sync`, `start`: two FIFOs that each run opens `O_RDWR` as the SYNC
//!   (fd 3) and START (fd 4) pipes;
//! - `run.sh`: one measured run.
//!
//! One run: queue the start byte, start conmon with podman's arguments
//! (`--api-version 1 -c ID -u ID -r runc -b BUNDLE -p PIDFILE -n NAME
//! --exit-dir EXITS --full-attach -l k8s-file:LOG --log-level warning
//! --conmon-pidfile P`, cwd = bundle), read the SYNC line (`{"data": PID}`),
//! `runc start ID`, spin until conmon's exit file `EXITS/ID` appears, then
//! `runc delete --force ID`.
//!
//! A [`Floor`] guard removes everything afterwards, also on failure: conmon
//! processes, runc state and cgroups of the floor's containers (IDs
//! `rpod-bench-floor-<xtask pid>-<script pid>-<µs>`; runc's default cgroup
//! path is `/<ID>` in every hierarchy) and the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::sweep::{self, RUNC};
use crate::util::{self, shell_quote};

/// conmon (Debian's `conmon` package).
const CONMON: &str = "/usr/bin/conmon";

/// Prefix of the floor's container IDs; the full prefix of one benchmark
/// run adds `<xtask pid>-`.
pub const ID_PREFIX: &str = "rpod-bench-floor-";

/// One measured run; `@FLOOR@`, `@ID_PREFIX@`, `@CONMON@` and `@RUNC@` are
/// replaced (shell-quoted) when the script is written.
const SCRIPT: &str = r#"#!/bin/bash
# conmon + runc floor of `run --rm true`: podman 4.3's handshake with conmon
# (protocols.md §2.1-2.4, "floor B" of §2.7), without podman.
set -eu
floor=@FLOOR@
bundle=$floor/bundle
id=@ID_PREFIX@$$-${EPOCHREALTIME/./}
cd "$bundle"
# SYNC (fd 3) and START (fd 4): FIFOs opened O_RDWR as pipes; the start byte
# is queued before conmon runs.
exec 3<>"$floor/sync" 4<>"$floor/start"
printf '\0' >&4
_OCI_SYNCPIPE=3 _OCI_STARTPIPE=4 @CONMON@ --api-version 1 -c "$id" -u "$id" \
    -r @RUNC@ -b "$bundle" -p "$bundle/pidfile" -n "$id" \
    --exit-dir "$floor/exits" --full-attach -l "k8s-file:$bundle/ctr.log" \
    --log-level warning --conmon-pidfile "$bundle/conmon.pid"
# conmon's first process has exited; its daemon runs `runc create` and writes
# one line to SYNC. Read it through a read-only end, our write end closed.
exec 5<"$floor/sync" 3>&- 4>&-
IFS= read -r -t 10 sync <&5 || { echo "floor: no SYNC line from conmon" >&2; exit 1; }
exec 5<&-
case $sync in
'{"data": '[1-9]*) ;;
*) echo "floor: runc create failed: $sync" >&2; exit 1 ;;
esac
@RUNC@ start "$id"
while [ ! -e "$floor/exits/$id" ]; do
    [ "$SECONDS" -lt 10 ] || { echo "floor: no exit file" >&2; exit 1; }
done
@RUNC@ delete --force "$id"
"#;

/// The floor's files, and the guard that removes everything its runs left.
pub struct Floor {
    dir: PathBuf,
    script: PathBuf,
    /// `rpod-bench-floor-<xtask pid>-`.
    id_prefix: String,
}

impl Floor {
    /// Lays out `bench_dir/floor/` (see the module documentation).
    pub fn new(bench_dir: &Path) -> Result<Floor> {
        for tool in [CONMON, RUNC] {
            anyhow::ensure!(
                Path::new(tool).exists(),
                "{tool} not found (install conmon and runc)"
            );
        }
        let dir = bench_dir.join("floor");
        let floor = Floor {
            script: dir.join("run.sh"),
            id_prefix: format!("{ID_PREFIX}{}-", std::process::id()),
            dir,
        };
        fs::create_dir(&floor.dir).with_context(|| format!("creating {}", floor.dir.display()))?;
        let rootfs = floor.dir.join("rootfs");
        for sub in ["bundle", "exits", "spec", "rootfs"] {
            fs::create_dir(floor.dir.join(sub))?;
        }
        super::setup::build_busybox_rootfs(&rootfs)?;

        let spec = floor.dir.join("spec");
        util::run(Command::new(RUNC).arg("spec").arg("--bundle").arg(&spec))?;
        let mut config: Value = serde_json::from_str(
            &fs::read_to_string(spec.join("config.json")).context("reading runc spec's output")?,
        )
        .context("parsing runc spec's config.json")?;
        configure(&mut config, &rootfs)?;
        fs::write(
            floor.dir.join("bundle/config.json"),
            serde_json::to_string_pretty(&config)?,
        )?;
        fs::remove_dir_all(&spec)?;

        for fifo in ["sync", "start"] {
            util::run(Command::new("mkfifo").arg(floor.dir.join(fifo)))?;
        }
        fs::write(&floor.script, floor.script_text())?;
        fs::set_permissions(
            &floor.script,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(floor)
    }

    /// The measured command.
    pub fn argv(&self) -> Vec<String> {
        vec!["bash".into(), self.script.display().to_string()]
    }

    /// The script's text.
    pub fn script_text(&self) -> String {
        script(&self.dir, &self.id_prefix)
    }

    /// Removes every trace of the floor's runs; errors are only reported.
    fn clean_up(&self) {
        // conmon exits right after writing the exit file; anything still
        // mentioning our directory after a grace period is killed.
        sweep::kill_processes_mentioning(&self.dir.display().to_string(), Duration::from_secs(5));
        sweep::delete_runc_containers(|id, _| id.starts_with(&self.id_prefix));
        sweep::remove_cgroups(|name| name.starts_with(&self.id_prefix));
        sweep::remove_dir(&self.dir);
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// The script of a floor under `bench_dir`, for the report: as it runs, with
/// this process's PID shown as `$XTASK_PID`.
pub fn display_script(bench_dir: &Path) -> String {
    let pid = std::process::id();
    script(&bench_dir.join("floor"), &format!("{ID_PREFIX}{pid}-")).replace(
        &format!("{ID_PREFIX}{pid}-"),
        &format!("{ID_PREFIX}$XTASK_PID-"),
    )
}

/// The text of `run.sh` for the floor directory `dir`.
fn script(dir: &Path, id_prefix: &str) -> String {
    SCRIPT
        .replace("@FLOOR@", &shell_quote(&dir.display().to_string()))
        .replace("@ID_PREFIX@", &shell_quote(id_prefix))
        .replace("@CONMON@", CONMON)
        .replace("@RUNC@", RUNC)
}

/// `runc spec`'s config with `process.terminal=false`,
/// `process.args=["true"]` and the root at `rootfs`.
fn configure(config: &mut Value, rootfs: &Path) -> Result<()> {
    let process = config
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .context("runc spec: no process object")?;
    process.insert("terminal".into(), Value::Bool(false));
    process.insert("args".into(), serde_json::json!(["true"]));
    let root = config
        .get_mut("root")
        .and_then(Value::as_object_mut)
        .context("runc spec: no root object")?;
    root.insert("path".into(), Value::String(rootfs.display().to_string()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_configured() -> Result<()> {
        let mut config = serde_json::json!({
            "process": {"terminal": true, "args": ["sh"], "cwd": "/"},
            "root": {"path": "rootfs", "readonly": true},
        });
        configure(&mut config, Path::new("/b/rootfs"))?;
        assert_eq!(config["process"]["terminal"], false);
        assert_eq!(config["process"]["args"], serde_json::json!(["true"]));
        assert_eq!(config["process"]["cwd"], "/");
        assert_eq!(config["root"]["path"], "/b/rootfs");
        assert_eq!(config["root"]["readonly"], true);
        assert!(configure(&mut serde_json::json!({}), Path::new("/r")).is_err());
        Ok(())
    }

    #[test]
    fn script_has_no_placeholder_left() {
        let text = script(
            Path::new("/tmp/rpod-bench-x/floor"),
            &format!("{ID_PREFIX}1-"),
        );
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("floor=/tmp/rpod-bench-x/floor\n"));
        assert!(text.contains("id=rpod-bench-floor-1-$$-"));
        assert!(text.contains("--api-version 1 -c \"$id\" -u \"$id\""));
    }
}
