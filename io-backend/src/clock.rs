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

    /// [`timeout`](Self::timeout) counting only the time this process ran. The wait is made in
    /// steps of a tenth of the limit; a step whose timer fires more than half a step late means
    /// the process (or its machine) was stopped meanwhile — SIGSTOP, a frozen virtual machine —
    /// and only the step counts, not the time it was stopped: what it waited for could not have
    /// been seen to finish then. At most [`PAUSES_FORGIVEN`] times the limit is forgiven in
    /// one wait, so a deadline is never put off for ever. A disk that stalls goes on stalling
    /// after a pause and misses the deadline counted in running time. `fut` is not dropped on
    /// a timeout.
    pub async fn timeout_running<F: Future + Unpin>(
        &self,
        limit: Duration,
        fut: &mut F,
    ) -> Result<F::Output, TimedOut> {
        let step = (limit / RUNNING_STEPS).max(Duration::from_millis(1));
        let mut ran = Duration::ZERO;
        let mut forgiven = Duration::ZERO;
        while ran < limit {
            let wait = step.min(limit - ran);
            let set = self.now();
            match self.timeout(wait, &mut *fut).await {
                Ok(out) => return Ok(out),
                Err(_) => {
                    let took = self.now().saturating_duration_since(set);
                    let late = took.saturating_sub(wait);
                    if late > wait / 2 && forgiven < limit * PAUSES_FORGIVEN {
                        forgiven += late;
                        ran += wait;
                    } else {
                        ran += took;
                    }
                }
            }
        }
        Err(TimedOut(limit))
    }
}

/// How many times its limit [`Clock::timeout_running`] forgives (as time the process was
/// stopped) in one wait.
pub const PAUSES_FORGIVEN: u32 = 3;
/// The steps [`Clock::timeout_running`] waits in: a pause is seen as a step's timer firing
/// late.
const RUNNING_STEPS: u32 = 10;

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

    /// The clock of a process stopped for `jump_ms` just after its first timer was set: the
    /// clock moves on meanwhile, and that timer fires `jump_ms` earlier in the process's own
    /// running time (as a timer does when the process resumes).
    struct StoppedEarly {
        jump_ms: u64,
        skipped_ms: AtomicU64,
    }

    #[async_trait]
    impl Clock for StoppedEarly {
        fn now(&self) -> Instant {
            Instant::now() + Duration::from_millis(self.skipped_ms.load(Ordering::Relaxed))
        }
        fn wall_ms(&self) -> i64 {
            0
        }
        async fn sleep(&self, duration: Duration) {
            let target = self.now() + duration;
            let _ = self.skipped_ms.compare_exchange(
                0,
                self.jump_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            tokio::time::sleep(target.saturating_duration_since(self.now())).await;
        }
    }

    #[tokio::test]
    async fn a_pause_that_began_early_in_the_wait_and_ended_near_its_deadline_is_not_counted() {
        // The simulator's seed 13 of cluster-failover-clients: a 5 s pause began just after a
        // write with a 5 s deadline was issued; the deadline's timer fired at the resume, barely
        // late, and the directory was declared failed with nothing wrong with the disk.
        let limit = Duration::from_millis(200);
        let stopped: Arc<dyn Clock> = Arc::new(StoppedEarly {
            jump_ms: 190,
            skipped_ms: AtomicU64::new(0),
        });
        let mut work = Box::pin(tokio::time::sleep(Duration::from_millis(60)));
        assert!(stopped.timeout_running(limit, &mut work).await.is_ok());
        // Work that never ends misses the deadline all the same.
        let stopped: Arc<dyn Clock> = Arc::new(StoppedEarly {
            jump_ms: 190,
            skipped_ms: AtomicU64::new(0),
        });
        let mut stuck = Box::pin(std::future::pending::<()>());
        assert!(stopped.timeout_running(limit, &mut stuck).await.is_err());
    }

    #[tokio::test]
    async fn a_deadline_that_passed_while_the_process_was_stopped_is_given_again() {
        let limit = Duration::from_millis(40);
        // The work ends 30 ms on in the process's running time, with a 500 ms pause between:
        // the pause is not counted.
        let paused: Arc<dyn Clock> = Arc::new(Paused {
            jump_ms: 500,
            skipped_ms: AtomicU64::new(0),
        });
        let mut work = Box::pin(tokio::time::sleep(Duration::from_millis(30)));
        assert!(paused.timeout_running(limit, &mut work).await.is_ok());
        // Work that takes longer than the limit in running time misses it, pause or not. (It
        // takes far longer than the limit and the pauses forgiven together: on a loaded host
        // every step's timer fires late, which counts as a pause too.)
        let long = Duration::from_millis(1000);
        let paused: Arc<dyn Clock> = Arc::new(Paused {
            jump_ms: 500,
            skipped_ms: AtomicU64::new(0),
        });
        let mut work = Box::pin(tokio::time::sleep(long));
        assert!(paused.timeout_running(limit, &mut work).await.is_err());
        // Without the pause the same wait misses its deadline.
        let running: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut work = Box::pin(tokio::time::sleep(long));
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
