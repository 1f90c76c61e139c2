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

/// Loads every archive whose images Docker has none of; `all` reloads them all. An archive
/// that would re-point a name Docker has (one of its images present, another missing) is
/// refused unless `all`: loading it replaces what that name meant on this host.
pub async fn load_missing(docker: &Docker, dir: &Path, all: bool) -> Result<LoadReport> {
    load_archives(docker, dir, Want::Any { all }).await
}

/// Loads the archives of `wanted` that Docker does not have yet: a cluster's images, not
/// every version's and addon's in the bundle. An archive that carries any other image is
/// refused before it is loaded, so a bundle can add kinit's images and nothing else.
pub async fn load_wanted(docker: &Docker, dir: &Path, wanted: &[String]) -> Result<LoadReport> {
    load_archives(docker, dir, Want::Only(wanted)).await
}

/// Which archives a load takes.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    /// Any archive (`kinit images load`); `all` reloads present ones and re-points names.
    Any { all: bool },
    /// Those with these images (`kinit up`, `kinit addons enable`).
    Only(&'a [String]),
}

/// What a load does with one archive.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Load,
    Present,
    Skip,
}

/// Decides, from the archive's own manifest and what Docker has, before anything is loaded.
fn plan(archive: &Archive, want: Want, has: &dyn Fn(&str) -> bool) -> Result<Plan> {
    let name = |t: &String| crate::versions::docker_name(t).to_string();
    if let Want::Only(wanted) = want {
        let wanted: Vec<String> = wanted.iter().map(name).collect();
        let (ours, others): (Vec<&String>, Vec<&String>) =
            archive.tags.iter().partition(|t| wanted.contains(&name(t)));
        if ours.is_empty() {
            return Ok(Plan::Skip);
        }
        if !others.is_empty() {
            bail!(
                "{} carries {}, which kinit did not ask for, beside {}: kinit loads only \
                 archives of the images it runs (one image each, as scripts/build-bundle.sh \
                 saves them)",
                archive.path.display(),
                join(&others),
                join(&ours),
            );
        }
    }
    let (present, missing): (Vec<&String>, Vec<&String>) =
        archive.tags.iter().partition(|t| has(t));
    Ok(match (present.is_empty(), missing.is_empty(), want) {
        (_, _, Want::Any { all: true }) => Plan::Load,
        (_, true, _) => Plan::Present,
        (true, false, _) => Plan::Load,
        (false, false, want) => {
            let hint = match want {
                Want::Any { .. } => " (`kinit images load --all` loads it anyway)",
                Want::Only(_) => "",
            };
            bail!(
                "{} would re-point {}, which Docker has already, to load {}: remove those \
                 names or the archive{hint}",
                archive.path.display(),
                join(&present),
                join(&missing),
            )
        }
    })
}

fn join(tags: &[&String]) -> String {
    tags.iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn load_archives(docker: &Docker, dir: &Path, want: Want<'_>) -> Result<LoadReport> {
    let archives = archives(dir)?;
    let mut present = std::collections::HashSet::new();
    for tag in archives.iter().flat_map(|a| &a.tags) {
        if docker.has_image(tag).await? {
            present.insert(tag.clone());
        }
    }
    // Every archive is checked before the first is loaded: a refused bundle loads nothing.
    let mut plans = Vec::new();
    for archive in archives {
        let plan = plan(&archive, want, &|t| present.contains(t))?;
        plans.push((archive, plan));
    }
    let mut report = LoadReport::default();
    for (archive, plan) in plans {
        match plan {
            Plan::Load => {
                docker.load_archive(&archive.path).await?;
                report.loaded.extend(archive.tags);
            }
            Plan::Present => report.present.extend(archive.tags),
            Plan::Skip => {}
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

    fn archive(tags: &[&str]) -> Archive {
        Archive {
            path: PathBuf::from("/bundle/images/x.tar"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn kinit_up_loads_only_archives_of_the_images_it_asked_for() {
        let wanted = ["registry.k8s.io/pause:3.10".to_string()];
        let want = Want::Only(&wanted);
        let none = |_: &str| false;
        let plan_of = |tags: &[&str]| plan(&archive(tags), want, &none);
        assert_eq!(
            plan_of(&["registry.k8s.io/pause:3.10"]).unwrap(),
            Plan::Load
        );
        assert_eq!(plan_of(&["nginx:1.27"]).unwrap(), Plan::Skip);
        // A wanted image's archive that would also bring in (or re-point) another.
        let err = plan_of(&["registry.k8s.io/pause:3.10", "nginx:latest"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("carries nginx:latest, which kinit did not ask for, beside registry.k8s.io/pause:3.10"),
            "{err}"
        );
        let present = |t: &str| t == "registry.k8s.io/pause:3.10";
        let plan_present = plan(&archive(&["registry.k8s.io/pause:3.10"]), want, &present);
        assert_eq!(plan_present.unwrap(), Plan::Present);
    }

    #[test]
    fn a_load_never_re_points_a_name_docker_has_unless_told() {
        let present = |t: &str| t == "nginx:latest";
        let mixed = archive(&["kinit.test/new:1", "nginx:latest"]);
        let err = plan(&mixed, Want::Any { all: false }, &present)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "would re-point nginx:latest, which Docker has already, to load kinit.test/new:1"
            ),
            "{err}"
        );
        assert!(err.contains("--all"), "{err}");
        assert_eq!(
            plan(&mixed, Want::Any { all: true }, &present).unwrap(),
            Plan::Load
        );
        let fresh = archive(&["kinit.test/new:1"]);
        let plan_fresh = plan(&fresh, Want::Any { all: false }, &present);
        assert_eq!(plan_fresh.unwrap(), Plan::Load);
        let plan_old = plan(
            &archive(&["nginx:latest"]),
            Want::Any { all: false },
            &present,
        );
        assert_eq!(plan_old.unwrap(), Plan::Present);
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
