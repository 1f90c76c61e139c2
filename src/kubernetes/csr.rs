//! The serving-certificate approver's loop (`kinit approve-serving-certs`, in a pod on the
//! control-plane host): watches CertificateSigningRequests and approves a kubelet's request
//! for its serving certificate when [`approver::check`] finds it asks for its own Node's
//! names only. Requests it cannot approve stay pending, with the reason in its log: the
//! Node's addresses may not be recorded yet, and a pending request is tried again.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tracing::{info, warn};

use super::{Kube, WATCH_SECONDS};
use crate::join::approver::{self, NodeFacts, Request};

/// Pending requests are checked again this often: a Node's addresses arrive after its
/// kubelet has asked.
const RESYNC: Duration = Duration::from_secs(10);

impl Kube {
    /// Runs the approver until the process ends.
    pub async fn approve_serving_certificates(&self) -> Result<()> {
        let requests: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        let (store, writer) = reflector::store();
        let config = watcher::Config::default().timeout(WATCH_SECONDS);
        let mut changes = pin!(reflector(
            writer,
            watcher(requests.clone(), config).default_backoff()
        ));
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => warn!("watching CertificateSigningRequests: {e}"),
                    None => bail!("the watch of CertificateSigningRequests ended"),
                },
                _ = resync.tick() => {}
            }
            for csr in store.state().iter().filter(|c| pending(c)) {
                if let Err(e) = self.consider(&requests, csr).await {
                    warn!("{}: {e:#}", csr.name_any());
                }
            }
        }
    }

    async fn consider(
        &self,
        requests: &Api<CertificateSigningRequest>,
        csr: &Arc<CertificateSigningRequest>,
    ) -> Result<()> {
        let spec = &csr.spec;
        let request = Request {
            signer: spec.signer_name.clone(),
            username: spec.username.clone().unwrap_or_default(),
            groups: spec.groups.clone().unwrap_or_default(),
            usages: spec.usages.clone().unwrap_or_default(),
            pem: spec.request.0.clone(),
        };
        // Another signer's requests are someone else's to approve.
        let Some(node_name) = approver::node_of(&request) else {
            return Ok(());
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Some(node) = nodes.get_opt(node_name).await? else {
            bail!("no Node {node_name} yet");
        };
        let facts = NodeFacts {
            name: node_name.to_string(),
            addresses: node
                .status
                .and_then(|s| s.addresses)
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.address)
                .collect(),
        };
        approver::check(&request, &facts)?;
        let approval = json!({"status": {"conditions": [{
            "type": "Approved",
            "status": "True",
            "reason": "KinitApproved",
            "message": "the kubelet asked for its own Node's names (kinit approve-serving-certs)",
        }]}});
        requests
            .patch_approval(
                &csr.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&approval),
            )
            .await?;
        info!("approved {} for the node {node_name}", csr.name_any());
        Ok(())
    }
}

/// Neither approved nor denied yet, and not failed.
fn pending(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_none_or(|conditions| conditions.is_empty())
}
