//! Catch-up: the reads a leader makes from its log for followers behind its cache of recent
//! entries — a broker back after a while, or one whose disk was replaced and that needs the
//! whole log again — made within budgets, so that bringing one replica up to date never takes
//! the brokers that serve down.
//!
//! Found black-box: a broker restarted with an emptied data directory while the others held
//! 140 MB each drove both healthy brokers out of memory (11.7 and 22.4 GB) and failed their
//! data directories. Every ask of raft-rs for old entries had become a read of its own, a
//! read that missed its deadline was asked again at once, each read scanned its segment from
//! the start, and the reads queued in the disk pool ahead of the leaders' own writes. Here:
//! - one read per (group, first index), and at most [`READS_IN_FLIGHT_MAX`] on the broker, so
//!   an append never waits in the disk pool behind more than that;
//! - bytes in flight per follower at most `follower_bytes_max` (Kafka's
//!   `replica.fetch.response.max.bytes`): reads under way for it plus what the transport
//!   still queues for it; each read at most `read_bytes_max` (`replica.fetch.max.bytes`) and
//!   taken from the broker's memory budget before it is made, given back once raft-rs has
//!   the entries;
//! - a rate (Kafka's `leader.replication.throttled.rate`): bytes read per second, a token
//!   bucket on the node's clock, so produce writes keep their disk time;
//! - a read that fails (a missed deadline, EIO) frees what it held and is made again after a
//!   backoff (100 ms doubling to 5 s), its log lines rate-limited.
//!
//! Reads from the cache of recent entries (an in-sync follower's) are none of this: they cost
//! no disk time and are never throttled.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::transport::NodeId;
use super::wire::GroupId;

/// Catch-up reads under way on a broker, at most.
pub const READS_IN_FLIGHT_MAX: usize = 4;
/// The first and the longest wait before a failed read is made again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The budgets of catch-up reads (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUpSettings {
    /// Bytes of one read, and of one append to a follower, at most.
    pub read_bytes_max: u64,
    /// Bytes under way to one follower, at most: its reads and its transport queue.
    pub follower_bytes_max: u64,
    /// Bytes read per second for followers, at most; 0: no limit.
    pub rate_bytes_per_s: u64,
    /// Bytes of durable entries kept in memory, all groups together, because a connected
    /// follower has not acknowledged them yet (beyond each group's floor of recent entries):
    /// an in-sync follower is then sent them from memory, never through the reads above.
    pub followers_cache_bytes_max: u64,
}

impl Default for CatchUpSettings {
    fn default() -> Self {
        CatchUpSettings {
            read_bytes_max: 1 << 20,
            follower_bytes_max: 10 << 20,
            rate_bytes_per_s: 0,
            followers_cache_bytes_max: 64 << 20,
        }
    }
}

/// A read waiting for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub group: GroupId,
    pub low: u64,
    pub max_bytes: u64,
    /// Not before this (a failed read's backoff).
    pub not_before: Option<Instant>,
}

/// A read the scheduler started: for whom, and what it holds of the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub group: GroupId,
    pub low: u64,
    pub max_bytes: u64,
    pub follower: NodeId,
}

/// What the scheduler needs to know of the node to start a read.
pub trait Followers {
    /// The follower of `group` whose next entry is `low`, if this node leads `group` and one
    /// still waits for it (else the read is no longer wanted).
    fn waiting_at(&self, group: GroupId, low: u64) -> Option<NodeId>;
    /// Bytes the transport queues for `follower`.
    fn queued_bytes(&self, follower: NodeId) -> u64;
}

/// Why a wanted read is not started now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Started: the caller makes the read.
    Start(Started),
    /// Dropped: nobody waits for it any more.
    Abandon(Wanted),
}

