//! How many connections one client may hold open at once (`--max-tunnels-per-client`), so
//! one client cannot take every slot of the global limit from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections per client, counted from accept to close (the handshake included,
/// since a half-open handshake holds a descriptor too).
pub struct PerClient {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl PerClient {
    pub fn new(max: u32) -> Arc<PerClient> {
        Arc::new(PerClient {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `client`, held until dropped; `None` when the
    /// client already has `max` open.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let key = client_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            owner: self.clone(),
            key,
        })
    }

    /// The clients with a connection open (for tests and the summary).
    pub fn clients(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One open connection of a client; dropping it (the connection's task ending or being
/// aborted) frees the slot.
pub struct Slot {
    owner: Arc<PerClient>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            // Forgotten at zero, so the map holds only clients with connections open.
            if *count == 0 {
                open.remove(&self.key);
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
    fn a_client_gets_max_slots_and_one_more_after_a_close() {
        let limits = PerClient::new(2);
        let a = limits.acquire(ip("10.0.0.1")).expect("first");
        let _b = limits.acquire(ip("10.0.0.1")).expect("second");
        assert!(limits.acquire(ip("10.0.0.1")).is_none(), "third admitted");
        // Another client is unaffected; the same host through an IPv4-mapped address is not.
        let _other = limits.acquire(ip("10.0.0.2")).expect("other client");
        assert!(limits.acquire(ip("::ffff:10.0.0.1")).is_none());
        drop(a);
        let _c = limits.acquire(ip("10.0.0.1")).expect("after a close");
        assert_eq!(limits.clients(), 2);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_slots_are_forgotten_at_zero() {
        let limits = PerClient::new(1);
        let a = limits.acquire(ip("2001:db8:1:2::1")).expect("first");
        assert!(limits.acquire(ip("2001:db8:1:2::ffff")).is_none());
        assert!(limits.acquire(ip("2001:db8:1:3::1")).is_some());
        drop(a);
        assert_eq!(limits.clients(), 0);
    }
}
