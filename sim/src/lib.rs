//! The simulation testbed: the broker's second world (docs/design.md, "The simulator"),
//! and its twin on real broker processes.
//!
//! The workload, the checkers and the reports are built in both worlds: under `--cfg madsim`
//! they drive brokers in madsim's simulated world; on real tokio ([`real`]) they drive release
//! broker processes on this machine, struck by real faults, and judge them the same way.
//!
//! Its rooms, lowest first (a room imports only its own and lower ones; `xtask/src/tidy.rs`
//! checks it):
//! - what is recorded and what is asked: [`history`] (what the clients saw), [`findings`] (what
//!   the checkers may find), [`scenario`] (scenario files, their faults, the configurations
//!   swarm draws);
//! - `world` (simulation only): the simulated machines — the cluster of broker nodes, the disk
//!   (madsim's own `fs` cannot lose data, stall or fail), a node's clock with offset and
//!   drift, and the faults a scenario strikes them with (the network is madsim's, through
//!   `io_backend::TcpNet` unchanged);
//! - [`workload`]: the clients on the real wire protocol — producers (idempotent ones too),
//!   consumers, the admin client and the consumer group's members;
//! - [`checks`]: safety and liveness over the history, the consumer group's checks, a
//!   cluster's replicas, the bounds of every resource, performance expectations;
//! - [`outcome`]: what a run observed, the checkers' verdict over it and the run's report —
//!   the same in both worlds;
//! - `run` (simulation only): one seed of a scenario, all of the above put together; `real`
//!   (real tokio only): one twin run of a scenario on real processes;
//! - [`report`]: a run's JSON report, page and timeline, and a sweep's summary;
//! - `commands`: what the `sim` binary does — run, replay, check, sweep, shrink, merge in
//!   simulation; `real` on real processes.

pub mod checks;
#[cfg(madsim)]
pub mod commands;
pub mod findings;
pub mod history;
pub mod outcome;
#[cfg(not(madsim))]
pub mod real;
pub mod report;
#[cfg(madsim)]
pub mod run;
pub mod scenario;
pub mod workload;
#[cfg(madsim)]
pub mod world;