/// The catch-up reads of one node (see the module doc). Pure bookkeeping: the node's loop
/// makes the reads and tells it how they ended.
#[derive(Debug)]
pub struct CatchUp {
    settings: CatchUpSettings,
    waiting: VecDeque<Wanted>,
    running: Vec<Started>,
    follower_bytes: HashMap<NodeId, u64>,
    /// Failed attempts in a row, per (group, first index).
    failures: HashMap<(GroupId, u64), u32>,
    /// The token bucket of the rate: bytes that may be read now (negative: owed).
    tokens: f64,
    refilled: Option<Instant>,
    /// The most bytes under way to one follower when a read started (its reads, the new one
    /// and its transport queue).
    follower_bytes_peak: u64,
}

impl CatchUp {
    pub fn new(settings: CatchUpSettings) -> Self {
        CatchUp {
            settings,
            waiting: VecDeque::new(),
            running: Vec::new(),
            follower_bytes: HashMap::new(),
            failures: HashMap::new(),
            tokens: 0.0,
            refilled: None,
            follower_bytes_peak: 0,
        }
    }

    pub fn settings(&self) -> CatchUpSettings {
        self.settings
    }

    /// raft-rs waits for the entries of `group` from `low` on.
    pub fn want(&mut self, group: GroupId, low: u64, max_bytes: u64) {
        let max_bytes = max_bytes.clamp(1, self.settings.read_bytes_max.max(1));
        if self
            .waiting
            .iter()
            .any(|w| w.group == group && w.low == low)
            || self
                .running
                .iter()
                .any(|r| r.group == group && r.low == low)
        {
            return;
        }
        self.waiting.push_back(Wanted {
            group,
            low,
            max_bytes,
            not_before: None,
        });
    }

    /// Reads under way.
    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// Bytes the reads under way may bring, in all.
    pub fn bytes_in_flight(&self) -> u64 {
        self.running.iter().map(|r| r.max_bytes).sum()
    }

    /// The most bytes under way to one follower as a read started.
    pub fn follower_bytes_peak(&self) -> u64 {
        self.follower_bytes_peak
    }

    /// Reads waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The reads to start or drop now, in the order they were wanted, within every budget.
    pub fn next(&mut self, now: Instant, node: &impl Followers) -> Vec<Verdict> {
        self.refill(now);
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() && self.running.len() < READS_IN_FLIGHT_MAX {
            let w = self.waiting[i];
            if w.not_before.is_some_and(|t| t > now) {
                i += 1;
                continue;
            }
            let Some(follower) = node.waiting_at(w.group, w.low) else {
                self.waiting.remove(i);
                self.failures.remove(&(w.group, w.low));
                out.push(Verdict::Abandon(w));
                continue;
            };
            if self.settings.rate_bytes_per_s > 0 && self.tokens <= 0.0 {
                break;
            }
            let under_way = self.follower_bytes.get(&follower).copied().unwrap_or(0)
                + node.queued_bytes(follower);
            if under_way > 0 && under_way + w.max_bytes > self.settings.follower_bytes_max {
                i += 1;
                continue;
            }
            self.waiting.remove(i);
            let started = Started {
                group: w.group,
                low: w.low,
                max_bytes: w.max_bytes,
                follower,
            };
            *self.follower_bytes.entry(follower).or_default() += w.max_bytes;
            self.follower_bytes_peak = self.follower_bytes_peak.max(under_way + w.max_bytes);
            if self.settings.rate_bytes_per_s > 0 {
                self.tokens -= w.max_bytes as f64;
            }
            self.running.push(started);
            out.push(Verdict::Start(started));
        }
        out
    }

