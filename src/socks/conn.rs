//! One client connection: the SOCKS5 handshake (fast-socks5's protocol state machine),
//! kinit's policy on the requested target, the connection to it, and the relay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, anyhow};
use fast_socks5::server::{Socks5ServerProtocol, SocksServerError, states};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, info};

use super::dns::{self, LookupError};
use super::policy::Credentials;
use super::refusals::Kind;
use super::{Proxy, Stats, relay};

/// A handshake's outcome: the connection, ready for the reply, and what it asked for.
pub type Request<S> = (
    Socks5ServerProtocol<S, states::CommandRead>,
    Socks5Command,
    TargetAddr,
);

/// Serves one client to the end and logs what happened; never fails, since a bad client
/// must not disturb the others.
pub(super) async fn handle(stream: TcpStream, client: SocketAddr, proxy: &Proxy, stats: &Stats) {
    let started = Instant::now();
    match serve(stream, proxy, stats).await {
        Ok(t) => debug!(
            "{client} -> {} ({}): {} bytes sent, {} bytes received, {}",
            t.target,
            t.peer,
            t.up,
            t.down,
            crate::progress::format_duration(started.elapsed())
        ),
        // Refusals are what a user debugging "why does this page not load" looks for;
        // logged per client at most once in a while, so a hostile client cannot flood
        // the log.
        Err(e) => match e.downcast_ref::<Refused>() {
            Some(refused) => {
                if refused.kind == Kind::Credentials {
                    stats.refused_clients.fetch_add(1, Ordering::Relaxed);
                }
                if stats.refusals.log_this(client.ip(), refused.kind) {
                    info!("client {client}: {e}");
                }
            }
            None => debug!(
                "{client}: {e:#} after {}",
                crate::progress::format_duration(started.elapsed())
            ),
        },
    }
}

/// A request the policy refused.
#[derive(Debug)]
struct Refused {
    kind: Kind,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// A finished tunnel.
struct Tunnel {
    target: String,
    peer: SocketAddr,
    up: u64,
    down: u64,
}

async fn serve(stream: TcpStream, proxy: &Proxy, stats: &Stats) -> Result<Tunnel> {
    // One bound for the whole handshake, so a client that sends a byte at a time
    // (slowloris) cannot hold a connection open for long.
    let (proto, cmd, target) = timeout(
        proxy.handshake_timeout,
        handshake(stream, proxy.auth.as_ref()),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "handshake not finished in {:?}; closed",
            proxy.handshake_timeout
        )
    })?
    .map_err(|e| handshake_error(e, proxy.auth.is_some()))?;

    if cmd != Socks5Command::TCPConnect {
        let _ = proto.reply_error(&ReplyError::CommandNotSupported).await;
        return Err(anyhow!(
            "refused {cmd:?} to {target}: only CONNECT is supported"
        ));
    }

    let (candidates, port) = match resolve(&target, proxy).await {
        Ok(found) => found,
        Err(e) => {
            let _ = proto.reply_error(&ReplyError::HostUnreachable).await;
            return Err(anyhow!("cannot resolve {target}: {e}"));
        }
    };
    let allowed: Vec<SocketAddr> = candidates
        .iter()
        .filter(|ip| proxy.destinations.allows(**ip))
        .map(|ip| SocketAddr::new(ip.to_canonical(), port))
        .collect();
    if allowed.is_empty() {
        stats.refused_destinations.fetch_add(1, Ordering::Relaxed);
        let _ = proto.reply_error(&ReplyError::ConnectionNotAllowed).await;
        let shown: Vec<String> = candidates.iter().map(|ip| ip.to_string()).collect();
        let why = candidates
            .first()
            .map_or("no address", |ip| proxy.destinations.refusal(*ip));
        return Err(Refused {
            kind: Kind::Destination,
            message: format!("refused {target} ({}): {why}", shown.join(", ")),
        }
        .into());
    }

    let outbound = match connect(&allowed, proxy).await {
        Ok(s) => s,
        Err((reply, e)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            let _ = proto.reply_error(&reply).await;
            return Err(e);
        }
    };
    let peer = outbound.peer_addr()?;
    let bound = outbound.local_addr()?;
    let inbound = proto
        .reply_success(bound)
        .await
        .map_err(|e| anyhow!("cannot reply to the client: {e}"))?;
    stats.tunnels.fetch_add(1, Ordering::Relaxed);
    let traffic = relay::Traffic::default();
    let ended = relay::relay(&inbound, &outbound, proxy.idle_timeout, &traffic).await;
    let (up, down) = traffic.totals();
    stats.bytes_up.fetch_add(up, Ordering::Relaxed);
    stats.bytes_down.fetch_add(down, Ordering::Relaxed);
    match ended {
        Ok(relay::Ended::Closed) => Ok(Tunnel {
            target: target.to_string(),
            peer,
            up,
            down,
        }),
        Ok(relay::Ended::Idle) => {
            stats.idle_closed.fetch_add(1, Ordering::Relaxed);
            Err(anyhow!(
                "tunnel to {target} ({peer}) closed: nothing moved for {:?} (--idle-timeout); \
                 {up} bytes sent, {down} bytes received",
                proxy.idle_timeout.unwrap_or_default()
            ))
        }
        Err(e) => Err(anyhow!("tunnel to {target} ({peer}) broke: {e}")),
    }
}

