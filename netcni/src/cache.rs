//! rpod's own cache of CNI ADD results (not libcni's `/var/lib/cni/results`): DEL and CHECK
//! need the final ADD result as `prevResult`, and nothing else keeps it.

use std::fs;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::fsutil::{mkdir_p, remove_if_exists, write_replace};
use crate::NetError;

/// A directory of cached results, one file per (network, container, interface).
#[derive(Debug, Clone)]
pub struct ResultCache {
    /// The directory (created 0700 on first write).
    pub dir: PathBuf,
}

/// One cached result's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Network name.
    pub network: String,
    /// Container ID.
    pub container_id: String,
    /// Interface name inside the container.
    pub ifname: String,
    /// The cache file.
    pub path: PathBuf,
}

impl ResultCache {
    /// A cache in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        ResultCache { dir }
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(format!("{network}-{container_id}-{ifname}.json"))
    }

    /// Store `result` as `<dir>/<network>-<container_id>-<ifname>.json` (atomically, 0600).
    pub fn put(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
        result: &Value,
    ) -> Result<(), NetError> {
        self.write(network, container_id, ifname, result, true)
    }

    /// [`put`](Self::put) without fsync: the progress of an ADD chain, which only has to
    /// survive rpod being killed (a reboot takes the interfaces and rules with it).
    pub fn put_progress(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
        result: &Value,
    ) -> Result<(), NetError> {
        self.write(network, container_id, ifname, result, false)
    }

    fn write(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
        result: &Value,
        sync: bool,
    ) -> Result<(), NetError> {
        mkdir_p(&self.dir, 0o700)?;
        let doc = json!({
            "network": network,
            "containerId": container_id,
            "ifname": ifname,
            "result": result,
        });
        let path = self.path(network, container_id, ifname);
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| NetError::io("encoding", &path, std::io::Error::other(e.to_string())))?;
        write_replace(&path, &bytes, 0o600, sync)
    }

    /// The cached result, if any (an unreadable or corrupt entry counts as absent, with a warning).
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Option<Value> {
        let path = self.path(network, container_id, ifname);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read cached CNI result");
                return None;
            }
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut v) => v.get_mut("result").map(Value::take),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "corrupt cached CNI result");
                None
            }
        }
    }

    /// Remove the entry; a missing entry is not an error.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), NetError> {
        remove_if_exists(&self.path(network, container_id, ifname))
    }

    /// Every entry in the cache (identities read from inside the files).
    pub fn entries(&self) -> Vec<CacheEntry> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let Some(v) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
                tracing::warn!(path = %path.display(), "skipping unreadable CNI cache entry");
                continue;
            };
            let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            if let (Some(network), Some(container_id), Some(ifname)) =
                (field("network"), field("containerId"), field("ifname"))
            {
                out.push(CacheEntry {
                    network,
                    container_id,
                    ifname,
                    path,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Remove every entry of `container_id`; returns how many were removed.
    pub fn remove_container(&self, container_id: &str) -> Result<usize, NetError> {
        let mut n = 0;
        for e in self
            .entries()
            .into_iter()
            .filter(|e| e.container_id == container_id)
        {
            remove_if_exists(&e.path)?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn put_get_remove_entries() {
        let td = tempfile::tempdir().unwrap();
        let c = ResultCache::new(td.path().join("cache"));
        assert!(c.get("n", "id", "eth0").is_none());
        assert!(c.entries().is_empty());
        c.put("my-net", "abc-def", "eth0", &json!({"ips": []}))
            .unwrap();
        c.put("other", "abc-def", "eth1", &json!({"x": 1})).unwrap();
        c.put("other", "zzz", "eth0", &json!({"x": 2})).unwrap();
        assert_eq!(c.get("my-net", "abc-def", "eth0"), Some(json!({"ips": []})));
        let mode = fs::metadata(&c.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let f = c.dir.join("my-net-abc-def-eth0.json");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = c.entries();
        assert_eq!(e.len(), 3);
        assert!(e.contains(&CacheEntry {
            network: "my-net".into(),
            container_id: "abc-def".into(),
            ifname: "eth0".into(),
            path: f.clone(),
        }));
        assert_eq!(c.remove_container("abc-def").unwrap(), 2);
        assert_eq!(c.entries().len(), 1);
        c.remove("other", "zzz", "eth0").unwrap();
        c.remove("other", "zzz", "eth0").unwrap();
        assert!(c.entries().is_empty());
    }
}
