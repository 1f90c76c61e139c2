//! Records the cluster's settings and makes the PKI complete and current.

use anyhow::Result;

use super::Context;
use crate::cluster::Settings;
use crate::pki;
use crate::progress::Outcome;

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let path = ctx.layout.settings_file();
    if Settings::load(&path)?.as_ref() != Some(&ctx.settings) {
        ctx.settings.save(&path)?;
    }
    let report = pki::ensure(ctx.layout.root(), &ctx.settings)?;
    Ok(if report.issued.is_empty() {
        Outcome::AlreadyDone(format!("{} certificates valid", report.kept.len()))
    } else {
        Outcome::Done(report.to_string())
    })
}
