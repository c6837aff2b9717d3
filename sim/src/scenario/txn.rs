//! The transactional workload's keys (`[workload.transactions]`, and its `pipeline`).

use serde::Deserialize;

use super::Compacted;

/// Transactional producers and `read_committed` readers on a topic of their own; the
/// transactional checker ([`crate::checks::txn`]) judges what they did and saw.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnWorkload {
    #[serde(default = "default_txn_topic")]
    pub topic: String,
    pub partitions: i32,
    pub producers: usize,
    /// Partitions each transaction writes one value to.
    pub partitions_per_txn: usize,
    /// Every so many transactions of a producer one is aborted on purpose (0: none).
    #[serde(default)]
    pub abort_every: u64,
    /// Readers at `read_committed`, each reading every partition from its start.
    pub readers: usize,
    /// The producers' `transaction.timeout.ms`.
    #[serde(default = "default_txn_timeout_ms")]
    pub timeout_ms: i32,
    /// Pause between one producer's transactions.
    #[serde(default)]
    pub interval_ms: u64,
    /// Pause between a reader's rounds of fetches.
    #[serde(default = "default_txn_poll_ms")]
    pub poll_interval_ms: u64,
    /// Each value is padded to this many bytes.
    #[serde(default)]
    pub value_bytes: usize,
    /// The topic is compacted (the settings of a `[workload.compacted]` topic by default):
    /// every value has a key of its own, so the cleaner removes aborted records and, after
    /// `delete.retention.ms`, the markers of transactions with no record left — never a
    /// committed value.
    #[serde(default)]
    pub compacted: Option<Compacted>,
    /// Consume-transform-produce workers moving the producers' committed values to partitions
    /// of their own, their input offsets committed inside each transaction.
    #[serde(default)]
    pub pipeline: Option<Pipeline>,
}

impl TxnWorkload {
    /// The topic's partitions: the producers' (`partitions`), then the pipeline's output.
    pub fn all_partitions(&self) -> i32 {
        self.partitions + self.pipeline.as_ref().map_or(0, |p| p.output_partitions)
    }
}

/// Consume-transform-produce workers: worker `w` (transactional id `pipe-<w>`) reads the input
/// partitions `p` with `p % workers == w` at `read_committed` and writes each value it reads,
/// renamed, to output partition `partitions + p % output_partitions`, with the group's offsets
/// of its input in the same transaction (AddOffsetsToTxn, TxnOffsetCommit), as Kafka Streams and
/// every exactly-once pipeline do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub workers: usize,
    /// Instances of each worker running at once under its one transactional id (more than 1:
    /// zombies, each fencing the others as it starts).
    #[serde(default = "one_instance")]
    pub instances: usize,
    /// Partitions of the output, after the producers'.
    pub output_partitions: i32,
    /// Values moved per transaction at most.
    #[serde(default = "default_pipeline_batch")]
    pub batch: usize,
    /// The workers read the output partitions too (worker `w` those `o` with
    /// `o % workers == w`): values move on and on, and workers read each other's writes, so
    /// that a cycle of transactions reading each other's writes (G1c) could show.
    #[serde(default)]
    pub feedback: bool,
    /// The consumer group whose offsets the workers commit.
    #[serde(default = "default_pipeline_group")]
    pub group: String,
    /// Every `stall_every`-th transaction of an instance stops for `stall_ms` between its
    /// offsets and its commit, as a process in a long garbage-collection pause does: the other
    /// instance takes over meanwhile, and the commit that comes after must not commit anything
    /// (0: never).
    #[serde(default)]
    pub stall_every: u64,
    #[serde(default = "default_stall_ms")]
    pub stall_ms: u64,
}

fn default_stall_ms() -> u64 {
    3_000
}

fn one_instance() -> usize {
    1
}

fn default_pipeline_batch() -> usize {
    10
}

fn default_pipeline_group() -> String {
    "pipeline".into()
}

fn default_txn_topic() -> String {
    "txn".into()
}

fn default_txn_timeout_ms() -> i32 {
    10_000
}

fn default_txn_poll_ms() -> u64 {
    50
}
