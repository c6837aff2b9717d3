//! A node's clock in simulation: madsim's time plus a per-node wall-clock offset and a drift.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use io_backend::Clock;
use tokio::time::Instant;

/// Simulated time as one node sees it. `offset_ms` skews its wall clock (Kafka timestamps);
/// `drift_ppm` makes its timers run fast (negative) or slow (positive) by that many parts per
/// million, and its wall clock drift the same way.
pub struct SimClock {
    started: Instant,
    offset_ms: AtomicI64,
    drift_ppm: AtomicI64,
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock {
            started: Instant::now(),
            offset_ms: AtomicI64::new(0),
            drift_ppm: AtomicI64::new(0),
        }
    }

    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    pub fn set_drift_ppm(&self, drift_ppm: i64) {
        self.drift_ppm.store(drift_ppm, Ordering::Relaxed);
    }

    fn drifted(&self, d: Duration) -> Duration {
        let ppm = self.drift_ppm.load(Ordering::Relaxed);
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
        let elapsed = Instant::now() - self.started;
        let drift = self.drifted(elapsed).as_millis() as i64 - elapsed.as_millis() as i64;
        base + self.offset_ms.load(Ordering::Relaxed) + drift
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(self.drifted(duration)).await
    }
}
