//! Everything kinit asks of the Docker engine goes through this module: images,
//! component containers, their state and logs.
//!
//! Component containers are created from a typed [`ContainerSpec`], labelled as kinit's,
//! and carry a hash of their spec so a later `kinit up` can tell "already running as
//! asked" from "changed, replace it".

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType,
    RestartPolicy, RestartPolicyNameEnum, SystemInfo, SystemVersion,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ImportImageOptions, ListContainersOptions,
    ListImagesOptions, LogsOptions, RemoveContainerOptions, RemoveImageOptions,
    StopContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::progress;

/// Marks a container as kinit's; `kinit down` removes exactly these.
pub const LABEL_MANAGED: &str = "io.kinit.managed";
pub const LABEL_COMPONENT: &str = "io.kinit.component";
/// The hash of the [`ContainerSpec`] a container was created from.
pub const LABEL_SPEC: &str = "io.kinit.spec-hash";

/// A component container as kinit wants it. Every component runs on the host network
/// with restart policy `unless-stopped`, so a crash or a Docker restart brings it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// The container is named `kinit-<component>`.
    pub component: String,
    pub image: String,
    /// Replaces the image's entrypoint when given.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Share the host's PID namespace.
    #[serde(default)]
    pub host_pid: bool,
    /// Share the host's IPC, UTS and cgroup namespaces too: what a kubelet needs to manage
    /// pods on the host as if it ran there.
    #[serde(default)]
    pub host_namespaces: bool,
    /// Host devices passed through at the same path (`--device`).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Capabilities on top of Docker's default set, for components that need a few but not
    /// privilege (kube-proxy programs iptables).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Ask for `--privileged`; see [`Docker::apply`] for hosts that refuse it.
    #[serde(default)]
    pub privileged: bool,
}

/// A host path mounted into a component container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bind {
    pub host: String,
    pub container: String,
    #[serde(default)]
    pub read_only: bool,
    /// Mount propagation (`rshared` for the kubelet's pod volumes).
    #[serde(default)]
    pub propagation: Option<Propagation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Rshared,
    Rslave,
}

impl ContainerSpec {
    pub fn container_name(&self) -> String {
        container_name(&self.component)
    }

    /// A stable digest of the spec, stored as a label to detect changes. The log policy
    /// is part of it: a container made under another policy is made again.
    pub fn hash(&self) -> String {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.extend(format!("log:{LOG_DRIVER},{LOG_MAX_SIZE},{LOG_MAX_FILES}").bytes());
        short_digest(&bytes)
    }
}

/// Docker's default json-file driver keeps a container's log forever. Every container
/// kinit makes, and every pod container its kubelet makes (src/runtime_proxy.rs), rotates
/// instead: at most [`LOG_MAX_FILES`] files of [`LOG_MAX_SIZE`]. json-file is the driver
/// cri-dockerd reads `kubectl logs` from.
pub const LOG_DRIVER: &str = "json-file";
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILES: &str = "3";

/// The options of [`LOG_DRIVER`] that bound a container's log.
pub fn log_options() -> HashMap<String, String> {
    HashMap::from([
        ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
        ("max-file".to_string(), LOG_MAX_FILES.to_string()),
    ])
}

/// The first 12 bytes of a SHA-256, in hex: enough to tell versions of a file apart.
pub fn short_digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

pub fn container_name(component: &str) -> String {
    format!("kinit-{component}")
}

/// What [`Docker::apply`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Running already, from the same spec.
    Unchanged,
    /// Existed with the same spec but was stopped; started.
    Started,
    Created,
    /// Existed with another spec (or none); removed and created anew.
    Replaced,
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    Local,
    Pulled,
}

