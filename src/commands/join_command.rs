//! `kinit join-command`: makes a bootstrap token and prints the command that joins another
//! host to this cluster with it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::JoinCommandArgs;
use crate::cluster::Settings;
use crate::cluster::component::API_SERVER_PORT;
use crate::join::{CaHash, TOKEN_GROUP, Token};
use crate::kubernetes::Kube;
use crate::layout::Layout;
use crate::manifests;

#[derive(Serialize)]
struct TokenValues<'a> {
    id: &'a str,
    secret: &'a str,
    expiration: String,
    token_group: &'a str,
}

pub async fn run(state_dir: Option<&Path>, args: &JoinCommandArgs) -> Result<()> {
    super::require_root("join-command")?;
    let layout = Layout::resolve(state_dir)?;
    let settings = Settings::load(&layout.settings_file())?.ok_or_else(|| {
        anyhow!(
            "no cluster in {} to join (run `sudo kinit up` first)",
            layout.root().display()
        )
    })?;
    let ca = std::fs::read(layout.pki().join("ca.crt"))
        .with_context(|| format!("cannot read the cluster's CA in {}", layout.pki().display()))?;
    let pin = CaHash::of_pem(&ca)?;
    let token = Token::generate()?;
    let expires = OffsetDateTime::now_utc() + args.ttl;
    let secret = manifests::BOOTSTRAP_TOKEN.render_text(&TokenValues {
        id: token.id(),
        secret: token.secret(),
        expiration: expires
            .format(&Rfc3339)
            .context("cannot format the token's expiry")?,
        token_group: TOKEN_GROUP,
    })?;
    let kube = Kube::connect(&layout.kubeconfig("admin.conf")).await?;
    kube.apply(&secret)
        .await
        .context("cannot store the bootstrap token (is the cluster up? `sudo kinit status`)")?;
    crate::outln!(
        "sudo kinit join {} --token {} --ca-cert-hash {pin}",
        SocketAddr::new(settings.node_ip, API_SERVER_PORT),
        token.expose()
    )?;
    crate::progress::println(&format!(
        "The token is valid for {} (until {}); `kinit join-command` makes another.",
        human(args.ttl),
        expires.format(&Rfc3339).unwrap_or_default()
    ));
    Ok(())
}

fn human(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    match (hours, d.as_secs() % 3600 / 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h{m}m"),
    }
}
