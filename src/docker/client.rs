//! Component containers on the engine: apply a spec, inspect, list, start, stop, remove,
//! read logs.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use bollard::query_parameters::{
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use super::spec::{ContainerSpec, LABEL_COMPONENT, LABEL_MANAGED, LABEL_SPEC};
use super::{Docker, Error};

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

impl Docker {
    /// The state of a container, or `None` when there is none by that name.
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerState>> {
        let c = match self
            .api
            .inspect_container(name, None)
            .await
            .map_err(Error::from)
        {
            Ok(c) => c,
            Err(Error::NotFound(_)) => return Ok(None),
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

    /// kinit's containers, whatever their state: labelled as kinit's, and named as kinit
    /// names the component of the label. A pod can carry any label (cri-dockerd copies a
    /// pod's labels onto its containers) but not such a name (cri-dockerd's are `k8s_...`),
    /// so a pod is never taken for one of kinit's components.
    pub async fn list(&self) -> Result<Vec<ContainerState>> {
        let names = self
            .names_with_labels(&[format!("{LABEL_MANAGED}=true")])
            .await?;
        let mut out = Vec::new();
        for name in names {
            if let Some(state) = self.inspect(&name).await?
                && state
                    .component
                    .as_deref()
                    .is_some_and(|c| name == super::spec::container_name(c))
            {
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Containers carrying every label filter, running or not, newest first (Docker's
    /// order).
    pub(super) async fn names_with_labels(&self, labels: &[String]) -> Result<Vec<String>> {
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

    /// Starts an existing container; one already running is left alone.
    pub async fn start(&self, name: &str) -> Result<()> {
        match self
            .api
            .start_container(name, None)
            .await
            .map_err(Error::from)
        {
            Ok(()) | Err(Error::NotModified(_)) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot start {name}")),
        }
    }

    /// Stops a container, giving it `grace_seconds` to exit cleanly.
    pub async fn stop(&self, name: &str, grace_seconds: i32) -> Result<()> {
        let options = StopContainerOptions {
            t: Some(grace_seconds),
            ..Default::default()
        };
        let stopped = self.api.stop_container(name, Some(options)).await;
        match stopped.map_err(Error::from) {
            Ok(()) | Err(Error::NotFound(_) | Error::NotModified(_)) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot stop {name}")),
        }
    }

    /// Removes a container, running or not; `false` when there was none.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let removed = self.api.remove_container(name, Some(options)).await;
        match removed.map_err(Error::from) {
            Ok(()) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
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
                item.map(|out| out.into_bytes())
                    .map_err(|e| match Error::from(e) {
                        Error::NotFound(_) => anyhow!("there is no container {name}"),
                        e => anyhow!(e),
                    })
            })
    }

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
