//! Applies what the cluster needs on top of the control plane through the API: the RBAC
//! binding that lets the API server use the kubelet API (logs, exec), cluster DNS, what
//! lets other hosts join ([`super::join`]), and the enabled addons (without waiting for them: `kinit addons list` says when they are ready).

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

#[derive(Serialize)]
struct NetworkValues {
    image: String,
    health_port: u16,
}

pub async fn run(ctx: &Context) -> Result<Outcome> {
    let kube = Kube::connect(&ctx.layout.kubeconfig("admin.conf")).await?;
    let values = Values {
        image: ctx.images.coredns(),
        dns_ip: ctx.settings.service_cidr.dns_ip().to_string(),
        dns_domain: ctx.settings.dns_domain.to_string(),
    };
    let mut texts = Vec::new();
    for manifest in [manifests::RBAC, manifests::COREDNS] {
        texts.push(manifest.render_text(&values)?);
    }
    texts.push(manifests::KUBE_ROUTER.render_text(&NetworkValues {
        image: ctx.images.kube_router(),
        health_port: crate::cluster::ROUTER_HEALTH_PORT,
    })?);
    texts.extend(super::join::objects(ctx)?);
    for addon in &ctx.settings.addons {
        texts.push(addon.render(&ctx.layout, &ctx.images, ctx.node_image()?)?);
    }
    let mut total = 0;
    let mut changed = 0;
    for text in &texts {
        let (n, c) = kube.apply(text).await?;
        total += n;
        changed += c;
    }
    let addons: Vec<&str> = ctx.settings.addons.iter().map(|a| a.name()).collect();
    let dns = format!(
        "CoreDNS at {}; addons: {}",
        values.dns_ip,
        if addons.is_empty() {
            "none".to_string()
        } else {
            addons.join(", ")
        }
    );
    Ok(if changed == 0 {
        Outcome::AlreadyDone(format!("{total} objects as they should be; {dns}"))
    } else {
        Outcome::Done(format!("applied {changed} of {total} objects; {dns}"))
    })
}
