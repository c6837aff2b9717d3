//! One multi-node test at a time within a test process.
//!
//! The multi-node tests (three or four Raft nodes on real sockets each, elections on wall-clock
//! ticks of 20 ms) starve each other's ticks and links when several run at once on two cores,
//! and their elections then time out for reasons no user meets. cargo-nextest runs each test in
//! a process of its own and keeps these to one at a time with a test group
//! (`.config/nextest.toml`); `cargo test` runs a binary's tests as threads of one process, where
//! this lock does the same.

use std::sync::{Mutex, MutexGuard};

/// Held for the whole of a multi-node test: the next one starts when it is dropped.
pub struct MultiNodeTurn {
    _held: MutexGuard<'static, ()>,
}

/// Waits until no other multi-node test of this process runs. A test that failed while holding
/// the turn passes it on (its panic poisons nothing the next test needs).
pub fn multi_node_turn() -> MultiNodeTurn {
    static TURN: Mutex<()> = Mutex::new(());
    MultiNodeTurn {
        _held: TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
    }
}
