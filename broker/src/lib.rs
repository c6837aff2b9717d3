//! The Stillwater broker: a Kafka-compatible message broker.
//!
//! Code map: [`protocol`] (framing, decoding, versions) → [`handlers`] (what each request does)
//! → [`commit`] (the group-commit pipeline and the topic store, the only writer of files) →
//! [`log`] (segments, indexes, recovery, reads) over [`io`] (deadlines and directory health) and
//! the `io-backend` traits. [`server`] wires it together; [`config`] and [`metrics`] serve all.
//!
//! Architecture invariant: nothing here touches `std::fs`, `std::net` or the system clock (the
//! configuration file read at start-up is the one exception); all of it goes through the
//! [`io_backend::Env`] handed to [`server::start`], so the same code runs under simulation.

mod alloc;
pub mod batch;
pub mod commit;
pub mod config;
pub mod handlers;
pub mod io;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod server;

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: alloc::LazyLargeAlloc = alloc::LazyLargeAlloc;

/// A named point in a critical section where the simulator may delay or yield. It compiles to
/// nothing in a normal build; the simulation issue gives it a body under `--cfg madsim`.
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {};
}
