//! The containers a kubelet made through cri-dockerd: pod sandboxes and pod containers.

use anyhow::{Context, Result};

use super::{Docker, Error};

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
    /// cgroupRoot; `is_ours` tells from that parent (`HostConfig.CgroupParent`) whether
    /// the kubelet was kinit's (the cgroup module's `is_kinits` knows kinit's cgroupRoot).
    /// Labels cannot tell two kubelets' pods apart; the cgroup parent can.
    pub async fn pod_containers(&self, is_ours: impl Fn(&str) -> bool) -> Result<PodContainers> {
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
                Err(e) => match Error::from(e) {
                    // Gone since the listing.
                    Error::NotFound(_) => continue,
                    e => return Err(e).with_context(|| format!("cannot inspect {name}")),
                },
            };
            if is_ours(&parent) {
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
        let newest_first = self.pod_containers_of(namespace, container).await?;
        Ok(newest_first.into_iter().next())
    }
}
