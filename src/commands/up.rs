//! `kinit up`: the bring-up, step by step.

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::cli::UpArgs;
use crate::cluster::Settings;
use crate::fs::Lock;
use crate::layout::{LOCK_FILE, Layout};
use crate::net;
use crate::progress::{self, Steps};
use crate::steps::{self, Context};

pub async fn run(
    state_dir: Option<&Path>,
    config_path: Option<&Path>,
    args: &UpArgs,
) -> Result<()> {
    // Everything that can refuse does so before the first change to the host.
    let extra_args = args.components.extra_args().map_err(|e| anyhow!(e))?;
    super::require_root("up")?;
    let layout = Layout::resolve(state_dir)?;
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let config = super::load_config(config_path)?;
    let mut requested = args.cluster.requested();
    if requested.kubernetes_version.is_none() {
        requested.kubernetes_version = config.kubernetes_version.clone();
    }
    // Flags win over the config file; either replaces what the cluster has.
    let flags = &args.components;
    requested.feature_gates = flags
        .feature_gates
        .clone()
        .or_else(|| config.feature_gates.clone());
    requested.extra_args = extra_args.or_else(|| config.extra_args.clone());
    requested.audit_log = flags.audit_log.or(config.audit_log);
    requested.pod_security = flags.pod_security.or(config.pod_security);
    let saved = Settings::load(&layout.settings_file())?;
    if let Some(node) = saved.as_ref().filter(|s| !s.is_control_plane()) {
        refuse_cluster_flags(node, args)?;
        let in_config = cluster_settings_in_config(&config);
        if !in_config.is_empty() {
            progress::println(&format!(
                " ! This host is a node of another host's cluster: {} in the config file \
                 apply on that host (`kinit up` there), not here",
                in_config.join(", ")
            ));
        }
        let sources = args
            .sources
            .resolve(&config, node.image_repository.as_deref())?;
        return super::join::repair(layout, node.clone(), sources, requested.node_ip).await;
    }
    let new_cluster = saved.is_none();
    let mut settings = match saved {
        Some(saved) => Settings::reconcile(saved, &requested)?,
        None => Settings::new(&requested)?,
    };
    if let Some(wanted) = args.addons.as_ref().or(config.addons.as_ref()) {
        for kept in settings.request_addons(wanted, new_cluster) {
            progress::println(&format!(
                " ! The addon {kept} stays enabled (`kinit addons disable {kept}` removes it)"
            ));
        }
    }
    // Certificates, etcd and the node follow; the pki step records the new address.
    if let Some(old) =
        settings.follow_node_ip(requested.node_ip, net::is_local_address, net::primary_ip)?
    {
        progress::println(&format!(
            " ! The node's address moved from {old} to {}: its certificates and etcd follow it",
            settings.node_ip
        ));
    }
    let sources = args.sources.resolve(&config, None)?;
    let user_kubeconfig = Some(crate::kubeconfig::resolve_target(args.kubeconfig.as_deref())?.path);
    if sources.image_repository.is_some() {
        settings.image_repository = sources.image_repository.clone();
    }
    let ctx = Context::new(
        layout,
        settings,
        sources,
        args.bin_dir.clone(),
        user_kubeconfig,
    )
    .await?;

    let mut steps = Steps::new();
    // Everything that comes over the network first: a bad mirror, registry or file fails
    // before the host has changed.
    steps
        .run("Checking the host", steps::preflight::run(&ctx))
        .await?;
    steps
        .run("Downloading release files", steps::download::run(&ctx))
        .await?;
    steps
        .run("Making images available", steps::images::run(&ctx))
        .await?;
    steps
        .run("Assembling the node image", steps::node::run(&ctx))
        .await?;
    steps
        .run("Surviving reboots (kinit-boot)", steps::boot::run(&ctx))
        .await?;
    steps
        .run("Writing certificates", steps::pki::run(&ctx))
        .await?;
    steps.run("Starting etcd", steps::etcd::run(&ctx)).await?;
    steps
        .run(
            "Starting the control plane (kinit-master)",
            steps::master::run(&ctx),
        )
        .await?;
    steps
        .run("Starting kube-proxy (kinit-proxy)", steps::proxy::run(&ctx))
        .await?;
    steps
        .run(
            "Applying cluster DNS, RBAC and addons",
            steps::addons::run(&ctx),
        )
        .await?;
    steps
        .run(
            "Waiting for the cluster to be ready",
            steps::ready::run(&ctx),
        )
        .await?;
    steps
        .run(
            "Following the node's address (kube-router)",
            steps::router::run(&ctx),
        )
        .await?;
    steps
        .run("Installing kubectl", steps::kubectl::run(&ctx))
        .await?;
    steps
        .run("Writing the kubeconfig", steps::kubeconfig::run(&ctx))
        .await?;

    let say = progress::println;
    say("");
    if !steps.changed() {
        say("Nothing to do: the cluster was already up.");
    }
    say(&format!(
        "Cluster \"kinit\" is ready in {}: Kubernetes {} at {}.",
        steps.elapsed(),
        ctx.settings.kubernetes_version,
        ctx.settings.api_server_url()
    ));
    say("Next:");
    say("  kubectl get nodes");
    say("  kubectl create deployment web --image=nginx && kubectl expose deployment web --port=80");
    say("  kinit socks        # browse pod and Service IPs through a SOCKS5 proxy on :8082");
    Ok(())
}