/// A failed handshake as a refusal when it was about credentials (worth a log line even
/// without -v), else as the protocol error it was.
fn handshake_error(e: SocksServerError, auth_required: bool) -> anyhow::Error {
    let message = match e {
        SocksServerError::AuthenticationRejected => "wrong username or password",
        SocksServerError::AuthMethodUnacceptable(_) if auth_required => {
            "no username/password offered (--auth is set)"
        }
        e => return anyhow!("handshake failed: {e}"),
    };
    Refused {
        kind: Kind::Credentials,
        message: format!("refused: {message}"),
    }
    .into()
}

/// Method negotiation, RFC 1929 username/password when `--auth` is set, and the request.
/// fast-socks5 answers malformed input itself (0xFF for no acceptable method, a failure
/// status for wrong credentials, 0x07/0x08 for unknown commands and address types) or
/// stops reading, and the connection is dropped.
/// Any byte stream, so that the handshake can be fuzzed without sockets
/// (fuzz/fuzz_targets/socks_handshake.rs).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    auth: Option<&Credentials>,
) -> Result<Request<S>, SocksServerError> {
    let authenticated = match auth {
        None => Socks5ServerProtocol::accept_no_auth(stream).await?,
        Some(creds) => {
            Socks5ServerProtocol::accept_password_auth(stream, |user, password| {
                creds.matches(&user, &password)
            })
            .await?
            .0
        }
    };
    authenticated.read_command().await
}

/// The addresses a target may connect to, before the allowlist.
async fn resolve(
    target: &TargetAddr,
    proxy: &Proxy,
) -> Result<(Vec<std::net::IpAddr>, u16), LookupError> {
    match target {
        TargetAddr::Ip(addr) => Ok((vec![addr.ip()], addr.port())),
        TargetAddr::Domain(name, port) => {
            let Some(name) = dns::classify(name, proxy.resolver.domain()) else {
                return Err(LookupError::Failed(anyhow!("'{name}' is not a host name")));
            };
            Ok((proxy.resolver.lookup(&name).await?, *port))
        }
    }
}

/// Connects to the first address that answers, each within the connect timeout; on
/// failure, the SOCKS reply that says why.
async fn connect(
    addrs: &[SocketAddr],
    proxy: &Proxy,
) -> Result<TcpStream, (ReplyError, anyhow::Error)> {
    let mut last = (
        ReplyError::HostUnreachable,
        anyhow!("no address to connect to"),
    );
    for addr in addrs {
        match timeout(proxy.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Interactive traffic (HTTP, terminals) suffers from Nagle's delay.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => {
                let reply = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ReplyError::ConnectionRefused,
                    std::io::ErrorKind::NetworkUnreachable => ReplyError::NetworkUnreachable,
                    std::io::ErrorKind::HostUnreachable => ReplyError::HostUnreachable,
                    _ => ReplyError::GeneralFailure,
                };
                last = (reply, anyhow!("cannot connect to {addr}: {e}"));
            }
            Err(_) => {
                last = (
                    ReplyError::TtlExpired,
                    anyhow!(
                        "connecting to {addr} timed out after {:?}",
                        proxy.connect_timeout
                    ),
                );
            }
        }
    }
    Err(last)
}
