//! The boundary between Stillwater and the outside world.
//!
//! Everything the broker does to a disk, a network or a clock goes through the three small traits
//! defined here — [`Disk`], [`Net`] and [`Clock`] — plus a seeded random generator ([`EnvRng`]).
//! They are handed to the broker at start-up as one [`Env`] value. The real implementations live
//! in this crate (`uring`, `blocking`, `tcp`, system clock); the simulator supplies its own.
//!
//! Architecture invariant: nothing in this crate knows about Kafka, and nothing outside it (in
//! the broker) touches `std::fs`, `std::net` or the system clock directly.

mod clock;
mod disk;
mod env;
mod error;
mod net;

#[cfg(not(madsim))]
pub mod blocking;
pub mod conformance;
#[cfg(all(target_os = "linux", not(madsim)))]
pub mod uring;

pub use clock::{Clock, SystemClock, TimedOut};
pub use disk::{coalesce_adjacent, DirLock, Disk, DiskFile, OpenMode, LOCK_FILE};
pub use env::{Env, EnvRng, IoEngine};
pub use error::{DiskError, DiskOp, DiskResult};
pub use net::{Connection, Listener, Net, TcpNet};
