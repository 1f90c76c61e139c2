//! `kinit join`: this host becomes a node of another host's cluster (docs/two-hosts.md).
//! First what may refuse (the token and hash as written, a cluster of this host's own, the
//! cluster's identity and version), then the node's steps, which `kinit up` on a joined
//! host runs again to repair it.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use crate::cli::JoinArgs;
use crate::cluster::{ClusterConfig, NodeName, Settings};
use crate::config::Sources;
use crate::fs::Lock;
use crate::join::{self, CaHash, KUBECONFIG_KEY, Token};
use crate::kubernetes::Kube;
use crate::layout::{LOCK_FILE, Layout};
use crate::net;
use crate::progress::{self, Steps};
use crate::steps::worker::Bootstrap;
use crate::steps::{self, Context};

pub async fn run(
    state_dir: Option<&Path>,
    config_path: Option<&Path>,
    args: &JoinArgs,
) -> Result<()> {
    let token = Token::parse(&args.token)?;
    let pin = CaHash::parse(&args.ca_cert_hash)?;
    let server = api_server_url(&args.api_server)?;
    super::require_root("join")?;
    let layout = Layout::resolve(state_dir)?;
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let config = super::load_config(config_path)?;
    let saved = Settings::load(&layout.settings_file())?;
    if saved.as_ref().is_some_and(Settings::is_control_plane) {
        bail!(
            "this host runs a cluster of its own (`kinit up`); `sudo kinit down --purge` \
             deletes it before this host can join another"
        );
    }

    // Nothing the API server says is used before it is proven to be the cluster the join
    // command was made for.
    let uri: http::Uri = server
        .parse()
        .with_context(|| format!("{server} is not a URL"))?;
    let first = Kube::unverified_cluster_info(&uri)
        .await
        .with_context(|| format!("cannot read the cluster's identity from {server}"))?;
    let info = join::check_cluster_info(&first, &token, &pin)?;
    let again = Kube::pinned(&uri, &info.ca_pem, None)?
        .cluster_info()
        .await
        .context("cannot read cluster-info again through the cluster's CA")?;
    let kube = Kube::pinned(&uri, &info.ca_pem, Some(&token.expose()))?;
    ensure!(
        again.get(KUBECONFIG_KEY) == first.get(KUBECONFIG_KEY),
        "cluster-info changed between its first and second reading; try again"
    );
    let cluster: ClusterConfig = serde_yaml::from_str(
        kube.config_map_data("kube-system", "kinit-config")
            .await?
            .get("cluster.yaml")
            .ok_or_else(|| anyhow!("kube-system/kinit-config has no cluster.yaml"))?,
    )
    .context("kube-system/kinit-config is not a kinit cluster's")?;

    if let Some(joined) = saved.as_ref().and_then(|s| s.joined.as_ref())
        && joined.server != info.server
    {
        bail!(
            "this host is a node of the cluster at {}; `sudo kinit down --purge` leaves it \
             before it can join {}",
            joined.server,
            info.server
        );
    }
    let node_ip = match (args.node.node_ip, saved.as_ref()) {
        (Some(ip), _) => ip,
        (None, Some(saved)) if net::is_local_address(saved.node_ip) => saved.node_ip,
        (None, _) => address_toward(&uri)?,
    };
    let hostname = match (&args.node.hostname, saved.as_ref()) {
        (Some(name), _) => name.clone(),
        (None, Some(saved)) => saved.hostname.clone(),
        (None, None) => NodeName::of_this_host()?,
    };
    let settings = Settings::for_node(&cluster, &info.server, node_ip, hostname)?;
    settings.release().map_err(|_| {
        anyhow!(
            "the cluster runs Kubernetes {}, which this kinit does not run; use the kinit \
             version of the control-plane host",
            cluster.kubernetes_version
        )
    })?;
    let sources = args
        .sources
        .resolve(&config, cluster.image_repository.as_deref())?;
    let ctx = node_context(layout, settings, sources).await?;
    let bootstrap = Bootstrap {
        server: info.server.clone(),
        ca_pem: info.ca_pem.clone(),
        token: token.expose(),
    };
    let steps = node_steps(&ctx, Some(&bootstrap)).await?;
    let say = progress::println;
    say("");
    say(&format!(
        "This host joined the cluster at {} as the node {} in {}.",
        info.server,
        ctx.settings.hostname,
        steps.elapsed()
    ));
    say(&format!("On {}: kubectl get nodes", cluster.control_plane));
    Ok(())
}

/// The address this host reaches the API server from: a node's address, unless told.
fn address_toward(server: &http::Uri) -> Result<IpAddr> {
    let host = server
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    match host.and_then(|h| h.parse().ok()) {
        Some(ip) => net::source_ip_toward(ip),
        None => net::primary_ip(),
    }
}

