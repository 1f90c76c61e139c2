//! Makes kinit's node image present: downloads the kubelet, cri-dockerd and the CNI
//! plugins from their release locations (or the mirror), each checked against its
//! SHA-256, and assembles the image from them. Already done when Docker has the image of
//! exactly these files.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};

use super::Context;
use crate::download::{Downloader, Fetched, sha256_file};
use crate::node_image::{self, Inputs};
use crate::progress::Outcome;
use crate::release;

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let cache = Downloader::default_cache()?;
    let downloader = Downloader::new(ctx.sources.mirror.as_deref(), &cache);
    let version = &ctx.settings.kubernetes_version;
    let artifacts = release::node_artifacts(version);
    let kubelet = downloader.fetch(&artifacts.kubelet).await?;
    let cri_dockerd = downloader.fetch(&artifacts.cri_dockerd).await?;
    let cni = downloader.fetch(&artifacts.cni_plugins).await?;
    let kinit = std::env::current_exe().context("cannot find kinit's own binary")?;
    let kinit_sha256 = sha256_file(&kinit).await?;

    let recipe = node_image::recipe(&[
        &kubelet.sha256,
        &cri_dockerd.sha256,
        &cni.sha256,
        &kinit_sha256,
    ]);
    let tag = node_image::tag(version, &recipe);
    ctx.node_image
        .set(tag.clone())
        .map_err(|_| anyhow!("the node image was chosen twice in one run"))?;

    let downloads = [
        kubelet.describe(artifacts.kubelet.name),
        cri_dockerd.describe(artifacts.cri_dockerd.name),
        cni.describe(artifacts.cni_plugins.name),
    ];
    let downloaded = [&kubelet, &cri_dockerd, &cni]
        .iter()
        .any(|d| d.how == Fetched::Downloaded);
    for line in &downloads {
        tracing::info!("{line}");
    }
    if ctx.docker.has_image(&tag).await? {
        let detail = format!("{tag} present");
        return Ok(if downloaded {
            Outcome::Done(format!("{detail}; downloaded {}", downloads.join(", ")))
        } else {
            Outcome::AlreadyDone(detail)
        });
    }

    let started = Instant::now();
    let inputs = Inputs {
        kubelet: kubelet.path.clone(),
        cri_dockerd_tgz: cri_dockerd.path.clone(),
        cni_tgz: cni.path.clone(),
        kinit,
    };
    let archive = cache.join(format!("kinit-node-{recipe}.tar"));
    let (write_tag, write_recipe, write_to) = (tag.clone(), recipe.clone(), archive.clone());
    tokio::task::spawn_blocking(move || {
        node_image::write_archive(&inputs, &write_tag, &write_recipe, &write_to)
    })
    .await
    .context("the node image task failed")??;
    let loaded = ctx.docker.load_archive(&archive).await;
    let _ = std::fs::remove_file(&archive);
    loaded.with_context(|| format!("cannot load the node image {tag} into Docker"))?;
    Ok(Outcome::Done(format!(
        "assembled {tag} in {:.1}s from {}",
        started.elapsed().as_secs_f64(),
        downloads.join(", ")
    )))
}
