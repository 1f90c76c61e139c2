//! `kinit socks`: a SOCKS5 server (CONNECT only) that lets a browser reach pod and Service
//! IPs and cluster DNS names, and nothing else unless asked. The accept loop and shutdown
//! live here; [`conn`] serves one client, [`policy`] decides who and where, [`dns`]
//! resolves names, [`pac`] writes the browser help.

mod conn;
pub mod detach;
pub mod dns;
pub mod pac;
pub mod policy;
mod relay;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

use policy::{Allowlist, Credentials};

/// More simultaneous clients than a browser ever opens; beyond it new clients are closed
/// at once, so a flood cannot exhaust file descriptors.
const MAX_CONNECTIONS: usize = 4096;

/// Everything a connection needs to know, shared by all of them.
pub struct Proxy {
    pub clients: Allowlist,
    pub destinations: Allowlist,
    pub auth: Option<Credentials>,
    pub resolver: dns::Resolver,
    /// From accept to a complete request: the bound on slow and broken clients.
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
}

/// Counters for the summary line.
#[derive(Debug, Default)]
pub struct Stats {
    pub tunnels: AtomicU64,
    pub refused_clients: AtomicU64,
    pub refused_destinations: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

impl Stats {
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} tunnels ({} sent, {} received), {} destinations refused, {} clients refused, {} connects failed",
            get(&self.tunnels),
            human_bytes(get(&self.bytes_up)),
            human_bytes(get(&self.bytes_down)),
            get(&self.refused_destinations),
            get(&self.refused_clients),
            get(&self.failed),
        )
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// Serves clients until `shutdown` completes; then stops accepting and lets open
/// connections run until they end or `grace` completes (it is first polled then).
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    grace: impl Future<Output = ()>,
) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            () = &mut shutdown => break,
            // Reaps finished connections as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Small writes (replies, interactive traffic) go out at once.
        let _ = stream.set_nodelay(true);
        // Refused before a byte is read: a client outside the allowlist learns nothing.
        if !proxy.clients.allows(client.ip()) {
            stats.refused_clients.fetch_add(1, Ordering::Relaxed);
            info!(
                "refused client {client}: not in --allow-client ({})",
                proxy.clients
            );
            continue;
        }
        if tasks.len() >= MAX_CONNECTIONS {
            warn!("refused client {client}: {MAX_CONNECTIONS} connections are open");
            continue;
        }
        let (proxy, stats) = (proxy.clone(), stats.clone());
        tasks.spawn(async move { conn::handle(stream, client, &proxy, &stats).await });
    }
    drop(listener);
    if !tasks.is_empty() {
        info!("waiting for {} open connections", tasks.len());
        let drain = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            () = drain => {}
            () = grace => info!("closing {} connections still open", tasks.len()),
        }
    }
    // Dropping the set aborts whatever is left.
    stats
}
