//! The optional parts of a cluster that `kinit addons` turns on and off, each a set of
//! objects applied through the API from data files under `manifests/addons/<name>/`:
//! `storage` (a default StorageClass backed by rancher/local-path-provisioner, volumes
//! under the state directory), `metrics-server` (`kubectl top`, HPAs) and `load-balancer`
//! (LoadBalancer Services on the node's address, [`crate::service_lb`]), and `ingress`
//! (Traefik, off by default for its memory; it needs `load-balancer`). A cluster's
//! enabled set lives in its settings; a new cluster gets [`Addon::defaults`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::manifests::{self, Manifest};
use crate::versions::Images;

/// The label every object of an addon carries, with the addon's name as its value.
pub const LABEL: &str = "kinit/addon";

/// One addon, by the name users type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addon {
    Storage,
    MetricsServer,
    LoadBalancer,
    Ingress,
}

/// The Deployment whose readiness is an addon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub namespace: &'static str,
    pub name: &'static str,
}

impl Addon {
    pub const ALL: [Addon; 4] = [
        Addon::Storage,
        Addon::MetricsServer,
        Addon::LoadBalancer,
        Addon::Ingress,
    ];

    /// What a new cluster gets when neither `--addons` nor the config file says: all but
    /// the ingress controller, whose idle memory (about 100 MiB) a cluster without
    /// Ingresses should not pay.
    pub fn defaults() -> BTreeSet<Addon> {
        [Addon::Storage, Addon::MetricsServer, Addon::LoadBalancer].into()
    }

