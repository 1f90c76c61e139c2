//! Installs a kubectl matching the cluster's Kubernetes minor version, unless one is on
//! PATH or in the install directory already. Downloaded from the mirror (upstream by
//! default), checked against its published SHA-256.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use super::Context;
use crate::download::Downloader;
use crate::fs;
use crate::progress::Outcome;
use crate::release::Artifact;
use crate::versions::minor;

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let release = ctx.release;
    let wanted = release.minor();
    let target = ctx.bin_dir.join("kubectl");
    let mut candidates = fs::on_path("kubectl");
    candidates.push(target.clone());
    for candidate in candidates {
        if let Some(version) = client_version(&candidate).await
            && minor(&version) == wanted
        {
            return Ok(Outcome::AlreadyDone(format!(
                "kubectl {version} at {}",
                candidate.display()
            )));
        }
    }

    let artifact = Artifact::kubectl(release.kubernetes);
    // Verified and cached by the download step.
    let downloader = Downloader::new(ctx.sources.mirror.as_deref(), &ctx.cache);
    let download = downloader.fetch(&artifact).await?;
    fs::install_file(&download.path, &target, fs::Mode::Executable)?;
    Ok(Outcome::Done(format!(
        "{} installed in {}",
        download.describe(&format!("kubectl {}", release.kubernetes)),
        ctx.bin_dir.display()
    )))
}

/// The client version a kubectl binary reports, or `None` when it does not run.
async fn client_version(path: &Path) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Info {
        client_version: Client,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Client {
        git_version: String,
    }
    let out = tokio::process::Command::new(path)
        .args(["version", "--client", "--output=json"])
        .output()
        .await
        .ok()?;
    let info: Info = serde_json::from_slice(&out.stdout).ok()?;
    Some(info.client_version.git_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_versions() {
        assert_eq!(minor("v1.36.3"), "v1.36");
        assert_eq!(minor("v1.36.0-rc.1"), "v1.36");
        assert_ne!(minor("v1.35.9"), minor("v1.36.3"));
        assert_ne!(minor("v1.3.6"), minor("v1.36.3"));
    }
}
