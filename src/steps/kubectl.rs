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
    for candidate in candidates.into_iter().filter(|c| safe_to_run(c)) {
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

/// Asking a kubectl its version runs it: as root, only a file root owns and nobody else may
/// write to, or another user's program would run with root's rights.
fn safe_to_run(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
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
    fn root_runs_only_roots_kubectl() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs the tests as root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let kubectl = dir.path().join("kubectl");
        std::fs::write(&kubectl, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(safe_to_run(&kubectl));
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!safe_to_run(&kubectl), "writable by others");
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&kubectl, Some(nix::unistd::Uid::from_raw(4321)), None).unwrap();
        assert!(!safe_to_run(&kubectl), "another user's");
        assert!(!safe_to_run(&dir.path().join("missing")));
    }

    #[test]
    fn minor_versions() {
        assert_eq!(minor("v1.36.3"), "v1.36");
        assert_eq!(minor("v1.36.0-rc.1"), "v1.36");
        assert_ne!(minor("v1.35.9"), minor("v1.36.3"));
        assert_ne!(minor("v1.3.6"), minor("v1.36.3"));
    }
}
