//! `kinit down`: remove kinit's containers, keeping the data unless `--purge`. A joined
//! host first leaves its cluster (drained, its Node deleted); the control-plane host
//! refuses to purge a cluster other hosts are joined to unless `--force`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::DownArgs;
use crate::cluster::{Container, Settings};
use crate::components::node;
use crate::docker::{Docker, container_name};
use crate::fs::{self, Lock};
use crate::kubernetes::Kube;
use crate::layout::{LOCK_FILE, Layout};
use crate::progress;
use crate::teardown::{self, Note};
use crate::wait;

/// How long a drain may stand still (pods terminating, evictions a budget refuses).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the kubelet gets to stop before its Node is deleted.
const KUBELET_GRACE_SECONDS: i32 = 10;

pub async fn run(state_dir: Option<&Path>, args: &DownArgs) -> Result<()> {
    super::require_root("down")?;
    let layout = Layout::resolve(state_dir)?;
    if args.purge {
        teardown::refuse_foreign_directory(&layout)?;
    }
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let docker = Docker::connect().await?;
    let note = |note: Note| match note {
        Note::Done(line) => progress::println(&format!(" ✓ {line}")),
        Note::Warning(line) => progress::println(&format!(" ! {line}")),
    };
    match Settings::load(&layout.settings_file())? {
        Some(s) if s.joined.is_some() => leave(&layout, &s, &docker, args.force, &note).await?,
        Some(s) => check_other_nodes(&layout, &s, args, &note).await?,
        None => {}
    }
    teardown::run(&layout, &docker, args.purge, &note).await?;
    if !args.purge && layout.settings_file().exists() {
        progress::println(&format!(
            "Kept the cluster's data in {}; `kinit up` brings the same cluster back, `kinit down --purge` deletes it.",
            layout.root().display()
        ));
    }
    Ok(())
}

/// A joined host leaves its cluster: its Node cordoned and drained, the kubelet stopped
/// (it would register the Node again), the Node deleted. With `force`, what cannot be
/// done is reported and the teardown goes on.
async fn leave(
    layout: &Layout,
    settings: &Settings,
    docker: &Docker,
    force: bool,
    note: &dyn Fn(Note),
) -> Result<()> {
    let name = settings.hostname.as_str();
    let kubeconfig = node::kubelet_kubeconfig(layout);
    if !kubeconfig.exists() {
        // The join stopped before the kubelet had its credentials: no Node to take out.
        return Ok(());
    }
    let server = settings.joined.as_ref().map_or("", |j| j.server.as_str());
    let give_up = |e: anyhow::Error, what: &str| -> Result<()> {
        if force {
            note(Note::Warning(format!(
                "{what}: {e:#}; going on (--force). On the control-plane host, `kubectl delete node {name}` removes its Node."
            )));
            Ok(())
        } else {
            Err(e.context(format!(
                "{what}; `kinit down --force` leaves without it (the cluster at {server} keeps the Node {name} until it is deleted there)"
            )))
        }
    };
    let kube = Kube::connect_current(&kubeconfig).await?;
    let cordoned = match kube.cordon(name).await {
        Ok(found) => found,
        Err(e) => return give_up(e, "cannot cordon this node"),
    };
    if cordoned {
        let drained = wait::within("the drain did not finish", DRAIN_TIMEOUT, async |seen| {
            kube.drain(name, seen).await
        })
        .await;
        match drained {
            Ok(n) => note(Note::Done(format!(
                "Drained the node {name}: {n} pods evicted (DaemonSet pods stay until the node goes)"
            ))),
            Err(e) => give_up(e, "cannot drain this node")?,
        }
    }
    let kubelet = container_name(Container::Node.label());
    docker.stop(&kubelet, KUBELET_GRACE_SECONDS).await?;
    docker.remove(&kubelet).await?;
    match kube.delete_node(name).await {
        Ok(()) => note(Note::Done(format!(
            "Deleted the node {name} from the cluster at {server}"
        ))),
        Err(e) => give_up(e, "cannot delete this host's Node")?,
    }
    Ok(())
}

/// On the control-plane host: the other nodes are recorded (a purge after the API server
/// stopped still knows of them), and a purge while there are any needs `force`.
async fn check_other_nodes(
    layout: &Layout,
    settings: &Settings,
    args: &DownArgs,
    note: &dyn Fn(Note),
) -> Result<()> {
    let live = match Kube::connect(&layout.kubeconfig("admin.conf")).await {
        Ok(kube) => kube
            .node_summaries()
            .await
            .ok()
            .map(|nodes| nodes.into_iter().map(|n| n.name).collect::<Vec<_>>()),
        Err(_) => None,
    };
    let others: Vec<String> = match live {
        Some(names) => {
            let others: Vec<String> = names
                .into_iter()
                .filter(|n| n != settings.hostname.as_str())
                .collect();
            fs::write_file(
                &layout.nodes_record(),
                others.join("\n").as_bytes(),
                fs::Mode::Public,
            )?;
            others
        }
        None => match fs::read_optional(&layout.nodes_record())? {
            Some(record) => String::from_utf8_lossy(&record)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect(),
            None => Vec::new(),
        },
    };
    if !args.purge || others.is_empty() {
        return Ok(());
    }
    if args.force {
        note(Note::Warning(format!(
            "Purging a cluster other hosts are joined to (--force): {}; `sudo kinit down --purge` on each of them cleans it up",
            others.join(", ")
        )));
        return Ok(());
    }
    bail!(
        "other hosts are joined to this cluster: {}; `sudo kinit down` on each of them first \
         (it drains and removes its node), or `kinit down --purge --force` deletes the cluster anyway",
        others.join(", ")
    )
}
