//! The simulated world: the machines of a run and what strikes them.
//!
//! - [`cluster`]: the broker nodes and client nodes of a run on madsim's network;
//! - [`faults`]: what strikes them, at the scenario's times;
//! - [`disk`]: a POSIX-like disk that loses unsynced writes in a crash, stalls, fails with EIO
//!   or runs full on purpose;
//! - [`clock`]: a node's clock with offset and drift;
//! - [`cpu`]: a broker's processors, which its work keeps busy;
//! - [`observed`]: what the brokers tell the simulator of their own state (the security
//!   metadata each published, with when).
//!
//! Invariant: everything here draws its randomness and time from madsim (the seed), so a seed
//! replays bit for bit.

pub mod clock;
pub mod cluster;
pub mod cpu;
pub mod disk;
pub mod faults;
pub mod logs;
pub mod observed;
