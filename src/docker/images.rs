//! Images on the engine: used as they are, pulled with a progress bar, loaded from
//! archives, removed when they are kinit's.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListImagesOptions, RemoveImageOptions,
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

    /// Removes kinit's node images: those carrying `label` whose every tag is in
    /// `repository` (an image built `FROM` one inherits the label, not the name), but the
    /// one tagged `keep`. An image a container still uses stays. Returns the tags removed.
    pub async fn remove_labelled_images(
        &self,
        label: &str,
        repository: &str,
        keep: Option<&str>,
    ) -> Result<Vec<String>> {
        let prefix = format!("{repository}:");
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
                && image.repo_tags.iter().all(|t| t.starts_with(&prefix));
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
