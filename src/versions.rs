//! Pinned component versions, generated at build time from `scripts/versions.env`, and the
//! names of the upstream images at those versions.

include!(concat!(env!("OUT_DIR"), "/versions.rs"));

/// Where upstream publishes the images kinit runs.
pub const UPSTREAM_REPOSITORY: &str = "registry.k8s.io";

/// The upstream images a cluster runs, under one repository: registry.k8s.io, or a
/// mirror holding them under the same paths (kubeadm's `imageRepository`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    repository: String,
}

impl Default for Images {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Images {
    pub fn new(repository: Option<&str>) -> Self {
        Self {
            repository: repository.unwrap_or(UPSTREAM_REPOSITORY).to_string(),
        }
    }

    pub fn etcd(&self) -> String {
        format!("{}/etcd:{ETCD_IMAGE_TAG}", self.repository)
    }

    /// A Kubernetes image (kube-apiserver, kube-proxy, ...) at the pinned version.
    pub fn kube(&self, name: &str) -> String {
        format!("{}/{name}:{KUBERNETES_VERSION}", self.repository)
    }

    pub fn coredns(&self) -> String {
        format!("{}/coredns/coredns:{COREDNS_VERSION}", self.repository)
    }

    pub fn pause(&self) -> String {
        format!("{}/pause:{PAUSE_VERSION}", self.repository)
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
        let mirror = Images::new(Some("127.0.0.1:5000/k8s"));
        assert_eq!(
            mirror.coredns(),
            format!("127.0.0.1:5000/k8s/coredns/coredns:{COREDNS_VERSION}")
        );
        assert_eq!(
            mirror.kube("kube-proxy"),
            format!("127.0.0.1:5000/k8s/kube-proxy:{KUBERNETES_VERSION}")
        );
        assert_eq!(mirror.all().len(), 7);
    }
}
