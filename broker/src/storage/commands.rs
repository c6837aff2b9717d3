//! What the commit pipeline is asked to do ([`Command`]: appends, Raft writes, admin work that
//! must keep its place among them) and what it answers: a committed append ([`Appended`]), a
//! durable Raft write ([`RaftWritten`]) or why not ([`AppendError`]).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::log::{self, Partition};
use super::StorageError;
use crate::batch::BatchHeader;
use crate::memory::Reservation;
use crate::producer_state::ProducerError;

/// A committed append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The time the batches were stamped with under LogAppendTime; -1 otherwise.
    pub log_append_time_ms: i64,
}

/// Why an append was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The partition's topic was deleted while the append waited: nothing was written.
    #[error("partition {topic}-{partition} was deleted")]
    PartitionGone { topic: String, partition: i32 },
    /// An idempotent producer's batch out of sequence, or from a fenced epoch: not written.
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

impl AppendError {
    /// Whether the append may still be in the log (see [`StorageError::indefinite`]).
    pub fn indefinite(&self) -> bool {
        matches!(self, AppendError::Storage(e) if e.indefinite())
    }
}

pub(crate) type Reply<T> = oneshot::Sender<T>;
/// Where an append's outcome goes; `None` for acks=0.
pub(crate) type Waiter = Option<Reply<Result<Appended, AppendError>>>;

pub struct Append {
    pub(crate) partition: Arc<Partition>,
    pub(crate) payload: Bytes,
    pub(crate) headers: Vec<BatchHeader>,
    /// `None` for acks=0: nobody waits.
    pub(crate) reply: Waiter,
    /// The memory budget the payload holds, given back when the append is dropped.
    pub(super) memory: Option<Arc<Reservation>>,
    /// The token of the coordinator's confirmation that a transactional producer's partition
    /// is in its transaction (`PartitionState::txn_guard`): what its first batch of a
    /// transaction here must carry.
    pub(super) txn_guard: Option<u64>,
}

/// What the pipeline's queue carries.
pub(crate) enum Command {
    Append(Append),
    /// A deleted topic's partitions: appends queued before this commit, appends behind it are
    /// refused, and once answered the pipeline never writes them again (the admin lane then
    /// removes their files).
    Retire {
        partitions: Vec<Arc<Partition>>,
        reply: Reply<()>,
    },
    /// What a replicated partition's Raft group must make durable.
    Raft(Box<RaftWrite>, Reply<Result<RaftWritten, AppendError>>),
}

impl Command {
    /// The partition whose log the command writes (its identity in this process).
    pub(super) fn partition(&self) -> Option<usize> {
        match self {
            Command::Append(a) => Some(Arc::as_ptr(&a.partition) as usize),
            Command::Raft(w, _) => Some(Arc::as_ptr(&w.partition) as usize),
            Command::Retire { .. } => None,
        }
    }
}

/// One Raft entry to write: a record batch as produced (its base offset and leader epoch are
/// set as it is written), or, with empty `data`, Raft's own entry (a new leader's), stored as a
/// control batch of one record.
#[derive(Debug, Clone)]
pub struct RaftEntry {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
}

/// What a Raft `Ready` asks a replicated partition's log to persist, done in this order: the
/// log reset to a snapshot point, or cut back before entry `truncate_from` (a divergent
/// suffix); then `entries` appended (the first of them is the log's next index); then the hard
/// state. Answered once all of it is durable.
pub struct RaftWrite {
    pub partition: Arc<Partition>,
    pub reset: Option<RaftReset>,
    pub truncate_from: Option<u64>,
    /// The producers' state as of the cut (the log's is rolled back to it).
    pub producers_at_cut: Option<crate::producer_state::ProducerStates>,
    pub entries: Vec<RaftEntry>,
    pub hard_state: Option<log::replica::HardStateRecord>,
    /// The group's membership after the changes applied so far (with a reset: the leader's),
    /// recorded when newer than the log's ([`log::conf`]).
    pub conf: Option<log::conf::ConfRecord>,
}

/// A log made to start afresh at `offset`, after Raft entry `index` of `term` (a snapshot from a
/// leader whose log no longer holds what this one lacks).
#[derive(Debug, Clone)]
pub struct RaftReset {
    pub index: u64,
    pub term: u64,
    pub offset: i64,
    /// Raft's own entries before `offset` in the leader's log (they take no Kafka offset).
    pub gaps_before: i64,
    /// The leader's cleaned prefix below `offset`, received as files (a compacted log whose
    /// Raft entries begin above its start: `replication::prefix`).
    pub prefix: Option<Box<ResetPrefix>>,
}

/// A cleaned prefix received from a leader: segment files `<base>.prefix` in the partition's
/// directory, holding `[start, reset offset)` whole and synced, and where Raft's own entries
/// lie in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPrefix {
    pub start: i64,
    /// The leader's log start, in `[start, reset offset]`.
    pub log_start: i64,
    /// Raft's own entries before `start`.
    pub gaps_before: i64,
    /// The log offsets of Raft's own entries in the prefix, increasing.
    pub gaps: Vec<i64>,
    /// The files' bases, increasing; the first is `start`.
    pub bases: Vec<i64>,
    /// The idempotent producers as the prefix's batches leave them: the log's state at the
    /// reset (nothing above it yet).
    pub producers: crate::producer_state::ProducerStates,
}

/// A durable Raft write: the log's next Raft index and Kafka offset after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftWritten {
    pub next_index: u64,
    pub next_offset: i64,
}
