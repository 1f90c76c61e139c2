//! `kinit status`: each component's container and health, the node, the endpoint and
//! versions, for humans or as JSON.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{OutputFormat, StatusArgs};
use crate::cluster::{Component, ROUTER_HEALTH_PORT, Settings};
use crate::components::{master, node, proxy};
use crate::docker::{self, ContainerState, Docker};
use crate::health;
use crate::kubernetes::{Kube, NodeSummary, PodState};
use crate::layout::Layout;
use crate::socks::detach;
use crate::versions::Release;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    state_dir: String,
    /// `None` when no cluster was created in this state directory.
    cluster: Option<Settings>,
    api_endpoint: Option<String>,
    docker: docker::EngineInfo,
    versions: Versions,
    node: Option<NodeStatus>,
    /// Every node of the cluster, this host's and the joined hosts' (as the API server
    /// lists them; empty when it does not answer).
    nodes: Vec<NodeSummary>,
    components: Vec<ComponentStatus>,
    /// `kinit socks --detach`, when one runs.
    socks: Option<detach::Record>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Versions {
    kinit: String,
    kubernetes: String,
    etcd: String,
    coredns: String,
    /// What the running API server reports.
    api_server: Option<String>,
}

#[derive(Debug, Serialize)]
struct NodeStatus {
    name: String,
    /// "Ready", "NotReady", "not registered" or "unknown: <why>".
    state: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ComponentStatus {
    name: &'static str,
    /// The container, or `None` when it does not exist.
    container: Option<ContainerState>,
    /// "healthy", "unhealthy: <why>", "not running" or "unknown (...)".
    health: String,
}

pub async fn run(state_dir: Option<&Path>, args: &StatusArgs) -> Result<()> {
    let layout = Layout::resolve(state_dir)?;
    let cluster = Settings::load(&layout.settings_file())?;
    let docker = Docker::connect().await?;
    let root = nix::unistd::geteuid().is_root();
    let control_plane = cluster.as_ref().is_none_or(Settings::is_control_plane);
    // The admin key, the kubelet's and the etcd health-check key are root's alone (0600).
    // A joined host asks with its kubelet's credentials.
    let kube = match (&cluster, root) {
        (Some(_), true) if control_plane => {
            Kube::connect(&layout.kubeconfig("admin.conf")).await.ok()
        }
        (Some(_), true) => Kube::connect_current(&node::kubelet_kubeconfig(&layout))
            .await
            .ok(),
        _ => None,
    };
    let pods = match &kube {
        Some(k) if control_plane => k.pods("kube-system").await.ok(),
        _ => None,
    };
    let needs_root = "unknown (run `sudo kinit status` to check health)".to_string();

    let mut components = Vec::new();
    let here: &[Component] = match control_plane {
        true => &Component::ALL,
        false => &Component::NODE,
    };
    for &component in here {
        let container = match component.pod() {
            Some(pod) => pod_container(&docker, pod).await?,
            None => {
                let name = docker::container_name(component.container_on(control_plane).label());
                docker.inspect(&name).await?
            }
        };
        let running = container.as_ref().is_some_and(|c| c.running);
        let health = if !running {
            "not running".to_string()
        } else {
            match component {
                Component::Etcd if root => verdict(health::etcd(&layout, CHECK_TIMEOUT).await),
                Component::Etcd => needs_root.clone(),
                Component::Kubelet => {
                    verdict(health::http_ok(&master::kubelet_healthz(), CHECK_TIMEOUT).await)
                }
                Component::Proxy => {
                    verdict(health::http_ok(&proxy::healthz(), CHECK_TIMEOUT).await)
                }
                Component::Router => verdict(
                    health::http_ok(
                        &format!("http://127.0.0.1:{ROUTER_HEALTH_PORT}/healthz"),
                        CHECK_TIMEOUT,
                    )
                    .await,
                ),
                // Idle once it has done its work; running is all there is to check.
                Component::Boot => "healthy".into(),
                Component::ApiServer => match &kube {
                    Some(k) => verdict(k.readyz().await),
                    None if root => "unhealthy: no admin kubeconfig".into(),
                    None => needs_root.clone(),
                },
                Component::ControllerManager | Component::Scheduler | Component::CoreDns => {
                    match &pods {
                        Some(pods) => pod_health(pods, component),
                        None if root => "unknown: the API server does not answer".into(),
                        None => needs_root.clone(),
                    }
                }
            }
        };
        components.push(ComponentStatus {
            name: component.name(),
            container,
            health,
        });
    }

    // One list of the nodes: this host's line and the table both come from it.
    let nodes = match &kube {
        Some(k) => k.node_summaries().await.map_err(|e| format!("{e:#}")),
        None => Ok(Vec::new()),
    };
    let node = cluster.as_ref().map(|s| {
        let name = s.hostname.as_str();
        NodeStatus {
            name: name.to_string(),
            state: match (&kube, &nodes) {
                (Some(_), Ok(nodes)) => match nodes.iter().find(|n| n.name == name) {
                    Some(n) if n.ready => "Ready".into(),
                    Some(_) => "NotReady".into(),
                    None => "not registered".into(),
                },
                (Some(_), Err(e)) => format!("unknown: {e}"),
                (None, _) if root => "unknown: the API server does not answer".into(),
                (None, _) => "unknown (run `sudo kinit status`)".into(),
            },
        }
    });
    let nodes = nodes.unwrap_or_default();
    let api_server = match &kube {
        Some(k) => k.server_version().await.ok(),
        None => None,
    };
    // A cluster this kinit does not run still gets its status, versions as far as known.
    let release = match &cluster {
        Some(c) => c.release().ok(),
        None => Some(Release::default()),
    };
    let unknown = || "unknown".to_string();
    let kubernetes = match (&cluster, release) {
        (Some(c), _) => c.kubernetes_version.clone(),
        (None, Some(r)) => r.kubernetes.to_string(),
        (None, None) => unknown(),
    };
    let status = Status {
        state_dir: layout.root().display().to_string(),
        api_endpoint: cluster.as_ref().map(|c| match &c.joined {
            Some(joined) => joined.server.clone(),
            None => c.api_server_url(),
        }),
        cluster,
        docker: docker.engine_info().await?,
        versions: Versions {
            kinit: env!("CARGO_PKG_VERSION").into(),
            kubernetes,
            etcd: release.map_or_else(unknown, |r| r.etcd.to_string()),
            coredns: release.map_or_else(unknown, |r| r.coredns.to_string()),
            api_server,
        },
        node,
        nodes,
        components,
        socks: detach::running(&layout)?,
    };
    match args.output {
        OutputFormat::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&status).context("cannot serialize the status")?
        )?,
        OutputFormat::Text => print_text(&status, &layout)?,
    }
    Ok(())
}

