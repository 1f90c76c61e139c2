//! The cluster's nodes as kinit reads them: the list `kinit status` shows, their
//! addresses, and waits on one node's readiness and address.

use std::net::IpAddr;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use super::Kube;
use super::watch::{by_name, node_readiness, watch_until};
use crate::wait::Seen;

/// A node as `kinit status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub name: String,
    pub ready: bool,
    /// False once cordoned.
    pub schedulable: bool,
    pub address: Option<String>,
    pub pod_cidr: Option<String>,
}

/// A node's InternalIP addresses (one per IP family), as its kubelet reports them.
pub(crate) fn internal_ips(node: &Node) -> impl Iterator<Item = IpAddr> + '_ {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    addresses
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
}

impl Kube {
    /// Every node of the cluster, by name.
    pub async fn node_summaries(&self) -> Result<Vec<NodeSummary>> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = nodes
            .list(&Default::default())
            .await
            .context("cannot list the nodes")?;
        let mut out: Vec<NodeSummary> = list
            .items
            .iter()
            .map(|n| NodeSummary {
                name: n.metadata.name.clone().unwrap_or_default(),
                ready: node_readiness(n).is_ok(),
                schedulable: !n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false),
                address: internal_ips(n).next().map(|ip| ip.to_string()),
                pod_cidr: n.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Waits until the node reports Ready. Endless: bound it with [`crate::wait::within`].
    pub async fn wait_node_ready(&self, name: &str, seen: &Seen) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        watch_until(nodes, by_name(name), seen, |found| match found.first() {
            Some(node) => node_readiness(node),
            None => Err("the node has not registered yet".into()),
        })
        .await
    }

    /// Waits until the node reports `ip` as its InternalIP (its kubelet does at its start).
    /// Endless: bound it with [`crate::wait::within`].
    pub async fn wait_node_address(&self, name: &str, ip: IpAddr, seen: &Seen) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        watch_until(nodes, by_name(name), seen, |found| match found.first() {
            Some(node) if internal_ips(node).any(|a| a == ip) => Ok(()),
            Some(node) => Err(format!(
                "the node reports {}",
                internal_ips(node)
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Err("the node has not registered yet".into()),
        })
        .await
    }
}
