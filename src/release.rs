//! The upstream release files kinit assembles its node image from, and where each lives:
//! the kubelet and kubectl on dl.k8s.io, cri-dockerd and the CNI plugins on their GitHub
//! release pages. A mirror serves all of them under the same paths below one base URL, so
//! an offline bundle, an HTTP mirror and the internet are one code path.

use crate::versions;

/// Kubernetes' release server.
pub const DL_K8S_IO: &str = "https://dl.k8s.io";
/// GitHub's release downloads (`<owner>/<repo>/releases/download/<tag>/<file>`).
pub const GITHUB: &str = "https://github.com";
/// GitHub's REST API, which publishes a SHA-256 for every release asset.
pub const GITHUB_API: &str = "https://api.github.com";

/// The CNI plugins the node's pod network uses (`manifests/master/cni.conflist`).
pub const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// The first parts of every artifact's path: what a download cache or a mirror holds.
pub const PATH_ROOTS: [&str; 3] = ["release", "Mirantis", "containernetworking"];

/// Kubernetes' name for this machine's architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// How upstream publishes a file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamDigest {
    /// In `<file>.sha256` beside it (dl.k8s.io, the CNI plugins).
    Beside,
    /// Only in GitHub's release API (cri-dockerd publishes no checksum file).
    GithubAsset { repo: &'static str, tag: String },
}

/// One release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// What it is, for messages: "kubelet", "cri-dockerd", "CNI plugins".
    pub name: &'static str,
    /// Its path below the upstream base URL, and below a mirror's.
    pub path: String,
    upstream: &'static str,
    pub upstream_digest: UpstreamDigest,
}

impl Artifact {
    fn kubernetes(name: &'static str, version: &str) -> Self {
        Self {
            name,
            path: format!("release/{version}/bin/linux/{}/{name}", arch()),
            upstream: DL_K8S_IO,
            upstream_digest: UpstreamDigest::Beside,
        }
    }

    pub fn kubelet(kubernetes: &str) -> Self {
        Self::kubernetes("kubelet", kubernetes)
    }

    pub fn kubectl(kubernetes: &str) -> Self {
        Self::kubernetes("kubectl", kubernetes)
    }

    /// `cri-dockerd-0.4.6.amd64.tgz`, holding `cri-dockerd/cri-dockerd`.
    pub fn cri_dockerd(version: &str) -> Self {
        let bare = version.trim_start_matches('v');
        Self {
            name: "cri-dockerd",
            path: format!(
                "Mirantis/cri-dockerd/releases/download/{version}/cri-dockerd-{bare}.{}.tgz",
                arch()
            ),
            upstream: GITHUB,
            upstream_digest: UpstreamDigest::GithubAsset {
                repo: "Mirantis/cri-dockerd",
                tag: version.to_string(),
            },
        }
    }

    /// `cni-plugins-linux-amd64-v1.9.1.tgz`, holding `./bridge`, `./host-local`, ...
    pub fn cni_plugins(version: &str) -> Self {
        Self {
            name: "CNI plugins",
            path: format!(
                "containernetworking/plugins/releases/download/{version}/cni-plugins-linux-{}-{version}.tgz",
                arch()
            ),
            upstream: GITHUB,
            upstream_digest: UpstreamDigest::Beside,
        }
    }

    /// The file's URL: below the mirror when there is one, else upstream.
    pub fn url(&self, mirror: Option<&str>) -> String {
        format!("{}/{}", mirror.unwrap_or(self.upstream), self.path)
    }

    /// The file's name, the last part of its path.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The files a node of `kubernetes` is assembled from.
pub fn node_artifacts(kubernetes: &str) -> NodeArtifacts {
    NodeArtifacts {
        kubelet: Artifact::kubelet(kubernetes),
        cri_dockerd: Artifact::cri_dockerd(versions::CRI_DOCKERD_VERSION),
        cni_plugins: Artifact::cni_plugins(versions::CNI_PLUGINS_VERSION),
    }
}

#[derive(Debug, Clone)]
pub struct NodeArtifacts {
    pub kubelet: Artifact,
    pub cri_dockerd: Artifact,
    pub cni_plugins: Artifact,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_and_mirror_urls_share_the_path() {
        let a = arch();
        let kubelet = Artifact::kubelet("v1.36.3");
        assert_eq!(
            kubelet.url(None),
            format!("https://dl.k8s.io/release/v1.36.3/bin/linux/{a}/kubelet")
        );
        assert_eq!(
            kubelet.url(Some("http://127.0.0.1:8080")),
            format!("http://127.0.0.1:8080/release/v1.36.3/bin/linux/{a}/kubelet")
        );
        assert_eq!(
            Artifact::cri_dockerd("v0.4.6").url(None),
            format!(
                "https://github.com/Mirantis/cri-dockerd/releases/download/v0.4.6/cri-dockerd-0.4.6.{a}.tgz"
            )
        );
        let cni = Artifact::cni_plugins("v1.9.1");
        assert_eq!(
            cni.url(Some("file:///srv/mirror")),
            format!(
                "file:///srv/mirror/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-{a}-v1.9.1.tgz"
            )
        );
        assert_eq!(cni.file_name(), format!("cni-plugins-linux-{a}-v1.9.1.tgz"));
        for artifact in [kubelet, Artifact::cri_dockerd("v0.4.6"), cni] {
            let root = artifact.path.split('/').next().unwrap();
            assert!(PATH_ROOTS.contains(&root), "{root}");
        }
    }
}
