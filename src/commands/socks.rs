//! `kinit socks`: the SOCKS5 proxy for browsers, with defaults read from the cluster's
//! state, or its PAC file with `--pac`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cli::SocksArgs;
use crate::cluster::{self, Settings};
use crate::layout::Layout;
use crate::net;
use crate::socks::policy::{self, Allowlist, Credentials};
use crate::socks::{self, Proxy, detach, dns, logfile, pac};

const DNS_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may run on after Ctrl-C.
const GRACE: Duration = Duration::from_secs(5);

pub async fn run(state_dir: Option<&Path>, args: &SocksArgs) -> Result<()> {
    let layout = Layout::resolve(state_dir)?;
    let settings = Settings::load(&layout.settings_file())?;
    let cluster_nets = cluster_nets(settings.as_ref(), args, &layout)?;
    let domain = settings
        .as_ref()
        .map_or(cluster::DEFAULT_DNS_DOMAIN, |s| s.dns_domain.as_str());
    if args.pac {
        crate::out!("{}", pac::pac(args.port, domain, &cluster_nets))?;
        return Ok(());
    }
    let auth = credentials(args)?;
    check_exposure(args, auth.is_some())?;
    if args.detach {
        let (record, banner) = detach::spawn(&layout, auth.as_ref())?;
        crate::out!("{banner}")?;
        crate::outln!(
            "Running in the background as pid {} (log: {}); `sudo kinit down` or `kill {}` stops it.",
            record.pid,
            record.log.display(),
            record.pid
        )?;
        return Ok(());
    }
    raise_open_files_limit();
    let log_file = match &args.log_file {
        Some(path) => Some(logfile::LogFile::open(path, args.log_max_size)?),
        None => None,
    };

    let destinations = if args.allow_any {
        Allowlist::AnyRemote {
            named: args.allow.clone(),
        }
    } else {
        Allowlist::Nets(cluster_nets)
    };
    let clients = if args.allow_client.is_empty() {
        let interfaces = if args.bind.is_loopback() {
            Vec::new()
        } else {
            net::interface_addresses()?
        };
        Allowlist::Nets(policy::default_clients(args.bind, &interfaces))
    } else {
        Allowlist::Nets(args.allow_client.clone())
    };
    let dns_server = args.dns_server.or_else(|| {
        settings
            .as_ref()
            .map(|s| SocketAddr::new(s.service_cidr.dns_ip(), 53))
    });
    let proxy = Arc::new(Proxy {
        clients,
        destinations,
        auth,
        resolver: dns::Resolver::new(domain, dns_server, DNS_TIMEOUT)?,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        connect_timeout: CONNECT_TIMEOUT,
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        max_per_client: args.max_tunnels_per_client,
        max_connections: usize::try_from(args.max_tunnels).unwrap_or(usize::MAX),
    });

    let listener = listen(SocketAddr::new(args.bind, args.port)).await?;
    let listen_addr = listener
        .local_addr()
        .context("cannot read the proxy's listening address")?;
    let ssh_host = settings
        .as_ref()
        .map(|s| s.hostname.to_string())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "this-host".into());
    let banner = pac::Banner {
        listen: listen_addr,
        ssh_host: &ssh_host,
        clients: &proxy.clients,
        destinations: &proxy.destinations,
        domain,
        dns: dns_server,
        auth_user: proxy.auth.as_ref().map(|c| c.user.as_str()),
    };
    crate::out!("{}", banner.render())?;
    // Scripts (and the tests) wait for the banner's first line to know the port.
    let _ = std::io::stdout().flush();
    // Only after the banner: `--detach` reads it from the file it started the log in.
    let rotation = log_file.map(|log| tokio::spawn(log.keep_rotating()));
    if !args.bind.is_loopback() {
        warn!(
            "listening on {listen_addr}, which other hosts can reach; clients allowed: {}",
            proxy.clients
        );
    }
    if args.allow_any {
        warn!(
            "--allow-any: clients can reach every address this host can, not only the cluster \
             (but not this host's loopback and link-local addresses unless named with --allow)"
        );
    }

    let shutdown = async {
        interrupted().await;
        info!(
            "shutting down: no new connections; open ones get {}s (Ctrl-C again stops at once)",
            GRACE.as_secs()
        );
    };
    let grace = async {
        tokio::select! {
            () = tokio::time::sleep(GRACE) => {}
            () = interrupted() => {}
        }
    };
    let stats = socks::serve(listener, proxy, shutdown, grace).await;
    info!("kinit socks stopped: {}", stats.summary());
    if let Some(task) = rotation {
        task.abort();
    }
    Ok(())
}