/// A container's state as kinit reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerState {
    pub name: String,
    pub component: Option<String>,
    pub image: String,
    /// Docker's status word: running, restarting, exited, ...
    pub status: String,
    pub running: bool,
    #[serde(skip)]
    pub spec_hash: Option<String>,
    pub pid: Option<i64>,
    pub restart_count: Option<i64>,
    pub started_at: Option<String>,
    /// Why Docker last failed to start it (a missing bind source, a mount that does not
    /// propagate), until it starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The engine's version and cgroup setup, for preflight and `kinit status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        let unreachable = |e: DockerError| {
            let hint = if e.to_string().contains("ermission denied") {
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

    pub async fn engine_info(&self) -> Result<EngineInfo> {
        let version = self
            .api
            .version()
            .await
            .context("cannot read the Docker engine's version")?;
        let info = self
            .api
            .info()
            .await
            .context("cannot read the Docker engine's settings")?;
        Ok(EngineInfo::new(version, info))
    }

    /// Makes `image` available: used as it is when the engine has it under that name,
    /// otherwise pulled with a progress bar.
    pub async fn ensure_image(&self, image: &str) -> Result<ImageSource> {
        if self.has_image(image).await? {
            return Ok(ImageSource::Local);
        }
        self.pull(image).await?;
        Ok(ImageSource::Pulled)
    }

    async fn pull(&self, image: &str) -> Result<()> {
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut stream = self.api.create_image(Some(options), None, None);
        let bar = progress::bytes_bar(&format!("Pulling {image}"));
        let mut layers: HashMap<String, (i64, i64)> = HashMap::new();
        let result = async {
            while let Some(item) = stream.next().await {
                let info = item?;
                if let (Some(id), Some(detail)) = (info.id, info.progress_detail)
                    && let (Some(current), Some(total)) = (detail.current, detail.total)
                {
                    layers.insert(id, (current, total));
                    let (done, all) = layers
                        .values()
                        .fold((0, 0), |(d, a), (c, t)| (d + c, a + t));
                    bar.set_length(all.max(0) as u64);
                    bar.set_position(done.max(0) as u64);
                }
            }
            Ok::<(), DockerError>(())
        }
        .await;
        bar.finish_and_clear();
        result.map_err(|e| {
            anyhow!(
                "cannot pull {image}: {e}; on a host without registry access, load the image \
                 into Docker first (`docker load -i <archive>`) under this exact name"
            )
        })
    }

    /// Removes kinit's node images: those carrying `label` whose every tag is in
    /// `repository` (an image built `FROM` one inherits the label, not the name), but the
    /// one tagged `keep`. An image a container still uses stays. Returns the tags removed.
    pub async fn remove_labelled_images(
        &self,
        label: &str,
        repository: &str,
        keep: Option<&str>,
    ) -> Result<Vec<String>> {
        let prefix = format!("{repository}:");
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string()],
            )])),
            ..Default::default()
        };
        let images = self
            .api
            .list_images(Some(options))
            .await
            .context("cannot list images")?;
        let mut removed = Vec::new();
        for image in images {
            let ours = !image.repo_tags.is_empty()
                && image.repo_tags.iter().all(|t| t.starts_with(&prefix));
            if !ours || keep.is_some_and(|k| image.repo_tags.iter().any(|t| t == k)) {
                continue;
            }
            match self
                .api
                .remove_image(&image.id, None::<RemoveImageOptions>, None)
                .await
            {
                Ok(_) => removed.extend(image.repo_tags),
                Err(e) => debug!("kept the image {}: {e}", image.id),
            }
        }
        Ok(removed)
    }

    /// Whether the engine has `image` under that name.
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        match self.api.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look up the image {image}")),
        }
    }

    /// Loads a `docker save` archive, streaming it from disk.
    pub async fn load_archive(&self, path: &Path) -> Result<()> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let body = tokio_util::io::ReaderStream::new(file);
        let mut stream = self
            .api
            .import_image_stream(ImportImageOptions::default(), body, None);
        while let Some(item) = stream.next().await {
            item.with_context(|| format!("Docker cannot load {}", path.display()))?;
        }
        Ok(())
    }

    /// The state of a container, or `None` when there is none by that name.
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerState>> {
        let c = match self.api.inspect_container(name, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot inspect the container {name}"));
            }
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|cfg| cfg.labels.clone())
            .unwrap_or_default();
        let state = c.state.unwrap_or_default();
        Ok(Some(ContainerState {
            name: name.to_string(),
            component: labels.get(LABEL_COMPONENT).cloned(),
            image: c.config.and_then(|cfg| cfg.image).unwrap_or_default(),
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            spec_hash: labels.get(LABEL_SPEC).cloned(),
            pid: state.pid.filter(|pid| *pid > 0),
            restart_count: c.restart_count,
            started_at: state.started_at,
            error: state.error.filter(|e| !e.is_empty()),
        }))
    }

    /// Makes the container for `spec` exist and run, doing as little as possible: a
    /// container already running from the same spec is left alone.
    ///
    /// A privileged spec asks for `--privileged` first. Hosts whose capability bounding set
    /// is short of the full set (nested VMs, LXD, some CI runners) refuse that at start; kinit
    /// then grants every capability the daemon holds, with seccomp, AppArmor and masked
    /// paths lifted, which is what privileged means there.
    pub async fn apply(&self, spec: &ContainerSpec) -> Result<Applied> {
        let name = spec.container_name();
        let hash = spec.hash();
        match self.inspect(&name).await? {
            Some(c) if c.spec_hash.as_deref() == Some(hash.as_str()) => {
                if c.running || c.status == "restarting" {
                    return Ok(Applied::Unchanged);
                }
                self.api
                    .start_container(&name, None)
                    .await
                    .with_context(|| format!("cannot start {name}"))?;
                Ok(Applied::Started)
            }
            Some(_) => {
                self.remove(&name).await?;
                self.create_and_start(spec, &hash).await?;
                Ok(Applied::Replaced)
            }
            None => {
                self.create_and_start(spec, &hash).await?;
                Ok(Applied::Created)
            }
        }
    }

    async fn create_and_start(&self, spec: &ContainerSpec, hash: &str) -> Result<()> {
        let name = spec.container_name();
        if spec.privileged && !self.privileged_refused.load(Ordering::Relaxed) {
            self.create(spec, hash, Privilege::Full).await?;
            match self.api.start_container(&name, None).await {
                Ok(()) => return Ok(()),
                Err(e) if is_capability_refusal(&e) => {
                    self.remove(&name).await?;
                    if !self.privileged_refused.swap(true, Ordering::Relaxed) {
                        info!(
                            "this host does not allow privileged containers (its capability bounding \
                             set is incomplete); granting every capability the Docker daemon holds instead"
                        );
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot start {name}")),
            }
        }
        let privilege = if spec.privileged {
            Privilege::DaemonCapabilities
        } else {
            Privilege::None
        };
        self.create(spec, hash, privilege).await?;
        self.api
            .start_container(&name, None)
            .await
            .with_context(|| format!("cannot start {name}"))
    }

    async fn create(&self, spec: &ContainerSpec, hash: &str, privilege: Privilege) -> Result<()> {
        let name = spec.container_name();
        let mut caps: Vec<String> = match privilege {
            Privilege::DaemonCapabilities => daemon_capabilities()?,
            Privilege::Full | Privilege::None => Vec::new(),
        };
        // Engines reject capability names newer than themselves (Docker 20.10 does not know
        // CAP_BPF); drop each one the engine names and try again.
        loop {
            let body = container_body(spec, hash, privilege, &caps);
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            match self.api.create_container(Some(options), body).await {
                Ok(_) => return Ok(()),
                Err(e) => match unknown_capability(&e) {
                    Some(cap) if caps.contains(&cap) => {
                        debug!("the Docker engine does not know {cap}; leaving it out");
                        caps.retain(|c| *c != cap);
                    }
                    _ => {
                        return Err(e)
                            .with_context(|| format!("cannot create the container {name}"));
                    }
                },
            }
        }
    }

    /// kinit's containers, whatever their state.
    pub async fn list(&self) -> Result<Vec<ContainerState>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .api
            .list_containers(Some(options))
            .await
            .context("cannot list containers")?;
        let mut out = Vec::new();
        for s in summaries {
            let Some(name) = s.names.and_then(|n| n.into_iter().next()) else {
                continue;
            };
            if let Some(state) = self.inspect(name.trim_start_matches('/')).await? {
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Starts an existing container; one already running is left alone.
    pub async fn start(&self, name: &str) -> Result<()> {
        match self.api.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot start {name}")),
        }
    }

    /// Stops a container, giving it `grace_seconds` to exit cleanly.
    pub async fn stop(&self, name: &str, grace_seconds: i32) -> Result<()> {
        let options = StopContainerOptions {
            t: Some(grace_seconds),
            ..Default::default()
        };
        match self.api.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_not_modified(&e) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot stop {name}")),
        }
    }

    /// Removes a container, running or not; `false` when there was none.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.api.remove_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot remove {name}")),
        }
    }

    /// A container's output, stdout and stderr interleaved as Docker stored them.
    pub fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<u32>,
    ) -> impl Stream<Item = Result<Bytes>> + use<> {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let name = name.to_string();
        self.api
            .logs(&name.clone(), Some(options))
            .map(move |item| {
                item.map(|out| out.into_bytes()).map_err(|e| {
                    if is_not_found(&e) {
                        anyhow!("there is no container {name}")
                    } else {
                        anyhow!(e)
                    }
                })
            })
    }
}

