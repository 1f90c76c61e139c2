//! Starts `kinit-etcd` (or leaves it running) and waits until it answers its health
//! endpoint over TLS with the health-check client certificate.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::Context;
use crate::components::etcd;
use crate::docker::Applied;
use crate::progress::Outcome;
use crate::{fs, health};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let spec = etcd::spec(&ctx.settings, &ctx.layout, &ctx.images)?;
    // The images step before this one has made the image present.
    fs::ensure_private_dir(&ctx.layout.etcd_data())?;
    let applied = ctx.docker.apply(&spec).await?;
    wait_until_healthy(ctx, &spec.container_name()).await?;
    Ok(match applied {
        Applied::Unchanged => Outcome::AlreadyDone("running and healthy".into()),
        Applied::Started => Outcome::Done("started the stopped container, healthy".into()),
        Applied::Created => Outcome::Done("created, healthy".into()),
        Applied::Replaced => {
            Outcome::Done("replaced a container with other settings, healthy".into())
        }
    })
}

async fn wait_until_healthy(ctx: &Context, name: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match health::etcd(&ctx.layout, Duration::from_secs(2)).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let logs = ctx.docker.tail_logs(name, 20).await;
            return Err(anyhow!(
                "etcd did not become healthy within {}s (last check: {last:#}); its last log lines:\n{logs}",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
