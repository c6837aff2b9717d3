//! `faultfs`: a FUSE passthrough filesystem that keeps unsynced writes in its own memory and
//! injects disk faults — the real-process twin of the simulator's disk (after Jepsen's LazyFS).
//!
//! A test runner mounts one over each broker's data directory ([`FaultFs::mount`]); the broker
//! sees an ordinary directory. Every name operation goes straight through to the same path under
//! the backing directory; file data written but not synced stays in memory, so that
//! [`Mounted::crash`] can lose it the way a power cut loses a page cache. The runner strikes the
//! other faults through the [`Mounted`] handle: stalled syncs, failing syncs (which drop the
//! data, as Linux does), failing writes, a full disk.
//!
//! Architecture invariant: what a reader of the mount sees is the backing file with the dirty
//! extents laid over it, and a byte leaves those extents only by reaching the backing file or
//! by being dropped (`cache`); no request ever waits on a stall (`stall`), and nothing here
//! draws on the operating system's randomness (`faults`). This crate knows nothing of Kafka or
//! of the broker.
//!
//! Known gaps against the simulated disk: created, renamed and unlinked names, truncates and
//! fallocates reach the backing directory at once, so a crash does not undo them; a torn crash
//! tears one file's dirty bytes (the simulated disk tears each file's); dirty bytes past the
//! cap are written back early, and then survive a crash (counted in
//! [`Status::forced_writebacks`]); a file's mtime moves when its data reaches the backing file,
//! not at the write; hard links, device nodes and extended attributes are not supported.
//!
//! Linux only (it needs the kernel's FUSE and, to mount without the `fusermount3` helper, root).
#![cfg(target_os = "linux")]

mod cache;
mod extents;
mod faults;
mod fs;
mod inodes;
mod latency;
mod mount;
mod stall;
mod volume;

pub use cache::{CrashReport, TornWrite};
pub use mount::{FaultFs, MountError, Mounted, Options, Status};
