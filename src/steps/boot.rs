//! Makes the cluster come back after a reboot without anyone running kinit: the sysctl
//! and module files a boot applies, logind's delay for the kubelet's graceful shutdown
//! (before the master starts: the kubelet reads it once), and the kinit-boot container
//! (src/commands/boot.rs).

use std::path::Path;

use anyhow::Result;

use super::Context;
use crate::components::{boot, master};
use crate::docker::Applied;
use crate::host;
use crate::progress::Outcome;

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let written = host::persist(Path::new("/etc"), host::has_logind())?;
    if written.iter().any(|f| f == host::LOGIND_FILE) {
        host::reload_logind()?;
    }
    let spec = boot::spec(
        ctx.node_image()?,
        &master::host_system_paths(),
        ctx.layout.root(),
    )?;
    let applied = ctx.docker.apply(&spec).await?;
    let mut done = Vec::new();
    if !written.is_empty() {
        done.push(format!("wrote {}", written.join(", ")));
    }
    match applied {
        Applied::Unchanged => {}
        Applied::Started => done.push("started kinit-boot".into()),
        Applied::Created => done.push("created kinit-boot".into()),
        Applied::Replaced => done.push("replaced kinit-boot".into()),
    }
    Ok(if done.is_empty() {
        Outcome::AlreadyDone("kinit-boot running, boot settings in place".into())
    } else {
        Outcome::Done(done.join("; "))
    })
}