impl Docker {
    /// The last `lines` lines of a container's output, for error messages.
    pub async fn tail_logs(&self, name: &str, lines: u32) -> String {
        let chunks: Vec<Result<Bytes>> = self.logs(name, false, Some(lines)).collect().await;
        let mut text = String::new();
        for chunk in chunks {
            match chunk {
                Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Err(e) => text.push_str(&format!("(cannot read the logs of {name}: {e:#})")),
            }
        }
        text
    }
}

/// Pod containers on the engine, by the kubelet that made them.
#[derive(Debug, Default)]
pub struct PodContainers {
    /// Made by the kubelet whose cgroupRoot was asked for.
    pub ours: Vec<String>,
    /// Made by any other kubelet.
    pub foreign: Vec<String>,
}

/// Labels cri-dockerd puts on every pod container and sandbox.
const LABEL_POD_TYPE: &str = "io.kubernetes.docker.type";
const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const LABEL_POD_CONTAINER: &str = "io.kubernetes.container.name";

impl Docker {
    /// Names of the containers the kubelet made through cri-dockerd (pod sandboxes and
    /// pod containers), running or not, split by whose kubelet made them: cri-dockerd
    /// gives each one its pod's cgroup as parent, which lies under the kubelet's
    /// cgroupRoot (see [`crate::cgroup::is_kinits`]). Labels cannot tell two kubelets'
    /// pods apart; the cgroup parent can.
    pub async fn pod_containers(&self) -> Result<PodContainers> {
        let mut pods = PodContainers::default();
        for name in self
            .names_with_labels(&[LABEL_POD_TYPE.to_string()])
            .await?
        {
            let parent = match self.api.inspect_container(&name, None).await {
                Ok(c) => c
                    .host_config
                    .and_then(|h| h.cgroup_parent)
                    .unwrap_or_default(),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot inspect {name}")),
            };
            if crate::cgroup::is_kinits(&parent) {
                pods.ours.push(name);
            } else {
                pods.foreign.push(name);
            }
        }
        Ok(pods)
    }

