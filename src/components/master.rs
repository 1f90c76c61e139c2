//! kinit-master: the kubelet and cri-dockerd in one container, and the files it runs on:
//! its entrypoint, the kubelet configuration, the CNI network, the API server's
//! authentication and the three static pods of the control plane.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::owned::{self, Owned};
use crate::cgroup;
use crate::cluster::component::{
    API_SERVER_PORT, CONTROLLER_MANAGER_PORT, ETCD_CLIENT_PORT, KUBELET_HEALTHZ_PORT,
    SCHEDULER_PORT,
};
use crate::cluster::{self, Component, Container, Settings};
use crate::docker::{self, ContainerSpec, Docker};
use crate::fs::Mode;
use crate::layout::Layout;
use crate::manifests::{self, Manifest};
use crate::net::url_host;
use crate::versions::Images;

/// The Linux bridge pods attach to, in the host's network namespace.
pub const BRIDGE: &str = "cni0";
/// The alias the master's entrypoint gives the bridge when it makes it: what tells
/// `kinit down --purge` the bridge is kinit's, whatever is still attached to it.
pub const BRIDGE_MARK: &str = "kinit-pod-bridge";
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
pub(super) struct Values {
    /// The container's component: `master`, or `node` on a joined host
    /// ([`super::node`]), which runs no static pods and bootstraps its kubelet's
    /// credentials.
    pub(super) component: &'static str,
    pub(super) control_plane: bool,
    /// A joined host's kubelet: the bootstrap kubeconfig and where its certificates go.
    pub(super) bootstrap_kubeconfig: String,
    pub(super) kubelet_cert_dir: String,
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
    /// The kubelet's graceful node shutdown, 0 where no logind runs the host's shutdowns.
    shutdown_grace_seconds: u32,
    shutdown_grace_critical_seconds: u32,
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
    /// iptables or ip6tables, for the node address's family.
    node_iptables: &'static str,
    router_bgp_port: u16,
    router_health_port: u16,
    router_admin_port: u16,
    pod_cidr: String,
    pub(super) node_pod_cidr: String,
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
    bridge_mark: &'static str,
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
    pulled_images: String,
    cni_conf_dir: String,
    cni_cache_dir: String,
    ipam_dir: String,
    pod_logs_dir: String,
    /// The API server's audit log, when it is on.
    audit: Option<Audit>,
    /// The API server's admission configuration, when it enforces a Pod Security level.
    admission: Option<Admission>,
    #[serde(flatten)]
    additions: Additions,
}

/// kinit's audit log option: the API server's policy and where its log goes.
#[derive(Debug, Serialize)]
struct Audit {
    policy: String,
    #[serde(skip)]
    policy_text: String,
    /// The API server reads the policy only at start: its pod carries the digest.
    policy_digest: String,
    log_dir: String,
}

/// `kinit up --pod-security`: the API server's admission configuration.
#[derive(Debug, Serialize)]
struct Admission {
    config: String,
    #[serde(skip)]
    config_text: String,
    /// Read only at start too: its pod carries the digest.
    config_digest: String,
}

/// The user's additions to the components (`--feature-gates`, `--extra-arg`); none in
/// the render that finds what kinit sets itself.
#[derive(Debug, Default, Serialize)]
struct Additions {
    /// For the static pods' `--feature-gates`: `A=true,B=false`, or empty.
    feature_gates: String,
    /// The user's gates the kubelet's config file adds to kinit's own.
    kubelet_feature_gates: BTreeMap<String, bool>,
    apiserver_args: BTreeMap<String, String>,
    controller_manager_args: BTreeMap<String, String>,
    scheduler_args: BTreeMap<String, String>,
    kubelet_args: BTreeMap<String, String>,
}

impl Additions {
    /// What `settings` adds to kinit's own settings of the kubelet.
    fn new(settings: &Settings, kubelet: &Owned) -> Self {
        let extra = &settings.extra_args;
        Self {
            feature_gates: settings.feature_gates.to_string(),
            kubelet_feature_gates: kubelet.others(&settings.feature_gates),
            apiserver_args: extra.of(Component::ApiServer),
            controller_manager_args: extra.of(Component::ControllerManager),
            scheduler_args: extra.of(Component::Scheduler),
            kubelet_args: extra.of(Component::Kubelet),
        }
    }
}

