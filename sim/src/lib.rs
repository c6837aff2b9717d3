//! The simulation testbed: the broker's second world (`../shared/DESIGN.md`, "The simulator").
//!
//! Built only with `--cfg madsim` (`cargo xtask test` does this in its own target directory);
//! in a normal build this crate is empty.
//!
//! Its rooms, lowest first (a room imports only its own and lower ones; `xtask/src/tidy.rs`
//! checks it):
//! - what is recorded and what is asked: [`history`] (what the clients saw), [`findings`] (what
//!   the checkers may find), [`scenario`] (scenario files, their faults, the configurations
//!   swarm draws);
//! - [`world`]: the simulated machines — the cluster of broker nodes, the disk (madsim's own
//!   `fs` cannot lose data, stall or fail), a node's clock with offset and drift, and the
//!   faults a scenario strikes them with (the network is madsim's, through
//!   `io_backend::TcpNet` unchanged);
//! - [`workload`]: the simulated clients on the real wire protocol — producers (idempotent
//!   ones too), consumers, the admin client and the consumer group's members;
//! - [`checks`]: safety and liveness over the history, the consumer group's checks, a
//!   cluster's replicas, the bounds of every resource, performance expectations;
//! - [`run`]: one seed of a scenario, all of the above put together;
//! - [`report`]: a run's JSON report, page and timeline, and a sweep's summary;
//! - [`commands`]: what the `sim` binary does — run, replay, check, sweep, shrink, merge.

#[cfg(madsim)]
pub mod checks;
#[cfg(madsim)]
pub mod commands;
#[cfg(madsim)]
pub mod findings;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod report;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod workload;
#[cfg(madsim)]
pub mod world;
