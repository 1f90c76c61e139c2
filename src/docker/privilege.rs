//! Privileged containers on hosts that refuse `--privileged` (see [`Docker::apply`]):
//! the capabilities the Docker daemon holds stand in, less those the engine is too old to
//! know.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use bollard::query_parameters::CreateContainerOptions;
use caps::{CapSet, Capability, CapsHashSet};
use tracing::{debug, info};

use super::spec::{ContainerSpec, container_body};
use super::{Docker, Error};

/// How much privilege a container is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Privilege {
    None,
    /// `--privileged`.
    Full,
    /// Every capability the daemon holds, confinement lifted.
    DaemonCapabilities,
}

impl Docker {
    /// Creates and starts the container for `spec`, labelled with `hash`; a privileged
    /// spec falls back to the daemon's capabilities once the host has refused privilege.
    pub(super) async fn create_and_start(&self, spec: &ContainerSpec, hash: &str) -> Result<()> {
        let name = spec.container_name();
        if spec.privileged && !self.privileged_refused.load(Ordering::Relaxed) {
            self.create(spec, hash, Privilege::Full).await?;
            match self
                .api
                .start_container(&name, None)
                .await
                .map_err(Error::from)
            {
                Ok(()) => return Ok(()),
                Err(Error::CapabilitiesRefused(_)) => {
                    self.remove(&name).await?;
                    if !self.privileged_refused.swap(true, Ordering::Relaxed) {
                        info!(
                            "this host does not allow privileged containers (its capability bounding \
                             set is incomplete); granting every capability the Docker daemon holds instead"
                        );
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot start {name}")),
            }
        }
        let privilege = if spec.privileged {
            Privilege::DaemonCapabilities
        } else {
            Privilege::None
        };
        self.create(spec, hash, privilege).await?;
        self.api
            .start_container(&name, None)
            .await
            .with_context(|| format!("cannot start {name}"))
    }

    async fn create(&self, spec: &ContainerSpec, hash: &str, privilege: Privilege) -> Result<()> {
        let name = spec.container_name();
        let mut caps = match privilege {
            Privilege::DaemonCapabilities => daemon_capabilities()?,
            Privilege::Full | Privilege::None => Vec::new(),
        };
        // Engines reject capability names newer than themselves (Docker 20.10 does not know
        // CAP_BPF); drop each one the engine names and try again.
        loop {
            let names: Vec<String> = caps.iter().map(Capability::to_string).collect();
            let body = container_body(spec, hash, privilege, &names);
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            match self.api.create_container(Some(options), body).await {
                Ok(_) => return Ok(()),
                Err(e) => match Error::from(e) {
                    Error::UnknownCapability { capability, .. } if caps.contains(&capability) => {
                        debug!("the Docker engine does not know {capability}; leaving it out");
                        caps.retain(|c| *c != capability);
                    }
                    e => {
                        return Err(e)
                            .with_context(|| format!("cannot create the container {name}"));
                    }
                },
            }
        }
    }
}

/// The capabilities the Docker daemon itself holds, which is all a container can get.
/// Read from the daemon's /proc entry; kinit's own set stands in when the daemon runs
/// where kinit cannot see it.
fn daemon_capabilities() -> Result<Vec<Capability>> {
    let pid = ["/var/run/docker.pid", "/run/docker.pid"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    match pid.and_then(|pid| held_capabilities(Some(pid)).ok()) {
        Some(held) => Ok(held),
        None => held_capabilities(None).context("cannot read the Docker daemon's capabilities"),
    }
}

/// The capabilities a process holds: those of its effective set that its bounding set
/// still allows, in the kernel's order; of this thread when `pid` is `None`. Another
/// process's sets come from the `CapEff` and `CapBnd` lines of its /proc entry, because
/// `caps` reads a bounding set only for the calling thread.
pub fn held_capabilities(pid: Option<u32>) -> Result<Vec<Capability>> {
    let held: CapsHashSet = match pid {
        None => {
            let bounding = caps::read(None, CapSet::Bounding)?;
            caps::read(None, CapSet::Effective)?
                .intersection(&bounding)
                .copied()
                .collect()
        }
        Some(pid) => {
            let path = format!("/proc/{pid}/status");
            let status =
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
            in_mask(status_mask(&status, "CapEff:") & status_mask(&status, "CapBnd:"))
        }
    };
    let mut held: Vec<Capability> = held.into_iter().collect();
    held.sort_by_key(Capability::index);
    Ok(held)
}

/// A capability mask of /proc/PID/status, 0 when the line is missing or unreadable.
fn status_mask(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// The capabilities whose bits are set in `mask`.
fn in_mask(mask: u64) -> CapsHashSet {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_come_from_the_effective_and_bounding_sets() {
        // CapBnd as on the test hosts: everything but CAP_SYS_RESOURCE (bit 24).
        let status = "Name:\tdockerd\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        let mask = status_mask(status, "CapEff:") & status_mask(status, "CapBnd:");
        let caps = in_mask(mask);
        assert_eq!(caps.len(), 40);
        assert!(caps.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!caps.contains(&Capability::CAP_SYS_RESOURCE));
        assert!(caps.contains(&Capability::CAP_CHECKPOINT_RESTORE));
        let none = "CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(
            status_mask(none, "CapEff:") & status_mask(none, "CapBnd:"),
            0
        );
        assert_eq!(status_mask("CapBnd:\tgarbage\n", "CapBnd:"), 0);
    }

    /// Docker gets the names it printed in `docker inspect` before kinit used `caps`.
    #[test]
    fn capability_names_are_the_kernels() {
        let names: Vec<String> = in_mask(1 << 0 | 1 << 12 | 1 << 21 | 1 << 39)
            .iter()
            .map(Capability::to_string)
            .collect();
        for name in ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_BPF"] {
            assert!(names.contains(&name.to_string()), "{name} in {names:?}");
        }
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn this_process_is_read_either_way() {
        let own = held_capabilities(None).expect("own capabilities");
        let by_pid = held_capabilities(Some(std::process::id())).expect("by /proc");
        assert_eq!(own, by_pid);
        // In the kernel's order, as the engine got them before.
        assert!(
            own.windows(2).all(|w| w[0].index() < w[1].index()),
            "{own:?}"
        );
    }
}
