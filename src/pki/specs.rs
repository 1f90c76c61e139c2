//! The certificates a kubeadm-style single node needs: who signs each one, its subject,
//! its SANs and what it may be used for. Paths follow kubeadm's /etc/kubernetes layout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cluster::Settings;

/// The three certificate authorities, as in kubeadm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaId {
    Kubernetes,
    Etcd,
    FrontProxy,
}

impl CaId {
    pub const ALL: [CaId; 3] = [CaId::Kubernetes, CaId::Etcd, CaId::FrontProxy];

    /// Path without extension, relative to the output directory (`.crt` and `.key` added).
    pub fn path(self) -> &'static str {
        match self {
            CaId::Kubernetes => "pki/ca",
            CaId::Etcd => "pki/etcd/ca",
            CaId::FrontProxy => "pki/front-proxy-ca",
        }
    }

    pub fn common_name(self) -> &'static str {
        match self {
            CaId::Kubernetes => "kubernetes",
            CaId::Etcd => "etcd-ca",
            CaId::FrontProxy => "front-proxy-ca",
        }
    }
}

/// What a leaf certificate is for, which sets its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// etcd's server and peer certificates serve and also dial other members.
    ServerAndClient,
}

impl Usage {
    pub fn server(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerAndClient)
    }

    pub fn client(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerAndClient)
    }
}

/// Where a leaf's certificate and key are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `<path>.crt` and `<path>.key`.
    Files(&'static str),
    /// Embedded in a kubeconfig file, as kubeadm does for component credentials.
    Kubeconfig(&'static str),
}

/// One leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub ca: CaId,
    pub common_name: String,
    pub organization: Option<String>,
    pub usage: Usage,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub store: Store,
}

impl LeafSpec {
    /// A client certificate; [`LeafSpec::serving`] turns it into a server one.
    fn new(ca: CaId, cn: &str, org: Option<&str>, store: Store) -> Self {
        Self {
            ca,
            common_name: cn.to_string(),
            organization: org.map(str::to_string),
            usage: Usage::Client,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            store,
        }
    }

    fn serving(mut self, usage: Usage, dns_names: &[String], ips: &[IpAddr]) -> Self {
        self.usage = usage;
        self.dns_names = dns_names.to_vec();
        self.ip_addresses = ips.to_vec();
        self
    }

    /// A short name for messages: the file it lives in.
    pub fn name(&self) -> &'static str {
        match self.store {
            Store::Files(path) => path.strip_prefix("pki/").unwrap_or(path),
            Store::Kubeconfig(file) => file,
        }
    }
}

/// Every leaf certificate for a cluster with these settings.
pub fn leaves(s: &Settings) -> Vec<LeafSpec> {
    use CaId::{Etcd, FrontProxy, Kubernetes};
    use Store::{Files, Kubeconfig};

    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let node_ips = [&[s.node_ip][..], &loopback].concat();
    let apiserver_ips = [&[s.service_cidr.kubernetes_ip()][..], &node_ips].concat();
    let host = s.hostname.as_str();
    let node_names = [host.to_string(), "localhost".to_string()];
    let apiserver_names = [
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{}", s.dns_domain),
        host.to_string(),
        "localhost".to_string(),
    ];
    let node_user = format!("system:node:{host}");
    let nodes = Some("system:nodes");

    vec![
        LeafSpec::new(Kubernetes, "kube-apiserver", None, Files("pki/apiserver")).serving(
            Usage::Server,
            &apiserver_names,
            &apiserver_ips,
        ),
        // The kubelet's serving certificate, so the API server can verify the kubelet
        // instead of trusting a self-signed one.
        LeafSpec::new(Kubernetes, &node_user, nodes, Files("pki/kubelet")).serving(
            Usage::Server,
            &node_names,
            &node_ips,
        ),
        // Bound to the kubelet API by RBAC rather than by a superuser group.
        LeafSpec::new(
            Kubernetes,
            "kube-apiserver-kubelet-client",
            None,
            Files("pki/apiserver-kubelet-client"),
        ),
        LeafSpec::new(
            Etcd,
            "kube-apiserver-etcd-client",
            None,
            Files("pki/apiserver-etcd-client"),
        ),
        LeafSpec::new(
            FrontProxy,
            "front-proxy-client",
            None,
            Files("pki/front-proxy-client"),
        ),
        LeafSpec::new(Etcd, host, None, Files("pki/etcd/server")).serving(
            Usage::ServerAndClient,
            &node_names,
            &node_ips,
        ),
        LeafSpec::new(Etcd, host, None, Files("pki/etcd/peer")).serving(
            Usage::ServerAndClient,
            &node_names,
            &node_ips,
        ),
        LeafSpec::new(
            Etcd,
            "kube-etcd-healthcheck-client",
            None,
            Files("pki/etcd/healthcheck-client"),
        ),
        LeafSpec::new(
            Kubernetes,
            "kubernetes-admin",
            Some("system:masters"),
            Kubeconfig("admin.conf"),
        ),
        LeafSpec::new(
            Kubernetes,
            "system:kube-controller-manager",
            None,
            Kubeconfig("controller-manager.conf"),
        ),
        LeafSpec::new(
            Kubernetes,
            "system:kube-scheduler",
            None,
            Kubeconfig("scheduler.conf"),
        ),
        LeafSpec::new(Kubernetes, &node_user, nodes, Kubeconfig("kubelet.conf")),
        LeafSpec::new(
            Kubernetes,
            "system:kube-proxy",
            None,
            Kubeconfig("kube-proxy.conf"),
        ),
    ]
}
