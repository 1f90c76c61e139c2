//! Everything kinit asks of the Docker engine goes through this module: images,
//! component containers, their state and logs.
//!
//! Component containers are created from a typed [`ContainerSpec`], labelled as kinit's,
//! and carry a hash of their spec so a later `kinit up` can tell "already running as
//! asked" from "changed, replace it".
//!
//! - `spec`: the container spec, its hash and the create body made from it;
//! - `client`: applying a spec, inspecting, listing, stopping, removing, logs;
//! - `privilege`: the fallback for hosts that refuse `--privileged`;
//! - `pods`: the containers cri-dockerd made for a kubelet's pods;
//! - `images`: images used as they are, pulled or loaded;
//! - `error`: the engine's answers kinit acts on, by status code.

mod client;
mod error;
mod images;
mod pods;
mod privilege;
mod spec;
mod tool;

use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow};
use bollard::models::{SystemInfo, SystemVersion};

pub use client::{Applied, ContainerState};
pub use error::Error;
pub use images::{ImageSource, is_image_id, read_image_ids, record_image_id};
pub use pods::PodContainers;
pub use privilege::held_capabilities;
pub use spec::{
    Bind, ContainerSpec, LABEL_COMPONENT, LABEL_MANAGED, LABEL_SPEC, LOG_DRIVER, LOG_MAX_FILES,
    LOG_MAX_SIZE, Propagation, container_name, log_options, short_digest,
};

/// The engine's version and cgroup setup, for preflight and `kinit status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    /// Where the engine keeps containers (`/var/lib/docker` by default).
    pub root_dir: String,
}

impl EngineInfo {
    /// From the engine's `/version` and `/info` answers (`docker info --format '{{json .}}'`
    /// prints the latter).
    pub fn new(version: SystemVersion, info: SystemInfo) -> Self {
        Self {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            cgroup_driver: info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_default(),
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            root_dir: info
                .docker_root_dir
                .unwrap_or_else(|| "/var/lib/docker".into()),
        }
    }
}

/// A connection to the Docker engine.
pub struct Docker {
    api: bollard::Docker,
    /// Set once the engine refused a privileged container on this host.
    privileged_refused: AtomicBool,
}

impl Docker {
    /// The engine's Unix socket on this host, for containers that talk to it.
    pub fn socket_path() -> String {
        std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(String::from))
            .unwrap_or_else(|| "/var/run/docker.sock".into())
    }

    /// Connects to the engine at `DOCKER_HOST` or the default socket, agreeing on an API
    /// version both sides speak (Debian's Docker 20.10 stops at 1.41).
    pub async fn connect() -> Result<Self> {
        let endpoint =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |e: bollard::errors::Error| {
            let hint = if error::is_permission_denied(&e) {
                "run kinit with sudo, or add your user to the docker group"
            } else {
                "is Docker installed and running? (`sudo systemctl start docker`)"
            };
            anyhow!("cannot reach the Docker engine at {endpoint}: {e}; {hint}")
        };
        let api = bollard::Docker::connect_with_local_defaults().map_err(unreachable)?;
        let api = api.negotiate_version().await.map_err(unreachable)?;
        api.ping().await.map_err(unreachable)?;
        Ok(Self {
            api,
            privileged_refused: AtomicBool::new(false),
        })
    }

    /// The engine's version and cgroup setup.
    pub async fn engine_info(&self) -> Result<EngineInfo> {
        let (version, info) = (self.api.version().await, self.api.info().await);
        Ok(EngineInfo::new(
            version.context("cannot read the Docker engine's version")?,
            info.context("cannot read the Docker engine's settings")?,
        ))
    }
}
