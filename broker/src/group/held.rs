//! Requests about groups whose coordinator is being settled: its partition of the offsets topic
//! is led here but not read yet (or the topic is being made), or has no leader now. They are
//! held until the next change of leadership rather than answered COORDINATOR_LOAD_IN_PROGRESS
//! or COORDINATOR_NOT_AVAILABLE at once: librdkafka retries those answers only twice within
//! ~0.3 s (on the same broker) and then raises them to the application — a synchronous commit
//! fails. Bounded in count and in time: past either, the request is answered at once.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Longest a request is held: an election and a load take well under it.
pub(super) const HOLD_LIMIT: Duration = Duration::from_secs(5);
/// Requests held at most.
pub(super) const HELD_MAX: usize = super::QUEUE;

/// The held requests, in arrival order, each with when it must be answered.
pub(super) struct Held<M> {
    queue: VecDeque<(Instant, M)>,
}

impl<M> Held<M> {
    pub(super) fn new() -> Self {
        Held {
            queue: VecDeque::new(),
        }
    }

    /// Hold `msg` until `until` (a request met for the first time: [`HOLD_LIMIT`] from `now`);
    /// the request back when its time is up or the queue is full — to be answered now.
    pub(super) fn hold(&mut self, msg: M, until: Option<Instant>, now: Instant) -> Option<M> {
        let until = until.unwrap_or(now + HOLD_LIMIT);
        if until <= now || self.queue.len() >= HELD_MAX {
            return Some(msg);
        }
        self.queue.push_back((until, msg));
        None
    }

    /// Every held request, to be handled again, with its time limit.
    pub(super) fn take(&mut self) -> VecDeque<(Instant, M)> {
        std::mem::take(&mut self.queue)
    }

    /// When the first held request must be answered.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queue.iter().map(|(until, _)| *until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_its_time_is_up_and_never_more_than_the_bound() {
        let now = Instant::now();
        let mut held = Held::new();
        assert_eq!(held.hold(1, None, now), None);
        assert_eq!(held.next_deadline(), Some(now + HOLD_LIMIT));
        // Handled again before its time: held on, with its first limit.
        let (until, msg) = held.take().pop_front().unwrap();
        assert_eq!(
            held.hold(msg, Some(until), now + Duration::from_secs(1)),
            None
        );
        // At its limit: back, to be answered.
        let (until, msg) = held.take().pop_front().unwrap();
        assert_eq!(held.hold(msg, Some(until), now + HOLD_LIMIT), Some(1));
        assert_eq!(held.next_deadline(), None);
        // Full: the next one is answered at once.
        for i in 0..HELD_MAX {
            assert_eq!(held.hold(i, None, now), None);
        }
        assert_eq!(held.hold(7, None, now), Some(7));
    }
}
