//! On a host that joined another's cluster: kinit-node (the kubelet without the control
//! plane), its bootstrap credentials while it has none of its own, the pod network for the
//! range the controller-manager gives the node, and kube-proxy's kubeconfig on the
//! kubelet's renewed certificate. Already done when kinit-node runs with these files and
//! the network is in place.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::Context;
use crate::components::master::{Host, Inputs, ipam_dir};
use crate::components::{node, proxy};
use crate::docker::{self, Applied};
use crate::fs::{self, Mode};
use crate::kubeconfig;
use crate::kubernetes::Kube;
use crate::progress::Outcome;
use crate::wait;

/// The kubelet's TLS bootstrap: a CSR the controller-manager approves within seconds,
/// once the API server is reachable.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(240);
const KUBELET_VERBOSITY: u8 = 2;

/// What `kinit join` learned from cluster-info and the join command.
pub struct Bootstrap {
    pub server: String,
    pub ca_pem: String,
    /// `<id>.<secret>`.
    pub token: String,
}

pub async fn run(ctx: &Context, bootstrap: Option<&Bootstrap>) -> Result<Outcome> {
    let joined = ctx
        .settings
        .joined
        .as_ref()
        .ok_or_else(|| anyhow!("this host runs the control plane, not a joined node"))?;
    let layout = &ctx.layout;
    let kubelet_conf = node::kubelet_kubeconfig(layout);
    let ca_path = layout.pki().join("ca.crt");
    if let Some(b) = bootstrap {
        fs::ensure_dir(&layout.pki())?;
        fs::write_if_changed(&ca_path, b.ca_pem.as_bytes(), Mode::Public)?;
        if !kubelet_conf.exists() {
            let config =
                kubeconfig::with_token(&b.server, &b.ca_pem, "kubelet-bootstrap", &b.token);
            fs::write_if_changed(
                &node::bootstrap_kubeconfig(layout),
                kubeconfig::to_yaml(&config)?.as_bytes(),
                Mode::Private,
            )?;
        }
    } else if !kubelet_conf.exists() {
        bail!(
            "the kubelet of this host has no credentials yet: run the join command again \
             (`sudo kinit join-command` on {} makes a new one)",
            joined.control_plane
        );
    }
    let ca_pem = std::fs::read_to_string(&ca_path)
        .map_err(|e| anyhow!("cannot read the cluster's CA {}: {e}", ca_path.display()))?;

    let host = Host::probe(ctx.docker.engine_info().await?)?;
    for dir in [
        layout.kubelet(),
        layout.pod_logs(),
        layout.cri_dockerd(),
        ipam_dir(layout),
        node::kubelet_cert_dir(layout),
        layout.cni().join("net.d"),
    ] {
        fs::ensure_dir(&dir)?;
    }
    let inputs = Inputs {
        settings: &ctx.settings,
        layout,
        host: &host,
        images: &ctx.images,
        node_image: ctx.node_image()?,
        verbosity: KUBELET_VERBOSITY,
    };
    let render = |range: Option<&str>| node::render(&inputs, range);
    let mut rendered = render(None)?;
    let mut started_with = Vec::new();
    let mut written = 0;
    for file in &rendered.files {
        if fs::write_if_changed(&file.path, file.contents.as_bytes(), file.mode)? {
            written += 1;
        }
        started_with.extend_from_slice(file.contents.as_bytes());
    }
    // The CA is the only credential the kubelet starts with that kinit writes.
    started_with.extend_from_slice(ca_pem.as_bytes());
    rendered.spec.files_digest = Some(docker::short_digest(&started_with));
    let applied = ctx.docker.apply(&rendered.spec).await?;
    super::node::remove_older_images(ctx).await?;

    let name = rendered.spec.container_name();
    // The kubelet writes its kubeconfig, naming the certificate, before the certificate
    // itself has come.
    let cert = node::kubelet_cert_dir(layout).join("kubelet-client-current.pem");
    let bootstrapped = wait::until(
        "the kubelet did not get its client certificate (TLS bootstrap)",
        BOOTSTRAP_TIMEOUT,
        || async { Ok(kubelet_conf.exists() && cert.exists()) },
    )
    .await;
    if let Err(e) = bootstrapped {
        let logs = ctx.docker.tail_logs(&name, 30).await;
        return Err(anyhow!("{e:#}\nthe kubelet's last log lines:\n{logs}"));
    }
    // The token is the joining host's only secret beyond its own key; the kubelet renews
    // its certificate with the certificate from now on.
    fs::remove_file(&node::bootstrap_kubeconfig(layout))?;

    let kube = Kube::connect_current(&kubelet_conf).await?;
    let hostname = ctx.settings.hostname.to_string();
    let range = wait::within(
        "the node was not given a pod range",
        BOOTSTRAP_TIMEOUT,
        async |seen| kube.wait_pod_cidr(&hostname, seen).await,
    )
    .await?;
    let network = render(Some(&range))?
        .network
        .ok_or_else(|| anyhow!("the node's network did not render"))?;
    if fs::write_if_changed(&network.path, network.contents.as_bytes(), network.mode)? {
        written += 1;
    }

    // kube-proxy acts as the node, with the certificate the kubelet keeps renewed.
    let proxy_conf = kubeconfig::with_cert_file(
        &joined.server,
        &ca_pem,
        &format!("system:node:{hostname}"),
        &cert.to_string_lossy(),
    );
    if fs::write_if_changed(
        &proxy::kubeconfig_file(layout),
        kubeconfig::to_yaml(&proxy_conf)?.as_bytes(),
        Mode::Private,
    )? {
        written += 1;
    }

    Ok(match (applied, written) {
        (Applied::Unchanged, 0) => Outcome::AlreadyDone(format!("pod range {range}")),
        (Applied::Unchanged, _) => Outcome::Done(format!("updated its files; pod range {range}")),
        (Applied::Started, _) => Outcome::Done(format!("started; pod range {range}")),
        (Applied::Created, _) => Outcome::Done(format!("created; pod range {range}")),
        (Applied::Replaced, _) => Outcome::Done(format!(
            "replaced a container with other settings; pod range {range}"
        )),
    })
}
