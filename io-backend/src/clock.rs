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

    /// [`timeout`](Self::timeout) counting only the time this process ran: when the deadline's
    /// timer fires at least half the limit later than it was set for, the process (or its
    /// machine) was stopped meanwhile — SIGSTOP, a frozen virtual machine — and what it waited
    /// for could not have been seen to finish; it gets the limit again from then, for at most
    /// [`PAUSES_FORGIVEN`] such pauses. A disk that stalls goes on stalling after a pause
    /// and misses the next, punctual, deadline. `fut` is not dropped on a timeout.
    pub async fn timeout_running<F: Future + Unpin>(
        &self,
        limit: Duration,
        fut: &mut F,
    ) -> Result<F::Output, TimedOut> {
        let mut forgiven = 0;
        loop {
            let set = self.now();
            match self.timeout(limit, &mut *fut).await {
                Ok(out) => return Ok(out),
                Err(e) => {
                    let late = self.now().saturating_duration_since(set + limit);
                    if late < limit / 2 || forgiven == PAUSES_FORGIVEN {
                        return Err(e);
                    }
                    forgiven += 1;
                }
            }
        }
    }
}

/// Pauses of the process [`Clock::timeout_running`] forgives one wait.
pub const PAUSES_FORGIVEN: u32 = 3;

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

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// The system clock, but `now` jumps `jump_ms` ahead during its first sleep: the process
    /// seen as stopped meanwhile.
    struct Paused {
        jump_ms: u64,
        skipped_ms: AtomicU64,
    }

    #[async_trait]
    impl Clock for Paused {
        fn now(&self) -> Instant {
            Instant::now() + Duration::from_millis(self.skipped_ms.load(Ordering::Relaxed))
        }
        fn wall_ms(&self) -> i64 {
            0
        }
        async fn sleep(&self, duration: Duration) {
            tokio::time::sleep(duration).await;
            let _ = self.skipped_ms.compare_exchange(
                0,
                self.jump_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    #[tokio::test]
    async fn a_deadline_that_passed_while_the_process_was_stopped_is_given_again() {
        let limit = Duration::from_millis(40);
        // The work ends 60 ms on, after a first deadline that a 500 ms pause made late.
        let paused: Arc<dyn Clock> = Arc::new(Paused {
            jump_ms: 500,
            skipped_ms: AtomicU64::new(0),
        });
        let mut work = Box::pin(tokio::time::sleep(Duration::from_millis(60)));
        assert!(paused.timeout_running(limit, &mut work).await.is_ok());
        // Without the pause the same wait misses its deadline.
        let running: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut work = Box::pin(tokio::time::sleep(Duration::from_millis(60)));
        assert!(running.timeout_running(limit, &mut work).await.is_err());
        // Work that never ends misses it after the pause too.
        let paused: Arc<dyn Clock> = Arc::new(Paused {
            jump_ms: 500,
            skipped_ms: AtomicU64::new(0),
        });
        let mut stuck = Box::pin(std::future::pending::<()>());
        assert!(paused.timeout_running(limit, &mut stuck).await.is_err());
    }
}
