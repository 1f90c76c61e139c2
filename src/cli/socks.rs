//! The flags of `kinit socks`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use ipnet::IpNet;

use crate::socks::policy;

#[derive(Debug, Args)]
pub struct SocksArgs {
    /// The port to listen on (0 picks a free one; the banner says which).
    #[arg(long, default_value_t = 8082)]
    pub port: u16,

    /// The address to listen on. The default is reachable only from this host (use
    /// `ssh -L` from a laptop); any other address exposes the proxy to the network.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Accept clients only from this network (repeatable) [default: loopback, plus the
    /// network of --bind when it is not loopback and a password is required]. A
    /// non-loopback --bind needs this or a password.
    #[arg(long, value_name = "CIDR", value_parser = policy::parse_cidr)]
    pub allow_client: Vec<IpNet>,

    /// Require this SOCKS5 username and password (RFC 1929); clients without them are
    /// refused. Given here, the password is visible to every user of this host in `ps`
    /// (kinit warns): prefer --auth-file or the environment variable.
    #[arg(long, value_name = "USER:PASSWORD", env = "KINIT_SOCKS_AUTH", hide_env_values = true,
          value_parser = policy::parse_auth, conflicts_with = "auth_file")]
    pub auth: Option<policy::Credentials>,

    /// Like --auth, with USER:PASSWORD read from the first line of this file (keep it
    /// readable only by you).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// Let clients reach only this network (repeatable) [default: the cluster's pod and
    /// Service ranges and the node IP]. With --allow-any, opens this host's own loopback
    /// or link-local addresses, which --allow-any alone keeps closed (e.g. 127.0.0.1/32).
    #[arg(long, value_name = "CIDR", value_parser = policy::parse_cidr)]
    pub allow: Vec<IpNet>,

    /// Let clients reach any address this host can reach, not only the cluster, except
    /// this host's loopback (127.0.0.0/8, ::1) and link-local addresses (169.254.0.0/16,
    /// where cloud metadata answers, and fe80::/10) unless they are named with --allow.
    #[arg(long)]
    pub allow_any: bool,

    /// Print a proxy auto-config (PAC) file that sends only cluster addresses and names
    /// through the proxy, and exit.
    #[arg(long)]
    pub pac: bool,

    /// Run in the background (its output goes to socks.log in the state directory, like
    /// --log-file); `kinit status` shows it and `kinit down` stops it.
    #[arg(long, conflicts_with = "pac")]
    pub detach: bool,

    /// Write the output (banner and log) to this file instead of the terminal; past
    /// 10 MiB it is renamed to FILE.1, replacing an older one, and a new file starts.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["detach", "pac"])]
    pub log_file: Option<PathBuf>,

    /// The size at which --log-file is rotated.
    #[arg(long, value_name = "BYTES", default_value_t = crate::socks::logfile::DEFAULT_MAX_SIZE,
          hide = true, value_parser = clap::value_parser!(u64).range(4096..))]
    pub log_max_size: u64,

    /// The DNS server for cluster names [default: the cluster DNS Service, port 53].
    #[arg(long, value_name = "IP:PORT", hide = true)]
    pub dns_server: Option<SocketAddr>,

    /// Seconds a client has to finish the SOCKS handshake (greeting, credentials and
    /// request) before it is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub handshake_timeout: u64,

    /// Close a tunnel when no byte has moved either way for this many seconds (0: never).
    /// Browsers reopen closed connections themselves.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub idle_timeout: u64,

    /// Open connections (tunnels and handshakes) one client address may hold at once
    /// (IPv6: one /64); more are closed at once. Behind `ssh -L` every connection comes
    /// from 127.0.0.1, so this is the whole laptop's share.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tunnels_per_client: u32,

    /// Open connections in all; more are closed at once, so a flood cannot exhaust the
    /// proxy's file descriptors.
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tunnels: u32,
}
