//! Checks the host before anything is changed: the Docker engine, free ports, disk space
//! and the cgroup layout; and the user's component settings against kinit's own. Every
//! failure names what to do about it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::Context;
use crate::cgroup::{self, Driver};
use crate::cluster::component::{Component, Container, Port};
use crate::components::master::{self, EVICTION_FREE_MIB};
use crate::components::{owned, proxy};
use crate::docker::EngineInfo;
use crate::net;
use crate::progress::Outcome;

/// Below this, etcd and the component images would soon fill the disk.
const MIN_FREE_BYTES: u64 = 2 << 30;

/// What an `up` needs when Docker has every image it runs already: room for etcd's growth
/// and logs. Refusing the full [`MIN_FREE_BYTES`] there would stop `up` from repairing a
/// cluster that runs.
const REPAIR_FREE_BYTES: u64 = 512 << 20;

/// The host tools the node runs (its container mounts the host's system directories),
/// the Debian/Ubuntu package that provides each, and whether a cluster works without it.
const HOST_TOOLS: &[(&str, &str, Need)] = &[
    ("sh", "dash", Need::Required),
    ("mkdir", "coreutils", Need::Required),
    ("mount", "mount", Need::Required),
    ("umount", "mount", Need::Required),
    ("nsenter", "util-linux", Need::Required),
    ("iptables", "iptables", Need::Required),
    ("iptables-save", "iptables", Need::Required),
    ("iptables-restore", "iptables", Need::Required),
    ("ip", "iproute2", Need::Required),
    ("socat", "socat", Need::PortForward),
];

/// With Docker's systemd driver, the master's entrypoint has the host's systemd start kinit's
/// slice.
const SYSTEMD_TOOLS: &[(&str, &str, Need)] = &[("systemctl", "systemd", Need::Required)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    /// Only `kubectl port-forward` uses it (cri-dockerd runs socat in the pod's network).
    PortForward,
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let engine = ctx.docker.engine_info().await?;
    let cgroup = cgroup::Setup::probe(&engine.cgroup_driver)?;
    cgroup.check_systemd(Path::exists)?;
    check_component_settings(ctx, &engine)?;
    let running: HashSet<Container> = ctx
        .docker
        .list()
        .await?
        .into_iter()
        .filter(|c| c.running || c.status == "restarting")
        .filter_map(|c| c.component.as_deref().and_then(Container::from_label))
        .collect();
    let missing_optional = check_host_tools(&host_tools(cgroup.driver), |t| {
        crate::fs::system_tool(t).is_some()
    })?;
    check_apparmor(
        apparmor_enabled(),
        crate::fs::system_tool("apparmor_parser").is_some(),
    )?;
    check_node_ip(ctx.settings.node_ip)?;
    check_ports(&ports(ctx.settings.is_control_plane()), &running)?;
    check_foreign_pods(ctx).await?;
    let headroom = match images_loaded(ctx).await? {
        true => REPAIR_FREE_BYTES,
        false => MIN_FREE_BYTES,
    };
    check_disk(ctx.layout.root(), Path::new(&engine.root_dir), headroom)?;
    // What kinit changed on the host, so the user knows.
    let changed = crate::host::prepare()?;
    let swap = if swap_on() {
        ", swap on (the kubelet tolerates it; pods get none)"
    } else {
        ""
    };
    let mut found = format!("{}{swap}", describe(&engine, &cgroup));
    if !missing_optional.is_empty() {
        found.push_str(&format!(
            "; `kubectl port-forward` needs {} (apt-get install {})",
            missing_optional.join(", "),
            missing_optional.join(" ")
        ));
    }
    // A run that only changed the host is not "nothing to do".
    Ok(if changed.is_empty() {
        Outcome::Checked(found)
    } else {
        Outcome::Done(format!("{found}; set {}", changed.join(", ")))
    })
}

