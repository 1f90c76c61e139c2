//! `kinit down`: remove kinit's containers, keeping the data unless `--purge`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::DownArgs;
use crate::components::{cleanup, master};
use crate::docker::Docker;
use crate::download::Downloader;
use crate::fs::{self, Lock};
use crate::layout::{LOCK_FILE, Layout};
use crate::pki;
use crate::progress;
use crate::socks::detach;
use crate::steps::kubeconfig;

/// Seconds a component gets to shut down cleanly (etcd flushes its WAL).
const STOP_GRACE_SECONDS: i32 = 10;

pub async fn run(state_dir: Option<&Path>, args: &DownArgs) -> Result<()> {
    super::require_root("down")?;
    let layout = Layout::resolve(state_dir)?;
    if args.purge {
        refuse_foreign_directory(&layout)?;
    }
    let _lock = Lock::acquire(Path::new(LOCK_FILE))?;
    let docker = Docker::connect().await?;
    let say = |line: String| progress::println(&format!(" ✓ {line}"));

    if let Some(socks) = detach::stop(&layout)? {
        say(format!(
            "Stopped kinit socks (pid {}, {})",
            socks.pid, socks.listen
        ));
    }

    // The kubelet first, so it does not start pods again while they are removed; etcd
    // last, so it flushes after everything that writes to it has stopped.
    let containers = docker.list().await?;
    let order = ["master", "proxy", "etcd"];
    let mut removed = Vec::new();
    for component in order {
        for c in containers
            .iter()
            .filter(|c| c.component.as_deref() == Some(component))
        {
            docker.stop(&c.name, STOP_GRACE_SECONDS).await?;
            docker.remove(&c.name).await?;
            removed.push(c.name.clone());
        }
        if component == "master" {
            let pods = docker.pod_containers().await?;
            for pod in &pods {
                docker.remove(pod).await?;
            }
            if !pods.is_empty() {
                say(format!("Removed {} pod containers", pods.len()));
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
        say("No kinit containers to remove".into());
    } else {
        say(format!("Removed {}", removed.join(", ")));
    }

    release_pod_state(&layout, &say)?;
    let mode = if args.purge {
        cleanup::Mode::Purge
    } else {
        cleanup::Mode::Down
    };
    clean_network(mode, &say).await?;

    if args.purge {
        remove_kubeconfig_context(&layout, &say)?;
        remove_cgroups();
        fs::remove_tree(layout.root())?;
        say(format!(
            "Deleted {} (certificates, etcd data, settings)",
            layout.root().display()
        ));
        let images = docker
            .remove_labelled_images(
                crate::node_image::LABEL_RECIPE,
                crate::node_image::REPOSITORY,
                None,
            )
            .await?;
        if !images.is_empty() {
            say(format!("Removed the node image {}", images.join(", ")));
        }
        let cache = Downloader::default_cache()?;
        Downloader::purge(&cache)?;
        say(format!("Deleted {} (downloaded binaries)", cache.display()));
    } else if layout.settings_file().exists() {
        progress::println(&format!(
            "Kept the cluster's data in {}; `kinit up` brings the same cluster back, `kinit down --purge` deletes it.",
            layout.root().display()
        ));
    }
    Ok(())
}

/// Pods were removed without the kubelet, so nothing released what they held on the host:
/// their volume mounts, their IP reservations and cri-dockerd's records of them. The next
/// `kinit up` makes new sandboxes for every pod, so all of it is stale.
fn release_pod_state(layout: &Layout, say: &impl Fn(String)) -> Result<()> {
    let unmounted = fs::unmount_below(&layout.kubelet())?;
    if unmounted > 0 {
        say(format!("Unmounted {unmounted} pod volumes"));
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
        say(format!("Released {released} pod IP reservations"));
    }
    fs::remove_tree(&layout.cri_dockerd().join("sandbox"))?;
    Ok(())
}

/// Runs the clean-up script on the host, with the iptables and ip the node used.
async fn clean_network(mode: cleanup::Mode, say: &impl Fn(String)) -> Result<()> {
    if !["iptables-save", "iptables", "ip"]
        .iter()
        .all(|c| fs::system_tool(c).is_some())
    {
        if mode == cleanup::Mode::Purge {
            progress::println(&format!(
                " ! Left iptables rules and the {} bridge alone: this host has no iptables or ip command",
                master::BRIDGE,
            ));
        }
        return Ok(());
    }
    let out = tokio::process::Command::new("/bin/sh")
        .env("PATH", fs::SYSTEM_PATH)
        .arg("-c")
        .arg(cleanup::script(mode)?)
        .output()
        .await
        .context("cannot run the network clean-up script on the host")?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        bail!("cleaning up the host's network failed (exit {code}):\n{output}");
    }
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        say(line.trim().to_string());
    }
    Ok(())
}

/// Takes the `kinit` context out of the kubeconfig `kinit up` merged it into.
fn remove_kubeconfig_context(layout: &Layout, say: &impl Fn(String)) -> Result<()> {
    let Some(record) = fs::read_optional(&layout.kubeconfig_record())? else {
        return Ok(());
    };
    let path = PathBuf::from(String::from_utf8_lossy(&record).trim());
    let admin = kubeconfig::read_admin(&layout.kubeconfig("admin.conf"))?;
    let Some(existing) = fs::read_optional(&path)? else {
        return Ok(());
    };
    let remaining = pki::kubeconfig::remove(&existing, &admin)
        .with_context(|| format!("cannot take the kinit context out of {}", path.display()))?;
    // write_owned keeps the owner the file has: it is the user's, not root's.
    let target = kubeconfig::Target {
        path: path.clone(),
        owner: None,
    };
    kubeconfig::write_owned(&target, remaining.as_bytes())?;
    say(format!("Removed the kinit context from {}", path.display()));
    Ok(())
}

/// The kubelet's cgroups under kinit's root are empty once its pods are gone; remove them
/// deepest first (cgroup directories go with rmdir, never with their "files").
fn remove_cgroups() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots =
        vec![PathBuf::from("/sys/fs/cgroup").join(master::CGROUP_ROOT.trim_start_matches('/'))];
    roots.extend(
        hierarchies
            .flatten()
            .map(|h| h.path().join(master::CGROUP_ROOT.trim_start_matches('/'))),
    );
    for root in roots {
        remove_cgroup_tree(&root);
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

/// `--purge` deletes a whole directory tree; make sure it is one kinit made.
fn refuse_foreign_directory(layout: &Layout) -> Result<()> {
    let root = layout.root();
    let Ok(mut entries) = std::fs::read_dir(root) else {
        return Ok(()); // missing: nothing to delete
    };
    if entries.next().is_some() && !layout.settings_file().exists() {
        bail!(
            "{} does not look like a kinit state directory (it has no cluster.yaml); not deleting it",
            root.display()
        );
    }
    Ok(())
}