async fn pod_container(docker: &Docker, name: &str) -> Result<Option<ContainerState>> {
    match docker.pod_container("kube-system", name).await? {
        Some(id) => docker.inspect(&id).await,
        None => Ok(None),
    }
}

/// A pod's readiness comes from the API: healthy when every pod of the component is ready.
fn pod_health(pods: &[PodState], component: Component) -> String {
    let mine: Vec<_> = pods
        .iter()
        .filter(|p| component.pod().is_some_and(|pod| p.name.starts_with(pod)))
        .collect();
    if !mine.is_empty() && mine.iter().all(|p| p.ready) {
        "healthy".into()
    } else {
        "unhealthy: its pod is not ready".into()
    }
}

fn verdict(result: Result<()>) -> String {
    match result {
        Ok(()) => "healthy".into(),
        Err(e) => format!("unhealthy: {e:#}"),
    }
}

fn print_text(s: &Status, layout: &Layout) -> Result<()> {
    match &s.cluster {
        Some(c) if c.joined.is_some() => crate::outln!(
            "Joined: node {} ({}) of the cluster at {}, state in {}",
            c.hostname,
            c.node_ip,
            s.api_endpoint.as_deref().unwrap_or("-"),
            s.state_dir
        )?,
        Some(c) => crate::outln!(
            "Cluster: node {} ({}), API server {}, state in {}",
            c.hostname,
            c.node_ip,
            s.api_endpoint.as_deref().unwrap_or("-"),
            s.state_dir
        )?,
        None => crate::outln!("No cluster in {} (run `sudo kinit up`).", s.state_dir)?,
    }
    if let Some(node) = &s.node {
        crate::outln!("Node: {} {}", node.name, node.state)?;
    }
    // With more than this host's node, each of them.
    if s.nodes.len() > 1 {
        crate::outln!("Nodes:")?;
        for n in &s.nodes {
            crate::outln!(
                "  {:<24} {:<9} {:<16} pods {}{}",
                n.name,
                if n.ready { "Ready" } else { "NotReady" },
                n.address.as_deref().unwrap_or("-"),
                n.pod_cidr.as_deref().unwrap_or("-"),
                if n.schedulable { "" } else { ", cordoned" }
            )?;
        }
    }
    if let Some(c) = &s.cluster {
        print_additions(c, layout)?;
    }
    crate::outln!(
        "Versions: kinit {}, Kubernetes {} (API server reports {}), etcd {}, CoreDNS {}; Docker {}",
        s.versions.kinit,
        s.versions.kubernetes,
        s.versions.api_server.as_deref().unwrap_or("-"),
        s.versions.etcd,
        s.versions.coredns,
        s.docker.version
    )?;
    crate::outln!()?;
    crate::outln!(
        "{:<20} {:<14} {:<12} HEALTH",
        "COMPONENT",
        "CONTAINER",
        "STATE"
    )?;
    for c in &s.components {
        let (container, state) = match &c.container {
            Some(ct) => (short(&ct.name), ct.status.as_str()),
            None => ("-".to_string(), "missing"),
        };
        crate::outln!(
            "{:<20} {:<14} {:<12} {}",
            c.name,
            container,
            state,
            c.health
        )?;
    }
    crate::outln!()?;
    match &s.socks {
        Some(r) => crate::outln!(
            "kinit socks: running (pid {}) on {}, log {}",
            r.pid,
            r.listen,
            r.log.display()
        )?,
        None => crate::outln!("kinit socks: not running in the background")?,
    }
    Ok(())
}

/// What the user added to the components (`kinit up --feature-gates`, ...), when anything.
fn print_additions(c: &Settings, layout: &Layout) -> Result<()> {
    if !c.feature_gates.is_empty() {
        crate::outln!("Feature gates: {}", c.feature_gates)?;
    }
    if !c.extra_args.is_empty() {
        crate::outln!("Extra args: {}", c.extra_args)?;
    }
    if c.audit_log {
        crate::outln!("Audit log: {}", layout.audit_log().display())?;
    }
    if !c.pod_security.is_privileged() {
        crate::outln!(
            "Pod Security: {} enforced outside kube-system",
            c.pod_security
        )?;
    }
    Ok(())
}

/// Pod containers have long generated names; the first part says enough.
fn short(name: &str) -> String {
    if name.len() > 13 {
        format!("{}…", &name[..12])
    } else {
        name.to_string()
    }
}