/// `kinit up` on a joined host: the node's steps again, with the credentials the kubelet
/// has (no token). A saved address the host no longer has gives way to the one it reaches
/// the API server from (`--node-ip` names another), as the control-plane host follows
/// its own; the kubelet then reports it, and asks for a serving certificate naming it.
pub async fn repair(
    layout: Layout,
    mut settings: Settings,
    sources: Sources,
    node_ip: Option<IpAddr>,
) -> Result<()> {
    let server: http::Uri = match &settings.joined {
        Some(joined) => joined
            .server
            .parse()
            .with_context(|| format!("{} is not a URL", joined.server))?,
        None => bail!("this host's settings name no cluster it joined"),
    };
    if let Some(old) =
        settings.follow_node_ip(node_ip, net::is_local_address, || address_toward(&server))?
    {
        progress::println(&format!(
            " ! The node's address moved from {old} to {}: its kubelet and kube-proxy follow it",
            settings.node_ip
        ));
    }
    let ctx = node_context(layout, settings, sources).await?;
    let steps = node_steps(&ctx, None).await?;
    progress::println("");
    if !steps.changed() {
        progress::println("Nothing to do: the node was already up.");
    }
    progress::println(&format!(
        "The node {} of the cluster at {} is ready in {}.",
        ctx.settings.hostname,
        ctx.settings
            .joined
            .as_ref()
            .map_or("", |j| j.server.as_str()),
        steps.elapsed()
    ));
    Ok(())
}

async fn node_context(layout: Layout, settings: Settings, sources: Sources) -> Result<Context> {
    Context::new(layout, settings, sources, Default::default(), None).await
}

/// A joined host's bring-up, by `kinit join` (with the bootstrap credentials) and by
/// `kinit up` on a joined host (repairing it: the kubelet has its own credentials).
pub async fn node_steps(ctx: &Context, bootstrap: Option<&Bootstrap>) -> Result<Steps> {
    let mut steps = Steps::new();
    steps
        .run("Checking the host", steps::preflight::run(ctx))
        .await?;
    // Saved once the host passed its checks (a refused `--node-ip` leaves nothing), before
    // anything else: a join that stops half-way is resumed by `kinit up` or undone by
    // `kinit down --purge`, which both read them.
    ctx.settings.save(&ctx.layout.settings_file())?;
    steps
        .run("Downloading release files", steps::download::run(ctx))
        .await?;
    steps
        .run("Making images available", steps::images::run(ctx))
        .await?;
    steps
        .run("Assembling the node image", steps::node::run(ctx))
        .await?;
    steps
        .run("Surviving reboots (kinit-boot)", steps::boot::run(ctx))
        .await?;
    steps
        .run(
            "Starting the kubelet (kinit-node)",
            steps::worker::run(ctx, bootstrap),
        )
        .await?;
    steps
        .run("Starting kube-proxy (kinit-proxy)", steps::proxy::run(ctx))
        .await?;
    steps
        .run("Waiting for the node to be Ready", steps::ready::node(ctx))
        .await?;
    steps
        .run(
            "Following the node's address (kube-router)",
            steps::router::run(ctx),
        )
        .await?;
    Ok(steps)
}

/// `HOST:PORT`, `HOST` (port 6443) or `https://HOST:PORT` as an https URL.
fn api_server_url(text: &str) -> Result<String> {
    let rest = text.strip_prefix("https://").unwrap_or(text);
    if let Ok(v6) = rest.parse::<std::net::Ipv6Addr>() {
        return Ok(format!(
            "https://[{v6}]:{}",
            crate::cluster::component::API_SERVER_PORT
        ));
    }
    ensure!(
        !rest.is_empty() && !rest.contains('/') && !rest.contains("://"),
        "the API server must be given as HOST:PORT (as `kinit join-command` prints it), not {text:?}"
    );
    let has_port = match rest.rsplit_once(':') {
        // An IPv6 address without brackets has colons but no port.
        Some((host, port)) => {
            (!host.contains(':') || host.ends_with(']')) && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    Ok(match has_port {
        true => format!("https://{rest}"),
        false => format!(
            "https://{rest}:{}",
            crate::cluster::component::API_SERVER_PORT
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::api_server_url;

    #[test]
    fn api_server_addresses_become_urls() {
        assert_eq!(
            api_server_url("10.0.0.1:6443").unwrap(),
            "https://10.0.0.1:6443"
        );
        assert_eq!(api_server_url("10.0.0.1").unwrap(), "https://10.0.0.1:6443");
        assert_eq!(
            api_server_url("https://cp:7443").unwrap(),
            "https://cp:7443"
        );
        assert_eq!(
            api_server_url("[fd00::1]:6443").unwrap(),
            "https://[fd00::1]:6443"
        );
        assert_eq!(api_server_url("fd00::1").unwrap(), "https://[fd00::1]:6443");
        for bad in ["", "http://10.0.0.1:6443", "10.0.0.1:6443/api", "https://"] {
            assert!(api_server_url(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
