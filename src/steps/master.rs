//! Starts `kinit-master` (the kubelet with cri-dockerd) with its files in place, and waits
//! until the API server it runs as a static pod answers `/readyz`.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::Context;
use crate::cluster::Component;
use crate::components::master::{self, Host};
use crate::docker::{self, Applied};
use crate::kubernetes::Kube;
use crate::progress::Outcome;
use crate::{fs, pki, wait};

/// A cold start on two cores takes about 10 s; images being loaded or a slow disk more.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// The kubelet's log level.
const KUBELET_VERBOSITY: u8 = 2;

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let host = Host::probe(ctx.docker.engine_info().await?)?;
    let credentials = pki::digest(ctx.layout.root())?;
    let inputs = master::Inputs {
        settings: &ctx.settings,
        layout: &ctx.layout,
        host: &host,
        images: &ctx.images,
        node_image: ctx.node_image()?,
        verbosity: KUBELET_VERBOSITY,
    };
    let mut rendered = master::render(&inputs, &credentials)?;
    for dir in [
        ctx.layout.static_pods(),
        ctx.layout.kubelet(),
        ctx.layout.pod_logs(),
        ctx.layout.cri_dockerd(),
        master::ipam_dir(&ctx.layout),
    ] {
        fs::ensure_dir(&dir)?;
    }
    if ctx.settings.audit_log {
        fs::ensure_private_dir(&ctx.layout.logs())?;
    }
    let mut started_with = Vec::new();
    let mut changed = Vec::new();
    // The API server's audit policy and admission configuration are the API server's alone
    // (its pod carries their digests), and are in place before the pod that mounts them.
    for file in &rendered.apiserver_files {
        if !fs::is_current(&file.path, file.contents.as_bytes(), file.mode)? {
            changed.push(file);
        }
    }
    for file in &rendered.files {
        if !fs::is_current(&file.path, file.contents.as_bytes(), file.mode)? {
            changed.push(file);
        }
        // The kubelet reads its static pods as they change; the other files only when it
        // starts, so a change to them must replace the container.
        if !file.path.starts_with(ctx.layout.static_pods()) {
            started_with.extend_from_slice(file.contents.as_bytes());
        }
    }
    // So are the kubelet's certificate and kubeconfig.
    started_with.extend_from_slice(credentials.as_bytes());
    rendered.spec.files_digest = Some(docker::short_digest(&started_with));

    // A control-plane pod made from an old manifest holds its ports (6443, 10257, 10259)
    // while the kubelet starts the new one, which then fails to listen and backs off for
    // minutes. So the old kubelet goes first, then the old pods, then the new files.
    let name = rendered.spec.container_name();
    let replacing = ctx
        .docker
        .inspect(&name)
        .await?
        .is_some_and(|c| c.spec_hash.as_deref() != Some(rendered.spec.hash().as_str()));
    if replacing {
        ctx.docker.stop(&name, 10).await?;
        ctx.docker.remove(&name).await?;
    }
    // A new kubelet starts every pod again; otherwise only those whose manifest changed
    // restart.
    let restarting = Component::STATIC_PODS
        .into_iter()
        .filter_map(Component::pod)
        .filter(|pod| {
            replacing
                || changed.iter().any(|f| {
                    f.path.starts_with(ctx.layout.static_pods())
                        && f.path.file_stem() == Some(OsStr::new(pod))
                })
        });
    for pod in restarting {
        for container in ctx.docker.pod_containers_of("kube-system", pod).await? {
            ctx.docker.remove(&container).await?;
        }
    }
    let written = changed.len();
    // The controller-manager's and scheduler's pods start once the API server is ready.
    // The kubelet makes a static pod's mirror pod (what `kubectl get pods` shows) when it
    // syncs the pod, and on a new cluster one synced before the API server has created the
    // system-node-critical PriorityClass is refused it until the kubelet's periodic sync,
    // a minute later; both wait for the API server anyway.
    let (after_ready, now): (Vec<_>, Vec<_>) = changed.into_iter().partition(|f| {
        f.path.starts_with(ctx.layout.static_pods())
            && f.path.file_stem() != Component::ApiServer.pod().map(OsStr::new)
    });
    for file in now {
        fs::write_file(&file.path, file.contents.as_bytes(), file.mode)?;
    }

    let applied = match ctx.docker.apply(&rendered.spec).await? {
        Applied::Created if replacing => Applied::Replaced,
        applied => applied,
    };
    super::node::remove_older_images(ctx).await?;
    let kube = Kube::connect(&ctx.layout.kubeconfig("admin.conf")).await?;
    if let Err(e) = wait::until(
        "the API server did not become ready",
        READY_TIMEOUT,
        || async { kube.readyz().await.map(|()| true) },
    )
    .await
    {
        let kubelet = ctx
            .docker
            .tail_logs(&rendered.spec.container_name(), 30)
            .await;
        let apiserver = match ctx
            .docker
            .pod_container("kube-system", "kube-apiserver")
            .await
        {
            Ok(Some(name)) => ctx.docker.tail_logs(&name, 30).await,
            _ => "(no kube-apiserver container was created)".to_string(),
        };
        return Err(anyhow!(
            "{e:#}\nthe kubelet's last log lines:\n{kubelet}\nthe API server's last log lines:\n{apiserver}"
        ));
    }
    for file in after_ready {
        fs::write_file(&file.path, file.contents.as_bytes(), file.mode)?;
    }
    // The ready API server was started from the new manifest, which mounts none of these.
    for retired in &rendered.retired_files {
        fs::remove_file(retired)?;
    }
    let endpoint = ctx.settings.api_server_url();
    Ok(match (applied, written) {
        (Applied::Unchanged, 0) => Outcome::AlreadyDone(format!("API server ready at {endpoint}")),
        (Applied::Unchanged, n) => Outcome::Done(format!(
            "updated {n} control-plane manifest(s); API server ready at {endpoint}"
        )),
        (Applied::Started, _) => Outcome::Done(format!("started; API server ready at {endpoint}")),
        (Applied::Created, _) => Outcome::Done(format!("created; API server ready at {endpoint}")),
        (Applied::Replaced, _) => Outcome::Done(format!(
            "replaced a container with other settings; API server ready at {endpoint}"
        )),
    })
}