/// Whether Docker has every large image this bring-up needs already: the node image kinit
/// assembled (by the ID its record names) and every component's and addon's.
async fn images_loaded(ctx: &Context) -> Result<bool> {
    let Some((_, id)) = super::node::recorded(ctx)? else {
        return Ok(false);
    };
    if !ctx.docker.image_ids().await?.contains(&id) {
        return Ok(false);
    }
    for image in super::images::wanted(ctx) {
        if !ctx.docker.has_image(&image).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The user's feature gates and extra args against what kinit sets on every component,
/// every refusal in one error.
fn check_component_settings(ctx: &Context, engine: &EngineInfo) -> Result<()> {
    let host = master::Host::probe(engine.clone())?;
    let mut own = master::owned(&ctx.settings, &ctx.layout, &host, &ctx.images)?;
    own.push((
        Component::Proxy,
        proxy::owned(&ctx.settings, &ctx.layout, &ctx.images)?,
    ));
    owned::check(&ctx.settings, &own)
}

/// The host tools the node needs with this cgroup driver.
fn host_tools(driver: Driver) -> Vec<(&'static str, &'static str, Need)> {
    let mut tools = HOST_TOOLS.to_vec();
    if driver == Driver::Systemd {
        tools.extend_from_slice(SYSTEMD_TOOLS);
    }
    tools
}

/// Whether the kernel confines with AppArmor (Debian's and Ubuntu's do by default).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// Where the kernel has AppArmor on, Docker confines each container that is not privileged
/// (etcd, the pods) with its profile, which it loads with apparmor_parser: without that
/// tool no such container starts (Debian's docker.io only recommends the package).
fn check_apparmor(enabled: bool, parser: bool) -> Result<()> {
    if enabled && !parser {
        bail!(
            "this kernel has AppArmor on, and Docker loads its container profile with \
             apparmor_parser, which is missing, so no container could start; install it \
             (sudo apt-get install apparmor) and run `kinit up` again"
        );
    }
    Ok(())
}

/// What preflight found of the engine and the host's cgroups, for the user.
fn describe(engine: &EngineInfo, cgroup: &cgroup::Setup) -> String {
    format!(
        "Docker {}, cgroup {} with the {} driver",
        engine.version,
        cgroup.mounts.describe(),
        cgroup.driver.name()
    )
}

/// Fails naming every missing required tool with its package, all at once; returns the
/// packages of missing optional ones.
fn check_host_tools(
    tools: &[(&str, &str, Need)],
    present: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let mut required = Vec::new();
    let mut optional = Vec::new();
    for (tool, package, need) in tools {
        if present(tool) {
            continue;
        }
        let list = match need {
            Need::Required => &mut required,
            Need::PortForward => &mut optional,
        };
        list.push((tool.to_string(), package.to_string()));
    }
    if !required.is_empty() {
        let tools: Vec<String> = required
            .iter()
            .map(|(t, p)| format!("{t} (package {p})"))
            .collect();
        let mut packages: Vec<&str> = required.iter().map(|(_, p)| p.as_str()).collect();
        packages.dedup();
        bail!(
            "the node runs on this host's own tools, and some are missing: {}; install them \
             (sudo apt-get install {}) and run `kinit up` again",
            tools.join(", "),
            packages.join(" ")
        );
    }
    let mut packages: Vec<String> = optional.into_iter().map(|(_, p)| p).collect();
    packages.dedup();
    Ok(packages)
}

/// Two kubelets on one Docker engine kill each other's pods (each takes the other's for
/// orphans), so refuse when there are pod containers kinit's kubelet did not make; kinit's
/// own are in its cgroup root.
async fn check_foreign_pods(ctx: &Context) -> Result<()> {
    let pods = ctx.docker.pod_containers(cgroup::is_kinits).await?.foreign;
    if let Some(first) = pods.first() {
        bail!(
            "this Docker engine already runs Kubernetes pods ({} containers, e.g. {first}) from \
             another kubelet (minikube --driver=none, kubeadm, another kinit?); two kubelets on one \
             engine remove each other's pods. Stop that cluster first",
            pods.len()
        );
    }
    Ok(())
}

fn swap_on() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1)
}

/// The ports a cluster needs, each with the container of kinit's that holds it; on a
/// joined host, those of the node's part only (the kubelet and kube-router in kinit-node,
/// kube-proxy).
fn ports(control_plane: bool) -> Vec<(Port, Container)> {
    let here: &[Component] = match control_plane {
        true => &Component::ALL,
        false => &Component::NODE,
    };
    here.iter()
        .flat_map(|&c| {
            let container = c.container_on(control_plane);
            c.ports().iter().map(move |&port| (port, container))
        })
        .collect()
}