    /// A read ended, having read `bytes` (0 when it failed). Returns, for a failure, the
    /// attempts in a row so far.
    pub fn done(&mut self, now: Instant, read: Started, outcome: Result<u64, ()>) -> Option<u32> {
        if let Some(at) = self.running.iter().position(|r| *r == read) {
            self.running.swap_remove(at);
        }
        if let Some(b) = self.follower_bytes.get_mut(&read.follower) {
            *b = b.saturating_sub(read.max_bytes);
            if *b == 0 {
                self.follower_bytes.remove(&read.follower);
            }
        }
        if self.settings.rate_bytes_per_s > 0 {
            // The bucket was charged what the read might bring; it owes what it brought.
            let bytes = outcome.unwrap_or(0);
            self.tokens += read.max_bytes as f64 - bytes as f64;
        }
        match outcome {
            Ok(_) => {
                if self.failures.remove(&(read.group, read.low)).is_some() {
                    crate::coverage::reached(crate::coverage::Event::CatchUpReadRecovered);
                }
                None
            }
            Err(()) => {
                crate::coverage::reached(crate::coverage::Event::CatchUpReadFailed);
                let attempts = self.failures.entry((read.group, read.low)).or_default();
                *attempts = attempts.saturating_add(1);
                let backoff = BACKOFF_MIN
                    .saturating_mul(1 << (*attempts - 1).min(16))
                    .min(BACKOFF_MAX);
                let attempts = *attempts;
                self.waiting.push_back(Wanted {
                    group: read.group,
                    low: read.low,
                    max_bytes: read.max_bytes,
                    not_before: Some(now + backoff),
                });
                Some(attempts)
            }
        }
    }

