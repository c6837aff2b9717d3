//! Work the loop started away from itself — Raft writes, catch-up reads, chunks of cleaned
//! prefixes — and what of it finished.
//!
//! Invariant: a started future runs (a write is queued to the pipeline, a read to the
//! directory's queue) only when polled, and the loop polls every set at the end of every turn
//! as well as in its `select!`; each turn then hears everything that finished, not one result.
//! A loop that took one finished write per turn, each turn paying for its passes over the
//! Readies, heard a commit round of hundreds of groups over as many turns — seconds, while
//! votes and first entries waited and elections timed out on an idle disk.

use std::future::Future;
use std::pin::Pin;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

/// A set of started futures and the results found finished but not yet handled.
pub(super) struct Underway<T> {
    running: FuturesUnordered<Pin<Box<dyn Future<Output = T> + Send>>>,
    finished: Vec<T>,
}

impl<T> Default for Underway<T> {
    fn default() -> Self {
        Underway {
            running: FuturesUnordered::new(),
            finished: Vec::new(),
        }
    }
}

impl<T> Underway<T> {
    pub(super) fn push(&mut self, work: Pin<Box<dyn Future<Output = T> + Send>>) {
        self.running.push(work);
    }

    /// The next to finish (for the loop's `select!`; none while nothing runs).
    pub(super) async fn next(&mut self) -> Option<T> {
        self.running.next().await
    }

    /// A result the `select!` took, handled with the others by [`Underway::take`].
    pub(super) fn keep(&mut self, done: T) {
        self.finished.push(done);
    }

    /// Whether results wait to be taken (the loop must not sleep then).
    pub(super) fn has_finished(&self) -> bool {
        !self.finished.is_empty()
    }

    /// Poll without waiting: what was just started begins, what finished is kept.
    pub(super) fn poll_now(&mut self) {
        while let Some(Some(done)) = self.running.next().now_or_never() {
            self.finished.push(done);
        }
    }

    /// Everything finished by now, in the order found.
    pub(super) fn take(&mut self) -> Vec<T> {
        self.poll_now();
        std::mem::take(&mut self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_take_hears_every_finished_future_and_starts_the_new_ones() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut set: Underway<u32> = Underway::default();
        for i in 0..100 {
            set.push(Box::pin(async move { i }));
        }
        set.push(Box::pin(async move { rx.await.unwrap_or(0) + 1_000 }));
        let mut heard = set.take();
        heard.sort();
        assert_eq!(
            heard,
            (0..100).collect::<Vec<_>>(),
            "all ready ones in one take"
        );
        assert!(!set.has_finished());
        tx.send(7).unwrap();
        set.poll_now();
        assert!(set.has_finished());
        assert_eq!(set.take(), vec![1_007]);
    }
}
