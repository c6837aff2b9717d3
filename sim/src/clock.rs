//! A node's clock in simulation: madsim's time plus a per-node wall-clock offset and a drift.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use io_backend::Clock;
use tokio::time::Instant;

/// Simulated time as one node sees it. `offset_ms` skews its wall clock (Kafka timestamps);
/// `drift_ppm` makes its timers run slow (positive) or fast (negative) by that many parts per
/// million, and its wall clock drift the same way from the moment the drift is set.
pub struct SimClock {
    offset_ms: AtomicI64,
    drift: Mutex<Drift>,
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
            offset_ms: AtomicI64::new(0),
            drift: Mutex::new(Drift {
                ppm: 0,
                since: Instant::now(),
                accumulated_ms: 0,
            }),
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
        tokio::time::sleep(self.drifted(duration)).await
    }
}
