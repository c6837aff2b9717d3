//! Replication between brokers (docs/design.md, "Replication"): the [`transport`] between brokers,
//! and what drives raft-rs deterministically — its election timeouts drawn from the
//! environment's generator ([`ElectionTimer`]) and its log lines sent to `tracing`
//! ([`logger`]).
//!
//! Architecture invariant: nothing here reads the system clock, draws from `thread_rng` or
//! starts an OS thread; time, randomness and the network come from the node's `Env`.

pub mod catch_up;
pub mod conf;
pub mod entries;
pub mod gate;
pub mod idempotence;
pub mod log_start;
pub mod logger;
pub mod node;
pub mod offsets;
pub mod storage;
pub mod transport;
pub mod wire;

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
#[derive(Debug)]
pub struct ElectionTimer {
    rng: EnvRng,
    min_ticks: usize,
    max_ticks: usize,
    last: Option<(u64, StateRole, u64)>,
    timeout_ticks: usize,
}

impl ElectionTimer {
    /// A timer for a node configured with `config`; call [`settle`](Self::settle) right after
    /// creating the node.
    pub fn new(rng: EnvRng, config: &raft::Config) -> Self {
        let min_ticks = config.min_election_tick();
        let max_ticks = config.max_election_tick().max(min_ticks + 1);
        ElectionTimer {
            rng,
            min_ticks,
            max_ticks,
            last: None,
            timeout_ticks: min_ticks,
        }
    }

    /// Make the node's election timeout the one this timer chose.
    pub fn settle<T: Storage>(&mut self, node: &mut RawNode<T>) {
        let now = (node.raft.term, node.raft.state, node.raft.leader_id);
        if self.last != Some(now) {
            self.last = Some(now);
            self.timeout_ticks = self
                .rng
                .range_u64(self.min_ticks as u64, self.max_ticks as u64)
                as usize;
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
