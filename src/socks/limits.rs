//! How many connections may be open at once: per client (`--max-tunnels-per-client`), so
//! one client cannot take every slot from the others, and in all (`--max-tunnels`), so a
//! flood cannot exhaust the proxy's file descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections, counted from accept to close (the handshake included, since a
/// half-open handshake holds a descriptor too).
pub struct Limits {
    per_client: u32,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_client: HashMap<IpAddr, u32>,
    total: usize,
}

/// The limit a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    PerClient,
    Total,
}

impl Limits {
    pub fn new(per_client: u32, total: usize) -> Arc<Limits> {
        Arc::new(Limits {
            per_client,
            total,
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for one more connection from `client`, held until dropped.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Full> {
        let key = client_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total {
            return Err(Full::Total);
        }
        let count = open.by_client.entry(key).or_insert(0);
        if *count >= self.per_client {
            return Err(Full::PerClient);
        }
        *count += 1;
        open.total += 1;
        Ok(Slot {
            owner: self.clone(),
            key,
        })
    }

    /// The clients with a connection open, and the connections open in all.
    pub fn open(&self) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.by_client.len(), open.total)
    }
}

/// One open connection of a client; dropping it (the connection's task ending or being
/// aborted) frees the slot.
pub struct Slot {
    owner: Arc<Limits>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_client.get_mut(&self.key) {
            *count -= 1;
            // Forgotten at zero, so the map holds only clients with connections open.
            if *count == 0 {
                open.by_client.remove(&self.key);
            }
        }
    }
}

/// Who counts as one client: an IPv4 address, or an IPv6 /64, the smallest network a
/// host is usually given (so it cannot dodge the limit by hopping addresses).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_share_and_one_more_after_a_close() {
        let limits = Limits::new(2, 100);
        let a = limits.acquire(ip("10.0.0.1")).expect("first");
        let _b = limits.acquire(ip("10.0.0.1")).expect("second");
        assert_eq!(limits.acquire(ip("10.0.0.1")).err(), Some(Full::PerClient));
        // Another client is unaffected; the same host through an IPv4-mapped address is not.
        let _other = limits.acquire(ip("10.0.0.2")).expect("other client");
        assert!(limits.acquire(ip("::ffff:10.0.0.1")).is_err());
        drop(a);
        let _c = limits.acquire(ip("10.0.0.1")).expect("after a close");
        assert_eq!(limits.open(), (2, 3));
    }

    #[test]
    fn the_total_caps_all_clients_together() {
        let limits = Limits::new(10, 2);
        let _a = limits.acquire(ip("10.0.0.1")).expect("first");
        let b = limits.acquire(ip("10.0.0.2")).expect("second");
        assert_eq!(limits.acquire(ip("10.0.0.3")).err(), Some(Full::Total));
        drop(b);
        assert!(limits.acquire(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64_and_are_forgotten_at_zero() {
        let limits = Limits::new(1, 100);
        let a = limits.acquire(ip("2001:db8:1:2::1")).expect("first");
        assert!(limits.acquire(ip("2001:db8:1:2::ffff")).is_err());
        assert!(limits.acquire(ip("2001:db8:1:3::1")).is_ok());
        drop(a);
        assert_eq!(limits.open(), (0, 0));
    }
}