/// The master as kinit wants it on this host: its container and its files.
pub struct Master {
    pub spec: ContainerSpec,
    /// Those the kubelet reads, and the static pods.
    pub files: Vec<File>,
    /// The API server's audit policy (when the audit log is on) and admission
    /// configuration (when it enforces a Pod Security level): read by the API server
    /// alone, so their changes restart only that pod.
    pub apiserver_files: Vec<File>,
    /// Those of them these settings turn off: kinit wrote them for earlier settings, and
    /// removes them once no API server mounts them.
    pub retired_files: Vec<PathBuf>,
}

/// Where the API server's optional files go.
fn apiserver_file(layout: &Layout, name: &str) -> PathBuf {
    layout.config().join(name)
}

const AUDIT_POLICY_FILE: &str = "audit-policy.yaml";
const ADMISSION_FILE: &str = "admission.yaml";

pub(super) fn path(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// Renders the master for these settings; refuses a user's extra arg or feature gate that
/// contradicts what kinit sets itself (read from a render without them).
pub fn render(inputs: &Inputs, credentials: &str) -> Result<Master> {
    let Inputs {
        settings, layout, ..
    } = *inputs;
    let mut values = values(inputs, credentials)?;
    let own = owned_by_kinit(&files(&values, layout)?)?;
    owned::check(settings, &own)?;
    let kubelet = own
        .iter()
        .find(|(c, _)| *c == Component::Kubelet)
        .map(|(_, o)| o)
        .context("the master's owned flags name no kubelet")?;
    values.additions = Additions::new(settings, kubelet);
    let audit_policy = values.audit.as_ref().map(|audit| File {
        path: PathBuf::from(&audit.policy),
        contents: audit.policy_text.clone(),
        mode: Mode::Public,
    });
    let admission = values.admission.as_ref().map(|admission| File {
        path: PathBuf::from(&admission.config),
        contents: admission.config_text.clone(),
        mode: Mode::Public,
    });
    let apiserver_files: Vec<File> = audit_policy.into_iter().chain(admission).collect();
    let retired_files = [AUDIT_POLICY_FILE, ADMISSION_FILE]
        .into_iter()
        .map(|name| apiserver_file(layout, name))
        .filter(|p| apiserver_files.iter().all(|f| f.path != *p))
        .collect();
    Ok(Master {
        spec: manifests::MASTER.render(&values)?,
        files: files(&values, layout)?,
        apiserver_files,
        retired_files,
    })
}

/// What kinit sets on the kubelet and the static pods, from a render without the user's
/// additions, for a check before the first change: the node image and the credentials,
/// not known yet, set no flag.
pub fn owned(
    settings: &Settings,
    layout: &Layout,
    host: &Host,
    images: &Images,
) -> Result<Vec<(Component, Owned)>> {
    let inputs = Inputs {
        settings,
        layout,
        host,
        images,
        node_image: "",
        verbosity: 0,
    };
    let values = values(&inputs, "")?;
    owned_by_kinit(&files(&values, layout)?)
}

/// The kubelet's and the static pods' flags and gates, in the files rendered without the
/// user's additions.
fn owned_by_kinit(files: &[File]) -> Result<Vec<(Component, Owned)>> {
    let text = |name: &str| -> Result<&str> {
        files
            .iter()
            .find(|f| f.path.ends_with(name))
            .map(|f| f.contents.as_str())
            .with_context(|| format!("the master has no file {name}"))
    };
    let mut own = vec![(
        Component::Kubelet,
        Owned::kubelet(text(ENTRYPOINT)?, text(KUBELET_CONFIG)?)?,
    )];
    for (component, pod) in Component::STATIC_PODS
        .into_iter()
        .filter_map(|c| c.pod().map(|pod| (c, pod)))
    {
        let manifest = text(&format!("{pod}.yaml"))?;
        own.push((component, Owned::from_pod(manifest)?));
    }
    Ok(own)
}

pub(super) const ENTRYPOINT: &str = "master-entrypoint.sh";
pub(super) const KUBELET_CONFIG: &str = "kubelet.yaml";

/// What the master's container, and a joined node's, is rendered from.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub layout: &'a Layout,
    pub host: &'a Host,
    pub images: &'a Images,
    /// The node image the kubelet runs in.
    pub node_image: &'a str,
    /// The kubelet's log level.
    pub verbosity: u8,
}

