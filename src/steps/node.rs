//! Makes kinit's node image present: assembles it from the kubelet, cri-dockerd and the
//! CNI plugins the download step verified, and kinit's own binary. Already done when
//! Docker has the image of exactly these files: its tag names the image ID kinit recorded
//! when it loaded it (a tag is only a name; whoever can reach Docker can move it).

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};

use super::Context;
use crate::download::{Downloader, sha256_file};
use crate::fs::{self, Mode};
use crate::node_image::{self, Inputs};
use crate::progress::Outcome;
use crate::release;

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let version = ctx.release.kubernetes;
    let artifacts = release::node_artifacts(version);
    // Cached and verified by the download step: no network here.
    let downloader = Downloader::new(ctx.sources.mirror.as_deref(), &ctx.cache);
    let kubelet = downloader.fetch(&artifacts.kubelet).await?;
    let cri_dockerd = downloader.fetch(&artifacts.cri_dockerd).await?;
    let cni = downloader.fetch(&artifacts.cni_plugins).await?;
    // A copy of the running binary: hashed and packed as the same bytes, even if the
    // file kinit was started from is replaced meanwhile (/proc/self/exe is the running one).
    let kinit = ctx.cache.join(format!("kinit-{}.part", std::process::id()));
    let result = assemble(ctx, version, &kubelet, &cri_dockerd, &cni, &kinit).await;
    let _ = std::fs::remove_file(&kinit);
    result
}

async fn assemble(
    ctx: &Context,
    version: &str,
    kubelet: &crate::download::Download,
    cri_dockerd: &crate::download::Download,
    cni: &crate::download::Download,
    kinit: &std::path::Path,
) -> Result<Outcome> {
    let mut copy =
        tokio::fs::File::from_std(crate::fs::create_fresh(kinit, crate::fs::Mode::Public)?);
    let mut running = tokio::fs::File::open("/proc/self/exe")
        .await
        .context("cannot read kinit's own binary")?;
    tokio::io::copy(&mut running, &mut copy)
        .await
        .context("cannot copy kinit's own binary into the download cache")?;
    let kinit_sha256 = sha256_file(kinit).await?;
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
    let record = ctx.layout.node_image_record();
    let present = ctx.docker.image_id(&tag).await?;
    let replaced = match (&present, recorded(ctx)?) {
        (Some(id), Some((t, want))) if t == tag && want == *id => {
            return Ok(Outcome::AlreadyDone(format!("{tag} present")));
        }
        (Some(id), Some((t, want))) if t == tag => {
            tracing::warn!(
                "{tag} names {id}, not the image kinit assembled ({want}): assembling it again"
            );
            true
        }
        // After a purge that kept the image (a container used it), or from another state
        // directory: not known to be what kinit made, so made again.
        (Some(id), _) => {
            tracing::info!("{tag} ({id}) is not recorded as kinit's: assembling it again");
            false
        }
        (None, _) => false,
    };

    let started = Instant::now();
    let inputs = Inputs {
        kubelet: kubelet.path.clone(),
        cri_dockerd_tgz: cri_dockerd.path.clone(),
        cni_tgz: cni.path.clone(),
        kinit: kinit.to_path_buf(),
    };
    let archive = ctx.cache.join(format!("kinit-node-{recipe}.tar"));
    let (write_tag, write_recipe, write_to) = (tag.clone(), recipe.clone(), archive.clone());
    let config = tokio::task::spawn_blocking(move || {
        node_image::write_archive(&inputs, &write_tag, &write_recipe, &write_to)
    })
    .await
    .context("the node image task failed")??;
    let loaded = ctx.docker.load_archive(&archive).await;
    let _ = std::fs::remove_file(&archive);
    loaded.with_context(|| format!("cannot load the node image {tag} into Docker"))?;
    // Docker's classic image store names the image by its config's digest (`config`);
    // the containerd image store (Docker 29's default) by its manifest's. The record is
    // whichever this engine reports for the tag it just loaded.
    let Some(now) = ctx.docker.image_id(&tag).await? else {
        bail!("Docker has no {tag} after loading it; run `kinit up` again");
    };
    tracing::debug!("loaded {tag}: config {config}, image ID {now}");
    fs::write_file(&record, format!("{tag} {now}\n").as_bytes(), Mode::Public)?;
    let again = if replaced {
        " (its tag had been moved to another image)"
    } else {
        ""
    };
    Ok(Outcome::Done(format!(
        "assembled {tag} in {:.1}s{again}",
        started.elapsed().as_secs_f64()
    )))
}

/// The node image kinit last assembled here, as its record names it: the tag and the
/// image ID Docker reported for it.
pub fn recorded(ctx: &Context) -> Result<Option<(String, String)>> {
    let bytes = fs::read_optional(&ctx.layout.node_image_record())?;
    Ok(bytes.and_then(|b| {
        let text = String::from_utf8_lossy(&b);
        let (tag, id) = text.trim().split_once(' ')?;
        Some((tag.to_string(), id.trim().to_string()))
    }))
}

/// Node images of older kinits or kubelets, once the master no longer runs them.
pub async fn remove_older_images(ctx: &Context) -> Result<()> {
    let old = ctx
        .docker
        .remove_labelled_images(
            node_image::LABEL_RECIPE,
            &node_image::REPOSITORIES,
            Some(ctx.node_image()?),
        )
        .await?;
    if !old.is_empty() {
        tracing::info!("removed older node images: {}", old.join(", "));
    }
    Ok(())
}
