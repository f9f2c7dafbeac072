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
//! The CNI floor (`$BENCH_DIR/floor-cni[-p]/`, [`FloorNet::Cni`]) is the same
//! run inside a network set up and torn down by hand: a netns that the spec
//! joins, the CNI plugin chain's ADD before conmon and DEL after `runc
//! delete` (see [`cni_floor`]).
//!
//! A [`Floor`] guard removes everything afterwards, also on failure: conmon
//! processes, runc state and cgroups of the floor's containers (IDs
//! `rpod-bench-floor-<xtask pid>-<script pid>-<µs>`; runc's default cgroup
//! path is `/<ID>` in every hierarchy), the CNI floor's netns, bridge and
//! iptables rules, and the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::cases::FloorNet;
use super::cni_floor::{self, CniFloor};
use super::sweep::{self, RUNC};
use crate::util::{self, shell_quote};

/// conmon (Debian's `conmon` package).
const CONMON: &str = "/usr/bin/conmon";

/// Prefix of the floor's container IDs; the full prefix of one benchmark
/// run adds `<xtask pid>-`.
pub const ID_PREFIX: &str = "rpod-bench-floor-";

/// One measured run, up to `cd "$bundle"`; `@FLOOR@`, `@ID_PREFIX@`, `@CONMON@` and `@RUNC@`
/// (here and in [`BODY`]) are replaced (shell-quoted) when the script is written. A CNI floor
/// inserts its network set-up ([`cni_floor::script_up`]) between the two parts and its
/// tear-down ([`cni_floor::DOWN`]) after them.
const HEAD: &str = r#"#!/bin/bash
# conmon + runc floor of `run --rm true`: podman 4.3's handshake with conmon
# (protocols.md §2.1-2.4, "floor B" of §2.7), without podman.
set -eu
floor=@FLOOR@
bundle=$floor/bundle
id=@ID_PREFIX@$$-${EPOCHREALTIME/./}
cd "$bundle"
"#;

/// The container part of one measured run (see [`HEAD`]).
const BODY: &str = r#"# SYNC (fd 3) and START (fd 4): FIFOs opened O_RDWR as pipes; the start byte
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
    net: FloorNet,
    /// The CNI floor's guard (netns, bridge, iptables), for [`FloorNet::Cni`].
    cni: Option<CniFloor>,
}

impl Floor {
    /// Lays out the floor's directory under `bench_dir` ([`dir_name`]; see the module
    /// documentation), with the network `net`.
    pub fn new(bench_dir: &Path, net: FloorNet) -> Result<Floor> {
        for tool in [CONMON, RUNC] {
            anyhow::ensure!(
                Path::new(tool).exists(),
                "{tool} not found (install conmon and runc)"
            );
        }
        let dir = bench_dir.join(dir_name(net));
        let mut floor = Floor {
            script: dir.join("run.sh"),
            id_prefix: format!("{ID_PREFIX}{}-", std::process::id()),
            dir,
            net,
            cni: None,
        };
        fs::create_dir(&floor.dir).with_context(|| format!("creating {}", floor.dir.display()))?;
        let netns = if let FloorNet::Cni { publish } = net {
            floor.cni = Some(CniFloor::new(&floor.dir, &floor.id_prefix, publish)?);
            Some(cni_floor::netns_path(&floor.id_prefix))
        } else {
            None
        };
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
        configure(&mut config, &rootfs, netns.as_deref())?;
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
        script(&self.dir, &self.id_prefix, self.net)
    }

