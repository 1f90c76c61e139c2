//! The bring-up of `kinit up` as an ordered list of idempotent steps, one file each.
//! Every step checks what is already in place and does only what is missing.

pub mod addons;
pub mod boot;
pub mod download;
pub mod etcd;
pub mod images;
pub mod join;
pub mod kubeconfig;
pub mod kubectl;
pub mod master;
pub mod node;
pub mod pki;
pub mod preflight;
pub mod proxy;
pub mod ready;
pub mod router;
pub mod worker;

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};

use crate::cluster::Settings;
use crate::config::Sources;
use crate::docker::Docker;
use crate::download::Downloader;
use crate::layout::Layout;
use crate::versions::{Images, Release};

/// What every step works with.
pub struct Context {
    pub layout: Layout,
    pub settings: Settings,
    pub docker: Docker,
    pub sources: Sources,
    /// The upstream images, under the repository the sources name.
    pub images: Images,
    /// Where kubectl is installed.
    pub bin_dir: PathBuf,
    /// The user kubeconfig the cluster is merged into.
    pub user_kubeconfig: Option<PathBuf>,
    /// The Kubernetes release the cluster runs.
    pub release: Release,
    /// The download cache.
    pub cache: PathBuf,
    /// The node image the master runs, set by the [`node`] step.
    pub node_image: OnceLock<String>,
}

impl Context {
    /// The context of a bring-up: the release and images the settings name, Docker
    /// connected, the default download cache. `bin_dir` and `user_kubeconfig` are where
    /// kubectl and the cluster's context go (a joined host installs neither).
    pub async fn new(
        layout: Layout,
        settings: Settings,
        sources: Sources,
        bin_dir: PathBuf,
        user_kubeconfig: Option<PathBuf>,
    ) -> Result<Self> {
        let release = settings.release()?;
        let docker = Docker::connect().await?;
        let images = Images::new(settings.image_repository.as_deref(), release);
        Ok(Self {
            layout,
            settings,
            docker,
            images,
            release,
            cache: Downloader::default_cache()?,
            sources,
            bin_dir,
            user_kubeconfig,
            node_image: Default::default(),
        })
    }

    /// The node image the [`node`] step made present.
    pub fn node_image(&self) -> Result<&str> {
        self.node_image
            .get()
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the node image step has not run"))
    }
}
