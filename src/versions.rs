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

/// The addons' images (`kinit addons`) as their projects publish them, registry included.
pub const LOCAL_PATH_PROVISIONER_IMAGE: &str = "docker.io/rancher/local-path-provisioner";
pub const METRICS_SERVER_IMAGE: &str = "registry.k8s.io/metrics-server/metrics-server";
pub const TRAEFIK_IMAGE: &str = "docker.io/library/traefik";
pub const KUBE_ROUTER_IMAGE: &str = "docker.io/cloudnativelabs/kube-router";

/// The upstream images a cluster runs, under one repository: the upstream registries, or
/// a mirror holding them under the same paths (kubeadm's `imageRepository`). A mirror
/// holds every image under its upstream path less the registry host, whichever registry
/// that is: registry.k8s.io/pause:3.10.2 is `<mirror>/pause:3.10.2`, and
/// docker.io/rancher/local-path-provisioner:v0.0.30 is
/// `<mirror>/rancher/local-path-provisioner:v0.0.30` (as kubeadm keeps the path of its
/// images when it rewrites their repository).
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

    /// The storage addon's provisioner, also the image of its helper pods.
    pub fn local_path_provisioner(&self) -> String {
        self.addon(LOCAL_PATH_PROVISIONER_IMAGE, LOCAL_PATH_PROVISIONER_VERSION)
    }

    pub fn metrics_server(&self) -> String {
        self.addon(METRICS_SERVER_IMAGE, METRICS_SERVER_VERSION)
    }

    /// The ingress addon's controller.
    pub fn traefik(&self) -> String {
        self.addon(TRAEFIK_IMAGE, TRAEFIK_VERSION)
    }

    /// The pod network between hosts and its NetworkPolicy engine.
    pub fn kube_router(&self) -> String {
        self.addon(KUBE_ROUTER_IMAGE, KUBE_ROUTER_VERSION)
    }

    /// An addon's upstream image, or its path under the mirror.
    fn addon(&self, upstream: &str, tag: &str) -> String {
        match self.repository.as_str() {
            UPSTREAM_REPOSITORY => format!("{upstream}:{tag}"),
            mirror => format!("{mirror}/{}:{tag}", without_registry(upstream)),
        }
    }

    /// Every addon's image, enabled or not (`kinit images list`, the bundle).
    pub fn addons(&self) -> Vec<String> {
        vec![
            self.local_path_provisioner(),
            self.metrics_server(),
            self.traefik(),
        ]
    }

    /// Those a joined host runs itself.
    pub fn node(&self) -> Vec<String> {
        vec![self.pause(), self.kube("kube-proxy"), self.kube_router()]
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
            self.kube_router(),
            self.coredns(),
        ]
    }
}

/// `registry.k8s.io/metrics-server/metrics-server` → `metrics-server/metrics-server`.
pub fn without_registry(image: &str) -> &str {
    image.split_once('/').map_or(image, |(_, path)| path)
}

/// The name Docker lists an image by: Docker Hub's host (and its `library/`) left out.
pub fn docker_name(image: &str) -> &str {
    image
        .strip_prefix("docker.io/")
        .map(|rest| rest.strip_prefix("library/").unwrap_or(rest))
        .unwrap_or(image)
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
        assert_eq!(mirror.all().len(), 8);
        assert_eq!(
            mirror.kube_router(),
            format!("127.0.0.1:5000/k8s/cloudnativelabs/kube-router:{KUBE_ROUTER_VERSION}")
        );
        // A joined host runs the pause image, kube-proxy and kube-router itself.
        assert_eq!(mirror.node().len(), 3);
        let previous = Images::new(None, SUPPORTED[1]);
        assert_eq!(
            previous.pause(),
            format!("registry.k8s.io/pause:{PREVIOUS_PAUSE_VERSION}")
        );
    }

    #[test]
    fn addon_images_keep_their_path_under_a_mirror() {
        let up = Images::default();
        assert_eq!(
            up.local_path_provisioner(),
            format!("docker.io/rancher/local-path-provisioner:{LOCAL_PATH_PROVISIONER_VERSION}")
        );
        assert_eq!(
            up.metrics_server(),
            format!("registry.k8s.io/metrics-server/metrics-server:{METRICS_SERVER_VERSION}")
        );
        let mirror = Images::new(Some("127.0.0.1:5000/k8s"), Release::default());
        assert_eq!(
            mirror.addons(),
            [
                format!(
                    "127.0.0.1:5000/k8s/rancher/local-path-provisioner:{LOCAL_PATH_PROVISIONER_VERSION}"
                ),
                format!(
                    "127.0.0.1:5000/k8s/metrics-server/metrics-server:{METRICS_SERVER_VERSION}"
                ),
                format!("127.0.0.1:5000/k8s/library/traefik:{TRAEFIK_VERSION}"),
            ]
        );
        assert_eq!(
            docker_name(&up.local_path_provisioner()),
            format!("rancher/local-path-provisioner:{LOCAL_PATH_PROVISIONER_VERSION}")
        );
        assert_eq!(docker_name("docker.io/library/traefik:v3"), "traefik:v3");
        assert_eq!(docker_name(&up.metrics_server()), up.metrics_server());
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
