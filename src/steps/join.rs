//! What lets other hosts join the cluster (docs/two-hosts.md), applied with cluster DNS and
//! the addons at every `kinit up` on the control-plane host: kube-public/cluster-info for
//! token discovery, kube-system/kinit-config with what every node must agree on, the RBAC
//! of bootstrapping kubelets, and the approver of their serving certificates.

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Context;
use crate::cluster::ClusterConfig;
use crate::join::TOKEN_GROUP;
use crate::{kubeconfig, manifests};

#[derive(Serialize)]
struct Values {
    kubeconfig: String,
    cluster: String,
    token_group: &'static str,
    image: String,
    control_plane_node: String,
    /// The host's library directories, for the dynamically linked kinit in the node image.
    host_paths: Vec<String>,
}

/// The objects, as YAML documents to apply.
pub fn objects(ctx: &Context) -> Result<Vec<String>> {
    let ca = std::fs::read_to_string(ctx.layout.pki().join("ca.crt"))
        .context("cannot read the cluster's CA certificate")?;
    let published = kubeconfig::cluster_only(&ctx.settings.api_server_url(), &ca);
    let values = Values {
        kubeconfig: kubeconfig::to_yaml(&published)?,
        cluster: serde_yaml::to_string(&ClusterConfig::of(&ctx.settings))
            .context("cannot serialize the cluster's settings")?,
        token_group: TOKEN_GROUP,
        image: ctx.node_image()?.to_string(),
        control_plane_node: ctx.settings.hostname.to_string(),
        host_paths: crate::addons::host_library_paths(),
    };
    [
        manifests::CLUSTER_INFO,
        manifests::CLUSTER_CONFIG,
        manifests::JOIN_RBAC,
        manifests::CSR_APPROVER,
    ]
    .into_iter()
    .map(|m| m.render_text(&values))
    .collect()
}
