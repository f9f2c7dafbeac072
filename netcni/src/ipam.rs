//! host-local IPAM leases: listing them and releasing those of containers that no longer
//! exist (libpod PR #5434: leases outlive reboots because the data dir is not on tmpfs).

use std::fs::{self, OpenOptions};
use std::net::IpAddr;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use crate::config::NetworkConfigList;
use crate::NetError;

/// One address held by host-local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Network name.
    pub network: String,
    /// The address (the file name).
    pub ip: String,
    /// The container holding it.
    pub container_id: String,
    /// Its interface name.
    pub ifname: String,
    /// The lease file.
    pub path: PathBuf,
}

/// The network's leases: files in [`NetworkConfigList::ipam_data_dir`] named by an IP, holding
/// `<id>\r\n<ifname>` (a plain `\n` is accepted too). Empty when the network has no host-local IPAM.
pub fn leases(net: &NetworkConfigList) -> Vec<Lease> {
    let Some(dir) = net.ipam_data_dir() else {
        return Vec::new();
    };
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<IpAddr>().is_err() {
            continue;
        }
        let path = entry.path();
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
        let container_id = lines.next().unwrap_or("").trim().to_string();
        let ifname = lines.next().unwrap_or("").trim().to_string();
        out.push(Lease {
            network: net.name.clone(),
            ip: name,
            container_id,
            ifname,
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Remove the lease files whose container ID satisfies `owned`, holding host-local's own
/// lock (`flock` on `<dataDir>/<network>/lock`) meanwhile. Returns the leases removed.
pub fn release_leases(
    net: &NetworkConfigList,
    owned: &dyn Fn(&str) -> bool,
) -> Result<Vec<Lease>, NetError> {
    let Some(dir) = net.ipam_data_dir() else {
        return Ok(Vec::new());
    };
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let lock_path = dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| NetError::io("opening host-local lock", &lock_path, e))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| NetError::io("locking", &lock_path, errno.into()))?;
    let mut removed = Vec::new();
    for lease in leases(net) {
        if !owned(&lease.container_id) {
            continue;
        }
        match fs::remove_file(&lease.path) {
            Ok(()) => {
                tracing::info!(network = %lease.network, ip = %lease.ip, container = %lease.container_id, "released host-local lease");
                removed.push(lease);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NetError::io("removing lease", &lease.path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn list_and_release() {
        let td = tempfile::tempdir().unwrap();
        let conf = serde_json::json!({"cniVersion":"0.4.0","name":"leasenet","plugins":[
            {"type":"bridge","ipam":{"type":"host-local","dataDir": td.path().display().to_string(),
             "ranges":[[{"subnet":"10.78.9.0/24"}]]}}]});
        let net =
            NetworkConfigList::from_bytes(Path::new("x.conflist"), conf.to_string().as_bytes())
                .unwrap();
        assert!(leases(&net).is_empty());
        assert!(release_leases(&net, &|_| true).unwrap().is_empty());
        let dir = td.path().join("leasenet");
        assert_eq!(net.ipam_data_dir().unwrap(), dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("10.78.9.2"), "aaa\r\neth0").unwrap();
        fs::write(dir.join("10.78.9.3"), "bbb\neth1\n").unwrap();
        fs::write(dir.join("last_reserved_ip.0"), "10.78.9.3").unwrap();
        fs::write(dir.join("lock"), "").unwrap();
        let l = leases(&net);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].container_id, "aaa");
        assert_eq!(l[0].ifname, "eth0");
        assert_eq!(l[1].container_id, "bbb");
        assert_eq!(l[1].ifname, "eth1");
        let gone = release_leases(&net, &|id| id == "aaa").unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].ip, "10.78.9.2");
        assert!(!dir.join("10.78.9.2").exists());
        assert!(dir.join("10.78.9.3").exists());
        assert!(dir.join("last_reserved_ip.0").exists());
    }
}
