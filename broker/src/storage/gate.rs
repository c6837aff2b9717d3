//! The data directory's own queue of disk operations: how many of them the broker hands the
//! device at once.
//!
//! A disk serves a few operations at a time; the rest wait in its queue, and that wait is part
//! of every operation's time. Handed a thousand syncs at once (the first writes of a thousand
//! new partitions, a commit round over a thousand partitions), a disk that syncs in 150 ms
//! keeps the last one waiting 150 s — far past the I/O deadline, though the disk works. The
//! broker then declared the directory failed, healed it, and tried again, for ever (issue 49's
//! livelock, reproduced in simulation by `scenarios/open/overload-1000-partitions.toml`).
//!
//! So the operations wait here first, in line, and only `width` of them are in the device at a
//! time. Two lanes: writes (syncs of commit rounds, hard states, directories) go before reads
//! (fetches, catch-up): a commit round is answered within the deadline counted from its start,
//! and a crowd of cold reads must not hold it (reads cannot starve: the pipeline runs one round
//! at a time, so writes leave places between rounds). The deadline of an operation counts from the
//! moment it leaves this queue: a wait here is the broker's own choice, not a stalled disk.
//! The width adapts to what the device shows: an operation that took longer than a sixteenth
//! of the deadline halves it (once per batch of operations: those admitted before a cut do not
//! cut again), and each width's worth of faster ones widens it by one, between 1 and
//! [`MAX_WIDTH`] (TCP's additive increase, multiplicative decrease, with latency as the signal). A saturated
//! device therefore sees few operations of ours at once, each finished well within its
//! deadline; a healthy one sees many. A stalled device still fails the directory: the
//! operations in it miss their deadline, whatever the width.
//!
//! Invariant: no operation holds its place longer than the deadline (one that misses it gives
//! its place back as the directory is declared failed), so a wait in this queue always ends.
//! Reads count their wait here in their deadline (a reader is failed alone, never the
//! directory, and must not wait without bound).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::sync::{Mutex, MutexGuard};

/// The most operations of one directory in the device at once.
pub const MAX_WIDTH: usize = 64;
/// The width a directory starts with.
pub const START_WIDTH: usize = 8;
/// An operation that took more than this share of the deadline in the device narrows the
/// queue. A commit round writes up to a width of partitions, each with up to three syncs
/// (its data, its Raft record, their directory) and their chain of smaller steps: at a
/// quarter, a device of one place at 35 ms an operation let the width grow to ~35 and a Raft
/// round of 35 partitions outlasted the deadline; at a sixteenth a round is a few turns of the
/// device, far within it.
const SLOW_SHARE: u32 = 16;

/// Reads this large or larger measure the device's rate ([`Gate::read_took`]).
pub const RATE_FROM_BYTES: usize = 64 << 10;

/// Which line an operation waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Writes and syncs: served first.
    Write,
    /// Reads: served when no write waits.
    Read,
}

/// One directory's queue of disk operations.
pub struct Gate {
    state: Mutex<State>,
    /// An operation slower than this narrows the queue (a sixteenth of the I/O deadline).
    slow: Option<Duration>,
    /// Bytes per second the last large read moved (0: none yet), for [`Gate::read_too_slow`].
    read_rate: AtomicU64,
}

struct State {
    width: usize,
    in_service: usize,
    writes: VecDeque<oneshot::Sender<()>>,
    reads: VecDeque<oneshot::Sender<()>>,
    /// When the width was last cut: operations admitted before it do not cut it again.
    cut_at: Option<Instant>,
    /// Fast operations counted towards the next widening (one per width's worth of them).
    fast: usize,
}

impl State {
    /// Hand free places to the first waiters, writes first.
    fn hand_over(&mut self) {
        while self.in_service < self.width {
            let Some(next) = self.writes.pop_front().or_else(|| self.reads.pop_front()) else {
                return;
            };
            // A waiter that gave up is skipped.
            if next.send(()).is_ok() {
                self.in_service += 1;
            }
        }
    }

    fn release(&mut self) {
        self.in_service -= 1;
        self.hand_over();
    }
}

