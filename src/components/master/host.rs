//! The host facts kinit-master depends on: Docker's engine and cgroup setup, the
//! resolv.conf pods inherit, and the host's system directories the node's tools come from.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cgroup;
use crate::docker::EngineInfo;

/// Host facts the master depends on, read once by the caller.
pub struct Host {
    pub engine: EngineInfo,
    pub cgroup: cgroup::Setup,
    /// The resolv.conf pods inherit through CoreDNS (never a loopback stub resolver).
    pub resolv_conf: PathBuf,
    /// The host's system directories the node's tools come from, those that exist.
    pub system_paths: Vec<String>,
    /// Host paths mounted read-only when they exist (systemd's sockets when Docker uses
    /// the systemd cgroup driver, the system bus when the kubelet joins the shutdown).
    pub optional_paths: Vec<String>,
    /// systemd-logind runs the host's shutdowns: the kubelet stops the pods first
    /// (src/host.rs).
    pub graceful_shutdown: bool,
}

/// The host directories holding the node's tools and their libraries and configuration
/// (`/etc/alternatives` picks iptables' backend). On merged-/usr hosts /bin and friends
/// are links into /usr, and mounting them gives the same directories twice: harmless.
const SYSTEM_PATHS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The system bus socket's directory: bound whole, so a restarted D-Bus's new socket shows.
const DBUS_DIR: &str = "/run/dbus";

impl Host {
    pub fn probe(engine: EngineInfo) -> Result<Self> {
        let cgroup = cgroup::Setup::probe(&engine.cgroup_driver)?;
        Ok(Self::new(engine, cgroup, upstream_resolv_conf(), |p| {
            p.exists()
        }))
    }

    /// From facts read elsewhere (a recorded host in tests); `exists` says which host paths
    /// there are.
    pub fn new(
        engine: EngineInfo,
        cgroup: cgroup::Setup,
        resolv_conf: PathBuf,
        exists: impl Fn(&Path) -> bool,
    ) -> Self {
        let graceful_shutdown = exists(Path::new(crate::host::SYSTEMD_RUNNING))
            && exists(Path::new(crate::host::DBUS_SOCKET));
        let mut optional_paths = cgroup.master_binds(&exists);
        if graceful_shutdown && !optional_paths.iter().any(|p| p == DBUS_DIR) {
            optional_paths.push(DBUS_DIR.into());
        }
        Self {
            system_paths: SYSTEM_PATHS
                .into_iter()
                .filter(|p| exists(Path::new(p)))
                .map(String::from)
                .collect(),
            optional_paths,
            graceful_shutdown,
            engine,
            cgroup,
            resolv_conf,
        }
    }
}

/// The host's system directories that exist here.
pub fn host_system_paths() -> Vec<String> {
    SYSTEM_PATHS
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .map(String::from)
        .collect()
}

/// Pods with `dnsPolicy: Default` (CoreDNS itself) inherit this file. A loopback
/// nameserver there (systemd-resolved's 127.0.0.53) would point CoreDNS at itself, so
/// take the file listing the real upstream servers when there is one.
fn upstream_resolv_conf() -> PathBuf {
    let main = PathBuf::from("/etc/resolv.conf");
    let resolved = PathBuf::from("/run/systemd/resolve/resolv.conf");
    let only_loopback = std::fs::read_to_string(&main).is_ok_and(|text| {
        let servers: Vec<IpAddr> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|ip| ip.trim().parse().ok())
            .collect();
        !servers.is_empty() && servers.iter().all(IpAddr::is_loopback)
    });
    if only_loopback && resolved.exists() {
        resolved
    } else {
        main
    }
}
