//! Taking a cluster down, the counterpart of the bring-up (the `steps` module): kinit's
//! containers and pods, what those held on the host, kinit's network state and, with
//! `purge`, its files.
//!
//! Everything runs as root on a host kinit shares, so each step is scoped to what kinit
//! made: pod containers by the kubelet cgroup root kinit gives its pods, iptables rules
//! by kinit's CNI network name and chains ([`iptables`]), the bridge by the address kinit's
//! network gave it ([`bridge`]). Each step is idempotent and a purge deletes the state
//! directory's `cluster.yaml` last, so a teardown killed at any point finishes when run
//! again.

pub mod bridge;
pub mod iptables;
pub mod kube_router;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cluster::{Container, Settings};
use crate::components::{master, proxy};
use crate::docker::Docker;
use crate::download::Downloader;
use crate::fs;
use crate::kubeconfig;
use crate::layout::Layout;
use crate::socks::detach;
use crate::versions::Images;

/// Seconds a component gets to shut down cleanly (etcd flushes its WAL).
const STOP_GRACE_SECONDS: i32 = 10;

/// Processes that program the host's KUBE- chains: kube-proxy, the kubelet, kube-router and the
/// distributions that run them inside one binary (k3s, MicroK8s). `/proc/<pid>/comm`
/// holds at most 15 characters.
const KUBE_AGENTS: [&str; 6] = [
    "kube-proxy",
    "kubelet",
    "kube-router",
    "k3s-server",
    "k3s-agent",
    "kubelite",
];

/// What a teardown reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Done(String),
    /// Something left alone, or that could not be done, and why; the teardown goes on.
    Warning(String),
}

/// `--purge` deletes a whole directory tree; make sure it is one kinit made. A purge
/// deletes `cluster.yaml` last, so a purge that was interrupted passes this check again.
pub fn refuse_foreign_directory(layout: &Layout) -> Result<()> {
    let root = layout.root();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(()); // missing: nothing to delete
    };
    // The record of pulled images is written before cluster.yaml (the images step comes
    // before the certificates): an `up` that failed in between left only that.
    let early = layout.kinit_pulled_images();
    let mut others = entries.flatten().filter(|e| e.path() != early);
    if others.next().is_some() && !layout.settings_file().exists() {
        bail!(
            "{} does not look like a kinit state directory (it has no cluster.yaml); not deleting it",
            root.display()
        );
    }
    Ok(())
}

/// Removes kinit's containers and pods and their traces on the host; with `purge`, also
/// kinit's network, the state directory, the node image and the download cache.
pub async fn run(layout: &Layout, docker: &Docker, purge: bool, note: &dyn Fn(Note)) -> Result<()> {
    if purge {
        refuse_foreign_directory(layout)?;
    }
    let done = |line: String| note(Note::Done(line));
    if let Some(socks) = detach::stop(layout)? {
        done(format!(
            "Stopped kinit socks (pid {}, {})",
            socks.pid, socks.listen
        ));
    }
    remove_containers(docker, &done).await?;
    crate::crash::point("containers-removed");
    release_pod_state(layout, &done)?;
    if clean_network(layout, purge, note)? {
        clean_kube_router(layout, docker, note).await;
    }
    if purge {
        remove_kubeconfig_context(layout, note);
        remove_cgroups(note);
        let unpersisted = crate::host::unpersist(Path::new("/etc"))?;
        if !unpersisted.is_empty() {
            done(format!("Deleted {}", unpersisted.join(", ")));
        }
        if unpersisted.iter().any(|f| f == crate::host::LOGIND_FILE) && crate::host::has_logind() {
            crate::host::reload_logind()?;
        }
        // Read before the state directory goes; removed after it, with nothing of
        // kinit's left to use them.
        let pulled = pulled_images(layout)?;
        remove_state(layout)?;
        done(format!(
            "Deleted {} (certificates, etcd data, settings)",
            layout.root().display()
        ));
        let images = docker
            .remove_labelled_images(
                crate::node_image::LABEL_RECIPE,
                &crate::node_image::REPOSITORIES,
                None,
            )
            .await?;
        if !images.is_empty() {
            done(format!("Removed the node image {}", images.join(", ")));
        }
        let images = docker.remove_unused_images(&pulled).await?;
        if !images.is_empty() {
            done(format!(
                "Removed {} image(s) kinit or its node pulled: {}",
                images.len(),
                images.join(", ")
            ));
        }
        let cache = Downloader::default_cache()?;
        Downloader::purge(&cache)?;
        done(format!("Deleted {} (downloaded binaries)", cache.display()));
    }
    Ok(())
}

