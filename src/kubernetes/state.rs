//! One-shot reads of objects' state for `kinit addons`: what of a manifest still exists
//! (and a wait until none does), a Deployment's replicas, an APIService's availability, a
//! provisioner's volumes.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, ListParams};

use super::{Kube, parse_objects};
use crate::wait::Seen;

/// The annotation the PersistentVolume controller puts on a volume a provisioner made.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// A Deployment's ready and wanted replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    pub ready: i32,
    pub wanted: i32,
}

impl Kube {
    /// The objects of a multi-document YAML text that exist ("Kind name" each), e.g. to
    /// wait until a deletion has finished (a namespace takes a while).
    pub async fn existing(&self, yaml: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for object in parse_objects(yaml)? {
            let (api, name, what) = self.api_for(&object).await?;
            if api
                .get_opt(&name)
                .await
                .with_context(|| format!("cannot read {what}"))?
                .is_some()
            {
                found.push(what);
            }
        }
        Ok(found)
    }

    /// Waits until no object of a multi-document YAML text exists any more, checking every
    /// second. Endless: bound it with [`crate::wait::within`].
    pub async fn wait_gone(&self, yaml: &str, seen: &Seen) -> Result<()> {
        loop {
            let left = self.existing(yaml).await?;
            if left.is_empty() {
                return Ok(());
            }
            seen.set(format!("{} still there", left.join(", ")));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A Deployment's replicas; `None` when there is no such Deployment.
    pub async fn deployment_replicas(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Replicas>> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the Deployment {namespace}/{name}"))?;
        Ok(found.map(|d| Replicas {
            ready: d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
            wanted: d.spec.and_then(|s| s.replicas).unwrap_or(1),
        }))
    }

    /// Whether an APIService reports Available (`Err` with its message when not);
    /// `None` when there is no such APIService.
    pub async fn api_service_available(&self, name: &str) -> Result<Option<Result<(), String>>> {
        let api: Api<APIService> = Api::all(self.client.clone());
        let found = api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read the APIService {name}"))?;
        Ok(found.map(|service| {
            let available = service
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Available");
            match available {
                Some(c) if c.status == "True" => Ok(()),
                Some(c) => Err(c.message.or(c.reason).unwrap_or_else(|| c.status.clone())),
                None => Err("no Available condition yet".into()),
            }
        }))
    }

    /// The names of the PersistentVolumes a provisioner made.
    pub async fn volumes_provisioned_by(&self, provisioner: &str) -> Result<Vec<String>> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .context("cannot list the PersistentVolumes")?;
        Ok(list
            .items
            .into_iter()
            .filter(|pv| {
                pv.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(PROVISIONED_BY))
                    .is_some_and(|p| p == provisioner)
            })
            .filter_map(|pv| pv.metadata.name)
            .collect())
    }
}