    /// The addons it cannot work without: the ingress controller's address is its
    /// LoadBalancer Service's.
    pub fn requires(self) -> &'static [Addon] {
        match self {
            Addon::Ingress => &[Addon::LoadBalancer],
            Addon::Storage | Addon::MetricsServer | Addon::LoadBalancer => &[],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Addon::Storage => "storage",
            Addon::MetricsServer => "metrics-server",
            Addon::LoadBalancer => "load-balancer",
            Addon::Ingress => "ingress",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Addon::Storage => {
                "default StorageClass `standard`: node-local volumes (rancher/local-path-provisioner)"
            }
            Addon::MetricsServer => "resource metrics for `kubectl top` and autoscaling",
            Addon::LoadBalancer => "LoadBalancer Services on the node's address",
            Addon::Ingress => "Traefik: Ingresses on ports 80 and 443 of the node's address",
        }
    }

    /// Its data files, in the order they are applied.
    fn manifests(self) -> &'static [Manifest] {
        match self {
            Addon::Storage => &[manifests::STORAGE_PROVISIONER, manifests::STORAGE_CLASS],
            Addon::MetricsServer => &[
                manifests::METRICS_SERVER_RBAC,
                manifests::METRICS_SERVER_DEPLOYMENT,
                manifests::METRICS_SERVER_API_SERVICE,
            ],
            Addon::LoadBalancer => &[manifests::LOAD_BALANCER],
            Addon::Ingress => &[manifests::INGRESS],
        }
    }

    /// The images its pods run, besides the node image (which is never pulled).
    pub fn images(self, images: &Images) -> Vec<String> {
        match self {
            Addon::Storage => vec![images.local_path_provisioner()],
            Addon::MetricsServer => vec![images.metrics_server()],
            Addon::LoadBalancer => Vec::new(),
            Addon::Ingress => vec![images.traefik()],
        }
    }

    /// `kinit/addon=<name>`: selects every object of the addon.
    pub fn selector(self) -> String {
        format!("{LABEL}={}", self.name())
    }

    pub fn workload(self) -> Workload {
        match self {
            Addon::Storage => Workload {
                namespace: "local-path-storage",
                name: "local-path-provisioner",
            },
            Addon::MetricsServer => Workload {
                namespace: "kube-system",
                name: "metrics-server",
            },
            Addon::LoadBalancer => Workload {
                namespace: "kube-system",
                name: "kinit-service-lb",
            },
            Addon::Ingress => Workload {
                namespace: "kube-system",
                name: "traefik",
            },
        }
    }

    /// The provisioner whose PersistentVolumes hold users' data (`disable` refuses to
    /// remove it while any exists).
    pub fn provisioner(self) -> Option<&'static str> {
        match self {
            Addon::Storage => Some("rancher.io/local-path"),
            Addon::MetricsServer | Addon::LoadBalancer | Addon::Ingress => None,
        }
    }

    /// The APIService it serves, which must be available for the addon to work.
    pub fn api_service(self) -> Option<&'static str> {
        match self {
            Addon::Storage | Addon::LoadBalancer | Addon::Ingress => None,
            Addon::MetricsServer => Some("v1beta1.metrics.k8s.io"),
        }
    }

    /// Its objects as one multi-document YAML text, in the order they are applied.
    /// `node_image` is the running node's image (`kinit.invalid/node:...`), which the
    /// load-balancer addon's pod runs kinit from.
    pub fn render(self, layout: &Layout, images: &Images, node_image: &str) -> Result<String> {
        let mut out = String::new();
        for manifest in self.manifests() {
            let text = match self {
                Addon::Storage => manifest.render_text(&StorageValues {
                    image: images.local_path_provisioner(),
                    path: layout.local_volumes().display().to_string(),
                })?,
                Addon::MetricsServer => manifest.render_text(&ImageValues {
                    image: images.metrics_server(),
                })?,
                Addon::LoadBalancer => manifest.render_text(&LoadBalancerValues {
                    image: node_image.to_string(),
                    host_paths: host_library_paths(),
                })?,
                Addon::Ingress => manifest.render_text(&ImageValues {
                    image: images.traefik(),
                })?,
            };
            out.push_str(&text);
            out.push_str("\n---\n");
        }
        Ok(out)
    }

    /// Its objects in the order they are deleted: the reverse of [`Addon::render`], so
    /// what serves an API (an APIService) goes before its backend, and a namespace last.
    pub fn render_for_removal(self, layout: &Layout, images: &Images) -> Result<String> {
        // Removal goes by kind and name: which node image the pod runs does not matter.
        let text = self.render(layout, images, "")?;
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .with_context(|| format!("the {self} addon's manifests are invalid YAML"))?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        let mut out = String::new();
        for doc in docs.iter().rev() {
            out.push_str(&serde_yaml::to_string(doc).context("cannot write YAML")?);
            out.push_str("---\n");
        }
        Ok(out)
    }
}

impl fmt::Display for Addon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Addon {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s.trim())
            .ok_or_else(|| format!("unknown addon '{s}'; known addons: {}", known()))
    }
}

/// `storage, metrics-server, load-balancer, ingress`.
fn known() -> String {
    Addon::ALL.map(Addon::name).join(", ")
}

/// `addons` and every addon they require.
pub fn with_requirements(addons: &BTreeSet<Addon>) -> BTreeSet<Addon> {
    let mut all = addons.clone();
    for addon in addons {
        all.extend(addon.requires());
    }
    all
}

/// For `--addons`: a comma-separated list of addon names; empty for none.
pub fn parse_list(s: &str) -> Result<BTreeSet<Addon>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::parse)
        .collect()
}

#[derive(Serialize)]
struct StorageValues {
    image: String,
    /// The directory under which the provisioner makes one directory per volume.
    path: String,
}

/// What metrics-server's and the ingress controller's manifests take: their image.
#[derive(Serialize)]
struct ImageValues {
    image: String,
}

#[derive(Serialize)]
struct LoadBalancerValues {
    image: String,
    /// The host's library directories, for the dynamically linked kinit in the node image.
    host_paths: Vec<String>,
}

/// The directories the C library and kinit's other shared libraries live in, on any
/// Debian or Ubuntu layout (a merged /usr makes /lib a link, which the mount follows).
pub fn host_library_paths() -> Vec<String> {
    ["/usr", "/lib", "/lib64"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).is_dir())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests;
