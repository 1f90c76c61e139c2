//! Starts `kinit-proxy` (kube-proxy) and waits until it reports healthy, i.e. it has
//! programmed the Service rules.

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::Context;
use crate::components::proxy;
use crate::docker::{self, Applied};
use crate::progress::Outcome;
use crate::{fs, health, pki, wait};

const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let rendered = proxy::render(&ctx.settings, &ctx.layout, &ctx.images)?;
    fs::write_if_changed(
        &rendered.config.path,
        rendered.config.contents.as_bytes(),
        rendered.config.mode,
    )?;
    // kube-proxy reads its configuration once: a new one must give a new container.
    let mut spec = rendered.spec;
    // And its kubeconfig: new credentials too.
    let mut started_with = rendered.config.contents.into_bytes();
    started_with.extend_from_slice(pki::digest(ctx.layout.root())?.as_bytes());
    spec.files_digest = Some(docker::short_digest(&started_with));
    let applied = ctx.docker.apply(&spec).await?;
    if let Err(e) = wait::until(
        "kube-proxy did not become healthy",
        READY_TIMEOUT,
        || async {
            health::http_ok(&proxy::healthz(), Duration::from_secs(2))
                .await
                .map(|()| true)
        },
    )
    .await
    {
        let logs = ctx.docker.tail_logs(&spec.container_name(), 30).await;
        return Err(anyhow!("{e:#}\nkube-proxy's last log lines:\n{logs}"));
    }
    Ok(match applied {
        Applied::Unchanged => Outcome::AlreadyDone("kube-proxy healthy (iptables mode)".into()),
        Applied::Started => Outcome::Done("started; kube-proxy healthy".into()),
        Applied::Created => Outcome::Done("created; kube-proxy healthy (iptables mode)".into()),
        Applied::Replaced => Outcome::Done("replaced with the new configuration; healthy".into()),
    })
}