    /// Every container, running or not, of pod containers named `container` in
    /// `namespace`, newest first.
    pub async fn pod_containers_of(&self, namespace: &str, container: &str) -> Result<Vec<String>> {
        let labels = [
            format!("{LABEL_POD_NAMESPACE}={namespace}"),
            format!("{LABEL_POD_CONTAINER}={container}"),
            format!("{LABEL_POD_TYPE}=container"),
        ];
        self.names_with_labels(&labels).await
    }

    /// The newest container of a pod container named `container` in `namespace`, so
    /// `kinit logs apiserver` finds the API server whichever pod instance runs it.
    pub async fn pod_container(&self, namespace: &str, container: &str) -> Result<Option<String>> {
        let labels = [
            format!("{LABEL_POD_NAMESPACE}={namespace}"),
            format!("{LABEL_POD_CONTAINER}={container}"),
            format!("{LABEL_POD_TYPE}=container"),
        ];
        Ok(self.names_with_labels(&labels).await?.into_iter().next())
    }

    /// Containers carrying every label filter, newest first (Docker's order).
    async fn names_with_labels(&self, labels: &[String]) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self
            .api
            .list_containers(Some(options))
            .await
            .context("cannot list containers")?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| s.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    None,
    Full,
    DaemonCapabilities,
}

