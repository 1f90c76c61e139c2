//! A joined host leaving its cluster with only its own node credentials: it cordons its
//! Node, evicts its pods as `kubectl drain` does (the Eviction API, so PodDisruptionBudgets
//! hold; the NodeRestriction admission plugin lets a node evict the pods bound to it), then
//! deletes its Node (kinit's `kinit:node-leave` role, which NodeRestriction limits to the
//! node's own object).

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::Kube;
use crate::wait::Seen;

/// How often the drain looks again at the pods still on the node.
const POLL: Duration = Duration::from_secs(2);

/// The annotation the kubelet puts on the mirror pod of a static pod.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether a drain moves this pod: not a DaemonSet's (its controller would start it again
/// on the same node), not a static pod's mirror, not one that has ended.
fn must_move(pod: &Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "DaemonSet");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let ended = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !daemon && !mirror && !ended
}

impl Kube {
    /// Marks the node unschedulable; `false` when there is no such Node.
    pub async fn cordon(&self, node: &str) -> Result<bool> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"unschedulable": true}});
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot cordon the node {node}")),
        }
    }

    /// Evicts every pod a drain moves from `node` and waits until they are gone; how many
    /// were evicted. An eviction a PodDisruptionBudget refuses is asked again until the
    /// budget allows it. Endless: bound it with [`crate::wait::within`].
    pub async fn drain(&self, node: &str, seen: &Seen) -> Result<usize> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let mut evicted = std::collections::BTreeSet::new();
        loop {
            let list = pods
                .list(&on_node)
                .await
                .with_context(|| format!("cannot list the pods on {node}"))?;
            let moving: Vec<&Pod> = list.items.iter().filter(|p| must_move(p)).collect();
            if moving.is_empty() {
                return Ok(evicted.len());
            }
            let mut refused = Vec::new();
            for pod in &moving {
                let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                    continue;
                };
                if pod.metadata.deletion_timestamp.is_some() {
                    continue; // evicted already, terminating
                }
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                match api.evict(name, &EvictParams::default()).await {
                    Ok(_) => {
                        evicted.insert(format!("{ns}/{name}"));
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    // A PodDisruptionBudget does not allow it now.
                    Err(kube::Error::Api(e)) if e.code == 429 => {
                        refused.push(format!("{ns}/{name} ({})", e.message));
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot evict {ns}/{name}"));
                    }
                }
            }
            seen.set(if refused.is_empty() {
                format!("{} pods still terminating", moving.len())
            } else {
                format!("evictions refused: {}", refused.join(", "))
            });
            tokio::time::sleep(POLL).await;
        }
    }

    /// Restarts the pods matching `selector` in `namespace` on `node`, a DaemonSet's, which
    /// makes new ones: evicts them, then waits until as many others run there, ready (at
    /// least one). How many were evicted. Endless: bound it with [`crate::wait::within`].
    pub async fn restart_pods_on(
        &self,
        node: &str,
        namespace: &str,
        selector: &str,
        seen: &Seen,
    ) -> Result<usize> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default()
            .labels(selector)
            .fields(&format!("spec.nodeName={node}"));
        let list = |what: &'static str| {
            let api = api.clone();
            let params = params.clone();
            async move {
                api.list(&params)
                    .await
                    .with_context(|| format!("cannot list the {what} pods ({selector}) on {node}"))
            }
        };
        let old: std::collections::BTreeSet<String> = list("running")
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        for name in &old {
            match api.evict(name, &EvictParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot evict {namespace}/{name}"));
                }
            }
        }
        let wanted = old.len().max(1);
        loop {
            let ready = list("new")
                .await?
                .items
                .iter()
                .filter(|p| !p.metadata.name.as_ref().is_some_and(|n| old.contains(n)))
                .map(super::PodState::of)
                .filter(|p| p.phase == "Running" && p.ready)
                .count();
            if ready >= wanted {
                return Ok(old.len());
            }
            seen.set(format!("{ready} of {wanted} new pods ready"));
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes a Node object; `Ok` when there is none.
    pub async fn delete_node(&self, name: &str) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete the node {name}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_drain_leaves_daemonset_pods_mirror_pods_and_ended_pods() {
        let web = pod(
            "metadata: {name: web, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: a, controller: true}]}",
        );
        let bare = pod("metadata: {name: bare}");
        let daemon = pod(
            "metadata: {name: router, ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: kube-router, uid: b, controller: true}]}",
        );
        let mirror =
            pod("metadata: {name: static, annotations: {kubernetes.io/config.mirror: abc}}");
        let done = pod("metadata: {name: job}\nstatus: {phase: Succeeded}");
        assert!(must_move(&web));
        assert!(must_move(&bare));
        assert!(!must_move(&daemon));
        assert!(!must_move(&mirror));
        assert!(!must_move(&done));
    }
}
