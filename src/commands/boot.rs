//! `kinit boot`: what the kinit-boot container runs each time the Docker daemon starts.
//!
//! Docker starts every container with a restart policy as it starts, in no set order, and
//! never retries one whose start failed. On a freshly booted host the master fails (its
//! state directory bind needs `/` to propagate mounts) and so does kube-proxy (its bind of
//! /run/xtables.lock, which a reboot deletes). This sets the host up as `kinit up` does,
//! then starts those containers again.

use std::time::{Duration, Instant};

use anyhow::Result;
use tracing::{info, warn};

use crate::cluster::{Container, Settings};
use crate::components::node;
use crate::docker::Docker;
use crate::host::{self, guard};
use crate::kubernetes::Kube;
use crate::layout::Layout;

/// How long to wait for Docker to have tried every container.
const SETTLE: Duration = Duration::from_secs(120);

/// How often the other nodes are looked at.
const PEERS_EVERY: Duration = Duration::from_secs(10);

pub async fn run(state_dir: Option<&std::path::Path>) -> Result<()> {
    // main.rs has joined the Docker daemon's mount namespace already.
    let changed = host::prepare()?;
    if changed.is_empty() {
        info!("the host was set up already");
    } else {
        info!("set up the host: {}", changed.join(", "));
    }
    let docker = Docker::connect().await?;
    start_failed(&docker).await?;
    // Docker starts this container again on its next start only if it was running; until
    // then it keeps the LAN guard's exceptions for the other nodes.
    info!("done; keeping the other nodes' exceptions to the LAN guard");
    keep_peer_exceptions(&Layout::resolve(state_dir)?).await
}

/// The other nodes (addresses and pod ranges) may send to this host's pods: KINIT-NODES
/// follows the cluster's Nodes, checked every [`PEERS_EVERY`]. With one node it stays
/// empty. Failures (the API server restarting, a host without a cluster yet) are logged
/// and tried again; the guard keeps its last exceptions meanwhile.
async fn keep_peer_exceptions(layout: &Layout) -> Result<()> {
    loop {
        match peer_sources(layout).await {
            // Checked against the chain each time: the node container's start remakes
            // the guard, and its exceptions with it.
            Ok(Some(sources)) => match guard::sync(&sources) {
                Ok(true) => info!("LAN guard exceptions for the other nodes: {sources:?}"),
                Ok(false) => {}
                Err(e) => warn!("{e:#}"),
            },
            Ok(None) => {}
            Err(e) => warn!("cannot read the other nodes: {e:#}"),
        }
        tokio::time::sleep(PEERS_EVERY).await;
    }
}

/// The other nodes' sources, with this host's own credentials: the admin's on the
/// control-plane host, the kubelet's on a joined one. None without a cluster.
async fn peer_sources(layout: &Layout) -> Result<Option<Vec<ipnet::IpNet>>> {
    let Some(settings) = Settings::load(&layout.settings_file())? else {
        return Ok(None);
    };
    let kube = match settings.is_control_plane() {
        true => Kube::connect(&layout.kubeconfig("admin.conf")).await?,
        false => Kube::connect_current(&node::kubelet_kubeconfig(layout)).await?,
    };
    Ok(Some(kube.peer_sources(settings.hostname.as_str()).await?))
}

/// Starts each kinit container Docker failed to start, until all run or [`SETTLE`] passes.
async fn start_failed(docker: &Docker) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut waiting = Vec::new();
        for c in docker.list().await? {
            if c.component.as_deref() == Some(Container::Boot.label())
                || c.running
                || c.status == "restarting"
            {
                continue;
            }
            if let Some(error) = &c.error {
                info!("starting {} (Docker could not: {error})", c.name);
                if let Err(e) = docker.start(&c.name).await {
                    warn!("{e:#}");
                }
            }
            waiting.push(c.name);
        }
        if waiting.is_empty() {
            info!("every kinit container runs");
            return Ok(());
        }
        if Instant::now() >= deadline {
            warn!(
                "not running after {}s: {}",
                SETTLE.as_secs(),
                waiting.join(", ")
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
