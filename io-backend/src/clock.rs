use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::time::Instant;

/// A deadline passed before the operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline of {0:?} passed")]
pub struct TimedOut(pub Duration);

/// Time, as one node sees it. The monotonic clock drives deadlines and sleeps; the wall clock
/// gives Kafka timestamps. Each node has its own clock so the simulator can skew one of them.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch, for Kafka timestamps.
    fn wall_ms(&self) -> i64;
    /// Sleep for `duration`.
    async fn sleep(&self, duration: Duration);
}

impl dyn Clock {
    /// Run `fut` with a deadline measured on this clock. The future is dropped when the deadline
    /// passes; to keep it running, spawn it and time out the join handle instead.
    pub async fn timeout<F: Future>(&self, limit: Duration, fut: F) -> Result<F::Output, TimedOut> {
        tokio::select! {
            biased;
            out = fut => Ok(out),
            _ = self.sleep(limit) => Err(TimedOut(limit)),
        }
    }
}

/// The system's clocks (tokio's monotonic clock and `SystemTime`).
#[derive(Debug, Default, Clone)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}
