//! An offline bundle directory, as `scripts/build-bundle.sh` writes it: `docker save`
//! archives under `images/`, binaries in the release servers' layout (read through
//! [`crate::download`] with a `file://` mirror).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::docker::Docker;

/// One `docker save` archive and the image names it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    pub tags: Vec<String>,
}

/// What [`load_missing`] did, by image name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub present: Vec<String>,
}

/// The image archives in `dir/images/` (or in `dir` itself), with their tags read from
/// each archive's own manifest rather than guessed from file names.
pub fn archives(dir: &Path) -> Result<Vec<Archive>> {
    let images = dir.join("images");
    let dir = if images.is_dir() {
        images
    } else {
        dir.to_path_buf()
    };
    let entries = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read the bundle {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read the bundle {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "tar") {
            let tags = archive_tags(&path)?;
            out.push(Archive { path, tags });
        }
    }
    if out.is_empty() {
        bail!(
            "{} holds no image archives (*.tar from `docker save`)",
            dir.display()
        );
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Loads every archive with an image Docker does not have yet; `all` reloads them all.
pub async fn load_missing(docker: &Docker, dir: &Path, all: bool) -> Result<LoadReport> {
    load_archives(docker, dir, all, None).await
}

/// Loads the archives holding any of `wanted` that Docker does not have yet: a cluster's
/// images, not every version's and addon's in the bundle.
pub async fn load_wanted(docker: &Docker, dir: &Path, wanted: &[String]) -> Result<LoadReport> {
    load_archives(docker, dir, false, Some(wanted)).await
}

async fn load_archives(
    docker: &Docker,
    dir: &Path,
    all: bool,
    wanted: Option<&[String]>,
) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    for archive in archives(dir)? {
        if let Some(wanted) = wanted
            && !archive.tags.iter().any(|t| {
                wanted
                    .iter()
                    .any(|w| crate::versions::docker_name(w) == crate::versions::docker_name(t))
            })
        {
            continue;
        }
        let mut missing = false;
        for tag in &archive.tags {
            missing |= !docker.has_image(tag).await?;
        }
        if missing || all {
            docker.load_archive(&archive.path).await?;
            report.loaded.extend(archive.tags);
        } else {
            report.present.extend(archive.tags);
        }
    }
    Ok(report)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

fn archive_tags(path: &Path) -> Result<Vec<String>> {
    let bad = || format!("{} is not a `docker save` archive", path.display());
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    // Seeking skips the layers' contents; manifest.json is usually at the end.
    for entry in archive.entries_with_seek().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        if entry.path().with_context(bad)?.as_os_str() != "manifest.json" {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).with_context(bad)?;
        let manifest: Vec<ManifestEntry> = serde_json::from_str(&text).with_context(bad)?;
        let tags: Vec<String> = manifest
            .into_iter()
            .flat_map(|m| m.repo_tags.unwrap_or_default())
            .collect();
        if tags.is_empty() {
            bail!(
                "{} carries no image names (save it with `docker save NAME:TAG`)",
                path.display()
            );
        }
        return Ok(tags);
    }
    Err(anyhow::anyhow!(bad()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(path: &Path, files: &[(&str, &[u8])]) {
        let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.finish().unwrap();
    }

    #[test]
    fn reads_image_names_from_each_archive() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let manifest = br#"[{"Config":"x.json","RepoTags":["registry.k8s.io/etcd:3.6.8-0"],"Layers":["l/layer.tar"]}]"#;
        archive_with(
            &dir.path().join("images/etcd.tar"),
            &[
                ("l/layer.tar", &[0u8; 4096][..]),
                ("manifest.json", &manifest[..]),
            ],
        );
        std::fs::write(dir.path().join("images/README"), "not an archive").unwrap();
        let found = archives(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tags, ["registry.k8s.io/etcd:3.6.8-0"]);
    }

    #[test]
    fn rejects_empty_bundles_and_foreign_tars() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            format!("{:#}", archives(dir.path()).unwrap_err()).contains("holds no image archives")
        );
        archive_with(&dir.path().join("other.tar"), &[("hello.txt", b"hi")]);
        let err = format!("{:#}", archives(dir.path()).unwrap_err());
        assert!(err.contains("is not a `docker save` archive"), "{err}");
    }
}
