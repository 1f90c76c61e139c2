//! Everything kinit asks of the Kubernetes API goes through this module: readiness,
//! applying manifests, and the state of nodes and pods. Authenticates with the admin
//! client certificate kinit issued. Waits watch the objects they wait for (kube's
//! runtime), and say what they saw when they run out of time (see [`crate::wait`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PropagationPolicy,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{GroupVersion, GroupVersionKind};
use kube::discovery::{self, ApiCapabilities, Scope};
use kube::runtime::wait::{Condition, conditions};
use kube::runtime::watcher;
use serde::Deserialize;

use crate::kubeconfig::CONTEXT;
use crate::wait::Seen;
use watch::{by_name, watch_until};

/// The field manager for server-side apply: objects kinit owns say so.
const FIELD_MANAGER: &str = "kinit";

/// How long the server keeps one watch open: less than the client's read timeout, so an
/// object that does not change for a while never looks like a hung connection.
const WATCH_SECONDS: u32 = 25;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The resources of a group/version, as API discovery found them.
type Resources = Vec<(ApiResource, ApiCapabilities)>;

pub struct Kube {
    client: kube::Client,
    /// Discovery by group/version ("v1", "apps/v1"), asked once per client: applying
    /// manifests needs it for every object.
    discovered: Mutex<HashMap<String, Resources>>,
}

/// A pod's state as `kinit up` reports it while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub ip: Option<String>,
}

impl PodState {
    /// Done for good: Succeeded, or Failed (evicted, or stopped by the node's graceful
    /// shutdown); its controller, if any, has made another in its place.
    pub fn is_terminal(&self) -> bool {
        self.phase == "Succeeded" || self.phase == "Failed"
    }
}

/// How a Job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Succeeded,
    Failed,
}

