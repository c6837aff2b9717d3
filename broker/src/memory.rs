//! The broker's memory budget: one bound on the bytes of requests being read or waiting to be
//! written to the log, and of responses not yet written to their sockets (Kafka's
//! `queued.max.request.bytes`, extended to responses).
//!
//! Without it, memory was bounded per request but not per broker: one connection pipelining
//! 64 Fetches of a 16 MB partition and reading nothing held a gigabyte; eight connections each
//! sending most of a 100 MiB frame held 682 MB. With it, a connection whose next request or
//! response does not fit waits — it stops reading, or its Fetch waits before reading the disk
//! — instead of allocating; it goes on when other connections' bytes are written or dropped.
//!
//! Two ways to take from the budget:
//! - [`MemoryBudget::acquire`] waits until the bytes fit. Used before memory is allocated: a
//!   large frame's bytes before they are read, a Fetch's bytes before the disk is read.
//! - [`MemoryBudget::charge`] takes at once, even past the bound. Used for what is already
//!   allocated and small: a read of at most one chunk, a small encoded response. Each
//!   connection can overdraw by about one chunk; the next [`MemoryBudget::wait_for_room`]
//!   holds it until the budget is below its bound again.
//!
//! Waiters are not served in order: a small request may pass a large one that waits, so a few
//! connections announcing huge frames cannot stall every small request behind them. And large
//! takings ([`MemoryBudget::acquire`]) stop an eighth short of the bound: that last eighth is
//! kept for small requests, so clients that fetch a lot and stop reading their responses (held
//! until the write deadline closes them) cannot stop every other client's small requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// A broker's memory budget (shared by every connection).
pub struct MemoryBudget {
    total: usize,
    used: AtomicUsize,
    freed: Notify,
    /// Tasks waiting for memory; releases wake them only if there are any (most never wait,
    /// and a wake-up takes a lock).
    waiting: AtomicUsize,
    /// `memory_used_bytes` and `memory_waits_total`.
    metrics: Arc<Metrics>,
}

impl MemoryBudget {
    pub fn new(total: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.memory_budget_bytes.set(total as i64);
        Arc::new(MemoryBudget {
            total,
            used: AtomicUsize::new(0),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
            metrics,
        })
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// What large takings may use: the budget but the eighth kept for small requests.
    pub fn large_total(&self) -> usize {
        self.total - self.total / 8
    }

    /// Take `bytes`, waiting until they fit below [`MemoryBudget::large_total`]. A request for
    /// more takes all of that (it then waits for everything else to be freed).
    pub async fn acquire(self: &Arc<Self>, bytes: usize) -> Reservation {
        let bytes = bytes.min(self.large_total());
        if self.try_take(bytes, self.large_total()) {
            return self.reservation(bytes);
        }
        self.wait_until(|| self.try_take(bytes, self.large_total()))
            .await;
        self.reservation(bytes)
    }

    /// Wait until the budget is below its bound (a reader about to read one more chunk).
    pub async fn wait_for_room(self: &Arc<Self>) {
        if self.used() < self.total {
            return;
        }
        self.wait_until(|| self.used() < self.total).await
    }

    /// Wait (counted in `memory_waits_total`) until `ready` holds, checking again after every
    /// release.
    async fn wait_until(&self, ready: impl Fn() -> bool) {
        Metrics::inc(&self.metrics.memory_waits, 1);
        // Counted before the check; a release that sees no waiter counted came before it, so
        // the check sees what it freed.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release between the check and the wait wakes it.
            freed.as_mut().enable();
            if ready() {
                break;
            }
            freed.await;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Take `bytes` now, past the bound if need be (for bytes already in memory).
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Reservation {
        self.used.fetch_add(bytes, Ordering::SeqCst);
        self.reservation(bytes)
    }

    fn try_take(&self, bytes: usize, limit: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used + bytes <= limit).then_some(used + bytes)
            })
            .is_ok()
    }

    fn reservation(self: &Arc<Self>, bytes: usize) -> Reservation {
        self.metrics.memory_used_bytes.inc_by(bytes as i64);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::SeqCst);
        self.metrics.memory_used_bytes.dec_by(bytes as i64);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// Bytes taken from a [`MemoryBudget`]; given back when dropped.
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// An empty reservation on `budget`, to grow later.
    pub fn none(budget: &Arc<MemoryBudget>) -> Reservation {
        Reservation {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Move `bytes` (at most what is held) into a reservation of their own.
    pub fn split(&mut self, bytes: usize) -> Reservation {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Reservation {
            budget: self.budget.clone(),
            bytes,
        }
    }

    /// Take over what `other` holds.
    pub fn merge(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Hold exactly `bytes`: give back what is over, charge what is missing (memory that is
    /// already allocated, e.g. a response a little larger than estimated).
    pub fn resize(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        } else if bytes > self.bytes {
            let more = self.budget.charge(bytes - self.bytes);
            self.merge(more);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({} bytes)", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(total: usize) -> Arc<MemoryBudget> {
        MemoryBudget::new(total, Arc::default())
    }

    #[tokio::test]
    async fn acquire_waits_until_the_bytes_fit_and_dropping_gives_them_back() {
        let b = budget(800);
        assert_eq!(b.large_total(), 700);
        let first = b.acquire(500).await;
        assert_eq!(b.used(), 500);
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.acquire(300).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "300 more bytes do not fit below 700"
        );
        // A small request passes the large one that waits.
        let small = b.acquire(200).await;
        assert_eq!(b.used(), 700);
        // Small reads still have the last eighth.
        b.wait_for_room().await;
        drop(first);
        drop(small);
        assert_eq!(waiting.await.unwrap(), 300);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn charge_overdraws_and_room_comes_back_when_freed() {
        let b = budget(100);
        let mut r = b.charge(150);
        assert_eq!(b.used(), 150);
        let room = tokio::spawn({
            let b = b.clone();
            async move { b.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!room.is_finished());
        r.resize(40);
        room.await.unwrap();
        let part = r.split(30);
        assert_eq!((r.bytes(), part.bytes(), b.used()), (10, 30, 40));
        r.merge(part);
        r.resize(0);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_takes_all_large_takings_may() {
        let b = budget(800);
        assert_eq!(b.acquire(10_000).await.bytes(), 700);
        assert_eq!(b.used(), 0);
    }
}