/// The credentials clients must present, from `--auth`, `KINIT_SOCKS_AUTH` or
/// `--auth-file`.
fn credentials(args: &SocksArgs) -> Result<Option<Credentials>> {
    if let Some(path) = &args.auth_file {
        return read_auth_file(path).map(Some);
    }
    if args.auth.is_some() && on_command_line(std::env::args_os(), "--auth") {
        warn!(
            "--auth on the command line shows the password to every user of this host in `ps`; \
             use --auth-file FILE or KINIT_SOCKS_AUTH instead"
        );
    }
    Ok(args.auth.clone())
}

/// Whether `flag` was given in `args` (as `--flag value` or `--flag=value`): clap merges
/// the environment into the same field, and only the command line is public.
fn on_command_line(args: impl IntoIterator<Item = OsString>, flag: &str) -> bool {
    let with_value = format!("{flag}=");
    args.into_iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    })
}

fn read_auth_file(path: &Path) -> Result<Credentials> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    // A pipe (--detach, or `--auth-file <(pass show socks)`) has no other readers to fear.
    if meta.is_file() && meta.mode() & 0o077 != 0 {
        warn!(
            "{} is readable by other users (mode {:o}); `chmod 600` it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    let mut text = String::new();
    // One line of at most 511 bytes (RFC 1929's limits); more is not a credentials file.
    (&mut file)
        .take(1024)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    policy::parse_auth(line).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// A proxy other hosts can reach must not be open to a whole subnet without a password:
/// anyone on a shared or cloud network could then browse the cluster.
fn check_exposure(args: &SocksArgs, has_auth: bool) -> Result<()> {
    if args.bind.is_loopback() || has_auth || !args.allow_client.is_empty() {
        return Ok(());
    }
    bail!(
        "--bind {} lets other hosts reach the proxy: require a password with --auth-file FILE \
         (or KINIT_SOCKS_AUTH), or name the clients with --allow-client CIDR",
        args.bind
    )
}

/// The destinations clients may reach: `--allow`, else the cluster's pod and Service
/// ranges and its node IP.
fn cluster_nets(
    settings: Option<&Settings>,
    args: &SocksArgs,
    layout: &Layout,
) -> Result<Vec<IpNet>> {
    if !args.allow.is_empty() {
        return Ok(args.allow.clone());
    }
    let Some(s) = settings else {
        if args.allow_any {
            return Ok(Vec::new());
        }
        bail!(
            "no cluster in {} (run `sudo kinit up` first), so kinit socks does not know the \
             cluster's addresses; pass --state-dir, or --allow CIDR (or --allow-any)",
            layout.root().display()
        );
    };
    Ok(vec![
        s.pod_cidr.net(),
        s.service_cidr.net(),
        IpNet::from(s.node_ip),
    ])
}

async fn listen(addr: SocketAddr) -> Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let holder = net::listeners(addr.port())
                .first()
                .map_or_else(|| "another process".to_string(), |l| l.to_string());
            bail!(
                "cannot listen on {addr}: {holder} holds the port; stop it or pick another with --port"
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// Completes on the next Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if r.is_err() {
                std::future::pending::<()>().await;
            }
        }
        () = term => {}
    }
}

/// Each tunnel holds two descriptors; the usual soft limit of 1024 would cap the proxy near
/// 500 clients, so take the hard limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        warn!("cannot raise the open-files limit from {soft} to {hard}: {e}");
    }
}
