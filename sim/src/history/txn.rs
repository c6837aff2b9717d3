//! What the transactional workload did and saw ([`crate::workload::txn`]): each transaction a
//! producer ran (its writes, whether it asked to commit, how it ended) and each read of a
//! `read_committed` reader.

/// How a transaction ended, as its producer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// EndTxn(commit) was answered NONE: every write must be visible, once.
    Committed,
    /// It was aborted (EndTxn(abort), or given up before a commit was asked for: the next
    /// InitProducerId, or its timeout, aborts it): no write may ever be visible.
    Aborted,
    /// A commit was asked for without a definite answer: all its writes or none.
    Unknown,
}

/// One transaction of a transactional producer.
#[derive(Debug, Clone)]
pub struct TxnOp {
    pub producer: usize,
    /// Its number in the producer's run (from 1).
    pub n: u64,
    /// Every value it produced (partition, name), acknowledged or not.
    pub writes: Vec<(i32, String)>,
    /// The values it read, a pipeline's (`reads[j]` is what `writes[j]` was made from); none
    /// for a producer's.
    pub reads: Vec<String>,
    pub invoked_s: f64,
    /// When its EndTxn was first sent (`None`: never; it was aborted by giving up).
    pub end_invoked_s: Option<f64>,
    pub completed_s: f64,
    pub outcome: TxnOutcome,
}

/// One read of a `read_committed` reader: one partition, from `from`.
#[derive(Debug, Clone)]
pub struct TxnRead {
    pub reader: usize,
    pub partition: i32,
    pub from: i64,
    /// The records it returned: (offset, value name), control records left out and aborted
    /// transactions' records dropped as a client drops them.
    pub records: Vec<(i64, String)>,
    /// The last stable offset the answer gave.
    pub last_stable: i64,
    pub invoked_s: f64,
    pub completed_s: f64,
}

/// A reader finished: it read every partition up to its last stable offset after producing
/// ended (its reads then hold everything committed).
#[derive(Debug, Clone)]
pub struct TxnDrained {
    pub reader: usize,
    pub at_s: f64,
    /// Whether it got there (false: the drain's time ran out first).
    pub complete: bool,
}

/// A pipeline worker's input offsets as its group had committed them once producing ended
/// (asked with `require_stable`, so no transaction of it was still open).
#[derive(Debug, Clone)]
pub struct PipelineOffsets {
    pub worker: usize,
    /// (input partition, committed offset; -1: none).
    pub offsets: Vec<(i32, i64)>,
    pub at_s: f64,
}

/// The output name of the `j`-th value moved by instance `instance` of worker `worker` in its
/// transaction `n` (what it was made from is the transaction's `reads[j]`).
pub fn pipeline_output(worker: usize, instance: usize, n: u64, j: usize) -> String {
    format!("y{worker}i{instance}t{n}.{j}")
}