/// Every port must be free unless the kinit container that uses it is what holds it.
fn check_ports(ports: &[(Port, Container)], running: &HashSet<Container>) -> Result<()> {
    let mut taken = Vec::new();
    for &(Port { number, purpose }, container) in ports {
        if running.contains(&container) {
            continue;
        }
        if let Some(holder) = net::listeners(number).first() {
            taken.push(format!("{number} ({purpose}) is held by {holder}"));
        }
    }
    if !taken.is_empty() {
        bail!(
            "ports kinit needs are in use: {}; stop those processes (or the other cluster) and run `kinit up` again",
            taken.join(", ")
        );
    }
    Ok(())
}

/// etcd and the API server listen on the node IP, so it must be one of this host's.
fn check_node_ip(ip: IpAddr) -> Result<()> {
    if !net::is_local_address(ip) {
        bail!(
            "the node IP {ip} is not an address of this host; pass one of its addresses with --node-ip"
        );
    }
    Ok(())
}

/// Checks the filesystems of the state directory (the kubelet's nodefs) and of Docker's
/// root (its imagefs): each must keep `headroom` bytes free above the amount at which the
/// kubelet would evict pods and taint the node, so user pods are scheduled once it is up.
fn check_disk(state_dir: &Path, docker_root: &Path, headroom: u64) -> Result<()> {
    for dir in [state_dir, docker_root] {
        // The state directory may not exist yet; its filesystem is that of its nearest parent.
        let existing = dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let stat = nix::sys::statvfs::statvfs(existing)
            .with_context(|| format!("cannot read the free space of {}", existing.display()))?;
        let block = stat.fragment_size() as u64;
        check_free(existing, stat.blocks_available() as u64 * block, headroom)?;
    }
    Ok(())
}

