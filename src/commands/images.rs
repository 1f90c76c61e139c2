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
                println!("loaded  {image}");
            }
            for image in &report.present {
                println!("present {image}");
            }
        }
        ImagesCommand::List => {
            for image in crate::versions::Images::default().all() {
                let state = if docker.has_image(&image).await? {
                    "present"
                } else {
                    "missing"
                };
                println!("{state:<8}{image}");
            }
        }
    }
    Ok(())
}