/// The images kinit pulled for the cluster and those its node pulled for pods: not the
/// ones that were in the engine before (another tool's, the user's own builds).
fn pulled_images(layout: &Layout) -> Result<std::collections::BTreeSet<String>> {
    let mut ids = crate::docker::read_image_ids(&layout.kinit_pulled_images())?;
    ids.extend(crate::docker::read_image_ids(&layout.pulled_images())?);
    Ok(ids)
}

/// kinit's components, the kubelet (kinit-master, or kinit-node on a joined host) first so
/// it does not start pods again while they are
/// removed, and etcd last, so it flushes after everything that writes to it has stopped;
/// between them the pods kinit's kubelet made, and no other kubelet's.
async fn remove_containers(docker: &Docker, done: &impl Fn(String)) -> Result<()> {
    let containers = docker.list().await?;
    let order = [
        Container::Master,
        Container::Node,
        Container::Proxy,
        Container::Etcd,
    ];
    let mut removed = Vec::new();
    for component in order {
        for c in containers
            .iter()
            .filter(|c| c.component.as_deref() == Some(component.label()))
        {
            docker.stop(&c.name, STOP_GRACE_SECONDS).await?;
            docker.remove(&c.name).await?;
            removed.push(c.name.clone());
        }
        if matches!(component, Container::Master | Container::Node) {
            let pods = docker.pod_containers(crate::cgroup::is_kinits).await?;
            for pod in &pods.ours {
                docker.remove(pod).await?;
            }
            if !pods.ours.is_empty() {
                done(format!("Removed {} pod containers", pods.ours.len()));
            }
        }
    }
    // Anything else labelled as kinit's (e.g. from a newer kinit).
    for c in &containers {
        if !removed.contains(&c.name) {
            docker.stop(&c.name, STOP_GRACE_SECONDS).await?;
            docker.remove(&c.name).await?;
            removed.push(c.name.clone());
        }
    }
    if removed.is_empty() {
        done("No kinit containers to remove".into());
    } else {
        done(format!("Removed {}", removed.join(", ")));
    }
    Ok(())
}

/// Pods were removed without the kubelet, so nothing released what they held on the host:
/// their volume mounts, their IP reservations and cri-dockerd's records of them. The next
/// `kinit up` makes new sandboxes for every pod, so all of it is stale.
fn release_pod_state(layout: &Layout, done: &impl Fn(String)) -> Result<()> {
    let unmounted = fs::unmount_below(&layout.kubelet())?;
    if unmounted > 0 {
        done(format!("Unmounted {unmounted} pod volumes"));
    }
    let reservations = master::ipam_dir(layout).join(master::NETWORK);
    let mut released = 0;
    if let Ok(entries) = std::fs::read_dir(&reservations) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            // host-local keeps one file per address, plus its lock and a cursor.
            if name.to_string_lossy().parse::<std::net::IpAddr>().is_ok() {
                std::fs::remove_file(entry.path()).with_context(|| {
                    format!("cannot release the address {}", entry.path().display())
                })?;
                released += 1;
            }
        }
    }
    if released > 0 {
        done(format!("Released {released} pod IP reservations"));
    }
    fs::remove_tree(&layout.cri_dockerd().join("sandbox"))
}

