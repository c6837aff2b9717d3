//! The simulation testbed: the broker's second world (`../shared/DESIGN.md`, "The simulator").
//!
//! Built only with `--cfg madsim` (`cargo xtask test` does this in its own target directory);
//! in a normal build this crate is empty.
//!
//! - [`disk`]: the simulated disk (madsim's own `fs` cannot lose data, stall or fail);
//! - [`clock`]: a node's clock with offset and drift;
//! - [`client`]: a Kafka client on the real wire protocol; the network is madsim's, through
//!   `io_backend::TcpNet` unchanged;
//! - [`scenario`]: scenario files, and [`config_draw`] the configurations swarm draws;
//!   [`workload`]: the simulated producers, consumers and admin
//!   client, [`idempotent`] producers and the consumer [`group`]'s members; [`history`]: what
//!   they recorded; [`checker`] and [`group_check`]: safety and liveness checks; [`perf`]:
//!   performance expectations;
//! - [`replicas`]: the checks of a cluster (replicas agree below the high watermark, the high
//!   watermark never goes back, one leader per epoch);
//! - [`run`]: one seed of a scenario; [`report`]: its JSON report, page and timeline;
//!   [`summary`]: a sweep's (or its shards') machine-readable summary; [`shrink`]: the smallest
//!   scenario that still fails as a seed did.

#[cfg(madsim)]
pub mod bounds;
#[cfg(madsim)]
pub mod checker;
#[cfg(madsim)]
pub mod client;
#[cfg(madsim)]
pub mod clock;
#[cfg(madsim)]
pub mod config_draw;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod group;
#[cfg(madsim)]
pub mod group_check;
#[cfg(madsim)]
pub mod history;
#[cfg(madsim)]
pub mod idempotent;
#[cfg(madsim)]
pub mod perf;
#[cfg(madsim)]
pub mod replicas;
#[cfg(madsim)]
pub mod report;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod shrink;
#[cfg(madsim)]
pub mod summary;
#[cfg(madsim)]
pub mod workload;
