//! Merges the cluster into the invoking user's kubeconfig as context `kinit`, leaving
//! their other contexts alone; how, and the rules for a file under sudo, are in
//! [`crate::kubeconfig`].

use anyhow::Result;

use super::Context;
use crate::progress::Outcome;
use crate::{fs, kubeconfig};

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let target = kubeconfig::resolve_target(ctx.user_kubeconfig.as_deref())?;
    let admin = kubeconfig::read_admin(&ctx.layout.kubeconfig("admin.conf"))?;
    let changed = kubeconfig::merge_into(&target, &admin)?;
    // Remember the file, so `kinit down --purge` can take the context out again.
    fs::write_if_changed(
        &ctx.layout.kubeconfig_record(),
        target.path.to_string_lossy().as_bytes(),
        fs::Mode::Private,
    )?;
    let detail = format!("context \"kinit\" in {}", target.path.display());
    Ok(if changed {
        Outcome::Done(detail)
    } else {
        Outcome::AlreadyDone(detail)
    })
}
