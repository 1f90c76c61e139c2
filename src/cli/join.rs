//! The flags of `kinit join-command` and `kinit join`.

use clap::Args;

use super::NodeArgs;

#[derive(Debug, Args)]
pub struct JoinCommandArgs {
    /// How long the token may be used: minutes, hours or days (`30m`, `24h`, `7d`; at
    /// most 30 days).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The cluster's API server, `HOST:PORT` (as `kinit join-command` prints it).
    #[arg(value_name = "API_SERVER")]
    pub api_server: String,

    /// The bootstrap token, `abcdef.0123456789abcdef`.
    #[arg(long, env = "KINIT_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,

    /// The hash of the cluster's CA (`sha256:...`), which pins the cluster this host joins.
    #[arg(long, value_name = "sha256:HEX")]
    pub ca_cert_hash: String,

    #[command(flatten)]
    pub node: NodeArgs,

    #[command(flatten)]
    pub sources: super::SourceArgs,
}

/// A token's lifetime: `<n>m`, `<n>h` or `<n>d`, from one minute to 30 days.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err("use minutes, hours or days: 30m, 24h, 7d".into()),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a whole number"))?;
    let ttl = std::time::Duration::from_secs(n.saturating_mul(seconds));
    if ttl < std::time::Duration::from_secs(60) || ttl > std::time::Duration::from_secs(30 * 86400)
    {
        return Err("a token lives from 1 minute to 30 days".into());
    }
    Ok(ttl)
}
