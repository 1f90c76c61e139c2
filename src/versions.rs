//! Pinned component versions, generated at build time from `scripts/versions.env`, and the
//! names of the upstream images at those versions.

include!(concat!(env!("OUT_DIR"), "/versions.rs"));

/// Where upstream publishes the images kinit runs.
pub const UPSTREAM_REPOSITORY: &str = "registry.k8s.io";

/// A Kubernetes version kinit runs, with the etcd, CoreDNS and pause versions kubeadm
/// pairs with it (cmd/kubeadm/app/constants/constants.go at that tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub kubernetes: &'static str,
    pub etcd: &'static str,
    pub etcd_image_tag: &'static str,
    pub coredns: &'static str,
    pub pause: &'static str,
}

/// The versions `--kubernetes-version` accepts, the default first.
pub const SUPPORTED: [Release; 2] = [
    Release {
        kubernetes: KUBERNETES_VERSION,
        etcd: ETCD_VERSION,
        etcd_image_tag: ETCD_IMAGE_TAG,
        coredns: COREDNS_VERSION,
        pause: PAUSE_VERSION,
    },
    Release {
        kubernetes: PREVIOUS_KUBERNETES_VERSION,
        etcd: PREVIOUS_ETCD_VERSION,
        etcd_image_tag: PREVIOUS_ETCD_IMAGE_TAG,
        coredns: PREVIOUS_COREDNS_VERSION,
        pause: PREVIOUS_PAUSE_VERSION,
    },
];

impl Default for Release {
    fn default() -> Self {
        SUPPORTED[0]
    }
}

impl Release {
    /// The supported release `version` names (`v1.36.3` or `1.36.3`).
    pub fn find(version: &str) -> Result<Self, String> {
        let wanted = format!("v{}", version.trim().trim_start_matches('v'));
        SUPPORTED
            .into_iter()
            .find(|r| r.kubernetes == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = SUPPORTED.iter().map(|r| r.kubernetes).collect();
                format!(
                    "Kubernetes '{version}' is not supported by this kinit; supported: {}",
                    names.join(", ")
                )
            })
    }

    pub fn minor(&self) -> String {
        minor(self.kubernetes)
    }

    /// `v1.36.3` → 36, for settings that exist from some minor version on.
    pub fn minor_number(&self) -> u32 {
        self.kubernetes
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// `v1.36.3` → `v1.36`.
pub fn minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// For clap: a supported Kubernetes version, normalised to `v1.36.3`.
pub fn parse_kubernetes_version(s: &str) -> Result<String, String> {
    Release::find(s).map(|r| r.kubernetes.to_string())
}

/// The upstream images a cluster runs, under one repository: registry.k8s.io, or a
/// mirror holding them under the same paths (kubeadm's `imageRepository`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    repository: String,
    release: Release,
}

impl Default for Images {
    fn default() -> Self {
        Self::new(None, Release::default())
    }
}

impl Images {
    pub fn new(repository: Option<&str>, release: Release) -> Self {
        Self {
            repository: repository.unwrap_or(UPSTREAM_REPOSITORY).to_string(),
            release,
        }
    }

    pub fn etcd(&self) -> String {
        format!("{}/etcd:{}", self.repository, self.release.etcd_image_tag)
    }

    /// A Kubernetes image (kube-apiserver, kube-proxy, ...) at the release's version.
    pub fn kube(&self, name: &str) -> String {
        format!("{}/{name}:{}", self.repository, self.release.kubernetes)
    }

    pub fn coredns(&self) -> String {
        format!(
            "{}/coredns/coredns:{}",
            self.repository, self.release.coredns
        )
    }

    pub fn pause(&self) -> String {
        format!("{}/pause:{}", self.repository, self.release.pause)
    }

    /// Every one of them, in the order a cluster starts them.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.etcd(),
            self.pause(),
            self.kube("kube-apiserver"),
            self.kube("kube-controller-manager"),
            self.kube("kube-scheduler"),
            self.kube("kube-proxy"),
            self.coredns(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_keeps_the_upstream_paths() {
        let up = Images::default();
        assert_eq!(up.etcd(), format!("registry.k8s.io/etcd:{ETCD_IMAGE_TAG}"));
        let mirror = Images::new(Some("127.0.0.1:5000/k8s"), Release::default());
        assert_eq!(
            mirror.coredns(),
            format!("127.0.0.1:5000/k8s/coredns/coredns:{COREDNS_VERSION}")
        );
        assert_eq!(
            mirror.kube("kube-proxy"),
            format!("127.0.0.1:5000/k8s/kube-proxy:{KUBERNETES_VERSION}")
        );
        assert_eq!(mirror.all().len(), 7);
        let previous = Images::new(None, SUPPORTED[1]);
        assert_eq!(
            previous.pause(),
            format!("registry.k8s.io/pause:{PREVIOUS_PAUSE_VERSION}")
        );
    }

    #[test]
    fn only_supported_versions_are_accepted() {
        assert_eq!(Release::find(KUBERNETES_VERSION).unwrap(), SUPPORTED[0]);
        let bare = PREVIOUS_KUBERNETES_VERSION.trim_start_matches('v');
        assert_eq!(Release::find(bare).unwrap(), SUPPORTED[1]);
        let err = Release::find("v1.20.0").unwrap_err();
        assert!(err.contains(KUBERNETES_VERSION) && err.contains(PREVIOUS_KUBERNETES_VERSION));
        assert!(!err.contains('\n'));
        assert_ne!(SUPPORTED[0].minor(), SUPPORTED[1].minor());
        assert_eq!(Release::find("v1.36.3").unwrap().minor(), "v1.36");
    }
}
