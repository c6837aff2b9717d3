//! The disk's device queue: at most `depth` operations in service at once, the others waiting
//! in the order they came (a disk's queue, as `nr_requests` bounds it). What waits here waits
//! inside the broker's own deadline for the operation, as a real disk's queue does.
//!
//! Which operations take a place: those that reach the device — syncs (of data and of
//! directories) and reads. Writes land in the page cache and names in the journal's memory;
//! they wait only their own latency (their bytes are moved at the sync, by the bandwidth model).
//!
//! A neighbour (`occupy`) takes places for a time without touching a file: another tenant's
//! I/O on the same device, which the broker's operations queue behind.
//!
//! Invariant: a place is held by exactly one operation or waiter at a time; an operation
//! dropped while it waits (its caller gave up at a deadline) gives back a place it was handed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::lock;

/// The queue's state, inside the disk's.
#[derive(Default)]
pub(super) struct DeviceQueue {
    /// Places (`None`: every operation is served at once, the queue is off).
    pub(super) depth: Option<usize>,
    in_service: usize,
    waiting: VecDeque<oneshot::Sender<()>>,
    /// Counters for reports: operations that had to wait, the longest wait, the most waiting.
    pub(super) waited: u64,
    pub(super) wait_max: Duration,
    pub(super) waiting_peak: usize,
}

/// A place in service; given back (to the first waiter, if any) when dropped.
pub(super) struct Place {
    queue: Arc<Mutex<DeviceQueue>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        release(&self.queue);
    }
}

fn release(queue: &Arc<Mutex<DeviceQueue>>) {
    let mut q = lock(queue);
    // A queue made shallower lets places go until it is within its depth.
    if q.depth.is_some_and(|d| q.in_service > d.max(1)) {
        q.in_service -= 1;
        return;
    }
    while let Some(next) = q.waiting.pop_front() {
        // The place passes to the waiter; one that gave up is skipped.
        if next.send(()).is_ok() {
            return;
        }
    }
    q.in_service -= 1;
}

/// Waiting for a place: if dropped after one was handed to it, it gives the place back.
struct Waiting {
    queue: Arc<Mutex<DeviceQueue>>,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                release(&self.queue);
            }
        }
    }
}

/// Change the depth (`None`: off). Waiters a deeper queue (or none) has room for go in now.
pub(super) fn set_depth(queue: &Arc<Mutex<DeviceQueue>>, depth: Option<usize>) {
    let mut q = lock(queue);
    q.depth = depth;
    loop {
        if depth.is_some_and(|d| q.in_service >= d.max(1)) {
            return;
        }
        let Some(next) = q.waiting.pop_front() else {
            return;
        };
        if next.send(()).is_ok() {
            q.in_service += 1;
        }
    }
}

/// Wait for a place in service (at once when the queue is off or has one free).
pub(super) async fn enter(queue: &Arc<Mutex<DeviceQueue>>) -> Option<Place> {
    let rx = {
        let mut q = lock(queue);
        let depth = q.depth?;
        if q.in_service < depth.max(1) && q.waiting.is_empty() {
            q.in_service += 1;
            return Some(Place {
                queue: queue.clone(),
            });
        }
        let (tx, rx) = oneshot::channel();
        q.waiting.push_back(tx);
        q.waiting_peak = q.waiting_peak.max(q.waiting.len());
        rx
    };
    let since = tokio::time::Instant::now();
    let mut waiting = Waiting {
        queue: queue.clone(),
        rx: Some(rx),
    };
    let handed = waiting.rx.as_mut().expect("set above").await;
    waiting.rx = None;
    if handed.is_err() {
        // The queue was dropped with the disk: nothing to hold.
        return None;
    }
    let mut q = lock(queue);
    q.waited += 1;
    q.wait_max = q.wait_max.max(since.elapsed());
    Some(Place {
        queue: queue.clone(),
    })
}

/// What the queue saw, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub waited: u64,
    pub wait_max: Duration,
    pub waiting_peak: usize,
}
