//! The per-container `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`: generated into the
//! container's bundle directory at each init and bind-mounted over the root filesystem's
//! (podman's behaviour; resolv.conf from the host's, without loopback resolvers).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rpod_oci::UserMount;
use rpod_state::ContainerConfig;

use crate::error::RuntimeError;

/// The host's resolver configuration.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The host's hosts file (copied for `--network host`).
const HOST_HOSTS: &str = "/etc/hosts";

/// Writes `contents` to `path` (rpod's atomic write: temp file, fsync, rename) with mode 0644
/// whatever the umask: the container's process may run as any user.
pub(crate) fn write_file(path: &Path, contents: &str) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| RuntimeError::Write {
        path: path.to_owned(),
        source,
    };
    rpod_config::write_file_atomic(path, contents.as_bytes(), 0o644, false).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(err)
}

fn bind(destination: &str, source: PathBuf) -> UserMount {
    UserMount {
        destination: PathBuf::from(destination),
        source,
        fstype: "bind".to_owned(),
        options: vec!["bind".to_owned(), "rprivate".to_owned()],
    }
}

/// The container's addresses from CNI results as the state stores them.
pub(crate) fn result_ips(results: &[serde_json::Value]) -> Vec<IpAddr> {
    results
        .iter()
        .filter_map(rpod_net::CniResult::from_value)
        .flat_map(|r| r.ips().into_iter().map(|i| i.address))
        .collect()
}

/// Generates the files for `config` into `bundle` and returns their mounts. `ips` are the
/// container's addresses (its own network's, or those of the container whose network it
/// joins); `host_network` copies the host's hosts file instead of a fresh one.
pub(crate) fn etc_files(
    bundle: &Path,
    config: &ContainerConfig,
    ips: &[IpAddr],
    host_network: bool,
) -> Result<Vec<UserMount>, RuntimeError> {
    let mut mounts = Vec::with_capacity(3);
    let host_resolv = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let resolv = rpod_net::resolv_conf(
        &host_resolv,
        &config.dns_servers,
        &config.dns_search,
        &config.dns_options,
    );
    let path = bundle.join("resolv.conf");
    write_file(&path, &resolv)?;
    mounts.push(bind("/etc/resolv.conf", path));

    if !config.no_hosts {
        let mut entries = Vec::with_capacity(config.add_hosts.len());
        for h in &config.add_hosts {
            entries.push(rpod_net::parse_add_host(h)?);
        }
        let hosts = if host_network {
            let mut text = std::fs::read_to_string(HOST_HOSTS).unwrap_or_default();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            for (name, ip) in &entries {
                text.push_str(&format!("{ip}\t{name}\n"));
            }
            text
        } else {
            rpod_net::hosts_file(&entries, ips, &config.hostname, &config.name)
        };
        let path = bundle.join("hosts");
        write_file(&path, &hosts)?;
        mounts.push(bind("/etc/hosts", path));
    }

    if !config.hostname.is_empty() && !host_network {
        let path = bundle.join("hostname");
        write_file(&path, &format!("{}\n", config.hostname))?;
        mounts.push(bind("/etc/hostname", path));
    }
    Ok(mounts)
}
