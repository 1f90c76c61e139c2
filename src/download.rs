//! Binaries from a release server or a mirror with the same layout (`file://`, `http://`,
//! `https://`), each checked against the SHA-256 published beside it (`<file>.sha256`) and
//! cached under the cache directory by path, so a second run reads nothing remote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::fs;
use crate::progress;

/// Fetches files from one base URL into one cache directory.
#[derive(Debug, Clone)]
pub struct Downloader {
    base: String,
    cache: PathBuf,
}

/// Where a fetched file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Cached,
    Downloaded,
}

impl Downloader {
    pub fn new(base: &str, cache: &Path) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            cache: cache.to_path_buf(),
        }
    }

    /// The cache directory for downloads: /var/cache/kinit for root, else the per-user one.
    pub fn default_cache() -> Result<PathBuf> {
        if nix::unistd::geteuid().is_root() {
            return Ok(PathBuf::from("/var/cache/kinit"));
        }
        directories::ProjectDirs::from("", "", "kinit")
            .map(|d| d.cache_dir().to_path_buf())
            .ok_or_else(|| anyhow!("cannot find a home directory for kinit's cache"))
    }

    fn url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    /// The verified local copy of `rel` (a path like `release/v1.36.3/bin/linux/amd64/kubectl`).
    pub async fn fetch(&self, rel: &str) -> Result<(PathBuf, Fetched)> {
        let expected = self.expected_sha256(rel).await?;
        let dest = self.cache.join(rel);
        if sha256_file(&dest).await.ok().as_deref() == Some(expected.as_str()) {
            return Ok((dest, Fetched::Cached));
        }
        let part = dest.with_extension("part");
        fs::ensure_dir(dest.parent().unwrap_or(&self.cache))?;
        self.download(rel, &part).await?;
        let actual = sha256_file(&part).await?;
        if actual != expected {
            let _ = std::fs::remove_file(&part);
            bail!(
                "{} does not match its published SHA-256 (expected {expected}, got {actual}); \
                 the mirror may be corrupt or incomplete",
                self.url(rel)
            );
        }
        std::fs::rename(&part, &dest)
            .with_context(|| format!("cannot move {} into place", dest.display()))?;
        Ok((dest, Fetched::Downloaded))
    }

    async fn expected_sha256(&self, rel: &str) -> Result<String> {
        let url = self.url(&format!("{rel}.sha256"));
        let text = String::from_utf8(self.read_small(&url).await?)
            .with_context(|| format!("{url} is not text"))?;
        let digest = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{url} does not hold a SHA-256 digest");
        }
        Ok(digest)
    }

    async fn read_small(&self, url: &str) -> Result<Vec<u8>> {
        match url.strip_prefix("file://") {
            Some(path) => tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {url}")),
            None => {
                let response = http_client()?
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .with_context(|| unreachable_hint(url))?;
                Ok(response
                    .bytes()
                    .await
                    .with_context(|| format!("cannot read {url}"))?
                    .to_vec())
            }
        }
    }

    async fn download(&self, rel: &str, dest: &Path) -> Result<()> {
        let url = self.url(rel);
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if let Some(path) = url.strip_prefix("file://") {
            tokio::fs::copy(path, dest)
                .await
                .with_context(|| format!("cannot copy {url}"))?;
            return Ok(());
        }
        let response = http_client()?
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| unreachable_hint(&url))?;
        let bar = progress::bytes_bar(&format!("Downloading {name}"));
        bar.set_length(response.content_length().unwrap_or(0));
        let mut file = tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("the download of {url} broke off"))?;
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", dest.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await?;
        bar.finish_and_clear();
        Ok(())
    }
}

fn http_client() -> Result<reqwest::Client> {
    crate::health::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .build()
        .context("cannot set up an HTTP client")
}

fn unreachable_hint(url: &str) -> String {
    format!(
        "cannot download {url}; on a host without internet access, point kinit at a mirror or an offline bundle (--mirror file:///path or --bundle DIR)"
    )
}

pub async fn sha256_file(path: &Path) -> Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<String> {
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut hash = Sha256::new();
        std::io::copy(&mut file, &mut hash)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    })
    .await
    .context("the hashing task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror_with(dir: &Path, rel: &str, content: &[u8], digest: Option<&str>) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        let real: String = Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join(format!("{rel}.sha256")), digest.unwrap_or(&real)).unwrap();
    }

    #[tokio::test]
    async fn fetches_verifies_and_caches_from_a_file_mirror() {
        let mirror = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let rel = "release/v1.36.3/bin/linux/amd64/kubectl";
        mirror_with(mirror.path(), rel, b"#!/bin/sh\necho kubectl\n", None);
        let d = Downloader::new(
            &format!("file://{}/", mirror.path().display()),
            cache.path(),
        );
        let (path, how) = d.fetch(rel).await.unwrap();
        assert_eq!(how, Fetched::Downloaded);
        assert_eq!(std::fs::read(&path).unwrap(), b"#!/bin/sh\necho kubectl\n");
        assert_eq!(d.fetch(rel).await.unwrap().1, Fetched::Cached);
    }

    #[tokio::test]
    async fn a_wrong_digest_is_refused_and_nothing_is_cached() {
        let mirror = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let rel = "release/v1.36.3/bin/linux/amd64/kubectl";
        mirror_with(mirror.path(), rel, b"tampered", Some(&"0".repeat(64)));
        let d = Downloader::new(&format!("file://{}", mirror.path().display()), cache.path());
        let err = format!("{:#}", d.fetch(rel).await.unwrap_err());
        assert!(
            err.contains("does not match its published SHA-256"),
            "{err}"
        );
        assert!(!cache.path().join(rel).exists());
        assert!(!cache.path().join(rel).with_extension("part").exists());

        let missing = format!("{:#}", d.fetch("release/none").await.unwrap_err());
        assert!(missing.contains("cannot read file://"), "{missing}");
    }
}
