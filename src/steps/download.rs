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
    let mut all = node_artifacts(kubernetes);
    all.push(Artifact::kubectl(kubernetes));
    all
}

/// The files a joined host's node comes from (no kubectl: its user works on the
/// control-plane host, or with its kubeconfig elsewhere).
fn node_artifacts(kubernetes: &str) -> Vec<Artifact> {
    let node = release::node_artifacts(kubernetes);
    vec![node.kubelet, node.cri_dockerd, node.cni_plugins]
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let downloader = Downloader::new(ctx.sources.mirror.as_deref(), &ctx.cache);
    downloader.warn_if_plain_http();
    let mut downloaded = Vec::new();
    let wanted = match ctx.settings.is_control_plane() {
        true => artifacts(ctx.release.kubernetes),
        false => node_artifacts(ctx.release.kubernetes),
    };
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
