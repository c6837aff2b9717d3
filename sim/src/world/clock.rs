//! A node's clock in simulation: madsim's time plus a per-node wall-clock offset and a drift,
//! and the node's sleeps kept in a timer list of its own.
//!
//! Why a list of its own: madsim's timer (a binary heap without cancellation) takes a new
//! entry each time a pending sleep is polled, and keeps the entry of a sleep dropped before its
//! deadline until that deadline, when it wakes its task for nothing. A broker polls long sleeps
//! often (a deadline around every disk operation, keepalives and ticks in `select!` loops woken
//! by every message), so the heap grew to 100,000 entries and popping it took a fifth of a
//! three-node run. Here a sleep is one entry however often it is polled, a dropped one is
//! removed at once, and one madsim timer (a driver task) stands for the earliest deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use io_backend::Clock;
use tokio::time::Instant;

/// Simulated time as one node sees it. `offset_ms` skews its wall clock (Kafka timestamps);
/// `drift_ppm` makes its timers run slow (positive) or fast (negative) by that many parts per
/// million, and its wall clock drift the same way from the moment the drift is set.
pub struct SimClock {
    offset_ms: Arc<AtomicI64>,
    drift: Arc<Mutex<Drift>>,
    timers: Arc<Mutex<Timers>>,
}

/// The sleeps of one incarnation of a node.
#[derive(Default)]
struct Timers {
    /// Pending sleeps by (deadline, id).
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// Deadlines a driver task sleeps until.
    armed: BTreeSet<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drift accumulates: changing the rate keeps what the wall clock gained or lost so far.
struct Drift {
    ppm: i64,
    since: Instant,
    accumulated_ms: i64,
}

impl Drift {
    fn gained_ms(&self, now: Instant) -> i64 {
        let elapsed_ms = (now - self.since).as_millis() as i64;
        self.accumulated_ms + elapsed_ms * self.ppm / 1_000_000
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock {
            offset_ms: Arc::new(AtomicI64::new(0)),
            drift: Arc::new(Mutex::new(Drift {
                ppm: 0,
                since: Instant::now(),
                accumulated_ms: 0,
            })),
            timers: Arc::default(),
        }
    }

    /// The clock for a new incarnation of the node (after a crash): the same skew and drift,
    /// and timers of its own — the killed incarnation's driver tasks are dropped only when
    /// madsim next schedules them, and must not stand for the new one's sleeps.
    pub fn incarnation(&self) -> SimClock {
        SimClock {
            offset_ms: self.offset_ms.clone(),
            drift: self.drift.clone(),
            timers: Arc::default(),
        }
    }

    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    pub fn set_drift_ppm(&self, drift_ppm: i64) {
        let mut d = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        d.accumulated_ms = d.gained_ms(now);
        d.since = now;
        d.ppm = drift_ppm;
    }

    fn drifted(&self, d: Duration) -> Duration {
        let ppm = self.drift.lock().unwrap_or_else(|p| p.into_inner()).ppm;
        let nanos = d.as_nanos() as i128 * (1_000_000 + ppm as i128) / 1_000_000;
        Duration::from_nanos(nanos.max(0) as u64)
    }
}

#[async_trait]
impl Clock for SimClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_ms(&self) -> i64 {
        let base = madsim::time::TimeHandle::current()
            .now_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let drift = self
            .drift
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gained_ms(Instant::now());
        base + self.offset_ms.load(Ordering::Relaxed) + drift
    }

    async fn sleep(&self, duration: Duration) {
        // At least a millisecond, as tokio's (and madsim's) sleeps.
        let deadline = Instant::now() + self.drifted(duration).max(Duration::from_millis(1));
        SimSleep {
            timers: self.timers.clone(),
            deadline,
            key: None,
        }
        .await
    }
}

/// One sleep: an entry in the node's timer list from its first poll until it ends or is
/// dropped.
struct SimSleep {
    timers: Arc<Mutex<Timers>>,
    deadline: Instant,
    key: Option<(Instant, u64)>,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        if Instant::now() >= deadline {
            if let Some(key) = self.key.take() {
                lock(&self.timers).waiting.remove(&key);
            }
            return Poll::Ready(());
        }
        let timers = self.timers.clone();
        let mut t = lock(&timers);
        match self.key {
            Some(key) => match t.waiting.get_mut(&key) {
                Some(w) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
                // Its driver took it out to wake it: it is due.
                None => {
                    self.key = None;
                    return Poll::Ready(());
                }
            },
            None => {
                let key = (deadline, t.next_id);
                t.next_id += 1;
                t.waiting.insert(key, cx.waker().clone());
                self.key = Some(key);
            }
        }
        // A driver must wake at or before this deadline.
        if t.armed.range(..=deadline).next().is_none() {
            t.armed.insert(deadline);
            drop(t);
            tokio::spawn(drive(timers, deadline));
        }
        Poll::Pending
    }
}

impl Drop for SimSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.timers).waiting.remove(&key);
        }
    }
}

/// A driver: one madsim timer at `at`; then it wakes every sleep due and, while sleeps are
/// left that no other driver stands for, sleeps on until the earliest of them.
async fn drive(timers: Arc<Mutex<Timers>>, mut at: Instant) {
    /// Takes the driver's deadline out of `armed` however it ends.
    struct Armed(Arc<Mutex<Timers>>, Instant);
    impl Drop for Armed {
        fn drop(&mut self) {
            lock(&self.0).armed.remove(&self.1);
        }
    }
    loop {
        let armed = Armed(timers.clone(), at);
        tokio::time::sleep_until(at).await;
        let now = Instant::now();
        let due: Vec<Waker> = {
            let mut t = lock(&timers);
            let later = t.waiting.split_off(&(now, u64::MAX));
            let due = std::mem::replace(&mut t.waiting, later);
            due.into_values().collect()
        };
        for w in due {
            w.wake();
        }
        drop(armed);
        let mut t = lock(&timers);
        let Some(&(next, _)) = t.waiting.keys().next() else {
            return;
        };
        if t.armed.range(..=next).next().is_some() {
            return;
        }
        t.armed.insert(next);
        at = next;
    }
}
