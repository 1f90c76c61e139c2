//! Fetches every release file the cluster needs (the kubelet, cri-dockerd and the CNI
//! plugins for the node image, kubectl for the user) into the download cache, each checked
//! against its SHA-256, before anything on the host changes: a bad mirror or a corrupt
//! file fails `kinit up` with nothing half-made. Already done when every file is cached.

use anyhow::Result;

use super::Context;
use crate::download::{Downloader, Fetched};
use crate::progress::Outcome;
use crate::release::{self, Artifact};

/// The files this cluster's node and kubectl come from.
pub fn artifacts(kubernetes: &str) -> Vec<Artifact> {
    let node = release::node_artifacts(kubernetes);
    vec![
        node.kubelet,
        node.cri_dockerd,
        node.cni_plugins,
        Artifact::kubectl(kubernetes),
    ]
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let downloader = Downloader::new(ctx.sources.mirror.as_deref(), &ctx.cache);
    let mut downloaded = Vec::new();
    let wanted = artifacts(ctx.release.kubernetes);
    for artifact in &wanted {
        let got = downloader.fetch(artifact).await?;
        if got.how == Fetched::Downloaded {
            downloaded.push(got.describe(artifact.name));
        }
    }
    Ok(if downloaded.is_empty() {
        Outcome::AlreadyDone(format!("all {} cached", wanted.len()))
    } else {
        Outcome::Done(downloaded.join(", "))
    })
}
