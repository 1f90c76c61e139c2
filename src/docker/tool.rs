//! One-shot tool containers: a command from an image kinit already has, run on the host's
//! network to completion, for host state only that image's tools speak (kube-router's
//! ipsets, on hosts without the `ipset` command).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, WaitContainerOptions};
use futures_util::StreamExt;

use super::Docker;
use super::spec::{LABEL_COMPONENT, LABEL_MANAGED, container_name};

/// The component label of tool containers: a teardown finds one a crash left behind.
const COMPONENT: &str = "tool";

impl Docker {
    /// Runs `command` from `image` on the host's network with `capabilities` added and
    /// returns its output; fails when it exits non-zero. The container is removed after.
    pub async fn run_tool(
        &self,
        image: &str,
        command: &[String],
        capabilities: &[&str],
    ) -> Result<String> {
        let name = container_name(COMPONENT);
        self.remove(&name).await?;
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(command.to_vec()),
            cmd: Some(Vec::new()),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_COMPONENT.to_string(), COMPONENT.to_string()),
            ])),
            network_disabled: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                cap_add: Some(capabilities.iter().map(|c| c.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        self.api
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("cannot create a container from {image}"))?;
        let outcome = self.run_to_end(&name).await;
        let output = self.tail_logs(&name, 10_000).await;
        self.remove(&name).await?;
        match outcome? {
            0 => Ok(output),
            code => bail!(
                "`{}` in {image} exited with {code}: {}",
                command.join(" "),
                output.trim()
            ),
        }
    }

    async fn run_to_end(&self, name: &str) -> Result<i64> {
        self.start(name).await?;
        let mut waits = self.api.wait_container(name, None::<WaitContainerOptions>);
        match waits.next().await {
            Some(Ok(exit)) => Ok(exit.status_code),
            // Docker reports a non-zero exit as an error of the wait call.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e).with_context(|| format!("cannot wait for {name}")),
            None => bail!("Docker ended the wait for {name} without an exit code"),
        }
    }
}
