//! Replication between brokers (docs/design.md, "Replication"): the [`transport`] between brokers,
//! and what drives raft-rs deterministically — its election timeouts drawn from the
//! environment's generator ([`ElectionTimer`]) and its log lines sent to `tracing`
//! ([`logger`]).
//!
//! Architecture invariant: nothing here reads the system clock, draws from `thread_rng` or
//! starts an OS thread; time, randomness and the network come from the node's `Env`.

pub mod calls;
pub mod catch_up;
pub mod conf;
pub mod entries;
pub mod first_term;
pub mod followers_cache;
pub mod gate;
pub mod idempotence;
pub mod log_start;
pub mod logger;
pub mod node;
pub mod offsets;
pub mod storage;
pub mod transport;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use io_backend::EnvRng;
use raft::{RawNode, StateRole, Storage};

/// raft-rs draws a node's randomized election timeout from `rand::thread_rng()` every time it
/// resets (a change of term or role), which no seed controls: two runs of one simulated seed
/// would hold different elections. After every call into a `RawNode` (a tick, a step, a
/// campaign, a proposal), [`ElectionTimer::settle`] replaces a freshly reset timeout by one
/// drawn from the node's generator, in raft's own range `[min_election_tick,
/// max_election_tick)`.
///
/// A reset is seen by a change of term, role or leader. raft-rs may also reset without any of
/// them changing; then the timeout raft drew is put back to the last one drawn here, so the
/// generator is never consumed depending on what `thread_rng` gave.
///
/// The range also stretches with the node's disk ([`ElectionStretch`]): an election costs a few
/// durable writes on each replica (the candidate's vote, each voter's, the new leader's first
/// entry), so when a round of writes takes longer than the spread of the timeouts, candidates
/// that time out one after another still overlap, split the votes and start again — for ever,
/// on a disk busy enough (a thousand new groups on a busy host never elected a leader). With
/// the stretch, a slow disk slows elections down instead of preventing them.
#[derive(Debug)]
pub struct ElectionTimer {
    rng: EnvRng,
    min_ticks: usize,
    max_ticks: usize,
    /// The longest timeout raft-rs accepts (its `max_election_tick` less one).
    cap_ticks: usize,
    stretch: ElectionStretch,
    last: Option<(u64, StateRole, u64)>,
    timeout_ticks: usize,
}

/// How many ticks a node's election timeouts are stretched by: what its recent rounds of
/// durable writes take, times the writes an election waits for one after another, in ticks
/// (at most [`ElectionStretch::max_ticks`]). Shared by every group of a node; measured by the
/// node ([`ElectionStretch::observe`]).
#[derive(Debug, Clone, Default)]
pub struct ElectionStretch {
    inner: Arc<StretchInner>,
}

#[derive(Debug, Default)]
struct StretchInner {
    /// A moving average of a Raft write's time from hand-over to durable, in microseconds.
    round_us: AtomicU64,
    /// Writes observed since the last [`ElectionStretch::idle`] check.
    observed: AtomicU64,
    tick_us: AtomicU64,
    max_ticks: AtomicU64,
}

impl ElectionStretch {
    /// Durable writes an election waits for one after another: the candidate's own vote, its
    /// voters', the new leader's first entry on itself and on a follower.
    pub const WRITES_PER_ELECTION: u64 = 4;

    /// A stretch for ticks of `tick`, never more than `max_ticks`.
    pub fn new(tick: std::time::Duration, max_ticks: usize) -> Self {
        let s = ElectionStretch::default();
        s.inner
            .tick_us
            .store(tick.as_micros().max(1) as u64, Ordering::Relaxed);
        s.inner.max_ticks.store(max_ticks as u64, Ordering::Relaxed);
        s
    }

