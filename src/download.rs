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

/// The most a release file may be (kubelet and kubectl are under 100 MiB): a server
/// that sends more is refused before it fills the disk.
const MAX_FILE: u64 = 1 << 30;
/// The most a digest file or a release's JSON may be.
const MAX_SMALL: u64 = 4 << 20;

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
    /// Says once per process when the mirror is plain HTTP: its files are checked against
    /// digests it serves itself, the same way, so anyone on the path could change both.
    pub fn warn_if_plain_http(&self) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if let Some(mirror) = self.mirror.as_deref().filter(|m| m.starts_with("http://")) {
            WARNED.call_once(|| {
                tracing::warn!(
                    "the mirror {mirror} is plain HTTP: each file is checked against the \
                     .sha256 beside it, which comes the same unprotected way; use https:// \
                     or file:// unless the network to it is yours"
                );
            });
        }
    }

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
            check_cache_dir(&dir, nix::unistd::geteuid().as_raw())?;
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
                digest_in_sums(&read_small(&sums).await?)
                    .ok_or_else(|| anyhow!("{sums} does not hold a SHA-256 digest"))
            }
        }
    }

    async fn download(&self, url: &str, name: &str, dest: &Path) -> Result<()> {
        let mut file = tokio::fs::File::from_std(fs::create_fresh(dest, fs::Mode::Public)?);
        if let Some(path) = url.strip_prefix("file://") {
            let mut source = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot read {url}"))?;
            tokio::io::copy(&mut source, &mut file)
                .await
                .with_context(|| format!("cannot copy {url} to {}", dest.display()))?;
            return Ok(());
        }
        let response = get(url).await?;
        let too_big = || anyhow!("{url} is larger than {MAX_FILE} bytes: not a release file");
        if response.content_length().is_some_and(|n| n > MAX_FILE) {
            return Err(too_big());
        }
        let bar = progress::bytes_bar(&format!("Downloading {name}"));
        bar.set_length(response.content_length().unwrap_or(0));
        let mut body = response.bytes_stream();
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("the download of {url} broke off"))?;
            received += chunk.len() as u64;
            if received > MAX_FILE {
                bar.finish_and_clear();
                return Err(too_big());
            }
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

/// A cache directory the user named: kinit writes, deletes and packs what is in it (the
/// kubelet goes into the node image), so nobody but the user running kinit may change it:
/// not through a symbolic link, not as its owner, not by a group or world write bit. A
/// missing one is made by kinit, as its own.
fn check_cache_dir(dir: &Path, me: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read KINIT_CACHE_DIR {}", dir.display()));
        }
    };
    let named = format!("KINIT_CACHE_DIR {}", dir.display());
    if meta.file_type().is_symlink() {
        bail!("{named} is a symbolic link; give kinit a directory");
    }
    if !meta.is_dir() {
        bail!("{named} is not a directory");
    }
    if meta.uid() != me {
        bail!(
            "{named} belongs to uid {}, not to the user running kinit (uid {me}), who could \
             then have files swapped under it; give kinit a directory of its own",
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{named} may be written by others (mode {:o}); `chmod go-w` it, or give kinit \
             another directory",
            meta.mode() & 0o7777
        );
    }
    Ok(())
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

/// The digest a `<file>.sha256` holds: the first word, as `sha256sum` writes it (`<hex>
/// <name>`) or alone, in lower case (fuzzed: fuzz/fuzz_targets/sha256_file.rs).
pub fn digest_in_sums(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    parse_digest(text.split_whitespace().next()?)
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

/// A digest file or a release's JSON, at most [`MAX_SMALL`] bytes.
async fn read_small(url: &str) -> Result<Vec<u8>> {
    let too_big = || {
        anyhow!(
            "{url} is larger than {} bytes: not what it should be",
            MAX_SMALL
        )
    };
    if let Some(path) = url.strip_prefix("file://") {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot read {url}"))?;
        let mut bytes = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(
            &mut tokio::io::AsyncReadExt::take(file, MAX_SMALL + 1),
            &mut bytes,
        )
        .await
        .with_context(|| format!("cannot read {url}"))?;
        return if read as u64 > MAX_SMALL {
            Err(too_big())
        } else {
            Ok(bytes)
        };
    }
    let response = get(url).await?;
    if response.content_length().is_some_and(|n| n > MAX_SMALL) {
        return Err(too_big());
    }
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.with_context(|| format!("cannot read {url}"))?);
        if bytes.len() as u64 > MAX_SMALL {
            return Err(too_big());
        }
    }
    Ok(bytes)
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
mod tests;
