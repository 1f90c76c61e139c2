//! `kinit status`: each component's container and health, the endpoint and versions.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{OutputFormat, StatusArgs};
use crate::cluster::Settings;
use crate::components::{self, etcd};
use crate::docker::{self, ContainerState, Docker};
use crate::health;
use crate::layout::Layout;
use crate::versions;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    state_dir: String,
    /// `None` when no cluster was created in this state directory.
    cluster: Option<Settings>,
    docker: docker::EngineInfo,
    versions: Versions,
    components: Vec<Component>,
    not_started_by_this_version: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Versions {
    kinit: String,
    kubernetes: String,
    etcd: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Component {
    name: String,
    endpoint: Option<String>,
    /// The container, or `None` when it does not exist.
    container: Option<ContainerState>,
    /// "healthy", "unhealthy: <why>" or "not running".
    health: String,
}

pub async fn run(state_dir: Option<&Path>, args: &StatusArgs) -> Result<()> {
    let layout = Layout::resolve(state_dir)?;
    let cluster = Settings::load(&layout.settings_file())?;
    let docker = Docker::connect().await?;

    let mut components = Vec::new();
    for name in components::STARTED {
        let container = docker.inspect(&docker::container_name(name)).await?;
        let health = match &container {
            // The health-check key is root's alone (0600).
            Some(c) if c.running && !nix::unistd::geteuid().is_root() => {
                "unknown (run `sudo kinit status` to check health)".to_string()
            }
            Some(c) if c.running => match *name {
                "etcd" => match health::etcd(&layout, Duration::from_secs(3)).await {
                    Ok(()) => "healthy".to_string(),
                    Err(e) => format!("unhealthy: {e:#}"),
                },
                _ => "running".to_string(),
            },
            _ => "not running".to_string(),
        };
        let endpoint = cluster.as_ref().filter(|_| *name == "etcd").map(|s| {
            format!(
                "https://{}",
                std::net::SocketAddr::new(s.node_ip, etcd::CLIENT_PORT)
            )
        });
        components.push(Component {
            name: name.to_string(),
            endpoint,
            container,
            health,
        });
    }

    let status = Status {
        state_dir: layout.root().display().to_string(),
        cluster,
        docker: docker.engine_info().await?,
        versions: Versions {
            kinit: env!("CARGO_PKG_VERSION").into(),
            kubernetes: versions::KUBERNETES_VERSION.into(),
            etcd: versions::ETCD_VERSION.into(),
        },
        components,
        not_started_by_this_version: components::NOT_YET.iter().map(|s| s.to_string()).collect(),
    };
    match args.output {
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).context("cannot serialize the status")?
            )
        }
        OutputFormat::Text => print_text(&status),
    }
    Ok(())
}

fn print_text(s: &Status) {
    match &s.cluster {
        Some(c) => println!(
            "Cluster: node {} ({}), state in {}",
            c.hostname, c.node_ip, s.state_dir
        ),
        None => println!("No cluster in {} (run `sudo kinit up`).", s.state_dir),
    }
    println!(
        "Versions: kinit {}, Kubernetes {}, etcd {}; Docker {}",
        s.versions.kinit, s.versions.kubernetes, s.versions.etcd, s.docker.version
    );
    println!();
    println!(
        "{:<12} {:<16} {:<12} {:<28} HEALTH",
        "COMPONENT", "CONTAINER", "STATE", "ENDPOINT"
    );
    for c in &s.components {
        let (container, state) = match &c.container {
            Some(ct) => (ct.name.as_str(), ct.status.as_str()),
            None => ("-", "missing"),
        };
        println!(
            "{:<12} {:<16} {:<12} {:<28} {}",
            c.name,
            container,
            state,
            c.endpoint.as_deref().unwrap_or("-"),
            c.health
        );
    }
    println!();
    println!(
        "Not started by this version of kinit: {}.",
        s.not_started_by_this_version.join("; ")
    );
}