/// The flags of `kinit up` that set the cluster or this host's part in it, given on the
/// command line.
fn cluster_flags(args: &UpArgs) -> Vec<&'static str> {
    let (c, k) = (&args.cluster, &args.components);
    given([
        ("--hostname", c.hostname.is_some()),
        ("--service-cidr", c.service_cidr.is_some()),
        ("--dns-domain", c.dns_domain.is_some()),
        ("--pod-cidr", c.pod_cidr.is_some()),
        ("--kubernetes-version", c.kubernetes_version.is_some()),
        ("--feature-gates", k.feature_gates.is_some()),
        ("--extra-arg", !k.extra_arg.is_empty()),
        ("--no-extra-args", k.no_extra_args),
        ("--audit-log", k.audit_log.is_some()),
        ("--pod-security", k.pod_security.is_some()),
        ("--addons", args.addons.is_some()),
        ("--kubeconfig", args.kubeconfig.is_some()),
    ])
}

/// A joined host takes the cluster's settings from the control plane and keeps the name
/// it joined with, so a flag that would change either is refused rather than ignored.
fn refuse_cluster_flags(node: &Settings, args: &UpArgs) -> Result<()> {
    let flags = cluster_flags(args);
    if flags.is_empty() {
        return Ok(());
    }
    let server = node.joined.as_ref().map_or("", |j| j.server.as_str());
    Err(anyhow!(
        "this host is a node of the cluster at {server}: {} do not apply here. The \
         cluster's settings are set by `kinit up` on its control-plane host; a node keeps \
         the name it joined with (`sudo kinit down --purge`, then `kinit join --hostname`, \
         renames it); kubectl's kubeconfig is the control-plane host's. On a node, `kinit \
         up` takes --node-ip and where files come from",
        flags.join(", ")
    ))
}

/// The config file's cluster settings, which a joined host does not use.
fn cluster_settings_in_config(config: &crate::config::Config) -> Vec<&'static str> {
    given([
        ("kubernetesVersion", config.kubernetes_version.is_some()),
        ("featureGates", config.feature_gates.is_some()),
        ("extraArgs", config.extra_args.is_some()),
        ("auditLog", config.audit_log.is_some()),
        ("podSecurity", config.pod_security.is_some()),
        ("addons", config.addons.is_some()),
    ])
}

/// The names whose setting was given.
fn given<const N: usize>(settings: [(&'static str, bool); N]) -> Vec<&'static str> {
    settings
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cluster::{self, Joined};

    fn up_args(flags: &[&str]) -> UpArgs {
        let argv = ["kinit", "up"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("valid flags").command {
            Command::Up(args) => args,
            other => panic!("not up: {other:?}"),
        }
    }

    #[test]
    fn a_joined_host_refuses_the_clusters_flags_and_takes_its_own() {
        let node = Settings {
            joined: Some(Joined {
                server: "https://10.0.2.15:6443".into(),
                control_plane: "kinit-a".parse().expect("valid name"),
            }),
            ..cluster::test_settings()
        };
        let own = up_args(&["--node-ip", "10.0.2.16", "--mirror", "http://127.0.0.1:1"]);
        assert!(refuse_cluster_flags(&node, &own).is_ok());
        let err = refuse_cluster_flags(
            &node,
            &up_args(&[
                "--pod-security",
                "baseline",
                "--addons",
                "",
                "--node-ip",
                "10.0.2.16",
            ]),
        )
        .expect_err("cluster flags on a node")
        .to_string();
        assert!(
            err.contains("node of the cluster at https://10.0.2.15:6443: --pod-security, --addons"),
            "{err}"
        );
        assert!(!err.contains("--node-ip,"), "{err}");
    }
}
