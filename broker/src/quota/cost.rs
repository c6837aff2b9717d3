//! The time a request's handling runs (what a `request_percentage` quota measures): the time
//! spent inside its future's polls, not the time it waits (on the disk, on replication, on a
//! long poll), as Kafka counts a request handler thread's time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use io_backend::Clock;

/// Time run so far, added to by every [`Timed`] future that shares it.
#[derive(Debug, Default)]
pub struct Cost(AtomicU64);

impl Cost {
    pub fn spent(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// A future whose polls are timed into a [`Cost`].
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    cost: Arc<Cost>,
    clock: Arc<dyn Clock>,
}

impl<F: Future> Timed<F> {
    pub fn new(inner: F, cost: Arc<Cost>, clock: Arc<dyn Clock>) -> Timed<F> {
        Timed {
            inner: Box::pin(inner),
            cost,
            clock,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let start = this.clock.now();
        let out = this.inner.as_mut().poll(cx);
        this.cost
            .add(this.clock.now().saturating_duration_since(start));
        out
    }
}
