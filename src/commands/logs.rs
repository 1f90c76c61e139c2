//! `kinit logs COMPONENT`: a component's output, optionally followed. kinit's own
//! containers by name; the control plane and CoreDNS through the pod containers the
//! kubelet made (the newest one, so restarts are followed to the current instance).

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use crate::cli::{LogComponent, LogsArgs};
use crate::docker::{self, Docker};

pub async fn run(args: &LogsArgs) -> Result<()> {
    let docker = Docker::connect().await?;
    let (container, label) = match args.component {
        LogComponent::Etcd => (Some(docker::container_name("etcd")), "etcd"),
        LogComponent::Kubelet => (Some(docker::container_name("master")), "the kubelet"),
        LogComponent::Proxy => (Some(docker::container_name("proxy")), "kube-proxy"),
        LogComponent::Boot => (Some(docker::container_name("boot")), "kinit-boot"),
        LogComponent::Apiserver => (
            docker
                .pod_container("kube-system", "kube-apiserver")
                .await?,
            "the API server",
        ),
        LogComponent::ControllerManager => (
            docker
                .pod_container("kube-system", "kube-controller-manager")
                .await?,
            "the controller-manager",
        ),
        LogComponent::Scheduler => (
            docker
                .pod_container("kube-system", "kube-scheduler")
                .await?,
            "the scheduler",
        ),
        LogComponent::Coredns => (
            docker.pod_container("kube-system", "coredns").await?,
            "CoreDNS",
        ),
    };
    let name = match container {
        Some(name) if docker.inspect(&name).await?.is_some() => name,
        _ => bail!(
            "{label} is not running here (no container for it); start the cluster with `sudo kinit up`"
        ),
    };
    let mut stream = Box::pin(docker.logs(&name, args.follow, args.tail));
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).context("cannot write to stdout")?;
    }
    Ok(())
}