    /// When the scheduler may start a read that waits now (a backoff ending, the bucket
    /// filling again); `None` when nothing waits or only a read's end can help.
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        if self.waiting.is_empty() || self.running.len() >= READS_IN_FLIGHT_MAX {
            return None;
        }
        let backoff = self
            .waiting
            .iter()
            .filter_map(|w| w.not_before)
            .filter(|t| *t > now)
            .min();
        let rate = self.settings.rate_bytes_per_s;
        let refill = (rate > 0 && self.tokens <= 0.0).then(|| {
            let secs = (-self.tokens + 1.0) / rate as f64;
            self.refilled.unwrap_or(now) + Duration::from_secs_f64(secs.min(60.0))
        });
        // With reads ready but held by a follower's budget only, its transport queue drains
        // without telling: look again shortly.
        let ready_now = self
            .waiting
            .iter()
            .any(|w| w.not_before.is_none_or(|t| t <= now));
        let poll = (ready_now && refill.is_none()).then(|| now + Duration::from_millis(50));
        [backoff, refill, poll].into_iter().flatten().min()
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.settings.rate_bytes_per_s;
        if rate == 0 {
            return;
        }
        // A burst of a second's worth at most (and always room for one read).
        let capacity = (rate as f64).max(self.settings.read_bytes_max as f64);
        match self.refilled {
            None => self.tokens = capacity,
            Some(last) => {
                let secs = now.saturating_duration_since(last).as_secs_f64();
                self.tokens = (self.tokens + secs * rate as f64).min(capacity);
            }
        }
        self.refilled = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        /// (group, low) -> follower
        waiting: HashMap<(GroupId, u64), NodeId>,
        queued: HashMap<NodeId, u64>,
    }

    impl Followers for Node {
        fn waiting_at(&self, group: GroupId, low: u64) -> Option<NodeId> {
            self.waiting.get(&(group, low)).copied()
        }
        fn queued_bytes(&self, follower: NodeId) -> u64 {
            self.queued.get(&follower).copied().unwrap_or(0)
        }
    }

    fn node(reads: &[(GroupId, u64, NodeId)]) -> Node {
        Node {
            waiting: reads.iter().map(|&(g, l, f)| ((g, l), f)).collect(),
            queued: HashMap::new(),
        }
    }

    fn started(v: &[Verdict]) -> Vec<(GroupId, u64)> {
        v.iter()
            .filter_map(|v| match v {
                Verdict::Start(s) => Some((s.group, s.low)),
                Verdict::Abandon(_) => None,
            })
            .collect()
    }

    const MB: u64 = 1 << 20;

    #[test]
    fn a_read_asked_for_many_times_is_made_once() {
        let mut c = CatchUp::new(CatchUpSettings::default());
        let n = node(&[(1, 10, 2)]);
        for _ in 0..100 {
            c.want(1, 10, MB);
        }
        let now = Instant::now();
        assert_eq!(started(&c.next(now, &n)), vec![(1, 10)]);
        c.want(1, 10, MB);
        assert!(c.next(now, &n).is_empty(), "under way already");
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn reads_in_flight_are_bounded_per_broker_and_per_follower() {
        let settings = CatchUpSettings {
            read_bytes_max: MB,
            follower_bytes_max: 3 * MB,
            rate_bytes_per_s: 0,
            ..Default::default()
        };
        let mut c = CatchUp::new(settings);
        // Follower 2 is behind on six groups, follower 3 on two.
        let mut reads: Vec<_> = (1..=6).map(|g| (g, 5, 2)).collect();
        reads.extend([(7, 5, 3), (8, 5, 3)]);
        let mut n = node(&reads);
        for &(g, l, _) in &reads {
            c.want(g, l, MB);
        }
        let now = Instant::now();
        let first = started(&c.next(now, &n));
        // Three for follower 2 (its budget), then follower 3's, up to four on the broker.
        assert_eq!(first, vec![(1, 5), (2, 5), (3, 5), (7, 5)]);
        assert_eq!(c.in_flight(), READS_IN_FLIGHT_MAX);
        assert!(c.next(now, &n).is_empty());
        // One of follower 2's ends; its transport queue now holds 2 MB of what was read: its
        // budget has room for nothing more, follower 3 gets the slot.
        let s = Started {
            group: 1,
            low: 5,
            max_bytes: MB,
            follower: 2,
        };
        assert_eq!(c.done(now, s, Ok(MB)), None);
        n.queued.insert(2, 2 * MB);
        assert_eq!(started(&c.next(now, &n)), vec![(8, 5)]);
    }

    #[test]
    fn a_failed_read_is_made_again_after_a_growing_backoff() {
        let mut c = CatchUp::new(CatchUpSettings::default());
        let n = node(&[(1, 10, 2)]);
        c.want(1, 10, MB);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..8 {
            let v = c.next(now, &n);
            let [Verdict::Start(s)] = v.as_slice() else {
                panic!("one read expected, got {v:?}");
            };
            c.done(now, *s, Err(()));
            assert!(c.next(now, &n).is_empty(), "not again at once");
            let at = c.wake_at(now).expect("a wake-up for the retry");
            waits.push((at - now).as_millis());
            now = at;
        }
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // Success forgets the failures.
        let v = c.next(now, &n);
        let [Verdict::Start(s)] = v.as_slice() else {
            panic!("one read expected");
        };
        c.done(now, *s, Ok(MB));
        c.want(1, 10, MB);
        assert_eq!(started(&c.next(now, &n)), vec![(1, 10)]);
    }

    #[test]
    fn a_read_nobody_waits_for_any_more_is_dropped() {
        let mut c = CatchUp::new(CatchUpSettings::default());
        c.want(1, 10, MB);
        c.want(2, 10, MB);
        let n = node(&[(2, 10, 3)]);
        let v = c.next(Instant::now(), &n);
        assert_eq!(
            v,
            vec![
                Verdict::Abandon(Wanted {
                    group: 1,
                    low: 10,
                    max_bytes: MB,
                    not_before: None
                }),
                Verdict::Start(Started {
                    group: 2,
                    low: 10,
                    max_bytes: MB,
                    follower: 3
                })
            ]
        );
    }

    #[test]
    fn the_rate_holds_reads_back_to_the_bytes_per_second_it_allows() {
        let settings = CatchUpSettings {
            read_bytes_max: MB,
            follower_bytes_max: 100 * MB,
            rate_bytes_per_s: 4 * MB,
            ..Default::default()
        };
        let mut c = CatchUp::new(settings);
        let reads: Vec<_> = (1..=1000).map(|g| (g, 1, 2)).collect();
        let n = node(&reads);
        for &(g, l, _) in &reads {
            c.want(g, l, MB);
        }
        let start = Instant::now();
        let mut now = start;
        let mut read = 0u64;
        while now < start + Duration::from_secs(10) {
            for v in c.next(now, &n) {
                if let Verdict::Start(s) = v {
                    read += MB;
                    c.done(now, s, Ok(MB));
                }
            }
            now = c.wake_at(now).expect("reads wait");
        }
        // Ten seconds at 4 MB/s, and the first second's burst.
        let mb = read / MB;
        assert!((40..=46).contains(&mb), "read {mb} MB in 10 s at 4 MB/s");
    }
}
