//! Waits until the cluster is usable: the node Ready, every kube-system pod running and
//! ready (but the addons', which `kinit addons list` reports on), and cluster DNS answering
//! from the host through its Service IP (which proves the pod network, kube-proxy and
//! CoreDNS together).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::Context;
use crate::cluster::Component;
use crate::kubernetes::{Kube, PodState};
use crate::progress::Outcome;
use crate::socks::dns::{self, Resolver};
use crate::wait;

const NODE_TIMEOUT: Duration = Duration::from_secs(180);
const PODS_TIMEOUT: Duration = Duration::from_secs(300);
const DNS_TIMEOUT: Duration = Duration::from_secs(120);
/// Pods without the addon label ([`crate::addons::LABEL`]): an addon's readiness
/// (metrics-server's takes 20 s and more) is not the cluster's.
const NOT_ADDONS: &str = "!kinit/addon";

/// The label kubeadm gives its control-plane nodes.
const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let kube = Kube::connect(&ctx.layout.kubeconfig("admin.conf")).await?;
    let node = ctx.settings.hostname.as_str();
    let started = Instant::now();
    // With -v, when each part of the wait ended: where a slow bring-up spends its time.
    let phase = |what: &str| {
        tracing::debug!(
            "phase: {what} at {:.1}s into the wait",
            started.elapsed().as_secs_f64()
        )
    };
    let result = async {
        wait::within(
            &format!("the node {node} did not become Ready"),
            NODE_TIMEOUT,
            async |seen| kube.wait_node_ready(node, seen).await,
        )
        .await?;
        phase(&format!("node {node} Ready"));
        // As kubeadm marks its control-plane nodes (`kubectl get nodes` ROLES); no taint:
        // pods run on every host.
        kube.label_node(node, CONTROL_PLANE_LABEL, "").await?;
        wait::within(
            "the kube-system pods did not all become ready",
            PODS_TIMEOUT,
            async |seen| {
                kube.wait_pods("kube-system", Some(NOT_ADDONS), seen, |pods| {
                    let pending = not_ready(pods, node);
                    if pending.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("waiting for {}", pending.join(", ")))
                    }
                })
                .await
            },
        )
        .await?;
        phase("kube-system pods running and ready");
        let fqdn = format!("kubernetes.default.svc.{}", ctx.settings.dns_domain);
        let expected = ctx.settings.service_cidr.kubernetes_ip();
        let resolver = Resolver::new(
            ctx.settings.dns_domain.as_str(),
            Some(SocketAddr::new(ctx.settings.service_cidr.dns_ip(), 53)),
            Duration::from_secs(2),
        )?;
        let name = dns::classify(&fqdn, ctx.settings.dns_domain.as_str())
            .ok_or_else(|| anyhow!("{fqdn} is not a cluster name"))?;
        wait::until("cluster DNS did not answer", DNS_TIMEOUT, || async {
            let found = resolver.lookup(&name).await.map_err(|e| anyhow!("{e}"))?;
            if found.contains(&expected) {
                Ok(true)
            } else {
                bail!("{fqdn} resolved to {found:?}, not {expected}")
            }
        })
        .await?;
        phase("cluster DNS answers");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        return Err(anyhow!(
            "{e:#}; see `kinit status`, `kinit logs kubelet` and `kubectl -n kube-system get pods`"
        ));
    }
    Ok(Outcome::Checked(format!(
        "node {node} Ready, control plane and CoreDNS running, cluster DNS answers"
    )))
}

/// On a joined host: until its node is Ready (the kubelet, its network and the runtime
/// up), seen with the kubelet's own credentials.
pub async fn node(ctx: &Context) -> Result<Outcome> {
    let kubeconfig = crate::components::node::kubelet_kubeconfig(&ctx.layout);
    let kube = Kube::connect_current(&kubeconfig).await?;
    let node = ctx.settings.hostname.as_str();
    wait::within(
        &format!("the node {node} did not become Ready"),
        NODE_TIMEOUT,
        async |seen| kube.wait_node_ready(node, seen).await,
    )
    .await
    .map_err(|e| anyhow!("{e:#}; see `kinit status` and `kinit logs kubelet`"))?;
    Ok(Outcome::Checked(format!("node {node} Ready")))
}

/// The names of the pods that are not running and ready, and of the control-plane pods
/// that are missing altogether (their mirror pods appear a little after the node). Pods
/// that are done for good do not count either way: after a reboot the graceful shutdown's
/// Failed pods stay beside the ones that replaced them.
fn not_ready(pods: &[PodState], node: &str) -> Vec<String> {
    let pods: Vec<&PodState> = pods.iter().filter(|p| !p.is_terminal()).collect();
    let present: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut pending: Vec<String> = Component::STATIC_PODS
        .into_iter()
        .filter_map(Component::pod)
        .map(|c| format!("{c}-{node}"))
        .filter(|name| !present.contains(name.as_str()))
        .collect();
    pending.extend(
        pods.iter()
            .filter(|p| !(p.phase == "Running" && p.ready))
            .map(|p| format!("{} ({})", p.name, p.phase)),
    );
    if !pods.iter().any(|p| p.name.starts_with("coredns-")) {
        pending.push("coredns".into());
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_leaves_out_exactly_the_addons_pods() {
        assert_eq!(NOT_ADDONS, format!("!{}", crate::addons::LABEL));
        let pod = |name: &str, phase: &str, ready: bool| PodState {
            name: name.into(),
            phase: phase.into(),
            ready,
            ip: None,
        };
        let mut pods = vec![
            pod("kube-apiserver-vm", "Running", true),
            pod("kube-controller-manager-vm", "Running", true),
            pod("kube-scheduler-vm", "Running", true),
            pod("coredns-5cd5957b57-x", "Running", true),
        ];
        assert!(not_ready(&pods, "vm").is_empty());
        pods.push(pod("coredns-5cd5957b57-y", "Pending", false));
        assert_eq!(not_ready(&pods, "vm"), ["coredns-5cd5957b57-y (Pending)"]);
        pods.retain(|p| p.name != "kube-scheduler-vm");
        assert!(not_ready(&pods, "vm").contains(&"kube-scheduler-vm".to_string()));

        // After a graceful shutdown: the old CoreDNS pod Failed beside its replacement,
        // and a Failed mirror pod is not the control-plane pod running.
        let mut rebooted = vec![
            pod("kube-apiserver-vm", "Running", true),
            pod("kube-controller-manager-vm", "Running", true),
            pod("kube-scheduler-vm", "Failed", false),
            pod("coredns-5cd5957b57-x", "Failed", false),
            pod("coredns-5cd5957b57-z", "Running", true),
        ];
        assert_eq!(not_ready(&rebooted, "vm"), ["kube-scheduler-vm"]);
        rebooted[2] = pod("kube-scheduler-vm", "Running", true);
        assert!(not_ready(&rebooted, "vm").is_empty());
    }
}
