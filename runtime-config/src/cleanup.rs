//! The global flags that make another rpod process see this configuration (conmon's exit
//! command, `rpod … container cleanup`).

use crate::config::push_flag_args;
use crate::flags::{Resolved, CONFIG_FLAG};
use crate::load::{Config, FileKind};

impl Config {
    /// Global-flag arguments (`["--root", "/var/lib/rpod/storage", …]`) that give another rpod
    /// process, started in the same environment, this configuration.
    ///
    /// They are `--config FILE` when `--config` was given, then every key that has a global
    /// flag, in key order (see [`GLOBAL_FLAGS`](crate::GLOBAL_FLAGS)): `--runtime`, `--conmon`
    /// and `--lock-name` take the caller's [`Resolved`] values (the binaries found, the segment
    /// name in use), the others the configured values; `--namespace` and `--cgroup-parent` are
    /// left out when empty. Keys without a flag are read by the other process from the same
    /// files. The caller adds anything that is not configuration (`--log-level`, the command).
    pub fn cleanup_args(&self, resolved: &Resolved<'_>) -> Vec<String> {
        let mut args = Vec::new();
        if self.explicit_config_file {
            if let Some(file) = self.files.iter().find(|f| f.kind == FileKind::LibpodConf) {
                args.push(CONFIG_FLAG.dashed());
                args.push(file.path.display().to_string());
            }
        }
        push_flag_args(&self.values, resolved, &mut args);
        args
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Config, ConfigEnv, RuntimeOptions, GLOBAL_FLAGS};

    use super::*;

    fn resolved() -> Resolved<'static> {
        Resolved {
            runtime: Path::new("/usr/bin/runc"),
            conmon: Path::new("/usr/bin/conmon"),
            lock_name: "/rpod_lock",
        }
    }

    fn load(opts: &RuntimeOptions) -> Config {
        let env = ConfigEnv::sandboxed(Path::new("/nonexistent"));
        Config::load(&env, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pairs(args: &[String]) -> Vec<(&str, &str)> {
        args.chunks(2)
            .map(|c| (c[0].as_str(), c.get(1).map_or("", String::as_str)))
            .collect()
    }

    #[test]
    fn cleanup_args_give_every_flagged_key() {
        let opts = RuntimeOptions::new()
            .graph_root("/r")
            .run_root("/rr")
            .storage_driver("vfs")
            .tmp_dir("/t")
            .cni_config_dir("/cni")
            .namespace("ns")
            .num_locks(64)
            .state_backend("lmdb")
            .cgroup_manager("cgroupfs")
            .cgroup_parent("/parent");
        let args = load(&opts).cleanup_args(&resolved());
        assert_eq!(
            pairs(&args),
            [
                ("--runtime", "/usr/bin/runc"),
                ("--conmon", "/usr/bin/conmon"),
                ("--cgroup-manager", "cgroupfs"),
                ("--static-dir", "/r/libpod"),
                ("--tmpdir", "/t"),
                ("--volumepath", "/r/volumes"),
                ("--root", "/r"),
                ("--runroot", "/rr"),
                ("--storage-driver", "vfs"),
                ("--cni-config-dir", "/cni"),
                ("--netns", "bridge"),
                ("--namespace", "ns"),
                ("--num-locks", "64"),
                ("--lock-name", "/rpod_lock"),
                ("--state-backend", "lmdb"),
                ("--cgroup-parent", "/parent"),
            ]
        );
        // Every key flag is there: the table and the arguments come from the same entries.
        let given: Vec<&str> = pairs(&args).iter().map(|p| p.0).collect();
        for flag in GLOBAL_FLAGS.iter().filter(|f| f.key.is_some()) {
            assert!(given.contains(&flag.dashed().as_str()), "{}", flag.long);
        }
    }

    #[test]
    fn cleanup_args_leave_out_empty_values_and_round_trip() {
        let cfg = load(&RuntimeOptions::new().tmp_dir("/t"));
        let args = cfg.cleanup_args(&resolved());
        assert!(!args
            .iter()
            .any(|a| a == "--namespace" || a == "--cgroup-parent"));
        assert!(!args.iter().any(|a| a == "--config"));
        // Parsed back as flags, they give the same values.
        let mut opts = RuntimeOptions::new();
        for (flag, arg) in pairs(&args) {
            let long = flag.trim_start_matches("--");
            opts = opts
                .set_flag(long, arg.as_ref())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let again = load(&opts);
        let mut expected = cfg.values.clone();
        expected.runtime = "/usr/bin/runc".into();
        expected.conmon_path = vec!["/usr/bin/conmon".into()];
        expected.lock_name = Some("/rpod_lock".into());
        assert_eq!(again.values, expected);
    }
}