fn check_free(dir: &Path, free: u64, headroom: u64) -> Result<()> {
    let needed = (EVICTION_FREE_MIB << 20) + headroom;
    if free < needed {
        bail!(
            "only {} MiB free on the filesystem of {}: the kubelet stops running pods when \
             less than {EVICTION_FREE_MIB} MiB are free, and kinit needs {} MiB above that — \
             free some space first",
            free >> 20,
            dir.display(),
            headroom >> 20,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_the_kubelet_would_call_full_is_refused() {
        const GIB: u64 = 1 << 30;
        let dir = Path::new("/var/lib/kinit");
        // Eviction at 1 GiB free, and 2 GiB above it for kinit: 3 GiB are needed, however
        // large the disk.
        assert!(check_free(dir, 3 * GIB, MIN_FREE_BYTES).is_ok());
        let err = check_free(dir, 2 * GIB, MIN_FREE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only 2048 MiB free"), "{err}");
        assert!(err.contains("less than 1024 MiB"), "{err}");
        assert!(err.contains("needs 2048 MiB above"), "{err}");
    }

    #[test]
    fn a_cluster_with_its_images_loaded_needs_less_room() {
        const MIB: u64 = 1 << 20;
        let dir = Path::new("/var/lib/kinit");
        // What CI's shared disk once had left mid-test: a first up is refused, a repair
        // of the running cluster is not.
        assert!(check_free(dir, 2990 * MIB, MIN_FREE_BYTES).is_err());
        assert!(check_free(dir, 2990 * MIB, REPAIR_FREE_BYTES).is_ok());
        let err = check_free(dir, 1500 * MIB, REPAIR_FREE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs 512 MiB above"), "{err}");
    }

    #[test]
    fn missing_host_tools_are_named_with_their_packages() {
        let none_missing = check_host_tools(HOST_TOOLS, |_| true).unwrap();
        assert!(none_missing.is_empty());
        let err = check_host_tools(HOST_TOOLS, |t| !matches!(t, "nsenter" | "ip" | "socat"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nsenter (package util-linux), ip (package iproute2)"),
            "{err}"
        );
        assert!(
            err.contains("apt-get install util-linux iproute2)"),
            "{err}"
        );
        assert!(!err.contains("socat"), "{err}");
        let optional = check_host_tools(HOST_TOOLS, |t| t != "socat").unwrap();
        assert_eq!(optional, ["socat"]);
    }

    #[test]
    fn every_recorded_host_is_described_and_checked_for_its_cgroup_driver() {
        let described = [
            (
                "debian12-v1-cgroupfs",
                "Docker 20.10.24+dfsg1, cgroup v1 (hybrid, with a v2 hierarchy beside) with the cgroupfs driver",
            ),
            (
                "debian12-v2-systemd",
                "Docker 20.10.24+dfsg1, cgroup v2 with the systemd driver",
            ),
            (
                "ubuntu2004-hybrid-systemd",
                "Docker 20.10.21, cgroup v1 (hybrid, with a v2 hierarchy beside) with the systemd driver",
            ),
            (
                "ubuntu2204-v2-cgroupfs",
                "Docker 24.0.7, cgroup v2 with the cgroupfs driver",
            ),
            (
                "ubuntu2204-v2-systemd",
                "Docker 24.0.7, cgroup v2 with the systemd driver",
            ),
            (
                "ubuntu2404-v2-systemd",
                "Docker 27.5.1, cgroup v2 with the systemd driver",
            ),
        ];
        let fixtures = crate::cgroup::tests::fixtures();
        assert_eq!(fixtures.len(), described.len());
        for (fixture, (name, found)) in fixtures.iter().zip(described) {
            assert_eq!(fixture.name, name);
            let setup = fixture.setup();
            assert_eq!(describe(&fixture.engine, &setup), found);
            setup.check_systemd(fixture.exists()).unwrap();
            let systemd = setup.driver == Driver::Systemd;
            // systemctl is required exactly when the entrypoint uses it.
            let tools = host_tools(setup.driver);
            assert_eq!(
                tools.iter().any(|(t, ..)| *t == "systemctl"),
                systemd,
                "{name}"
            );
            let without_systemctl = check_host_tools(&tools, |t| t != "systemctl");
            match without_systemctl {
                Ok(optional) => {
                    assert!(!systemd, "{name}");
                    assert!(optional.is_empty());
                }
                Err(e) => {
                    assert!(systemd, "{name}");
                    assert!(e.to_string().contains("systemctl (package systemd)"), "{e}");
                }
            }
            // The same host without D-Bus: one line naming both sockets.
            let no_bus = setup.check_systemd(|p| p == Path::new("/run/systemd/system"));
            if systemd {
                let err = no_bus.unwrap_err().to_string();
                assert!(err.contains("/run/dbus/system_bus_socket"), "{err}");
                assert!(err.contains("/run/systemd/private"), "{err}");
                assert_eq!(err.lines().count(), 1, "{err}");
            } else {
                no_bus.unwrap();
            }
        }
    }

    #[test]
    fn a_taken_port_is_named_with_its_process_unless_kinit_holds_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = [(
            Port {
                number: port,
                purpose: "etcd clients",
            },
            Container::Etcd,
        )];
        let err = check_ports(&ports, &HashSet::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{port} (etcd clients) is held by")),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        check_ports(&ports, &HashSet::from([Container::Etcd])).unwrap();
        // The control plane's ports are the kubelet's container's.
        let held = super::ports(true);
        let api = held.iter().find(|(p, _)| p.number == 6443).unwrap();
        assert_eq!(api.1, Container::Master);
        drop(listener);
        check_ports(&ports, &HashSet::new()).unwrap();
    }

    #[test]
    fn apparmor_without_its_parser_is_refused() {
        assert!(check_apparmor(false, false).is_ok());
        assert!(check_apparmor(true, true).is_ok());
        let err = check_apparmor(true, false).unwrap_err().to_string();
        assert!(err.contains("sudo apt-get install apparmor"), "{err}");
    }

    #[test]
    fn the_node_ip_must_belong_to_this_host() {
        check_node_ip("127.0.0.1".parse().unwrap()).unwrap();
        // TEST-NET-3: never assigned to a real host.
        let err = check_node_ip("203.0.113.77".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an address of this host"), "{err}");
    }
}
