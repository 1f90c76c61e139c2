//! `kinit images load DIR` and `kinit images list`: images for hosts without a registry.

use anyhow::Result;

use crate::bundle;
use crate::cli::ImagesCommand;

use crate::docker::Docker;

pub async fn run(cmd: &ImagesCommand) -> Result<()> {
    let docker = Docker::connect().await?;
    match cmd {
        ImagesCommand::Load { dir, all } => {
            let report = bundle::load_missing(&docker, dir, *all).await?;
            for image in &report.loaded {
                crate::outln!("loaded  {image}")?;
            }
            for image in &report.present {
                crate::outln!("present {image}")?;
            }
        }
        ImagesCommand::List => {
            let images = crate::versions::Images::default();
            for image in images.all().into_iter().chain(images.addons()) {
                let state = if docker.has_image(&image).await? {
                    "present"
                } else {
                    "missing"
                };
                crate::outln!("{state:<8}{image}")?;
            }
        }
    }
    Ok(())
}
