//! Bounds on connections before anything is known of them: open connections per remote
//! address (Kafka's `max.connections.per.ip`), so one address — idle connections included —
//! cannot take every slot of a listener. Shared by the client listeners and the inter-broker
//! port.
//!
//! Invariant: a slot taken is given back exactly once, when it is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::sync::Mutex;

/// Open connections per remote address.
pub struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// `lock`: the name of its lock (one per table, in the lock-order audit).
    pub fn new(lock: &'static str) -> Self {
        PerAddress {
            open: Mutex::new(lock, HashMap::new()),
        }
    }

    /// A slot for one more connection from `ip`, if it has fewer than `limit` open.
    pub fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One open connection counted against its address; uncounted when dropped.
pub struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
