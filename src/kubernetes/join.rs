//! What `kinit join` asks of the cluster it joins (docs/two-hosts.md): cluster-info before
//! it trusts anything, the cluster's settings with its bootstrap token through the pinned
//! CA, then, with the kubelet's own credentials, its Node's pod range. And what the
//! control-plane host does to nodes: labelling its own, deleting a node that leaves.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::Path;

use super::watch::{by_name, watch_until};
use super::{FIELD_MANAGER, Kube};
use crate::wait::Seen;

impl Kube {
    /// kube-public/cluster-info, read without credentials and without checking the
    /// server's certificate: nothing of it may be used before
    /// [`crate::join::check_cluster_info`] has accepted it.
    pub async fn unverified_cluster_info(server: &http::Uri) -> Result<BTreeMap<String, String>> {
        let mut config = kube::Config::new(server.clone());
        config.accept_invalid_certs = true;
        Self::from_config(config)?.cluster_info().await
    }

    /// A client that trusts only the CA in `ca_pem`, and authenticates with `token` when
    /// one is given (cluster-info is read without).
    pub fn pinned(server: &http::Uri, ca_pem: &str, token: Option<&str>) -> Result<Self> {
        let mut config = kube::Config::new(server.clone());
        config.root_cert = Some(der_certificates(ca_pem)?);
        if let Some(token) = token {
            config.auth_info = AuthInfo {
                token: Some(token.to_string().into()),
                ..Default::default()
            };
        }
        Self::from_config(config)
    }

    /// A client with the credentials of a kubeconfig's current context (the kubelet's,
    /// which the kubelet wrote and keeps renewing).
    pub async fn connect_current(kubeconfig: &Path) -> Result<Self> {
        let file = Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("cannot use the kubeconfig {}", kubeconfig.display()))?;
        Self::from_config(config)
    }

    pub async fn cluster_info(&self) -> Result<BTreeMap<String, String>> {
        self.config_map_data("kube-public", "cluster-info").await
    }

    /// A ConfigMap's data; an error when there is no such ConfigMap.
    pub async fn config_map_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>> {
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let map = maps
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read {namespace}/{name}"))?
            .ok_or_else(|| anyhow!("the cluster has no {namespace}/{name}"))?;
        Ok(map.data.unwrap_or_default())
    }

    /// Waits until the controller-manager has given the node its pod range, and returns
    /// it. Endless: bound it with [`crate::wait::within`].
    pub async fn wait_pod_cidr(&self, name: &str, seen: &Seen) -> Result<String> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        watch_until(nodes, by_name(name), seen, |found| {
            match found
                .first()
                .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
            {
                Some(cidr) => Ok(cidr),
                None if found.is_empty() => Err("the node has not registered yet".into()),
                None => Err("the controller-manager has not given the node a pod range yet".into()),
            }
        })
        .await
    }

    /// Sets a label on a node (kinit's own, as the field manager).
    pub async fn label_node(&self, name: &str, key: &str, value: &str) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {key: value}},
        });
        nodes
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&patch),
            )
            .await
            .with_context(|| format!("cannot label the node {name}"))?;
        Ok(())
    }

    /// Every other node's InternalIP addresses and pod ranges: what may send to this
    /// host's pods from outside it.
    pub async fn peer_sources(&self, this_node: &str) -> Result<Vec<ipnet::IpNet>> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = nodes
            .list(&Default::default())
            .await
            .context("cannot list the nodes")?;
        let mut out = Vec::new();
        for node in list.items {
            if node.metadata.name.as_deref() == Some(this_node) {
                continue;
            }
            out.extend(super::internal_ips(&node).map(ipnet::IpNet::from));
            let spec = node.spec.as_ref();
            let ranges = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
            for range in ranges {
                if let Ok(net) = range.parse() {
                    out.push(net);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The certificates of a PEM bundle, DER.
fn der_certificates(pem: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| anyhow!("bad PEM in the cluster's CA: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        bail!("the cluster's CA holds no certificate");
    }
    Ok(out)
}
