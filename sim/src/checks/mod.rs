//! The checkers: pure functions of a run's history, final read and metrics, each tested on
//! hand-written inputs.
//!
//! - [`safety`]: the Jepsen Kafka anomaly classes (lost, duplicated, reordered writes, phantom
//!   reads, …) and liveness (after the faults heal, every partition takes and serves writes);
//! - [`groups`]: a consumer group's members and committed offsets;
//! - [`replicas`]: a cluster's replicas agree below the high watermark, the high watermark never
//!   goes back, one leader per epoch;
//! - [`compaction`]: a compacted topic gives every key's latest acknowledged record;
//! - [`scans`]: a reader far behind on a compacted topic, reading it from its start, sees every
//!   key's latest value and its tombstone until the tombstone's horizon;
//! - [`metadata`]: every broker's metadata lists the topics the admin was told exist;
//! - [`bounds`]: every bounded resource of every broker stayed within its bound;
//! - [`cuts`]: writes resume within a bound while a link is cut (where the scenario asks);
//! - [`move_stalls`]: a moving partition keeps taking writes (where the scenario asks);
//! - [`floods`]: strangers' floods of a broker's port held to its connection bounds;
//! - [`quota`]: a tenant over its quota held near it, the other producers at their pace;
//! - [`elections`]: no election storm, no group left leaderless after the faults, leaderships
//!   spread back over the brokers;
//! - [`perf`]: performance expectations in units of the scenario's own disk and network model.
//!
//! Invariant: a checker reads what the run recorded and never changes it; it finds, it does not
//! fix.

pub mod access;
pub mod acks0;
pub mod bounds;
pub mod compaction;
pub mod configs;
pub mod cuts;
pub mod elections;
pub mod floods;
pub mod groups;
pub mod metadata;
pub mod move_stalls;
pub mod moves;
pub mod perf;
pub mod pipeline;
pub mod quota;
pub mod replicas;
pub mod safety;
pub mod scans;
pub mod stops;
pub mod txn;