/// Takes kinit's rules and chains out of the host's iptables (the per-pod ones always,
/// everything with `purge`), and with `purge` the pod bridge. Whether the cluster's own
/// chains went too (kinit's cluster was established to have made them).
fn clean_network(layout: &Layout, purge: bool, note: &dyn Fn(Note)) -> Result<bool> {
    let kube = if purge {
        match kube_chains_owner(layout) {
            Ok(()) => true,
            Err(why) => {
                note(Note::Warning(format!(
                    "Left kube-proxy's KUBE- chains in iptables alone: {why}"
                )));
                false
            }
        }
    } else {
        false
    };
    let scope = iptables::Scope { purge, kube };
    let mut any_family = false;
    for cmd in ["iptables", "ip6tables"] {
        let removed = match iptables::clean(cmd, scope) {
            Ok(Some(removed)) => removed,
            Ok(None) => continue,
            // A kernel without IPv6 has no ip6tables to list, and kinit's pods are IPv4.
            Err(e) if cmd == "ip6tables" => {
                note(Note::Warning(format!("Left ip6tables alone: {e:#}")));
                continue;
            }
            Err(e) => return Err(e),
        };
        any_family = true;
        if removed.rules + removed.chains > 0 {
            note(Note::Done(format!(
                "Removed {} {cmd} rules and {} chains of kinit's",
                removed.rules, removed.chains
            )));
        }
    }
    if !any_family {
        note(Note::Warning(
            "Left iptables alone: this host has no iptables-save and iptables-restore".into(),
        ));
    }
    if !purge {
        return Ok(kube);
    }
    let settings = match Settings::load(&layout.settings_file()) {
        Ok(Some(settings)) => settings,
        Ok(None) => return Ok(kube),
        Err(e) => {
            note(Note::Warning(format!(
                "Left the {} bridge alone: {e:#}",
                master::BRIDGE
            )));
            return Ok(kube);
        }
    };
    match bridge::remove(settings.pod_cidr.node_range())? {
        bridge::Outcome::Absent => {}
        bridge::Outcome::Deleted => {
            note(Note::Done(format!("Deleted the bridge {}", master::BRIDGE)))
        }
        bridge::Outcome::Kept(why) => note(Note::Warning(format!(
            "Left the bridge {} alone: {why}",
            master::BRIDGE
        ))),
    }
    Ok(kube)
}

/// kube-router's routes, bridge and ipsets, once its chains are gone; each left with a
/// warning when it cannot go.
async fn clean_kube_router(layout: &Layout, docker: &Docker, note: &dyn Fn(Note)) {
    let warn = |what: &str, e: anyhow::Error| {
        note(Note::Warning(format!(
            "Left kube-router's {what} alone: {e:#}"
        )))
    };
    let settings = match Settings::load(&layout.settings_file()) {
        Ok(Some(settings)) => settings,
        Ok(None) => return,
        Err(e) => return warn("routes, bridge and ipsets", e),
    };
    match kube_router::remove_routes(settings.pod_cidr.net()) {
        Ok(0) => {}
        Ok(n) => note(Note::Done(format!(
            "Removed {n} routes to other nodes' pods"
        ))),
        Err(e) => warn("routes", e),
    }
    match kube_router::remove_bridge() {
        Ok(true) => note(Note::Done("Deleted the bridge kube-bridge".into())),
        Ok(false) => {}
        Err(e) => warn("kube-bridge", e),
    }
    let image = match settings.release() {
        Ok(release) => Images::new(settings.image_repository.as_deref(), release).kube_router(),
        Err(e) => return warn("ipsets", e),
    };
    match docker.has_image(&image).await {
        Ok(true) => {}
        Ok(false) => {
            return note(Note::Warning(format!(
                "Left kube-router's ipsets alone: its image {image} is gone; `ipset list -n` shows them (kube-router-*, KUBE-SRC-*, KUBE-DST-*)"
            )));
        }
        Err(e) => return warn("ipsets", e),
    }
    match kube_router::remove_sets(docker, &image).await {
        Ok(sets) if sets.is_empty() => {}
        Ok(sets) => note(Note::Done(format!(
            "Destroyed {} of kube-router's ipsets",
            sets.len()
        ))),
        Err(e) => warn("ipsets", e),
    }
}

