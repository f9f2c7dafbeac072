//! Host, store and registry information (`rpod info`), read from `/proc`, `/etc/os-release`,
//! the binaries' `--version` and `registries.conf`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

/// Everything `rpod info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The machine.
    pub host: HostInfo,
    /// Where rpod keeps its state.
    pub store: StoreInfo,
    /// Search and insecure registries from `registries.conf`.
    pub registries: RegistriesInfo,
    /// Networking.
    pub network: NetworkInfo,
}

/// How containers get their network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    /// The network backend (`cni`, or an embedder's).
    pub backend: String,
    /// Where CNI network configurations are.
    pub cni_config_dir: PathBuf,
    /// Where CNI plugins are searched for.
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// The default network.
    pub default_network: String,
    /// The network mode of containers created without `--network`.
    pub default_mode: String,
    /// rpod's own firewall backend (`none`: the CNI firewall plugin does the work).
    pub firewall_driver: String,
}

/// Host facts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// CPUs available to this process.
    pub cpus: usize,
    /// Total memory in bytes.
    pub mem_total: u64,
    /// Free memory in bytes.
    pub mem_free: u64,
    /// Total swap in bytes.
    pub swap_total: u64,
    /// Free swap in bytes.
    pub swap_free: u64,
    /// Kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Uptime, human readable (`3h 2m 1.50s`).
    pub uptime: String,
    /// Uptime in seconds.
    pub uptime_seconds: f64,
    /// Distribution from os-release.
    pub distribution: Distribution,
    /// `v1`, `v1 (hybrid)` or `v2`.
    pub cgroup_version: String,
    /// `cgroupfs` or `systemd`.
    pub cgroup_manager: String,
    /// Whether rpod runs rootless.
    pub rootless: bool,
    /// conmon.
    pub conmon: ConmonInfo,
    /// The OCI runtime.
    pub oci_runtime: OciRuntimeInfo,
}

/// Distribution facts from os-release.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Distribution {
    /// `ID`.
    pub distribution: String,
    /// `VERSION_ID`.
    pub version: String,
}

/// The conmon binary.
#[derive(Debug, Clone, Serialize)]
pub struct ConmonInfo {
    /// Its path.
    pub path: PathBuf,
    /// First line of `--version`.
    pub version: String,
}

/// The OCI runtime binary.
#[derive(Debug, Clone, Serialize)]
pub struct OciRuntimeInfo {
    /// Its name (`runc`).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// First line of `--version`.
    pub version: String,
}

/// Where rpod keeps its state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    /// Storage graph root.
    pub graph_root: PathBuf,
    /// Storage run root.
    pub run_root: PathBuf,
    /// Static dir (database).
    pub static_dir: PathBuf,
    /// Tmp dir (per-boot state).
    pub tmp_dir: PathBuf,
    /// Volume path.
    pub volume_path: PathBuf,
    /// State backend.
    pub state_backend: String,
    /// The configuration files that were read.
    pub config_files: Vec<PathBuf>,
    /// The image store's driver (`overlay`, `vfs`), or why the store cannot be opened.
    pub graph_driver_name: String,
    /// Images in the store.
    pub image_count: usize,
    /// Containers (all namespaces).
    pub container_count: usize,
}

/// Registries from `registries.conf`.
#[derive(Debug, Clone, Serialize)]
pub struct RegistriesInfo {
    /// Searched for unqualified names.
    pub search: Vec<String>,
    /// Without TLS verification.
    pub insecure: Vec<String>,
    /// The file read.
    pub file: PathBuf,
}

/// Reads `/proc/meminfo` values in bytes.
fn meminfo() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.to_owned(), kb * 1024))
        })
        .collect()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn distribution() -> Distribution {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let mut d = Distribution::default();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k {
                "ID" => d.distribution = v,
                "VERSION_ID" => d.version = v,
                _ => {}
            }
        }
    }
    d
}

/// The cgroup layout (`rpod-oci` reads it, for its runtime checks, from `/proc/self/mounts`).
pub(crate) fn cgroup_version() -> String {
    match rpod_oci::host_cgroup_mode() {
        rpod_oci::CgroupMode::V1 => "v1",
        rpod_oci::CgroupMode::Hybrid => "v1 (hybrid)",
        rpod_oci::CgroupMode::V2 => "v2",
    }
    .to_owned()
}

fn human_uptime(secs: f64) -> String {
    let whole = secs as u64;
    let (h, m) = (whole / 3600, (whole % 3600) / 60);
    let s = secs - (h * 3600 + m * 60) as f64;
    format!("{h}h {m}m {s:.2}s")
}

pub(crate) fn host_info(rt: &crate::Runtime) -> HostInfo {
    // The two `--version` calls are the slow part; run them side by side.
    let (conmon, oci) = (rt.conmon().clone(), rt.oci_runtime().clone());
    let conmon_version = std::thread::spawn(move || conmon.version());
    let oci_version = oci.version();
    let conmon_version = conmon_version.join().ok().flatten();
    let mem = meminfo();
    let get = |k: &str| mem.get(k).copied().unwrap_or(0);
    let uptime_seconds = read_trimmed("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let cfg = rt.config();
    HostInfo {
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        mem_total: get("MemTotal"),
        mem_free: get("MemFree"),
        swap_total: get("SwapTotal"),
        swap_free: get("SwapFree"),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        uptime: human_uptime(uptime_seconds),
        uptime_seconds,
        distribution: distribution(),
        cgroup_version: cgroup_version(),
        cgroup_manager: cfg.values.cgroup_manager.to_string(),
        rootless: cfg.env.rootless,
        conmon: ConmonInfo {
            path: rt.conmon().path.clone(),
            version: conmon_version.unwrap_or_default(),
        },
        oci_runtime: OciRuntimeInfo {
            name: rt.oci_runtime().name.clone(),
            path: rt.oci_runtime().path.clone(),
            version: oci_version.unwrap_or_default(),
        },
    }
}

pub(crate) fn network_info(cfg: &rpod_config::Config, backend: &str) -> NetworkInfo {
    let v = &cfg.values;
    NetworkInfo {
        backend: backend.to_owned(),
        cni_config_dir: PathBuf::from(&v.cni_config_dir),
        cni_plugin_dirs: v.cni_plugin_dir.iter().map(PathBuf::from).collect(),
        default_network: v.cni_default_network.clone(),
        default_mode: v.netns.clone(),
        firewall_driver: v.firewall_driver.clone(),
    }
}

pub(crate) fn store_info(cfg: &rpod_config::Config) -> StoreInfo {
    let v = &cfg.values;
    StoreInfo {
        graph_root: v.graph_root.clone(),
        run_root: v.run_root.clone(),
        static_dir: v.static_dir.clone(),
        tmp_dir: v.tmp_dir.clone(),
        volume_path: v.volume_path.clone(),
        state_backend: v.state_backend.as_str().to_owned(),
        config_files: cfg.files.iter().map(|f| f.path.clone()).collect(),
        graph_driver_name: String::new(),
        image_count: 0,
        container_count: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_human() {
        assert_eq!(human_uptime(3723.5), "1h 2m 3.50s");
    }

    #[test]
    fn reads_this_host() {
        assert!(get_total_memory() > 0);
        assert_ne!(cgroup_version(), "");
    }

    fn get_total_memory() -> u64 {
        meminfo().get("MemTotal").copied().unwrap_or(0)
    }
}
