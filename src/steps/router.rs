//! The pod network follows a moved node address. kube-router reads its node's address once,
//! when it starts, and peers over BGP and routes from it; once the Node reports a new
//! address, this node's kube-router pod is evicted and its DaemonSet starts another. The
//! address the running kube-router started with is recorded in the state directory, so a
//! `kinit up` that stopped half-way finishes the move.

use std::time::Duration;

use anyhow::Result;

use super::Context;
use crate::components::node;
use crate::fs::{self, Mode};
use crate::kubernetes::Kube;
use crate::progress::Outcome;
use crate::wait;

const TIMEOUT: Duration = Duration::from_secs(180);
/// kube-router's pods (manifests/network/kube-router.yaml).
const NAMESPACE: &str = "kube-system";
const SELECTOR: &str = "k8s-app=kube-router";

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let record = ctx.layout.router_record();
    let now = ctx.settings.node_ip;
    let started_at =
        fs::read_optional(&record)?.map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string());
    let old = match started_at {
        Some(at) if at == now.to_string() => {
            return Ok(Outcome::AlreadyDone(format!("kube-router runs at {now}")));
        }
        // The first bring-up: kube-router starts after its node has registered.
        None => {
            fs::write_file(&record, now.to_string().as_bytes(), Mode::Public)?;
            return Ok(Outcome::AlreadyDone(format!("kube-router runs at {now}")));
        }
        Some(old) => old,
    };
    let kube = if ctx.settings.is_control_plane() {
        Kube::connect(&ctx.layout.kubeconfig("admin.conf")).await?
    } else {
        Kube::connect_current(&node::kubelet_kubeconfig(&ctx.layout)).await?
    };
    let name = ctx.settings.hostname.as_str();
    wait::within(
        &format!("the node {name} did not report its address {now}"),
        TIMEOUT,
        async |seen| kube.wait_node_address(name, now, seen).await,
    )
    .await?;
    wait::within(
        "kube-router did not start again at the new address",
        TIMEOUT,
        async |seen| kube.restart_pods_on(name, NAMESPACE, SELECTOR, seen).await,
    )
    .await?;
    fs::write_file(&record, now.to_string().as_bytes(), Mode::Public)?;
    Ok(Outcome::Done(format!(
        "kube-router started again at {now} (it ran at {old})"
    )))
}
