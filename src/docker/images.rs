//! Images on the engine: used as they are, pulled with a progress bar, loaded from
//! archives, removed when they are kinit's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListContainersOptions, ListImagesOptions,
    RemoveImageOptions,
};
use futures_util::StreamExt;
use tracing::debug;

use super::{Docker, Error};
use crate::progress;

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    Local,
    Pulled,
}

impl Docker {
    /// Makes `image` available: used as it is when the engine has it under that name,
    /// otherwise pulled with a progress bar.
    pub async fn ensure_image(&self, image: &str) -> Result<ImageSource> {
        if self.has_image(image).await? {
            return Ok(ImageSource::Local);
        }
        self.pull(image).await?;
        Ok(ImageSource::Pulled)
    }

    async fn pull(&self, image: &str) -> Result<()> {
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut stream = self.api.create_image(Some(options), None, None);
        let bar = progress::bytes_bar(&format!("Pulling {image}"));
        // Bytes done and total, per layer: the engine reports each layer on its own.
        let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
        let result = async {
            while let Some(item) = stream.next().await {
                let info = item?;
                if let (Some(id), Some(detail)) = (info.id, info.progress_detail)
                    && let (Some(current), Some(total)) = (detail.current, detail.total)
                {
                    layers.insert(id, (current, total));
                    let (done, all) = layers
                        .values()
                        .fold((0, 0), |(d, a), (c, t)| (d + c, a + t));
                    bar.set_length(all.max(0) as u64);
                    bar.set_position(done.max(0) as u64);
                }
            }
            Ok::<(), bollard::errors::Error>(())
        }
        .await;
        bar.finish_and_clear();
        result.map_err(|e| {
            anyhow!(
                "cannot pull {image}: {e}; on a host without registry access, load the image \
                 into Docker first (`docker load -i <archive>`) under this exact name"
            )
        })
    }

    /// Removes kinit's node images: those carrying `label` whose every tag is in one of
    /// `repositories` (an image built `FROM` one inherits the label, not the name), but the
    /// one tagged `keep`. An image a container still uses stays. Returns the tags removed.
    pub async fn remove_labelled_images(
        &self,
        label: &str,
        repositories: &[&str],
        keep: Option<&str>,
    ) -> Result<Vec<String>> {
        let prefixes: Vec<String> = repositories.iter().map(|r| format!("{r}:")).collect();
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string()],
            )])),
            ..Default::default()
        };
        let images = self
            .api
            .list_images(Some(options))
            .await
            .context("cannot list images")?;
        let mut removed = Vec::new();
        for image in images {
            let ours = !image.repo_tags.is_empty()
                && image
                    .repo_tags
                    .iter()
                    .all(|t| prefixes.iter().any(|p| t.starts_with(p.as_str())));
            if !ours || keep.is_some_and(|k| image.repo_tags.iter().any(|t| t == k)) {
                continue;
            }
            match self
                .api
                .remove_image(&image.id, None::<RemoveImageOptions>, None)
                .await
            {
                Ok(_) => removed.extend(image.repo_tags),
                Err(e) => debug!("kept the image {}: {e}", image.id),
            }
        }
        Ok(removed)
    }

    /// The IDs of every image the engine has.
    pub async fn image_ids(&self) -> Result<HashSet<String>> {
        let images = self
            .api
            .list_images(None::<ListImagesOptions>)
            .await
            .context("cannot list images")?;
        Ok(images.into_iter().map(|i| i.id).collect())
    }

    /// The ID of the image the engine has under `image`, if any.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.api.inspect_image(image).await.map_err(Error::from) {
            Ok(found) => Ok(found.id),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot look up the image {image}")),
        }
    }

    /// Removes each image of `ids` that no container, running or not, uses: every tag of
    /// it. An ID the engine no longer has is skipped. Returns what it removed, by tag (by ID
    /// for an untagged image).
    pub async fn remove_unused_images(&self, ids: &BTreeSet<String>) -> Result<Vec<String>> {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let used: HashSet<String> = self
            .api
            .list_containers(Some(options))
            .await
            .context("cannot list containers")?
            .into_iter()
            .filter_map(|c| c.image_id)
            .collect();
        let mut removed = Vec::new();
        for id in ids.iter().filter(|id| !used.contains(*id)) {
            let tags = match self.api.inspect_image(id).await.map_err(Error::from) {
                Ok(image) => image.repo_tags.unwrap_or_default(),
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot look up the image {id}")),
            };
            // Forced: an image under two names is removed only so. No container uses it.
            let options = RemoveImageOptions {
                force: true,
                ..Default::default()
            };
            match self.api.remove_image(id, Some(options), None).await {
                Ok(_) if tags.is_empty() => removed.push(id.clone()),
                Ok(_) => removed.extend(tags),
                Err(e) => debug!("kept the image {id}: {e}"),
            }
        }
        Ok(removed)
    }

    /// Whether the engine has `image` under that name.
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        match self.api.inspect_image(image).await.map_err(Error::from) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look up the image {image}")),
        }
    }

    /// Loads a `docker save` archive, streaming it from disk.
    pub async fn load_archive(&self, path: &Path) -> Result<()> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let body = tokio_util::io::ReaderStream::new(file);
        let mut stream = self
            .api
            .import_image_stream(ImportImageOptions::default(), body, None);
        while let Some(item) = stream.next().await {
            item.with_context(|| format!("Docker cannot load {}", path.display()))?;
        }
        Ok(())
    }
}

/// The image IDs in a record file, one a line; a line that is not an image ID (a hand edit,
/// a torn write) is ignored, and a missing file is an empty record.
pub fn read_image_ids(path: &Path) -> Result<BTreeSet<String>> {
    let bytes = crate::fs::read_optional(path)?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|line| is_image_id(line))
        .map(str::to_owned)
        .collect())
}

/// Adds `id` to the record file at `path` (rewritten whole, atomically, readable by root
/// only); whether it was new.
pub fn record_image_id(path: &Path, id: &str) -> Result<bool> {
    let mut ids = read_image_ids(path)?;
    if !is_image_id(id) || !ids.insert(id.to_owned()) {
        return Ok(false);
    }
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    crate::fs::write_file(path, text.as_bytes(), crate::fs::Mode::Private)?;
    Ok(true)
}

/// `sha256:` and 64 lower-case hex digits, as the engine names an image.
pub fn is_image_id(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_keeps_image_ids_only_and_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pulled");
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert!(read_image_ids(&path).unwrap().is_empty());
        assert!(record_image_id(&path, &b).unwrap());
        assert!(record_image_id(&path, &a).unwrap());
        assert!(!record_image_id(&path, &a).unwrap(), "recorded twice");
        assert!(!record_image_id(&path, "nginx:1.27").unwrap(), "a name");
        std::fs::write(&path, format!("{a}\ntorn-wri\n{b}\nsha256:ABC\n")).unwrap();
        assert_eq!(
            read_image_ids(&path)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [a, b]
        );
    }
}