/// Whether the KUBE- chains in the host's iptables are kinit's kube-proxy's; if not, why.
///
/// kube-proxy and the kubelet leave no mark on their chains, and two kube-proxies on one
/// host would own the same KUBE-SERVICES. So they are taken as kinit's when this state
/// directory ran a kube-proxy (its configuration is here) and no other kube-proxy,
/// kubelet or Kubernetes distribution runs in the host's network namespace now (kinit's
/// own stopped with their containers): then nothing else uses them. Agents in other
/// network namespaces (kind's nodes, say) have iptables of their own and do not count.
fn kube_chains_owner(layout: &Layout) -> Result<(), String> {
    if !proxy::config_file(layout).exists() {
        return Err("kinit never ran kube-proxy from this state directory".into());
    }
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    let processes = crate::host::processes().map_err(|e| format!("{e:#}"))?;
    for (pid, comm) in processes {
        if !KUBE_AGENTS.contains(&comm.as_str()) {
            continue;
        }
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let same_network = match (&ours, theirs) {
            (Some(a), Some(b)) => *a == b,
            // Unknown: assume it shares the host's iptables.
            _ => true,
        };
        if same_network {
            return Err(format!(
                "{comm} (pid {pid}) runs on this host and may use them"
            ));
        }
    }
    Ok(())
}

/// Takes the `kinit` context out of the kubeconfig `kinit up` merged it into. A file kinit
/// cannot read as a kubeconfig is left exactly as it is, with a warning: it is the user's.
fn remove_kubeconfig_context(layout: &Layout, note: &dyn Fn(Note)) {
    let path = match fs::read_optional(&layout.kubeconfig_record()) {
        Ok(Some(record)) => PathBuf::from(String::from_utf8_lossy(&record).trim()),
        Ok(None) => return,
        Err(e) => {
            note(Note::Warning(format!("Left your kubeconfig alone: {e:#}")));
            return;
        }
    };
    match take_context_out(layout, &path) {
        Ok(true) => note(Note::Done(format!(
            "Removed the kinit context from {}",
            path.display()
        ))),
        Ok(false) => {}
        Err(e) => note(Note::Warning(format!(
            "Left {} as it is: {e:#}; remove the kinit context yourself (kubectl config delete-context kinit)",
            path.display()
        ))),
    }
}

/// Whether there was a file to take the context out of. Read and rewritten through one
/// directory handle: a link at the file or on the way to it is refused, never followed.
fn take_context_out(layout: &Layout, path: &Path) -> Result<bool> {
    let admin = kubeconfig::read_admin(&layout.kubeconfig("admin.conf"))?;
    // The owner the file has is kept: it is the user's, not root's.
    let target = kubeconfig::Target {
        path: path.to_path_buf(),
        owner: None,
    };
    kubeconfig::remove_from(&target, &admin)
}

/// The kubelet's cgroups under kinit's root are empty once its pods are gone. Under
/// systemd the slice is stopped first, so systemd removes what it made; the rest goes
/// deepest first (cgroup directories go with rmdir, never with their "files"). A host
/// whose cgroups cannot be read has nothing of kinit's there to remove.
fn remove_cgroups(note: &dyn Fn(Note)) {
    let teardown = match crate::cgroup::Teardown::probe() {
        Ok(t) => t,
        Err(e) => {
            note(Note::Warning(format!("Left the cgroups alone: {e:#}")));
            return;
        }
    };
    if let Some(slice) = teardown.stop_slice
        && let Some(systemctl) = fs::system_tool("systemctl")
    {
        let _ = std::process::Command::new(systemctl)
            .env("PATH", fs::SYSTEM_PATH)
            .args(["stop", slice])
            .output();
    }
    for tree in &teardown.trees {
        remove_cgroup_tree(tree);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Deletes the state directory with `cluster.yaml` last: until then the directory still
/// reads as kinit's, so a purge killed half way is allowed to run again and finish.
fn remove_state(layout: &Layout) -> Result<()> {
    let root = layout.root();
    let settings = layout.settings_file();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        let path = entry.path();
        if path == settings {
            continue;
        }
        // Symbolic links go as links; remove_tree never follows them.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_tree(&path)?;
        } else {
            remove_file(&path)?;
        }
        crate::crash::point("state-partly-deleted");
    }
    remove_file(&settings)?;
    match std::fs::remove_dir(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A mount point (the state on a disk or volume of its own) stays, emptied.
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", root.display())),
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}
