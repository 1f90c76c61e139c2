//! `kinit socks`: a SOCKS5 server (CONNECT only) that lets a browser reach pod and Service
//! IPs and cluster DNS names, and nothing else unless asked. The accept loop and shutdown
//! live here; [`conn`] serves one client, [`policy`] decides who and where, [`limits`]
//! how many connections each client may hold, [`refusals`] how refusals are logged,
//! [`dns`] resolves names, [`pac`] writes the browser help.

mod conn;
pub use conn::handshake;
pub mod detach;
pub mod dns;
pub mod limits;
pub mod logfile;
pub mod pac;
pub mod policy;
pub mod refusals;
mod relay;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

use policy::{Allowlist, Credentials};

/// Everything a connection needs to know, shared by all of them.
pub struct Proxy {
    pub clients: Allowlist,
    pub destinations: Allowlist,
    pub auth: Option<Credentials>,
    pub resolver: dns::Resolver,
    /// From accept to a complete request: the bound on slow and broken clients.
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    /// A tunnel with no byte either way for this long is closed; `None` keeps it.
    pub idle_timeout: Option<Duration>,
    /// Open connections (handshakes and tunnels) one client may hold.
    pub max_per_client: u32,
    /// Open connections in all.
    pub max_connections: usize,
}

/// Counters for the summary line, and the refusal log's tally.
#[derive(Default)]
pub struct Stats {
    pub tunnels: AtomicU64,
    pub idle_closed: AtomicU64,
    pub refused_clients: AtomicU64,
    pub refused_busy: AtomicU64,
    pub refused_destinations: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub refusals: refusals::Refusals,
}

impl Stats {
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} tunnels ({} sent, {} received, {} closed idle), {} destinations refused, {} clients refused, {} over a connection limit, {} connects failed",
            get(&self.tunnels),
            human_bytes(get(&self.bytes_up)),
            human_bytes(get(&self.bytes_down)),
            get(&self.idle_closed),
            get(&self.refused_destinations),
            get(&self.refused_clients),
            get(&self.refused_busy),
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
    let limits = limits::Limits::new(proxy.max_per_client, proxy.max_connections);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut summaries = tokio::time::interval(refusals::INTERVAL);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, client) = tokio::select! {
            () = &mut shutdown => break,
            // Reaps finished connections as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = summaries.tick() => {
                stats.refusals.flush(false);
                continue;
            }
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
        // Refused before a byte is read: a client outside the allowlist learns nothing.
        if !proxy.clients.allows(client.ip()) {
            stats.refused_clients.fetch_add(1, Ordering::Relaxed);
            if stats.refusals.log_this(client.ip(), refusals::Kind::Client) {
                info!(
                    "refused client {client}: not in --allow-client ({})",
                    proxy.clients
                );
            }
            continue;
        }
        // Over a limit, the connection is closed before a byte is read: answering with a
        // SOCKS failure would mean serving the very handshake the limit is there to spare.
        let slot = match limits.acquire(client.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                stats.refused_busy.fetch_add(1, Ordering::Relaxed);
                if stats.refusals.log_this(client.ip(), refusals::Kind::Busy) {
                    match full {
                        limits::Full::Total => warn!(
                            "refused client {client}: {} connections are open (--max-tunnels)",
                            proxy.max_connections
                        ),
                        limits::Full::PerClient => warn!(
                            "refused client {client}: it has {} connections open (--max-tunnels-per-client)",
                            proxy.max_per_client
                        ),
                    }
                }
                continue;
            }
        };
        // Small writes (replies, interactive traffic) go out at once.
        let _ = stream.set_nodelay(true);
        let (proxy, stats) = (proxy.clone(), stats.clone());
        tasks.spawn(async move {
            conn::handle(stream, client, &proxy, &stats).await;
            drop(slot);
        });
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
    drop(tasks);
    stats.refusals.flush(true);
    stats
}