impl Kube {
    /// A client for the cluster in `kubeconfig` (kinit's admin.conf).
    pub async fn connect(kubeconfig: &Path) -> Result<Self> {
        let file = Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
        let options = KubeConfigOptions {
            context: Some(CONTEXT.to_string()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .with_context(|| format!("cannot use the kubeconfig {}", kubeconfig.display()))?;
        Self::from_config(config)
    }

    /// A client for `config` with kinit's timeouts.
    fn from_config(mut config: kube::Config) -> Result<Self> {
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(READ_TIMEOUT);
        let client = kube::Client::try_from(config).context("cannot set up a Kubernetes client")?;
        Ok(Self::new(client))
    }

    fn new(client: kube::Client) -> Self {
        Self {
            client,
            discovered: Mutex::default(),
        }
    }

    /// The API server's `/readyz`: Ok once it serves requests with its storage ready.
    pub async fn readyz(&self) -> Result<()> {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .context("cannot build the /readyz request")?;
        let body = self
            .client
            .request_text(request)
            .await
            .context("the API server is not ready")?;
        if body.trim() == "ok" {
            Ok(())
        } else {
            bail!("the API server answers /readyz with {body:?}")
        }
    }

    /// The API server's version, e.g. "v1.36.3".
    pub async fn server_version(&self) -> Result<String> {
        let info = self
            .client
            .apiserver_version()
            .await
            .context("cannot read the API server's version")?;
        Ok(info.git_version)
    }

    /// Server-side applies every object of a multi-document YAML text; returns how many
    /// objects there were and how many of them changed.
    pub async fn apply(&self, yaml: &str) -> Result<(usize, usize)> {
        let mut count = 0;
        let mut changed = 0;
        for object in parse_objects(yaml)? {
            if self.apply_one(object).await? {
                changed += 1;
            }
            count += 1;
        }
        Ok((count, changed))
    }

    /// Applies one object; whether it changed (a no-op apply keeps the resourceVersion).
    async fn apply_one(&self, object: DynamicObject) -> Result<bool> {
        let (api, name, what) = self.api_for(&object).await?;
        let before = api
            .get_opt(&name)
            .await
            .with_context(|| format!("cannot read {what}"))?
            .and_then(|o| o.metadata.resource_version);
        let after = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("cannot apply {what}"))?
            .metadata
            .resource_version;
        Ok(before.is_none() || before != after)
    }

    /// Deletes every object of a multi-document YAML text that exists (their pods go with
    /// them); returns how many there were.
    pub async fn delete(&self, yaml: &str) -> Result<usize> {
        let mut deleted = 0;
        for object in parse_objects(yaml)? {
            let (api, name, what) = self.api_for(&object).await?;
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e).with_context(|| format!("cannot delete {what}")),
            }
        }
        Ok(deleted)
    }

    /// The API for an object's kind (found by discovery), its name, and "Kind name".
    async fn api_for(
        &self,
        object: &DynamicObject,
    ) -> Result<(Api<DynamicObject>, String, String)> {
        let types = object
            .types
            .as_ref()
            .ok_or_else(|| anyhow!("an object without apiVersion/kind"))?;
        let gvk = GroupVersionKind::try_from(types)
            .map_err(|e| anyhow!("bad apiVersion {}: {e}", types.api_version))?;
        let name = object
            .metadata
            .name
            .clone()
            .ok_or_else(|| anyhow!("a {} without a name", gvk.kind))?;
        let what = format!("{} {name}", gvk.kind);
        let (resource, caps) = self.resource(&gvk).await?;
        let api = match caps.scope {
            Scope::Namespaced => {
                let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        Ok((api, name, what))
    }

    /// The resource of a kind and its scope. Discovery runs once per group/version, and
    /// once more when the kind is missing: a CRD applied since may have added it.
    async fn resource(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities)> {
        let api_version = gvk.api_version();
        let find =
            |resources: &Resources| resources.iter().find(|(r, _)| r.kind == gvk.kind).cloned();
        let cached = self.discovered_lock().get(&api_version).and_then(find);
        if let Some(found) = cached {
            return Ok(found);
        }
        let gv = GroupVersion::gv(&gvk.group, &gvk.version);
        let resources = discovery::pinned_group(&self.client, &gv)
            .await
            .with_context(|| format!("the API server does not know {}", gvk.kind))?
            .versioned_resources(&gvk.version);
        let found = find(&resources);
        self.discovered_lock().insert(api_version, resources);
        found.ok_or_else(|| {
            anyhow!(
                "the API server does not know {} in {}",
                gvk.kind,
                gvk.api_version()
            )
        })
    }

    fn discovered_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Resources>> {
        self.discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every pod of a namespace with its phase and readiness.
    pub async fn pods(&self, namespace: &str) -> Result<Vec<PodState>> {
        self.pods_matching(namespace, None).await
    }

    /// The pods of a namespace matching a label selector (all of them with `None`).
    pub async fn pods_matching(
        &self,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Vec<PodState>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = match selector {
            Some(s) => ListParams::default().labels(s),
            None => ListParams::default(),
        };
        let list = pods
            .list(&params)
            .await
            .with_context(|| format!("cannot list the pods in {namespace}"))?;
        Ok(list.items.iter().map(PodState::of).collect())
    }

    /// A pod's output (its only or first container).
    pub async fn pod_logs(&self, namespace: &str, pod: &str) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        pods.logs(pod, &LogParams::default())
            .await
            .with_context(|| format!("cannot read the logs of {namespace}/{pod}"))
    }

    /// Waits until `check` accepts the pods of a namespace (those matching a label selector
    /// with `Some`), sorted by name, all at once: `Ok` ends the wait with its value, `Err`
    /// says what it still waits for. Endless: bound it with [`crate::wait::within`].
    pub async fn wait_pods<T>(
        &self,
        namespace: &str,
        selector: Option<&str>,
        seen: &Seen,
        check: impl Fn(&[PodState]) -> Result<T, String>,
    ) -> Result<T> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let config = match selector {
            Some(s) => watcher::Config::default().labels(s),
            None => watcher::Config::default(),
        };
        watch_until(pods, config, seen, |found| {
            let mut pods: Vec<PodState> = found.iter().map(|p| PodState::of(p)).collect();
            pods.sort_by(|a, b| a.name.cmp(&b.name));
            check(&pods)
        })
        .await
    }

    /// Waits until a Deployment has caught up with its latest spec: every replica it wants
    /// updated and ready. Endless: bound it with [`crate::wait::within`].
    pub async fn wait_deployment(&self, namespace: &str, name: &str, seen: &Seen) -> Result<()> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        watch_until(deployments, by_name(name), seen, |found| {
            let Some(d) = found.first() else {
                return Err(format!("no Deployment {name} yet"));
            };
            let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let generation = d.metadata.generation.unwrap_or(0);
            let status = d.status.clone().unwrap_or_default();
            let updated = status.updated_replicas.unwrap_or(0);
            let ready = status.ready_replicas.unwrap_or(0);
            if status.observed_generation.unwrap_or(0) >= generation
                && updated == wanted
                && ready == wanted
            {
                Ok(())
            } else {
                Err(format!(
                    "Deployment {name}: {ready} of {wanted} replicas ready, {updated} updated"
                ))
            }
        })
        .await
    }

    /// Waits until a Job has finished; how it ended. Endless: bound it with [`crate::wait::within`].
    pub async fn wait_job(&self, namespace: &str, name: &str, seen: &Seen) -> Result<JobState> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        watch_until(jobs, by_name(name), seen, |found| {
            let Some(job) = found.first() else {
                return Err(format!("no Job {name} yet"));
            };
            let failed = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Failed" && c.status == "True");
            if conditions::is_job_completed().matches_object(Some(job)) {
                Ok(JobState::Succeeded)
            } else if failed {
                Ok(JobState::Failed)
            } else {
                Err(format!("the Job {name} is running"))
            }
        })
        .await
    }

    /// Waits until a Service has `want` ready endpoints (what kube-proxy sends traffic to).
    /// Endless: bound it with [`crate::wait::within`].
    pub async fn wait_endpoints(
        &self,
        namespace: &str,
        service: &str,
        want: usize,
        seen: &Seen,
    ) -> Result<()> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let config =
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
        watch_until(slices, config, seen, |found| {
            let ready = found
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                .count();
            if ready == want {
                Ok(())
            } else {
                Err(format!(
                    "the Service {service} has {ready} of {want} ready endpoints"
                ))
            }
        })
        .await
    }
}

impl PodState {
    fn of(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        Self {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            ip: status.and_then(|s| s.pod_ip.clone()),
        }
    }
}

/// The objects of a multi-document YAML text, skipping empty documents.
fn parse_objects(yaml: &str) -> Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).context("invalid YAML")?;
        if value.is_null() {
            continue;
        }
        objects.push(serde_yaml::from_value(value).context("not a Kubernetes object")?);
    }
    Ok(objects)
}

mod csr;
mod drain;
mod join;
mod nodes;
mod service_lb;
mod state;
#[cfg(test)]
mod tests;
mod watch;

pub use nodes::NodeSummary;
pub(crate) use nodes::internal_ips;
pub use state::Replicas;
