//! `kinit logs COMPONENT`: a component's output, optionally followed. kinit's own
//! containers by name; the control plane and CoreDNS through the pod containers the
//! kubelet made (the newest one, so restarts are followed to the current instance).

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use crate::cli::LogsArgs;
use crate::docker::{self, Docker};

pub async fn run(args: &LogsArgs) -> Result<()> {
    let docker = Docker::connect().await?;
    let container = match args.component.pod() {
        Some(pod) => docker.pod_container("kube-system", pod).await?,
        None => {
            // The kubelet is kinit-master's on the control-plane host, kinit-node's on a
            // joined one.
            let mut found = None;
            for control_plane in [true, false] {
                let name =
                    docker::container_name(args.component.container_on(control_plane).label());
                if docker.inspect(&name).await?.is_some() {
                    found = Some(name);
                    break;
                }
            }
            found
        }
    };
    let name = match container {
        Some(name) => name,
        None => bail!(
            "{} is not running here (no container for it); start the cluster with `sudo kinit up`",
            args.component.title()
        ),
    };
    let mut stream = Box::pin(docker.logs(&name, args.follow, args.tail));
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).context("cannot write to stdout")?;
    }
    Ok(())
}
