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

use crate::cluster::Container;
use crate::docker::Docker;
use crate::host;

/// How long to wait for Docker to have tried every container.
const SETTLE: Duration = Duration::from_secs(120);

pub async fn run() -> Result<()> {
    // main.rs has joined the Docker daemon's mount namespace already.
    let changed = host::prepare()?;
    if changed.is_empty() {
        info!("the host was set up already");
    } else {
        info!("set up the host: {}", changed.join(", "));
    }
    let docker = Docker::connect().await?;
    start_failed(&docker).await?;
    // Docker starts this container again on its next start only if it was running.
    info!("done; idle until the Docker daemon starts again");
    std::future::pending::<()>().await;
    Ok(())
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