fn container_body(
    spec: &ContainerSpec,
    hash: &str,
    privilege: Privilege,
    caps: &[String],
) -> ContainerCreateBody {
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_COMPONENT.to_string(), spec.component.clone()),
        (LABEL_SPEC.to_string(), hash.to_string()),
    ]);
    let mounts = spec
        .binds
        .iter()
        .map(|b| Mount {
            target: Some(b.container.clone()),
            source: Some(b.host.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(b.read_only),
            bind_options: b.propagation.map(|p| MountBindOptions {
                propagation: Some(match p {
                    Propagation::Rshared => MountBindOptionsPropagationEnum::RSHARED,
                    Propagation::Rslave => MountBindOptionsPropagationEnum::RSLAVE,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let fallback = privilege == Privilege::DaemonCapabilities;
    let host = |on: bool| on.then(|| "host".to_string());
    let devices = spec
        .devices
        .iter()
        .map(|d| DeviceMapping {
            path_on_host: Some(d.clone()),
            path_in_container: Some(d.clone()),
            cgroup_permissions: Some("rwm".into()),
        })
        .collect();
    let cap_add = if fallback {
        caps.to_vec()
    } else {
        spec.capabilities.clone()
    };
    let host_config = HostConfig {
        network_mode: Some("host".into()),
        pid_mode: host(spec.host_pid),
        ipc_mode: host(spec.host_namespaces),
        uts_mode: host(spec.host_namespaces),
        cgroupns_mode: spec
            .host_namespaces
            .then_some(HostConfigCgroupnsModeEnum::HOST),
        devices: Some(devices),
        mounts: Some(mounts),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        privileged: Some(privilege == Privilege::Full),
        cap_add: Some(cap_add),
        log_config: Some(HostConfigLogConfig {
            typ: Some(LOG_DRIVER.into()),
            config: Some(log_options()),
        }),
        security_opt: fallback.then(|| {
            ["seccomp=unconfined", "apparmor=unconfined"]
                .map(String::from)
                .to_vec()
        }),
        // What `docker run --security-opt systempaths=unconfined` does: nothing masked or
        // read-only under /proc and /sys, as in a privileged container.
        masked_paths: fallback.then(Vec::new),
        readonly_paths: fallback.then(Vec::new),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: Some(spec.args.clone()),
        env: Some(spec.env.clone()),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Capability names by bit number (linux/capability.h).
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities the Docker daemon itself holds, which is all a container can get.
/// Read from the daemon's /proc entry; kinit's own set stands in when the daemon runs
/// where kinit cannot see it.
fn daemon_capabilities() -> Result<Vec<String>> {
    let pid = ["/var/run/docker.pid", "/run/docker.pid"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    let status = pid
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .map_or_else(|| std::fs::read_to_string("/proc/self/status"), Ok)
        .context("cannot read the Docker daemon's capabilities")?;
    Ok(capabilities_from_status(&status))
}

fn capabilities_from_status(status: &str) -> Vec<String> {
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let held = mask("CapEff:") & mask("CapBnd:");
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| held & (1 << bit) != 0)
        .map(|(_, name)| format!("CAP_{name}"))
        .collect()
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_not_modified(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// runc's answer when asked for capabilities outside the host's bounding set.
fn is_capability_refusal(e: &DockerError) -> bool {
    let text = e.to_string();
    text.contains("apply caps") && text.contains("operation not permitted")
}

/// The capability named in an engine's "unknown capability" refusal.
fn unknown_capability(e: &DockerError) -> Option<String> {
    let text = e.to_string();
    let rest = &text[text.find("unknown capability")?..];
    let name = rest.split('"').nth(1)?;
    let name = name.to_ascii_uppercase();
    Some(if name.starts_with("CAP_") {
        name
    } else {
        format!("CAP_{name}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_come_from_the_effective_and_bounding_sets() {
        // CapBnd as on the test hosts: everything but CAP_SYS_RESOURCE (bit 24).
        let status = "Name:\tdockerd\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        let caps = capabilities_from_status(status);
        assert_eq!(caps.len(), 40);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
        assert!(caps.contains(&"CAP_CHECKPOINT_RESTORE".to_string()));
        let none =
            capabilities_from_status("CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n");
        assert!(none.is_empty());
    }

    #[test]
    fn recognises_engine_refusals() {
        let refusal = DockerError::DockerResponseServerError {
            status_code: 500,
            message: "failed to create shim task: OCI runtime create failed: runc create failed: \
                      unable to start container process: unable to apply caps: operation not permitted: unknown"
                .into(),
        };
        assert!(is_capability_refusal(&refusal));
        let unknown = DockerError::DockerResponseServerError {
            status_code: 400,
            message: "invalid CapAdd: unknown capability: \"CAP_BPF\"".into(),
        };
        assert_eq!(unknown_capability(&unknown).as_deref(), Some("CAP_BPF"));
        assert!(!is_capability_refusal(&unknown));
    }

    #[test]
    fn spec_hash_changes_with_the_spec() {
        let spec = ContainerSpec {
            component: "etcd".into(),
            image: "registry.k8s.io/etcd:3.6.8-0".into(),
            args: vec!["etcd".into()],
            ..Default::default()
        };
        let mut other = spec.clone();
        other.args.push("--name=x".into());
        assert_eq!(spec.hash(), spec.clone().hash());
        assert_ne!(spec.hash(), other.hash());
        assert_eq!(spec.container_name(), "kinit-etcd");
    }

    #[test]
    fn spec_hash_is_pinned() {
        let spec = ContainerSpec {
            component: "etcd".into(),
            image: "registry.k8s.io/etcd:3.6.8-0".into(),
            args: vec!["etcd".into()],
            env: vec!["A=1".into()],
            binds: vec![Bind {
                host: "/var/lib/kinit/etcd".into(),
                container: "/var/lib/etcd".into(),
                read_only: false,
                propagation: Some(Propagation::Rshared),
            }],
            host_pid: true,
            devices: vec!["/dev/kmsg".into()],
            capabilities: vec!["CAP_NET_ADMIN".into()],
            privileged: true,
            ..Default::default()
        };
        assert_eq!(spec.hash(), "c2276dcf94ffddabdc98ee1d");
    }
}
