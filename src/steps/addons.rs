//! Applies what the cluster needs on top of the control plane through the API: the RBAC
//! binding that lets the API server use the kubelet API (logs, exec), and cluster DNS.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::kubernetes::Kube;
use crate::manifests;
use crate::progress::Outcome;

#[derive(Serialize)]
struct Values {
    image: String,
    dns_ip: String,
    dns_domain: String,
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let kube = Kube::connect(&ctx.layout.kubeconfig("admin.conf")).await?;
    let values = Values {
        image: ctx.images.coredns(),
        dns_ip: ctx.settings.service_cidr.dns_ip().to_string(),
        dns_domain: ctx.settings.dns_domain.to_string(),
    };
    let mut total = 0;
    let mut changed = 0;
    for manifest in [manifests::RBAC, manifests::COREDNS] {
        let (n, c) = kube.apply(&manifest.render_text(&values)?).await?;
        total += n;
        changed += c;
    }
    let dns = format!("CoreDNS at {}", values.dns_ip);
    Ok(if changed == 0 {
        Outcome::AlreadyDone(format!("{total} objects as they should be; {dns}"))
    } else {
        Outcome::Done(format!("applied {changed} of {total} objects; {dns}"))
    })
}
