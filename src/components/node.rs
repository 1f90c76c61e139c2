//! kinit-node: on a host that joined another's cluster, kinit-master's container without
//! the control plane. The same entrypoint (cgroups, the pod bridge, the LAN guard,
//! cri-dockerd behind kinit's runtime proxy), a kubelet without static pods that trades its
//! bootstrap token for a client certificate, asks the cluster for its serving certificate
//! and renews both; and the CNI network for the pod range the controller-manager gave the
//! node, once it has one.

use std::path::PathBuf;

use anyhow::Result;

use super::master::{self, File, Inputs};
use crate::cluster::Container;
use crate::docker::ContainerSpec;
use crate::fs::Mode;
use crate::layout::Layout;
use crate::manifests;

pub struct Node {
    pub spec: ContainerSpec,
    /// Those the kubelet reads at its start: a change replaces the container.
    pub files: Vec<File>,
    /// The CNI network, once the node's pod range is known; read as it changes.
    pub network: Option<File>,
}

/// The bootstrap kubeconfig: the cluster and the token, until the kubelet has its own
/// credentials.
pub fn bootstrap_kubeconfig(layout: &Layout) -> PathBuf {
    layout.kubeconfig("bootstrap-kubelet.conf")
}

/// The kubeconfig the kubelet writes once bootstrapped, naming the certificate it renews.
pub fn kubelet_kubeconfig(layout: &Layout) -> PathBuf {
    layout.kubeconfig("kubelet.conf")
}

/// Where the kubelet keeps its certificates; `kubelet-client-current.pem` is always the
/// current client certificate and key.
pub fn kubelet_cert_dir(layout: &Layout) -> PathBuf {
    layout.kubelet().join("pki")
}

pub fn render(inputs: &Inputs, pod_range: Option<&str>) -> Result<Node> {
    let layout = inputs.layout;
    // No credentials digest: the kubelet's own certificates rotate under it.
    let mut values = master::values(inputs, "")?;
    values.component = Container::Node.label();
    values.control_plane = false;
    values.node_pod_cidr = pod_range.unwrap_or_default().to_string();
    let config = layout.config();
    let file = |template: manifests::Manifest, path: PathBuf| -> Result<File> {
        Ok(File {
            path,
            contents: template.render_text(&values)?,
            mode: Mode::Public,
        })
    };
    let files = vec![
        file(
            manifests::MASTER_ENTRYPOINT,
            config.join(master::ENTRYPOINT),
        )?,
        file(
            manifests::KUBELET_CONFIG,
            config.join(master::KUBELET_CONFIG),
        )?,
    ];
    let network = match pod_range {
        Some(_) => Some(file(
            manifests::CNI,
            layout.cni().join("net.d/10-kinit.conflist"),
        )?),
        None => None,
    };
    Ok(Node {
        spec: manifests::MASTER.render(&values)?,
        files,
        network,
    })
}

#[cfg(test)]
mod tests;
