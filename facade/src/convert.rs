//! The one place where plain data crosses between leaf crates. Each type has one owner: the
//! configuration owns the cgroup manager and the recorded paths as the user sets them
//! (`rpod_config::CgroupManager`, `rpod_config::DbConfig`), the state owns what the database
//! records (`rpod_state::DbConfig`, `rpod_state::Rlimit`), the OCI layer owns what the spec
//! and conmon take (`rpod_oci::CgroupManager`, `rpod_oci::Rlimit`). Leaf crates never depend on
//! each other, so the facade converts, here and nowhere else.

use rpod_config::DbConfig;

/// The paths the configuration would record, as the state stores them.
pub(crate) fn db_to_state(c: &DbConfig) -> rpod_state::DbConfig {
    rpod_state::DbConfig {
        static_dir: c.static_dir.clone(),
        tmp_dir: c.tmp_dir.clone(),
        run_root: c.run_root.clone(),
        graph_root: c.graph_root.clone(),
        volume_path: c.volume_path.clone(),
        ..Default::default()
    }
}

/// The paths the database recorded, as the configuration applies them.
pub(crate) fn db_from_state(c: &rpod_state::DbConfig) -> DbConfig {
    DbConfig {
        static_dir: c.static_dir.clone(),
        tmp_dir: c.tmp_dir.clone(),
        run_root: c.run_root.clone(),
        graph_root: c.graph_root.clone(),
        volume_path: c.volume_path.clone(),
    }
}

/// The OCI layer's name for the configured cgroup manager.
pub(crate) fn cgroup_manager(m: rpod_config::CgroupManager) -> rpod_oci::CgroupManager {
    match m {
        rpod_config::CgroupManager::Cgroupfs => rpod_oci::CgroupManager::Cgroupfs,
        rpod_config::CgroupManager::Systemd => rpod_oci::CgroupManager::Systemd,
    }
}

/// A recorded resource limit, as the OCI spec takes it.
pub(crate) fn rlimit(r: &rpod_state::Rlimit) -> rpod_oci::Rlimit {
    rpod_oci::Rlimit {
        name: r.kind.clone(),
        soft: r.soft,
        hard: r.hard,
    }
}

/// A published port from `rpod-net`'s `-p` parser into the record (`rpod-state`).
pub(crate) fn port_from_net(m: &rpod_net::PortMapping) -> rpod_state::PortMapping {
    rpod_state::PortMapping {
        host_ip: m.host_ip.clone(),
        host_port: m.host_port,
        container_port: m.container_port,
        protocol: m.protocol.clone(),
    }
}

/// A recorded published port (`rpod-state`) for `rpod-net` (CNI `portMappings`, reservation).
pub(crate) fn port_to_net(m: &rpod_state::PortMapping) -> rpod_net::PortMapping {
    rpod_net::PortMapping {
        host_ip: m.host_ip.clone(),
        host_port: m.host_port,
        container_port: m.container_port,
        protocol: m.protocol.clone(),
    }
}
