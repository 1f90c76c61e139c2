//! Health checks over TLS with the cluster's own client certificates.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::components::etcd;
use crate::fs;
use crate::layout::Layout;

/// Asks etcd's `/health` endpoint, authenticating with the health-check client
/// certificate and trusting only the etcd CA.
pub async fn etcd(layout: &Layout, timeout: Duration) -> Result<()> {
    let client = etcd_client(layout, timeout)?;
    let url = format!("{}/health", etcd::local_endpoint());
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    #[derive(Deserialize)]
    struct Health {
        health: String,
    }
    match serde_json::from_str::<Health>(&body) {
        Ok(h) if status.is_success() && h.health == "true" => Ok(()),
        _ => bail!("etcd answered {status}: {}", body.trim()),
    }
}

/// A client of etcd's API on loopback: trusts only the etcd CA and presents the
/// health-check client certificate.
pub fn etcd_client(layout: &Layout, timeout: Duration) -> Result<reqwest::Client> {
    let pki = layout.etcd_pki();
    tls_client(
        &pki.join("ca.crt"),
        &pki.join("healthcheck-client.crt"),
        &pki.join("healthcheck-client.key"),
        timeout,
    )
}

/// An HTTPS client that trusts only `ca` and presents `cert`/`key`.
pub fn tls_client(
    ca: &Path,
    cert: &Path,
    key: &Path,
    timeout: Duration,
) -> Result<reqwest::Client> {
    let read =
        |p: &Path| fs::read_optional(p)?.with_context(|| format!("{} is missing", p.display()));
    let ca = reqwest::Certificate::from_pem(&read(ca)?).context("the CA certificate is not PEM")?;
    let mut identity_pem = read(cert)?;
    identity_pem.extend(read(key)?);
    let identity = reqwest::Identity::from_pem(&identity_pem)
        .context("the client certificate or key is not PEM")?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .context("cannot set up a TLS client")
}

/// A plain-HTTP health endpoint on loopback (the kubelet's and kube-proxy's `/healthz`).
pub async fn http_ok(url: &str, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .context("cannot set up an HTTP client")?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {}", body.trim())
    }
}