    /// Removes every trace of the floor's runs; errors are only reported.
    fn clean_up(&self) {
        // conmon exits right after writing the exit file; anything still
        // mentioning our directory after a grace period is killed.
        sweep::kill_processes_mentioning(&self.dir.display().to_string(), Duration::from_secs(5));
        sweep::delete_runc_containers(|id, _| id.starts_with(&self.id_prefix));
        sweep::remove_cgroups(|name| name.starts_with(&self.id_prefix));
        if let Some(cni) = &self.cni {
            cni.clean_up();
        }
        sweep::remove_dir(&self.dir);
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// The floor's directory under the bench dir: `floor`, `floor-cni` or `floor-cni-p`.
pub fn dir_name(net: FloorNet) -> &'static str {
    match net {
        FloorNet::None => "floor",
        FloorNet::Cni { publish: false } => "floor-cni",
        FloorNet::Cni { publish: true } => "floor-cni-p",
    }
}

/// The script of a floor under `bench_dir`, for the report: as it runs, with
/// this process's PID shown as `$XTASK_PID`.
pub fn display_script(bench_dir: &Path, net: FloorNet) -> String {
    let pid = std::process::id();
    script(
        &bench_dir.join(dir_name(net)),
        &format!("{ID_PREFIX}{pid}-"),
        net,
    )
    .replace(
        &format!("{ID_PREFIX}{pid}-"),
        &format!("{ID_PREFIX}$XTASK_PID-"),
    )
}

/// The text of `run.sh` for the floor directory `dir`.
fn script(dir: &Path, id_prefix: &str, net: FloorNet) -> String {
    let text = match net {
        FloorNet::None => format!("{HEAD}{BODY}"),
        FloorNet::Cni { publish } => format!(
            "{HEAD}{}{BODY}{}",
            cni_floor::script_up(dir, id_prefix, publish),
            cni_floor::DOWN
        ),
    };
    text.replace("@FLOOR@", &shell_quote(&dir.display().to_string()))
        .replace("@ID_PREFIX@", &shell_quote(id_prefix))
        .replace("@CONMON@", CONMON)
        .replace("@RUNC@", RUNC)
}

/// `runc spec`'s config with `process.terminal=false`,
/// `process.args=["true"]`, the root at `rootfs` and, given `netns`, the
/// network namespace joined at that path instead of a new one.
fn configure(config: &mut Value, rootfs: &Path, netns: Option<&Path>) -> Result<()> {
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
    if let Some(netns) = netns {
        let network = config
            .pointer_mut("/linux/namespaces")
            .and_then(Value::as_array_mut)
            .and_then(|spaces| spaces.iter_mut().find(|ns| ns["type"] == "network"))
            .and_then(Value::as_object_mut)
            .context("runc spec: no network namespace")?;
        network.insert("path".into(), Value::String(netns.display().to_string()));
    }
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
        configure(&mut config, Path::new("/b/rootfs"), None)?;
        assert_eq!(config["process"]["terminal"], false);
        assert_eq!(config["process"]["args"], serde_json::json!(["true"]));
        assert_eq!(config["process"]["cwd"], "/");
        assert_eq!(config["root"]["path"], "/b/rootfs");
        assert_eq!(config["root"]["readonly"], true);
        assert!(configure(&mut serde_json::json!({}), Path::new("/r"), None).is_err());
        let mut config = serde_json::json!({
            "process": {}, "root": {},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]},
        });
        configure(
            &mut config,
            Path::new("/r"),
            Some(Path::new("/run/netns/n")),
        )?;
        assert_eq!(
            config["linux"]["namespaces"],
            serde_json::json!([{"type": "pid"}, {"type": "network", "path": "/run/netns/n"}])
        );
        Ok(())
    }

    #[test]
    fn script_has_no_placeholder_left() {
        let text = script(
            Path::new("/tmp/rpod-bench-x/floor"),
            &format!("{ID_PREFIX}1-"),
            FloorNet::None,
        );
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("floor=/tmp/rpod-bench-x/floor\n"));
        assert!(text.contains("id=rpod-bench-floor-1-$$-"));
        assert!(text.contains("--api-version 1 -c \"$id\" -u \"$id\""));
        assert!(!text.contains("netns"));
        let cni = script(
            Path::new("/tmp/rpod-bench-x/floor-cni"),
            &format!("{ID_PREFIX}1-"),
            FloorNet::Cni { publish: false },
        );
        assert!(!cni.contains('@'), "{cni}");
        // netns and ADDs before conmon, DELs after `runc delete`.
        let at = |s: &str| cni.find(s).unwrap_or(usize::MAX);
        assert!(at("ip netns add") < at("cni ADD eth0 tuning"));
        assert!(at("cni ADD eth0 tuning") < at("_OCI_SYNCPIPE=3"));
        assert!(at("delete --force") < at("trap - EXIT\ndown\n"));
        assert!(cni.ends_with("trap - EXIT\ndown\n"));
    }
}
