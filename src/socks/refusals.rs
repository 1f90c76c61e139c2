//! Refusal log lines, aggregated per client: the first refusal of a client is logged as it
//! happens (what a user debugging "why does this page not load" looks for), later ones
//! within [`INTERVAL`] are only counted and summarised once per interval. A client that
//! hammers the proxy then costs a few lines a minute, not one per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use super::limits::client_key;

/// How often a client's refusals are logged at most: one line, then one summary.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Clients tracked at once; refusals from further clients (an IPv6 flood from many /64s)
/// are counted together, so the table's memory stays bounded.
const MAX_CLIENTS: usize = 4096;

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not in --allow-client.
    Client,
    /// Over --max-tunnels-per-client or --max-tunnels.
    Busy,
    /// A destination outside the allowlist.
    Destination,
    /// Missing or wrong username/password.
    Credentials,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::Client, "from outside --allow-client"),
    (Kind::Busy, "over a connection limit"),
    (Kind::Destination, "to a destination not allowed"),
    (Kind::Credentials, "with wrong or missing credentials"),
];

#[derive(Debug, Default, Clone, Copy)]
struct Tally([u64; KINDS.len()]);

impl Tally {
    fn add(&mut self, kind: Kind) {
        if let Some(i) = KINDS.iter().position(|(k, _)| *k == kind) {
            self.0[i] += 1;
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn describe(&self) -> String {
        KINDS
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|((_, what), n)| format!("{n} {what}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Entry {
    /// When this client's last line was logged.
    logged: Instant,
    unlogged: Tally,
}

#[derive(Default)]
struct Table {
    clients: HashMap<IpAddr, Entry>,
    /// Refusals of clients beyond [`MAX_CLIENTS`], and how many such refusals.
    others: Tally,
}

/// The per-client refusal tally.
pub struct Refusals {
    interval: Duration,
    table: Mutex<Table>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(INTERVAL)
    }
}

impl Refusals {
    pub fn new(interval: Duration) -> Refusals {
        Refusals {
            interval,
            table: Mutex::new(Table::default()),
        }
    }

    /// Records a refusal of `client`; true when the caller should log it, false when it
    /// was counted for the next summary instead.
    pub fn log_this(&self, client: IpAddr, kind: Kind) -> bool {
        let now = Instant::now();
        let key = client_key(client);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let full = table.clients.len() >= MAX_CLIENTS;
        match table.clients.get_mut(&key) {
            Some(entry) if now.duration_since(entry.logged) < self.interval => {
                entry.unlogged.add(kind);
                false
            }
            Some(entry) => {
                summarise(key, entry, now);
                entry.logged = now;
                true
            }
            None if full => {
                table.others.add(kind);
                false
            }
            None => {
                table.clients.insert(
                    key,
                    Entry {
                        logged: now,
                        unlogged: Tally::default(),
                    },
                );
                true
            }
        }
    }

    /// Logs the summaries due (or all of them, at shutdown) and forgets clients that
    /// have been quiet for a whole interval. Called about once per interval.
    pub fn flush(&self, all: bool) {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let interval = self.interval;
        table.clients.retain(|client, entry| {
            let quiet = now.duration_since(entry.logged) >= interval;
            if quiet || all {
                summarise(*client, entry, now);
            }
            !quiet || entry.unlogged.total() > 0
        });
        let others = std::mem::take(&mut table.others);
        if others.total() > 0 {
            info!(
                "{} more refused from other clients ({})",
                others.total(),
                others.describe()
            );
        }
    }
}

/// Logs one client's unlogged refusals, if any, and starts its count afresh.
fn summarise(client: IpAddr, entry: &mut Entry, now: Instant) {
    let n = entry.unlogged.total();
    if n == 0 {
        return;
    }
    info!(
        "client {client}: {n} more refused in the last {}s ({})",
        now.duration_since(entry.logged).as_secs().max(1),
        entry.unlogged.describe()
    );
    entry.unlogged = Tally::default();
    entry.logged = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn unlogged(r: &Refusals, client: &str) -> Option<u64> {
        let table = r.table.lock().unwrap();
        table
            .clients
            .get(&client_key(ip(client)))
            .map(|e| e.unlogged.total())
    }

    #[test]
    fn one_line_per_client_per_interval_the_rest_counted() {
        let interval = Duration::from_millis(300);
        let r = Refusals::new(interval);
        assert!(r.log_this(ip("10.0.0.1"), Kind::Client));
        for _ in 0..99 {
            assert!(!r.log_this(ip("10.0.0.1"), Kind::Destination));
        }
        // Another client gets its own first line.
        assert!(r.log_this(ip("10.0.0.2"), Kind::Credentials));
        assert_eq!(unlogged(&r, "10.0.0.1"), Some(99));
        // Within the interval a flush leaves the count alone.
        r.flush(false);
        assert_eq!(unlogged(&r, "10.0.0.1"), Some(99));
        // After it, the count is logged and the quiet clients forgotten...
        std::thread::sleep(interval);
        r.flush(false);
        assert_eq!(unlogged(&r, "10.0.0.1"), None);
        assert!(r.table.lock().unwrap().clients.is_empty());
        // ...so the next refusal is a line of its own.
        assert!(r.log_this(ip("10.0.0.1"), Kind::Client));
        assert!(!r.log_this(ip("10.0.0.1"), Kind::Client));
        // At shutdown every count is logged, due or not.
        r.flush(true);
        assert_eq!(unlogged(&r, "10.0.0.1"), Some(0));
    }

    #[test]
    fn the_table_is_bounded() {
        let r = Refusals::new(Duration::from_secs(10));
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let addr = IpAddr::V4((0x0a00_0000 + i).into());
            let logged = r.log_this(addr, Kind::Client);
            assert_eq!(logged, (i as usize) < MAX_CLIENTS, "{addr}");
        }
        let mut table = r.table.lock().unwrap();
        assert_eq!(table.clients.len(), MAX_CLIENTS);
        assert_eq!(table.others.total(), 100);
        drop(table);
        r.flush(false);
        table = r.table.lock().unwrap();
        assert_eq!(table.others.total(), 0);
    }

    #[test]
    fn tallies_describe_only_what_happened() {
        let mut t = Tally::default();
        t.add(Kind::Destination);
        t.add(Kind::Destination);
        t.add(Kind::Busy);
        assert_eq!(
            t.describe(),
            "1 over a connection limit, 2 to a destination not allowed"
        );
    }
}
