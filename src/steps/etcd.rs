//! Starts `kinit-etcd` (or leaves it running) and waits until it answers its health
//! endpoint over TLS with the health-check client certificate.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Deserialize;

use super::Context;
use crate::components::etcd;
use crate::docker::Applied;
use crate::progress::Outcome;
use crate::{fs, health, wait};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let spec = etcd::spec(&ctx.settings, &ctx.layout, &ctx.images)?;
    // The images step before this one has made the image present.
    fs::ensure_private_dir(&ctx.layout.etcd_data())?;
    let applied = ctx.docker.apply(&spec).await?;
    wait_until_healthy(ctx, &spec.container_name()).await?;
    if let Some(old) = align_peer_url(ctx).await? {
        return Ok(Outcome::Done(format!(
            "moved its peer URL from {old} to {}, healthy",
            etcd::peer_url(&ctx.settings)
        )));
    }
    Ok(match applied {
        Applied::Unchanged => Outcome::AlreadyDone("running and healthy".into()),
        Applied::Started => Outcome::Done("started the stopped container, healthy".into()),
        Applied::Created => Outcome::Done("created, healthy".into()),
        Applied::Replaced => {
            Outcome::Done("replaced a container with other settings, healthy".into())
        }
    })
}

/// etcd keeps the peer URLs of its member in its data and ignores the advertise flags
/// once it has data, so after the node's address moved it would still advertise the old
/// one. Updates it (v3 API, JSON gateway); returns the URLs it replaced.
async fn align_peer_url(ctx: &Context) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Member {
        // uint64 fields come as strings from the gateway.
        #[serde(rename = "ID")]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default, rename = "peerURLs")]
        peer_urls: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Members {
        #[serde(default)]
        members: Vec<Member>,
    }
    let client = health::etcd_client(&ctx.layout, Duration::from_secs(10))?;
    let endpoint = etcd::local_endpoint();
    let body = client
        .post(format!("{endpoint}/v3/cluster/member/list"))
        .body("{}")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("cannot list etcd's members")?
        .bytes()
        .await
        .context("cannot read etcd's member list")?;
    let list: Members =
        serde_json::from_slice(&body).context("etcd's member list is not what kinit expects")?;
    let want = etcd::peer_url(&ctx.settings);
    let Some(member) = list
        .members
        .iter()
        .find(|m| m.name == ctx.settings.hostname.as_str())
    else {
        bail!(
            "etcd has no member named {} (members: {})",
            ctx.settings.hostname,
            list.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if member.peer_urls == [want.clone()] {
        return Ok(None);
    }
    client
        .post(format!("{endpoint}/v3/cluster/member/update"))
        .body(serde_json::json!({ "ID": member.id, "peerURLs": [want] }).to_string())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("cannot update etcd's peer URL")?;
    Ok(Some(member.peer_urls.join(",")))
}

async fn wait_until_healthy(ctx: &Context, name: &str) -> Result<()> {
    let healthy = wait::until("etcd did not become healthy", READY_TIMEOUT, || async {
        health::etcd(&ctx.layout, Duration::from_secs(2))
            .await
            .map(|()| true)
    })
    .await;
    if let Err(e) = healthy {
        let logs = ctx.docker.tail_logs(name, 20).await;
        return Err(anyhow!("{e:#}; its last log lines:\n{logs}"));
    }
    Ok(())
}
