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
    /// The IDs of its images (`sha256:` and their config's digest), as Docker's own image
    /// store names them.
    pub ids: Vec<String>,
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
            let (tags, ids) = archive_manifest(&path)?;
            out.push(Archive { path, tags, ids });
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

/// Loads every archive with an image Docker lacks; `all` reloads them all. An archive that
/// would re-point a name Docker has to another image is refused unless `all`: loading it
/// replaces what that name means on this host.
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

/// Decides, from the archive's own manifest and what Docker has (the ID each name has
/// there, if any), before anything is loaded.
fn plan(archive: &Archive, want: Want, id_of: &dyn Fn(&str) -> Option<String>) -> Result<Plan> {
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
        archive.tags.iter().partition(|t| id_of(t).is_some());
    // A name Docker has for an image this archive does not hold (under the containerd
    // image store, IDs are manifest digests: a name is then taken as re-pointed).
    let re_pointed: Vec<&String> = present
        .iter()
        .copied()
        .filter(|t| id_of(t).is_some_and(|id| !archive.ids.contains(&id)))
        .collect();
    Ok(match want {
        Want::Any { all: true } => Plan::Load,
        _ if missing.is_empty() => Plan::Present,
        _ if re_pointed.is_empty() => Plan::Load,
        want => {
            let hint = match want {
                Want::Any { .. } => " (`kinit images load --all` loads it anyway)",
                Want::Only(_) => "",
            };
            bail!(
                "{} would re-point {}, which Docker has as another image, to load {}: \
                 remove those names or the archive{hint}",
                archive.path.display(),
                join(&re_pointed),
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
    let mut present = std::collections::HashMap::new();
    for tag in archives.iter().flat_map(|a| &a.tags) {
        if let Some(id) = docker.image_id(tag).await? {
            present.insert(tag.clone(), id);
        }
    }
    // Every archive is checked before the first is loaded: a refused bundle loads nothing.
    let mut plans = Vec::new();
    for archive in archives {
        let plan = plan(&archive, want, &|t| present.get(t).cloned())?;
        if plan == Plan::Load {
            // A later archive with one of these names would re-point it: it is taken.
            for tag in &archive.tags {
                present.insert(
                    tag.clone(),
                    format!("loaded from {}", archive.path.display()),
                );
            }
        }
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
    /// The image's config: `<hex>.json` (Docker before 25) or `blobs/sha256/<hex>`.
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

impl ManifestEntry {
    fn id(&self) -> Option<String> {
        let name = self.config.rsplit('/').next()?;
        let hex = name.strip_suffix(".json").unwrap_or(name);
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
    }
}

/// An OCI layout's index.json (`docker save` from Docker 25 on): the digest of each image's
/// manifest, which is its ID under the containerd image store.
#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
}

/// The archive's image names and image IDs, from its own manifest.json (and index.json,
/// when it is an OCI layout).
fn archive_manifest(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let bad = || format!("{} is not a `docker save` archive", path.display());
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let (mut manifest, mut index) = (None, None);
    // Seeking skips the layers' contents; manifest.json is usually at the end.
    for entry in archive.entries_with_seek().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        let slot = match entry.path().with_context(bad)?.to_str() {
            Some("manifest.json") => &mut manifest,
            Some("index.json") => &mut index,
            _ => continue,
        };
        let mut text = String::new();
        entry.read_to_string(&mut text).with_context(bad)?;
        *slot = Some(text);
    }
    let manifest: Vec<ManifestEntry> =
        serde_json::from_str(&manifest.ok_or_else(|| anyhow::anyhow!(bad()))?).with_context(bad)?;
    let mut ids: Vec<String> = manifest.iter().filter_map(ManifestEntry::id).collect();
    if let Some(index) = index {
        let index: OciIndex = serde_json::from_str(&index).with_context(bad)?;
        ids.extend(index.manifests.into_iter().map(|m| m.digest));
    }
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
    Ok((tags, ids))
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

    const ID_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ID_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn reads_image_names_and_ids_from_each_archive() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let hex = &ID_A["sha256:".len()..];
        // Docker 25 and later name the config by its blob; earlier ones as <hex>.json.
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{ID_B}"}}]}}"#);
        for (file, config) in [
            ("etcd.tar", format!("blobs/sha256/{hex}")),
            ("old.tar", format!("{hex}.json")),
        ] {
            let manifest = format!(
                r#"[{{"Config":"{config}","RepoTags":["registry.k8s.io/etcd:3.6.8-0"],"Layers":["l/layer.tar"]}}]"#
            );
            let mut files = vec![
                ("l/layer.tar", &[0u8; 4096][..]),
                ("manifest.json", manifest.as_bytes()),
            ];
            if file == "etcd.tar" {
                files.push(("index.json", index.as_bytes()));
            }
            archive_with(&dir.path().join("images").join(file), &files);
        }
        std::fs::write(dir.path().join("images/README"), "not an archive").unwrap();
        let found = archives(dir.path()).unwrap();
        assert_eq!(found.len(), 2);
        assert!(
            found
                .iter()
                .all(|a| a.tags == ["registry.k8s.io/etcd:3.6.8-0"])
        );
        // The OCI layout's index names the manifest's digest: the image's ID under the
        // containerd image store.
        assert_eq!(found[0].ids, [ID_A, ID_B]);
        assert_eq!(found[1].ids, [ID_A]);
    }

    /// An archive of one image (ID_A) under `tags`.
    fn archive(tags: &[&str]) -> Archive {
        Archive {
            path: PathBuf::from("/bundle/images/x.tar"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ids: vec![ID_A.to_string()],
        }
    }

    /// Docker with these names, each for an image ID.
    fn docker_has(names: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let names: Vec<(String, String)> = names
            .iter()
            .map(|(n, id)| (n.to_string(), id.to_string()))
            .collect();
        move |tag| {
            names
                .iter()
                .find(|(n, _)| n == tag)
                .map(|(_, id)| id.clone())
        }
    }

    #[test]
    fn kinit_up_loads_only_archives_of_the_images_it_asked_for() {
        let wanted = ["registry.k8s.io/pause:3.10".to_string()];
        let want = Want::Only(&wanted);
        let none = docker_has(&[]);
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
        let present = docker_has(&[("registry.k8s.io/pause:3.10", ID_B)]);
        let plan_present = plan(&archive(&["registry.k8s.io/pause:3.10"]), want, &present);
        assert_eq!(plan_present.unwrap(), Plan::Present);
    }

    #[test]
    fn a_load_never_re_points_a_name_docker_has_unless_told() {
        let any = Want::Any { all: false };
        let mixed = archive(&["kinit.test/new:1", "nginx:latest"]);
        // nginx:latest names another image here: loading would re-point it.
        let other = docker_has(&[("nginx:latest", ID_B)]);
        let err = plan(&mixed, any, &other).unwrap_err().to_string();
        assert!(
            err.contains(
                "would re-point nginx:latest, which Docker has as another image, to load kinit.test/new:1"
            ),
            "{err}"
        );
        assert!(err.contains("--all"), "{err}");
        assert_eq!(
            plan(&mixed, Want::Any { all: true }, &other).unwrap(),
            Plan::Load
        );
        // The same image under that name (one of an archive's names untagged by the
        // kubelet's image GC): loading changes no name's meaning.
        let same = docker_has(&[("nginx:latest", ID_A)]);
        assert_eq!(plan(&mixed, any, &same).unwrap(), Plan::Load);
        let fresh = archive(&["kinit.test/new:1"]);
        assert_eq!(plan(&fresh, any, &other).unwrap(), Plan::Load);
        let old = archive(&["nginx:latest"]);
        assert_eq!(plan(&old, any, &other).unwrap(), Plan::Present);
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
