//! kinit-master: the kubelet and cri-dockerd in one container, and the files it runs on:
//! its entrypoint, the kubelet configuration, the CNI network, the API server's
//! authentication and the three static pods of the control plane.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::cgroup;
use crate::cluster::component::{
    API_SERVER_PORT, CONTROLLER_MANAGER_PORT, ETCD_CLIENT_PORT, KUBELET_HEALTHZ_PORT,
    SCHEDULER_PORT,
};
use crate::cluster::{self, Settings};
use crate::docker::{ContainerSpec, Docker, EngineInfo};
use crate::fs::Mode;
use crate::layout::Layout;
use crate::manifests::{self, Manifest};
use crate::net::url_host;
use crate::versions::Images;

/// The Linux bridge pods attach to, in the host's network namespace.
pub const BRIDGE: &str = "cni0";
/// The kubelet's cgroup root, created by the entrypoint: kinit's pods stay apart from
/// anything else on the host.
pub const CGROUP_ROOT: &str = cgroup::KUBELET_ROOT;
/// The CNI network's name; the bridge plugin tags its iptables rules with it.
pub const NETWORK: &str = "kinit";

/// The kubelet's health endpoint (plain HTTP, loopback only).
pub fn kubelet_healthz() -> String {
    format!("http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz")
}

/// A file kinit renders for the master.
/// The kubelet evicts pods, and taints the node against new ones, when less than this many
/// MiB of the filesystem of its root directory (nodefs) or of Docker's (imagefs) are free.
/// An amount, not a share: a test cluster shares its host's disk with everything else, and
/// on a large or thin-provisioned disk any percentage is many GiB that the host would
/// never miss (kind and minikube turn disk eviction off for the same reason). Preflight
/// refuses a disk already near it.
pub const EVICTION_FREE_MIB: u64 = 1024;

#[derive(Debug)]
pub struct File {
    pub path: PathBuf,
    pub contents: String,
    pub mode: Mode,
}

/// Everything the templates under `manifests/master/` and `components/master.yaml` use.
#[derive(Debug, Serialize)]
struct Values {
    image: String,
    /// [`EVICTION_FREE_MIB`], for the kubelet's evictionHard.
    eviction_free_mib: u64,
    /// [`crate::pki::digest`]: the static pods carry it, so new credentials restart them.
    credentials: String,
    state_dir: String,
    entrypoint: String,
    docker_socket: String,
    docker_containers: String,
    resolv_conf: String,
    host_system_paths: Vec<String>,
    optional_host_paths: Vec<String>,
    node_ip: String,
    /// The node IP as it appears in a URL (IPv6 in brackets).
    node_host: String,
    hostname: String,
    api_port: u16,
    etcd_port: u16,
    kubelet_healthz_port: u16,
    controller_manager_port: u16,
    scheduler_port: u16,
    service_cidr: String,
    /// iptables or ip6tables, for the Service range's family.
    service_iptables: &'static str,
    pod_cidr: String,
    node_pod_cidr: String,
    node_cidr_prefix: u8,
    dns_ip: String,
    dns_domain: String,
    cgroup_driver: &'static str,
    cgroup_root: &'static str,
    /// The slice the entrypoint has the host's systemd start (systemd driver only).
    cgroup_slice: Option<&'static str>,
    /// The directories the entrypoint makes before the kubelet starts.
    cgroup_dirs: Vec<String>,
    bridge: &'static str,
    pause_image: String,
    apiserver_image: String,
    controller_manager_image: String,
    scheduler_image: String,
    pki_dir: String,
    static_pods_dir: String,
    kubelet_dir: String,
    kubelet_config: String,
    kubelet_kubeconfig: String,
    kubelet_verbosity: u8,
    /// The kubelet knows the ExtendWebSocketsToKubelet gate from 1.36 on.
    extend_websockets_gate: bool,
    controller_manager_kubeconfig: String,
    scheduler_kubeconfig: String,
    authentication_config: String,
    cri_socket: String,
    docker_proxy_socket: &'static str,
    cri_dockerd_dir: String,
    cni_conf_dir: String,
    cni_cache_dir: String,
    ipam_dir: String,
    pod_logs_dir: String,
}

/// The master as kinit wants it on this host: its container and its files.
pub struct Master {
    pub spec: ContainerSpec,
    pub files: Vec<File>,
}

/// Host facts the master depends on, read once by the caller.
pub struct Host {
    pub engine: EngineInfo,
    pub cgroup: cgroup::Setup,
    /// The resolv.conf pods inherit through CoreDNS (never a loopback stub resolver).
    pub resolv_conf: PathBuf,
    /// The host's system directories the node's tools come from, those that exist.
    pub system_paths: Vec<String>,
    /// Host paths mounted read-only when they exist (systemd's sockets when Docker uses
    /// the systemd cgroup driver).
    pub optional_paths: Vec<String>,
}