/// A place in the device, held while one operation runs (given back when dropped).
pub struct Place<'a> {
    gate: &'a Gate,
    pub admitted: Instant,
}

/// Waiting for a place: dropped after one was handed to it, it gives the place back.
struct Waiting<'a> {
    gate: &'a Gate,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.gate.lock().release();
            }
        }
    }
}

impl Gate {
    /// A queue for a directory whose operations have `deadline` (none: the width only grows).
    pub fn new(deadline: Option<Duration>) -> Gate {
        Gate {
            state: Mutex::new(
                "storage.gate",
                State {
                    width: START_WIDTH,
                    in_service: 0,
                    writes: VecDeque::new(),
                    reads: VecDeque::new(),
                    cut_at: None,
                    fast: 0,
                },
            ),
            slow: deadline.map(|d| d / SLOW_SHARE),
            read_rate: AtomicU64::new(0),
        }
    }

    /// A read of `bytes` took `took` (reads of [`RATE_FROM_BYTES`] or more are counted: the
    /// time of smaller ones is the device's latency, not its rate).
    pub fn read_took(&self, bytes: usize, took: Duration) {
        if bytes >= RATE_FROM_BYTES {
            let nanos = took.as_nanos().max(1);
            let rate = (bytes as u128 * 1_000_000_000 / nanos).min(u64::MAX as u128) as u64;
            self.read_rate.store(rate.max(1), Ordering::Relaxed);
        }
    }

    /// Whether a read of `bytes`, at the rate the last large read moved, would hold its place
    /// longer than an operation that narrows the queue: such a read goes in pieces
    /// ([`super::io::Io::read_at`]). Not before a large read was measured, nor without a deadline.
    pub fn read_too_slow(&self, bytes: usize) -> bool {
        let rate = self.read_rate.load(Ordering::Relaxed);
        match self.slow {
            Some(slow) if rate > 0 => {
                (bytes as u128 * 1_000_000_000) / rate as u128 > slow.as_nanos()
            }
            _ => false,
        }
    }

    /// How many operations may be in the device at once now.
    pub fn width(&self) -> usize {
        self.lock().width
    }