    /// A write that took `took` from hand-over to durable (an average over about the last
    /// eight, so one slow sync moves it little and a disk that stays slow moves it all).
    pub fn observe(&self, took: std::time::Duration) {
        let took_us = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.inner.round_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            took_us
        } else {
            old - old / 8 + took_us / 8
        };
        self.inner.round_us.store(new, Ordering::Relaxed);
        self.inner.observed.fetch_add(1, Ordering::Relaxed);
    }

    /// Called once per election timeout: with no write observed since the last call, the
    /// average halves. Quiet groups write nothing, so the writes of a busy hour (a thousand
    /// partitions made on a loaded host) would otherwise keep stretching the elections of a
    /// failure long after the disk was quick again (3,334 leaderships moved in 11.2 s against
    /// 4.7 s); an election's own writes measure the disk again within a few writes.
    pub fn idle(&self) {
        if self.inner.observed.swap(0, Ordering::Relaxed) == 0 {
            let old = self.inner.round_us.load(Ordering::Relaxed);
            self.inner.round_us.store(old / 2, Ordering::Relaxed);
        }
    }

    /// The average write's time.
    pub fn round(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.inner.round_us.load(Ordering::Relaxed))
    }

    /// The ticks to stretch by now.
    pub fn ticks(&self) -> usize {
        let tick_us = self.inner.tick_us.load(Ordering::Relaxed).max(1);
        let election_us = self.inner.round_us.load(Ordering::Relaxed) * Self::WRITES_PER_ELECTION;
        let ticks = election_us.div_ceil(tick_us);
        ticks.min(self.inner.max_ticks.load(Ordering::Relaxed)) as usize
    }

    /// The largest stretch, for a node whose election timeout is `election_ticks`: four
    /// election timeouts (a timeout of at most ten times the configured one).
    pub fn max_ticks(election_ticks: usize) -> usize {
        4 * election_ticks
    }
}

impl ElectionTimer {
    /// A timer for a node configured with `config`, its range stretched by `stretch`
    /// (configure raft-rs's `max_election_tick` to allow it: [`ElectionTimer::max_election_tick`]);
    /// call [`settle`](Self::settle) right after creating the node.
    pub fn new(rng: EnvRng, config: &raft::Config, stretch: ElectionStretch) -> Self {
        let min_ticks = config.min_election_tick();
        let max_ticks = (2 * min_ticks).max(min_ticks + 1);
        ElectionTimer {
            rng,
            min_ticks,
            max_ticks,
            cap_ticks: config.max_election_tick().max(max_ticks) - 1,
            stretch,
            last: None,
            timeout_ticks: min_ticks,
        }
    }

    /// Give the node the longest timeout of its range until its term, role or leader changes:
    /// for a new replica whose group's first leader is another node (`first_term`), which
    /// leads at once but may start its replica seconds later (each broker makes a new topic's
    /// partitions before it starts their groups); an election meanwhile would only take the
    /// leadership from the replica the controller placed it on, at the cost of writes.
    pub fn wait_for_first_leader<T: Storage>(&mut self, node: &mut RawNode<T>) {
        self.settle(node);
        self.timeout_ticks = self.cap_ticks.max(self.timeout_ticks);
        node.raft
            .set_randomized_election_timeout(self.timeout_ticks);
    }

    /// The longest timeout this timer gives ([`ElectionTimer::wait_for_first_leader`]).
    pub fn longest_ticks(&self) -> usize {
        self.cap_ticks
    }

    /// The `max_election_tick` raft-rs must be configured with for a timer of a node whose
    /// election timeout is `election_ticks` (raft-rs refuses a timeout outside its range).
    pub fn max_election_tick(election_ticks: usize) -> usize {
        2 * election_ticks + 2 * ElectionStretch::max_ticks(election_ticks)
    }

    /// Make the node's election timeout the one this timer chose.
    pub fn settle<T: Storage>(&mut self, node: &mut RawNode<T>) {
        let now = (node.raft.term, node.raft.state, node.raft.leader_id);
        if self.last != Some(now) {
            self.last = Some(now);
            // Shifted and widened alike: the spread between two candidates' timeouts must
            // outgrow an election's writes too.
            let stretch = self.stretch.ticks();
            let end = (self.max_ticks + 2 * stretch).min(self.cap_ticks + 1);
            let start = (self.min_ticks + stretch).min(end - 1);
            self.timeout_ticks = self.rng.range_u64(start as u64, end as u64) as usize;
        }
        if node.raft.randomized_election_timeout() != self.timeout_ticks {
            node.raft
                .set_randomized_election_timeout(self.timeout_ticks);
        }
    }

    /// The timeout, in ticks, the node runs with.
    pub fn timeout_ticks(&self) -> usize {
        self.timeout_ticks
    }
}

#[cfg(test)]
mod tests;
