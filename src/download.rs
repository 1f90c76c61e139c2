//! Release files from upstream or a mirror with the same layout (`file://`, `http://`,
//! `https://`), each checked against its SHA-256 before it is used and cached under the
//! cache directory by path. The digest a file was verified against is recorded beside it,
//! so a later run reads nothing remote for a file it has.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::fs;
use crate::progress;
use crate::release::{Artifact, GITHUB_API, UpstreamDigest};

/// Fetches release files from upstream, or from one mirror, into one cache directory.
#[derive(Debug, Clone)]
pub struct Downloader {
    mirror: Option<String>,
    cache: PathBuf,
}

/// Where a fetched file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Cached,
    Downloaded,
}

/// A verified local copy of an [`Artifact`].
#[derive(Debug, Clone)]
pub struct Download {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub how: Fetched,
    /// Where it was fetched from (its URL), or the cache.
    pub from: String,
}

impl Download {
    /// "kubelet 57.3 MiB from https://..." or "kubelet (cached)".
    pub fn describe(&self, name: &str) -> String {
        match self.how {
            Fetched::Cached => format!("{name} (cached)"),
            Fetched::Downloaded => format!("{name} {} from {}", mib(self.size), self.from),
        }
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Downloader {
    /// Files come from `mirror` when given, else from their upstream locations.
    pub fn new(mirror: Option<&str>, cache: &Path) -> Self {
        Self {
            mirror: mirror.map(|m| m.trim_end_matches('/').to_string()),
            cache: cache.to_path_buf(),
        }
    }

    /// The cache directory for downloads: `$KINIT_CACHE_DIR` when set, else
    /// /var/cache/kinit for root, else the per-user one.
    pub fn default_cache() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("KINIT_CACHE_DIR").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            // Root writes and deletes in there: never through someone's symbolic link.
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "KINIT_CACHE_DIR {} is a symbolic link; give kinit a directory",
                    dir.display()
                );
            }
            return Ok(dir);
        }
        if nix::unistd::geteuid().is_root() {
            return Ok(PathBuf::from("/var/cache/kinit"));
        }
        directories::ProjectDirs::from("", "", "kinit")
            .map(|d| d.cache_dir().to_path_buf())
            .ok_or_else(|| anyhow!("cannot find a home directory for kinit's cache"))
    }

    /// Deletes what kinit put in `cache`: the release files under their upstream paths and
    /// its own scratch files (`kinit-*`); the directory itself only when nothing else is
    /// left in it, since `KINIT_CACHE_DIR` may name a directory others use too.
    pub fn purge(cache: &Path) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(cache) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours =
                crate::release::PATH_ROOTS.contains(&name.as_ref()) || name.starts_with("kinit-");
            if !ours {
                continue;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_tree(&path)?;
            } else {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot delete {}", path.display()))?;
            }
        }
        let _ = std::fs::remove_dir(cache);
        Ok(())
    }

    /// The verified local copy of `artifact`. Nothing unverified is ever left in the cache
    /// under the file's name: a download goes to `<name>.part` and is renamed once checked.
    pub async fn fetch(&self, artifact: &Artifact) -> Result<Download> {
        let dest = self.cache.join(&artifact.path);
        let record = with_suffix(&dest, ".sha256");
        if let Some(recorded) = fs::read_optional(&record)? {
            let recorded = String::from_utf8_lossy(&recorded).trim().to_string();
            if let Ok(actual) = sha256_file(&dest).await
                && actual == recorded
            {
                return Ok(Download {
                    size: file_size(&dest)?,
                    path: dest,
                    sha256: actual,
                    how: Fetched::Cached,
                    from: "cache".into(),
                });
            }
        }
        let url = artifact.url(self.mirror.as_deref());
        let expected = self.expected_sha256(artifact, &url).await?;
        let part = with_suffix(&dest, ".part");
        fs::ensure_dir(dest.parent().unwrap_or(&self.cache))?;
        let result = self.download(&url, artifact.name, &part).await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        let actual = match sha256_file(&part).await {
            Ok(digest) => digest,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        if actual != expected {
            let _ = std::fs::remove_file(&part);
            bail!(
                "{url} does not match its published SHA-256 (expected {expected}, got {actual}); \
                 the mirror may be corrupt or incomplete"
            );
        }
        std::fs::rename(&part, &dest)
            .with_context(|| format!("cannot move {} into place", dest.display()))?;
        fs::write_file(&record, format!("{actual}\n").as_bytes(), fs::Mode::Public)?;
        Ok(Download {
            size: file_size(&dest)?,
            path: dest,
            sha256: actual,
            how: Fetched::Downloaded,
            from: url,
        })
    }

    /// A mirror publishes `<file>.sha256` beside every file; upstream does for all but
    /// cri-dockerd, whose digest GitHub's release API gives.
    async fn expected_sha256(&self, artifact: &Artifact, url: &str) -> Result<String> {
        match (&self.mirror, &artifact.upstream_digest) {
            (None, UpstreamDigest::GithubAsset { repo, tag }) => {
                github_asset_digest(GITHUB_API, repo, tag, artifact.file_name()).await
            }
            _ => {
                let sums = format!("{url}.sha256");
                let text = String::from_utf8(read_small(&sums).await?)
                    .with_context(|| format!("{sums} is not text"))?;
                parse_digest(text.split_whitespace().next().unwrap_or_default())
                    .ok_or_else(|| anyhow!("{sums} does not hold a SHA-256 digest"))
            }
        }
    }

    async fn download(&self, url: &str, name: &str, dest: &Path) -> Result<()> {
        if let Some(path) = url.strip_prefix("file://") {
            tokio::fs::copy(path, dest)
                .await
                .with_context(|| format!("cannot read {url}"))?;
            return Ok(());
        }
        let response = get(url).await?;
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

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

fn parse_digest(s: &str) -> Option<String> {
    let s = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// The SHA-256 GitHub publishes for a release asset (`"digest": "sha256:..."`).
async fn github_asset_digest(api: &str, repo: &str, tag: &str, file: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Release {
        assets: Vec<Asset>,
    }
    #[derive(Deserialize)]
    struct Asset {
        name: String,
        digest: Option<String>,
    }
    let url = format!("{api}/repos/{repo}/releases/tags/{tag}");
    let body = read_small(&url).await?;
    let release: Release =
        serde_json::from_slice(&body).with_context(|| format!("{url} is not a GitHub release"))?;
    let asset = release
        .assets
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| anyhow!("the {repo} release {tag} has no asset {file} ({url})"))?;
    asset
        .digest
        .as_deref()
        .and_then(parse_digest)
        .ok_or_else(|| anyhow!("GitHub publishes no SHA-256 for {file} of {repo} {tag} ({url})"))
}

async fn read_small(url: &str) -> Result<Vec<u8>> {
    match url.strip_prefix("file://") {
        Some(path) => tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read {url}")),
        None => Ok(get(url)
            .await?
            .bytes()
            .await
            .with_context(|| format!("cannot read {url}"))?
            .to_vec()),
    }
}

async fn get(url: &str) -> Result<reqwest::Response> {
    let response = http_client()?
        .get(url)
        .send()
        .await
        .with_context(|| unreachable_hint(url))?;
    let status = response.status();
    if !status.is_success() {
        let hint = if url.starts_with(GITHUB_API) && matches!(status.as_u16(), 403 | 429) {
            " (GitHub allows 60 unauthenticated API requests an hour per address; try again \
             later, or use --mirror)"
        } else {
            ""
        };
        bail!("cannot download {url}: the server answered {status}{hint}");
    }
    Ok(response)
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("kinit/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        // A stalled server fails the run instead of hanging it.
        .read_timeout(Duration::from_secs(60))
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

    /// A file mirror holding kubectl, an empty cache, and a downloader reading that mirror.
    struct Fixture {
        mirror: tempfile::TempDir,
        cache: tempfile::TempDir,
        kubectl: Artifact,
        downloader: Downloader,
    }

    /// kubectl on the mirror is `content`, published with `digest` (`None`: its real one);
    /// the mirror's URL is spelled with `trailing` after its path ("/" or "").
    fn fixture(content: &[u8], digest: Option<&str>, trailing: &str) -> Fixture {
        let mirror = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let kubectl = Artifact::kubectl("v1.36.3");
        mirror_with(mirror.path(), &kubectl.path, content, digest);
        let url = format!("file://{}{trailing}", mirror.path().display());
        let downloader = Downloader::new(Some(&url), cache.path());
        Fixture {
            mirror,
            cache,
            kubectl,
            downloader,
        }
    }

    #[tokio::test]
    async fn fetches_verifies_and_caches_from_a_file_mirror() {
        let f = fixture(b"#!/bin/sh\necho kubectl\n", None, "/");
        let (d, kubectl) = (&f.downloader, &f.kubectl);
        let got = d.fetch(kubectl).await.unwrap();
        assert_eq!(got.how, Fetched::Downloaded);
        assert_eq!(got.size, 23);
        assert_eq!(
            std::fs::read(&got.path).unwrap(),
            b"#!/bin/sh\necho kubectl\n"
        );
        // The second run reads nothing remote: the mirror may be gone.
        drop(f.mirror);
        let again = d.fetch(kubectl).await.unwrap();
        assert_eq!(again.how, Fetched::Cached);
        assert_eq!(again.sha256, got.sha256);
    }

    #[tokio::test]
    async fn a_wrong_digest_is_refused_and_nothing_is_cached() {
        let f = fixture(b"tampered", Some(&"0".repeat(64)), "");
        let (d, kubectl, cache) = (&f.downloader, &f.kubectl, &f.cache);
        let err = format!("{:#}", d.fetch(kubectl).await.unwrap_err());
        assert!(
            err.contains("does not match its published SHA-256"),
            "{err}"
        );
        let dest = cache.path().join(&kubectl.path);
        assert!(!dest.exists());
        assert!(!with_suffix(&dest, ".part").exists());
        assert!(!with_suffix(&dest, ".sha256").exists());

        let missing = format!(
            "{:#}",
            d.fetch(&Artifact::kubelet("v9.9.9")).await.unwrap_err()
        );
        assert!(missing.contains("cannot read file://"), "{missing}");
    }

    #[tokio::test]
    async fn a_corrupted_cache_file_is_fetched_again_and_purge_keeps_foreign_files() {
        let f = fixture(b"kubectl", None, "");
        let (d, kubectl, cache, mirror) = (&f.downloader, &f.kubectl, &f.cache, &f.mirror);
        let first = d.fetch(kubectl).await.unwrap();
        std::fs::write(&first.path, b"bit rot").unwrap();
        let again = d.fetch(kubectl).await.unwrap();
        assert_eq!(again.how, Fetched::Downloaded);
        assert_eq!(std::fs::read(&again.path).unwrap(), b"kubectl");

        let sums = mirror.path().join(format!("{}.sha256", kubectl.path));
        std::fs::write(&sums, "not-a-digest").unwrap();
        std::fs::remove_file(&again.path).unwrap();
        let err = format!("{:#}", d.fetch(kubectl).await.unwrap_err());
        assert!(err.contains("does not hold a SHA-256 digest"), "{err}");

        std::fs::write(cache.path().join("kinit-node-x.tar"), b"").unwrap();
        std::fs::write(cache.path().join("someone-elses"), b"").unwrap();
        Downloader::purge(cache.path()).unwrap();
        let left: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["someone-elses"]);
    }

    /// One canned HTTP response on a loopback port, standing in for api.github.com.
    async fn serve_once(body: &'static str) -> String {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).await.unwrap();
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn github_asset_digests_are_read_from_the_release_api() {
        crate::tls::install_crypto_provider();
        let digest = "a".repeat(64);
        let body: &'static str = Box::leak(
            format!(
                r#"{{"tag_name":"v0.4.6","assets":[{{"name":"other.tgz","digest":null}},{{"name":"cri-dockerd-0.4.6.amd64.tgz","digest":"sha256:{digest}"}}]}}"#
            )
            .into_boxed_str(),
        );
        let api = serve_once(body).await;
        let got = github_asset_digest(
            &api,
            "Mirantis/cri-dockerd",
            "v0.4.6",
            "cri-dockerd-0.4.6.amd64.tgz",
        )
        .await
        .unwrap();
        assert_eq!(got, digest);
        let api = serve_once(body).await;
        let err = github_asset_digest(&api, "Mirantis/cri-dockerd", "v0.4.6", "other.tgz")
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("publishes no SHA-256"),
            "{err:#}"
        );
    }
}
