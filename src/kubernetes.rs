//! Everything kinit asks of the Kubernetes API goes through this module: readiness,
//! applying manifests, and the state of nodes and pods. Authenticates with the admin
//! client certificate kinit issued.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PropagationPolicy,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use serde::Deserialize;

use crate::pki::kubeconfig::CONTEXT;

/// The field manager for server-side apply: objects kinit owns say so.
const FIELD_MANAGER: &str = "kinit";

pub struct Kube {
    client: kube::Client,
}

/// A pod's state as `kinit up` reports it while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub ip: Option<String>,
}

/// How a Job ended, if it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

impl Kube {
    /// A client for the cluster in `kubeconfig` (kinit's admin.conf).
    pub async fn connect(kubeconfig: &Path) -> Result<Self> {
        crate::health::install_crypto_provider();
        let file = Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
        let options = KubeConfigOptions {
            context: Some(CONTEXT.to_string()),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .with_context(|| format!("cannot use the kubeconfig {}", kubeconfig.display()))?;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(30));
        let client = kube::Client::try_from(config).context("cannot set up a Kubernetes client")?;
        Ok(Self { client })
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
        let (resource, caps) = discovery::pinned_kind(&self.client, &gvk)
            .await
            .with_context(|| format!("the API server does not know {}", gvk.kind))?;
        let api = match caps.scope {
            Scope::Namespaced => {
                let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        Ok((api, name, what))
    }

    /// Whether the node reports Ready; `None` when it has not registered yet.
    pub async fn node_ready(&self, name: &str) -> Result<Option<bool>> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Some(node) = nodes
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the node {name}"))?
        else {
            return Ok(None);
        };
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        Ok(Some(ready))
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
        Ok(list
            .items
            .into_iter()
            .map(|p| {
                let status = p.status.unwrap_or_default();
                PodState {
                    name: p.metadata.name.unwrap_or_default(),
                    phase: status.phase.unwrap_or_else(|| "Unknown".into()),
                    ready: status
                        .conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True"),
                    ip: status.pod_ip,
                }
            })
            .collect())
    }

    /// A Job's state; `None` when there is no such Job.
    pub async fn job_state(&self, namespace: &str, name: &str) -> Result<Option<JobState>> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let Some(job) = jobs
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the job {namespace}/{name}"))?
        else {
            return Ok(None);
        };
        let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
        let has = |t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        };
        Ok(Some(if has("Complete") {
            JobState::Succeeded
        } else if has("Failed") {
            JobState::Failed
        } else {
            JobState::Running
        }))
    }

    /// How many ready endpoints a Service has (what kube-proxy sends traffic to).
    pub async fn ready_endpoints(&self, namespace: &str, service: &str) -> Result<usize> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let list = slices
            .list(&params)
            .await
            .with_context(|| format!("cannot read the endpoints of {namespace}/{service}"))?;
        Ok(list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .count())
    }

    /// A pod's output (its only or first container).
    pub async fn pod_logs(&self, namespace: &str, pod: &str) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        pods.logs(pod, &LogParams::default())
            .await
            .with_context(|| format!("cannot read the logs of {namespace}/{pod}"))
    }

    /// Ready replicas of a Deployment against the replicas it wants, once it has caught up
    /// with its latest spec; `None` when there is no such Deployment.
    pub async fn deployment_ready(&self, namespace: &str, name: &str) -> Result<Option<bool>> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let Some(d) = deployments
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the deployment {namespace}/{name}"))?
        else {
            return Ok(None);
        };
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = d.metadata.generation.unwrap_or(0);
        let status = d.status.unwrap_or_default();
        Ok(Some(
            status.observed_generation.unwrap_or(0) >= generation
                && status.updated_replicas.unwrap_or(0) == wanted
                && status.ready_replicas.unwrap_or(0) == wanted,
        ))
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