/// The template values; `credentials` is the digest of the certificates the containers
/// start with (a change of it restarts them).
pub(super) fn values(inputs: &Inputs, credentials: &str) -> Result<Values> {
    let Inputs {
        settings,
        layout,
        host,
        images,
        node_image,
        verbosity,
    } = *inputs;
    let config = layout.config();
    let cni = layout.cni();
    let audit = if settings.audit_log {
        let policy_text = manifests::AUDIT_POLICY.render_text(&())?;
        Some(Audit {
            policy: path(apiserver_file(layout, AUDIT_POLICY_FILE)),
            policy_digest: docker::short_digest(policy_text.as_bytes()),
            policy_text,
            log_dir: path(layout.logs()),
        })
    } else {
        None
    };
    let admission = if settings.pod_security.is_privileged() {
        None
    } else {
        let config_text = manifests::ADMISSION.render_text(&serde_json::json!({
            "level": settings.pod_security.as_str(),
        }))?;
        Some(Admission {
            config: path(apiserver_file(layout, ADMISSION_FILE)),
            config_digest: docker::short_digest(config_text.as_bytes()),
            config_text,
        })
    };
    Ok(Values {
        component: Container::Master.label(),
        control_plane: true,
        bootstrap_kubeconfig: path(super::node::bootstrap_kubeconfig(layout)),
        kubelet_cert_dir: path(super::node::kubelet_cert_dir(layout)),
        image: node_image.to_string(),
        eviction_free_mib: EVICTION_FREE_MIB,
        credentials: credentials.to_string(),
        state_dir: path(layout.root().to_path_buf()),
        entrypoint: path(config.join(ENTRYPOINT)),
        docker_socket: Docker::socket_path(),
        docker_containers: format!("{}/containers", host.engine.root_dir),
        resolv_conf: path(host.resolv_conf.clone()),
        host_system_paths: host.system_paths.clone(),
        optional_host_paths: host.optional_paths.clone(),
        shutdown_grace_seconds: match host.graceful_shutdown {
            true => crate::host::SHUTDOWN_GRACE_SECONDS,
            false => 0,
        },
        shutdown_grace_critical_seconds: match host.graceful_shutdown {
            true => crate::host::SHUTDOWN_GRACE_CRITICAL_SECONDS,
            false => 0,
        },
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
        node_iptables: match settings.node_ip {
            std::net::IpAddr::V4(_) => "iptables",
            std::net::IpAddr::V6(_) => "ip6tables",
        },
        router_bgp_port: cluster::ROUTER_BGP_PORT,
        router_health_port: cluster::ROUTER_HEALTH_PORT,
        router_admin_port: cluster::ROUTER_ADMIN_PORT,
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
        bridge_mark: BRIDGE_MARK,
        pause_image: images.pause(),
        apiserver_image: images.kube("kube-apiserver"),
        controller_manager_image: images.kube("kube-controller-manager"),
        scheduler_image: images.kube("kube-scheduler"),
        pki_dir: path(layout.pki()),
        static_pods_dir: path(layout.static_pods()),
        kubelet_dir: path(layout.kubelet()),
        kubelet_config: path(config.join(KUBELET_CONFIG)),
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
        pulled_images: path(layout.pulled_images()),
        cni_conf_dir: path(cni.join("net.d")),
        cni_cache_dir: path(cni.join("cache")),
        ipam_dir: path(ipam_dir(layout)),
        pod_logs_dir: path(layout.pod_logs()),
        audit,
        admission,
        additions: Additions::default(),
    })
}

/// The files of kinit-master and its static pods.
fn files(values: &Values, layout: &Layout) -> Result<Vec<File>> {
    let cni = layout.cni();
    let file = |template: Manifest, path: PathBuf, mode: Mode| -> Result<File> {
        Ok(File {
            path,
            contents: template.render_text(values)?,
            mode,
        })
    };
    let pods = layout.static_pods();
    Ok(vec![
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
    ])
}

/// host-local's reservations: one file per pod IP, under the network's name.
pub fn ipam_dir(layout: &Layout) -> PathBuf {
    layout.cni().join("networks")
}

mod host;
pub use host::{Host, host_system_paths};

#[cfg(test)]
pub(super) mod tests;
#[cfg(test)]
mod user_settings_tests;
