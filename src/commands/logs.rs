//! `kinit logs COMPONENT`: a component's output, optionally followed.

use std::io::Write;

use anyhow::{Context, Result};
use futures_util::StreamExt;

use crate::cli::{LogComponent, LogsArgs};
use crate::docker::{self, Docker};

pub async fn run(args: &LogsArgs) -> Result<()> {
    let component = match args.component {
        LogComponent::Etcd => "etcd",
    };
    let name = docker::container_name(component);
    let docker = Docker::connect().await?;
    if docker.inspect(&name).await?.is_none() {
        anyhow::bail!(
            "{component} is not running here (no container {name}); start the cluster with `sudo kinit up`"
        );
    }
    let mut stream = Box::pin(docker.logs(&name, args.follow, args.tail));
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).context("cannot write to stdout")?;
    }
    Ok(())
}
