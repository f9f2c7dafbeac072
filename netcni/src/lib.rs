//! rpod's container networking, rootful CNI style (libpod v1 semantics).
//!
//! This crate owns:
//! * network-namespace lifecycle: persistent netns files pinned by a bind mount ([`create_netns`],
//!   [`remove_netns`]);
//! * CNI configuration loading (`.conflist`, `.conf`, `.json`) ([`ConfigDir`], [`NetworkConfigList`]);
//! * CNI plugin execution, ADD/DEL/CHECK chains and the loopback interface ([`CniRunner`], [`PluginExec`]);
//! * its own cache of CNI results, needed as `prevResult` for DEL and CHECK ([`ResultCache`]);
//! * firewall backends (`none`, libpod v1 `iptables`) ([`FirewallBackend`]);
//! * `-p` parsing and host-port reservation ([`parse_publish`], [`reserve_ports`]);
//! * generation of the container's `resolv.conf` and `hosts` ([`resolv_conf`], [`hosts_file`]);
//! * network configuration files (`network create`/`rm`, the default network) ([`create_network`]);
//! * release of stale host-local IPAM leases ([`release_leases`]).
//!
//! It does not own container records, locks or the OCI runtime: the facade composes those with
//! this crate (which container gets which netns, when to tear down, what is stored in the state).
//! Nothing here depends on another rpod crate.

mod cache;
mod cidr;
mod cni;
mod config;
mod dns;
mod error;
mod firewall;
mod fsutil;
mod ipam;
mod link;
mod manage;
mod netns;
mod plugin;
mod ports;
mod residue;

pub use cache::{CacheEntry, ResultCache};
pub use cidr::Cidr;
pub use cni::{Attachment, CniResult, CniRunner, IpInfo};
pub use config::{ConfigDir, NetworkConfigList, HOST_LOCAL_DEFAULT_DATA_DIR, SUPPORTED_VERSIONS};
pub use dns::{hosts_file, parse_add_host, parse_dns_server, resolv_conf, FALLBACK_NAMESERVERS};
pub use error::NetError;
pub use firewall::{firewall_backend, FirewallBackend, IptablesFirewall, NoFirewall};
pub use ipam::{leases, release_leases, Lease};
pub use link::remove_bridge;
pub use manage::{
    create_network, default_network_config, remove_network_config, validate_network_name,
    write_network_config, NetworkCreate,
};
pub use netns::{create_netns, create_netns_at, is_netns_mounted, remove_netns};
pub use plugin::{PluginExec, PLUGIN_PATH_ENV};
pub use ports::{assign_free_ports, parse_publish, reserve_ports, PortMapping};
pub use residue::sweep_container_rules;