/// The host directories holding the node's tools and their libraries and configuration
/// (`/etc/alternatives` picks iptables' backend). On merged-/usr hosts /bin and friends
/// are links into /usr, and mounting them gives the same directories twice: harmless.
const SYSTEM_PATHS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

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
        Self {
            system_paths: SYSTEM_PATHS
                .into_iter()
                .filter(|p| exists(Path::new(p)))
                .map(String::from)
                .collect(),
            optional_paths: cgroup.master_binds(&exists),
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

fn path(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

pub fn render(
    settings: &Settings,
    layout: &Layout,
    host: &Host,
    images: &Images,
    node_image: &str,
    verbosity: u8,
    credentials: &str,
) -> Result<Master> {
    let config = layout.config();
    let cni = layout.cni();
    let values = Values {
        image: node_image.to_string(),
        eviction_free_mib: EVICTION_FREE_MIB,
        credentials: credentials.to_string(),
        state_dir: path(layout.root().to_path_buf()),
        entrypoint: path(config.join("master-entrypoint.sh")),
        docker_socket: Docker::socket_path(),
        docker_containers: format!("{}/containers", host.engine.root_dir),
        resolv_conf: path(host.resolv_conf.clone()),
        host_system_paths: host.system_paths.clone(),
        optional_host_paths: host.optional_paths.clone(),
        node_ip: settings.node_ip.to_string(),
        node_host: url_host(settings.node_ip),
        hostname: settings.hostname.to_string(),
        api_port: API_SERVER_PORT,
        etcd_port: ETCD_CLIENT_PORT,
        kubelet_healthz_port: KUBELET_HEALTHZ_PORT,
        controller_manager_port: CONTROLLER_MANAGER_PORT,
        scheduler_port: SCHEDULER_PORT,
        service_cidr: settings.service_cidr.to_string(),
        service_iptables: match settings.service_cidr.net() {
            ipnet::IpNet::V4(_) => "iptables",
            ipnet::IpNet::V6(_) => "ip6tables",
        },
        pod_cidr: settings.pod_cidr.to_string(),
        node_pod_cidr: settings.pod_cidr.node_range().to_string(),
        node_cidr_prefix: cluster::NODE_CIDR_PREFIX,
        dns_ip: settings.service_cidr.dns_ip().to_string(),
        dns_domain: settings.dns_domain.to_string(),
        cgroup_driver: host.cgroup.kubelet_driver(),
        cgroup_root: host.cgroup.kubelet_root(),
        cgroup_slice: host.cgroup.root_slice(),
        cgroup_dirs: host.cgroup.root_dirs().into_iter().map(path).collect(),
        bridge: BRIDGE,
        pause_image: images.pause(),
        apiserver_image: images.kube("kube-apiserver"),
        controller_manager_image: images.kube("kube-controller-manager"),
        scheduler_image: images.kube("kube-scheduler"),
        pki_dir: path(layout.pki()),
        static_pods_dir: path(layout.static_pods()),
        kubelet_dir: path(layout.kubelet()),
        kubelet_config: path(config.join("kubelet.yaml")),
        kubelet_kubeconfig: path(layout.kubeconfig("kubelet.conf")),
        kubelet_verbosity: verbosity,
        extend_websockets_gate: settings.release()?.minor_number() >= 36,
        controller_manager_kubeconfig: path(layout.kubeconfig("controller-manager.conf")),
        scheduler_kubeconfig: path(layout.kubeconfig("scheduler.conf")),
        authentication_config: path(config.join("authentication.yaml")),
        // Inside the container only; the kubelet is its one client.
        cri_socket: "/run/kinit-cri-dockerd.sock".into(),
        docker_proxy_socket: "/run/kinit-docker.sock",
        cri_dockerd_dir: path(layout.cri_dockerd()),
        cni_conf_dir: path(cni.join("net.d")),
        cni_cache_dir: path(cni.join("cache")),
        ipam_dir: path(ipam_dir(layout)),
        pod_logs_dir: path(layout.pod_logs()),
    };
    let file = |template: Manifest, path: PathBuf, mode: Mode| -> Result<File> {
        Ok(File {
            path,
            contents: template.render_text(&values)?,
            mode,
        })
    };
    let pods = layout.static_pods();
    let files = vec![
        file(
            manifests::MASTER_ENTRYPOINT,
            PathBuf::from(&values.entrypoint),
            Mode::Public,
        )?,
        file(
            manifests::KUBELET_CONFIG,
            PathBuf::from(&values.kubelet_config),
            Mode::Public,
        )?,
        file(
            manifests::AUTHENTICATION,
            PathBuf::from(&values.authentication_config),
            Mode::Public,
        )?,
        file(
            manifests::CNI,
            cni.join("net.d/10-kinit.conflist"),
            Mode::Public,
        )?,
        file(
            manifests::KUBE_APISERVER,
            pods.join("kube-apiserver.yaml"),
            Mode::Private,
        )?,
        file(
            manifests::KUBE_CONTROLLER_MANAGER,
            pods.join("kube-controller-manager.yaml"),
            Mode::Private,
        )?,
        file(
            manifests::KUBE_SCHEDULER,
            pods.join("kube-scheduler.yaml"),
            Mode::Private,
        )?,
    ];
    Ok(Master {
        spec: manifests::MASTER.render(&values)?,
        files,
    })
}

/// host-local's reservations: one file per pod IP, under the network's name.
pub fn ipam_dir(layout: &Layout) -> PathBuf {
    layout.cni().join("networks")
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

#[cfg(test)]
mod tests;
