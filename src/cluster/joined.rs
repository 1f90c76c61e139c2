//! A host that joined another's cluster (`kinit join`, docs/two-hosts.md): what it
//! records about that cluster, and what the control-plane host publishes for every node to
//! agree on.

use std::net::IpAddr;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{DnsDomain, ExtraArgs, FeatureGates, NodeName, PodCidr, ServiceCidr, Settings};

/// What every node must agree on: published by the control-plane host in
/// kube-system/kinit-config (`cluster.yaml`) and read by joining hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub kubernetes_version: String,
    pub service_cidr: ServiceCidr,
    pub pod_cidr: PodCidr,
    pub dns_domain: DnsDomain,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// The control-plane node's name.
    pub control_plane: NodeName,
}

impl ClusterConfig {
    pub fn of(settings: &Settings) -> Self {
        Self {
            kubernetes_version: settings.kubernetes_version.clone(),
            service_cidr: settings.service_cidr,
            pod_cidr: settings.pod_cidr,
            dns_domain: settings.dns_domain.clone(),
            image_repository: settings.image_repository.clone(),
            control_plane: settings.hostname.clone(),
        }
    }
}

/// The cluster a joined host is a node of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Joined {
    /// The API server's URL, as cluster-info gave it.
    pub server: String,
    pub control_plane: NodeName,
}

impl Settings {
    /// A joining host's settings: the cluster's ranges, domain and version, this host's
    /// address and name. No addons, feature gates or extra args: those are the control
    /// plane's.
    pub fn for_node(
        cluster: &ClusterConfig,
        server: &str,
        node_ip: IpAddr,
        hostname: NodeName,
    ) -> Result<Self> {
        let settings = Self {
            node_ip,
            hostname,
            service_cidr: cluster.service_cidr,
            dns_domain: cluster.dns_domain.clone(),
            pod_cidr: cluster.pod_cidr,
            kubernetes_version: cluster.kubernetes_version.clone(),
            image_repository: cluster.image_repository.clone(),
            feature_gates: FeatureGates::default(),
            extra_args: ExtraArgs::default(),
            audit_log: false,
            pod_security: Default::default(),
            addons: Default::default(),
            joined: Some(Joined {
                server: server.to_string(),
                control_plane: cluster.control_plane.clone(),
            }),
        };
        settings.check_ranges()?;
        Ok(settings)
    }

    /// Whether this host runs the control plane (not a host that joined another's).
    pub fn is_control_plane(&self) -> bool {
        self.joined.is_none()
    }
}