    /// Wait for a place in the device, in `lane`.
    pub async fn admit(&self, lane: Lane, now: impl Fn() -> Instant) -> Place<'_> {
        let rx = {
            let mut st = self.lock();
            let ahead = match lane {
                Lane::Write => !st.writes.is_empty(),
                Lane::Read => !st.writes.is_empty() || !st.reads.is_empty(),
            };
            if st.in_service < st.width && !ahead {
                st.in_service += 1;
                return Place {
                    gate: self,
                    admitted: now(),
                };
            }
            let (tx, rx) = oneshot::channel();
            match lane {
                Lane::Write => st.writes.push_back(tx),
                Lane::Read => st.reads.push_back(tx),
            }
            rx
        };
        let mut waiting = Waiting {
            gate: self,
            rx: Some(rx),
        };
        // The sender lives in the gate, which outlives this wait: it is always sent.
        let _ = waiting.rx.as_mut().expect("set above").await;
        waiting.rx = None;
        Place {
            gate: self,
            admitted: now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Place<'_> {
    /// The operation ended at `now` (or missed its deadline): let the time it took set the
    /// width, and give the place back.
    pub fn done(self, now: Instant) {
        let took = now.saturating_duration_since(self.admitted);
        let mut st = self.gate.lock();
        if self.gate.slow.is_some_and(|s| took > s) {
            let fresh = st.cut_at.is_none_or(|cut| self.admitted >= cut);
            if fresh && st.width > 1 {
                // Places in use beyond the new width leave service as they come back.
                st.width = (st.width / 2).max(1);
                st.cut_at = Some(now);
                st.fast = 0;
            }
        } else if st.width < MAX_WIDTH {
            st.fast += 1;
            if st.fast >= st.width {
                st.fast = 0;
                st.width += 1;
            }
        }
        // Given back by the drop, with the lock released first.
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.gate.lock().release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Whether another operation would be admitted now.
    async fn full(gate: &Gate, at: Instant) -> bool {
        tokio::time::timeout(ms(10), gate.admit(Lane::Write, || at))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn slow_operations_narrow_it_fast_ones_widen_it() {
        let gate = Gate::new(Some(ms(16_000)));
        let t0 = Instant::now();
        // One slow operation halves the width; others admitted before the cut do not cut again.
        let a = gate.admit(Lane::Write, || t0).await;
        let b = gate.admit(Lane::Write, || t0).await;
        a.done(t0 + ms(1500));
        assert_eq!(gate.width(), START_WIDTH / 2);
        b.done(t0 + ms(1600));
        assert_eq!(gate.width(), START_WIDTH / 2);
        // Places in use when the width was cut leave service as they come back: at most the
        // width is admitted at once.
        let t1 = t0 + ms(2000);
        let mut held = Vec::new();
        for _ in 0..START_WIDTH / 2 {
            held.push(gate.admit(Lane::Write, || t1).await);
        }
        assert!(full(&gate, t1).await, "admitted past the width");
        // A width's worth of fast ones widens it by one.
        for p in held {
            p.done(t1 + ms(10));
        }
        assert_eq!(gate.width(), START_WIDTH / 2 + 1);
        let mut again = Vec::new();
        for _ in 0..START_WIDTH / 2 + 1 {
            again.push(gate.admit(Lane::Write, || t1).await);
        }
        assert!(full(&gate, t1).await);
        // An operation whose caller gave up gives its place back as it was.
        drop(again);
        assert_eq!(gate.width(), START_WIDTH / 2 + 1);
        assert!(!full(&gate, t1).await);
    }

    #[tokio::test]
    async fn writes_go_before_reads_that_waited_longer() {
        let gate = std::sync::Arc::new(Gate::new(Some(ms(4000))));
        let t = Instant::now();
        let mut held = Vec::new();
        for _ in 0..START_WIDTH {
            held.push(gate.admit(Lane::Write, || t).await);
        }
        let (order, mut admitted) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (name, lane) in [("read", Lane::Read), ("write", Lane::Write)] {
            let (gate, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let place = gate.admit(lane, || t).await;
                let _ = order.send(name);
                drop(place);
            }));
            tokio::task::yield_now().await;
        }
        assert!(full(&gate, t).await);
        // A waiter that gives up leaves no hole: the two still waiting go in, writes first.
        drop(held.pop());
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(admitted.recv().await, Some("write"));
        assert_eq!(admitted.recv().await, Some("read"));
    }

    #[tokio::test]
    async fn it_never_narrows_below_one_nor_widens_past_the_most() {
        let gate = Gate::new(Some(ms(1600)));
        let mut t = Instant::now();
        for _ in 0..20 {
            let p = gate.admit(Lane::Write, || t).await;
            t += ms(200);
            p.done(t);
        }
        assert_eq!(gate.width(), 1);
        for _ in 0..MAX_WIDTH * MAX_WIDTH {
            let p = gate.admit(Lane::Write, || t).await;
            p.done(t);
        }
        assert_eq!(gate.width(), MAX_WIDTH);
        let mut held = Vec::new();
        for _ in 0..MAX_WIDTH {
            held.push(gate.admit(Lane::Write, || t).await);
        }
        assert!(full(&gate, t).await);
    }

    #[test]
    fn a_read_is_too_slow_only_once_a_large_read_measured_the_device_slow() {
        let gate = Gate::new(Some(Duration::from_secs(2)));
        assert!(!gate.read_too_slow(1 << 20), "nothing measured yet");
        gate.read_took(1 << 20, Duration::from_millis(333));
        assert!(
            gate.read_too_slow(1 << 20),
            "a third of a second, past 125 ms"
        );
        assert!(!gate.read_too_slow(256 << 10), "a piece takes 83 ms");
        gate.read_took(4 << 10, Duration::from_secs(10));
        assert!(
            gate.read_too_slow(1 << 20),
            "a small read's time is latency, not rate"
        );
        gate.read_took(1 << 20, Duration::from_millis(2));
        assert!(!gate.read_too_slow(1 << 20));
        let no_deadline = Gate::new(None);
        no_deadline.read_took(1 << 20, Duration::from_secs(5));
        assert!(!no_deadline.read_too_slow(1 << 20));
    }
}
