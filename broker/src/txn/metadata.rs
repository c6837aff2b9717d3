//! One transactional id's state and the rules that move it, as Kafka's transaction coordinator
//! has them (its `TransactionMetadata` and the checks of each request), for clients of the
//! original protocol (EndTxn up to v4: the epoch is bumped by InitProducerId, not by every
//! transaction).
//!
//! Every function here is pure: it says what the id's next state is (to be written to
//! `__transaction_state` before anyone is answered), or that the request is answered at once, or
//! the error code. The coordinator owns the ids, writes the states, sends the markers, and
//! refuses a request for an id whose last change is still being written
//! (CONCURRENT_TRANSACTIONS).
//!
//! The states: Empty (no transaction) → Ongoing (partitions added) → PrepareCommit or
//! PrepareAbort (decided and written: the markers go out) → CompleteCommit or CompleteAbort
//! (every marker written) → Ongoing again with the next transaction. A transaction that
//! outlives its timeout, or whose producer is replaced by a new one with the same id, is
//! aborted at a bumped epoch, which fences the old producer everywhere.

use std::collections::BTreeSet;

use crate::protocol::error;

/// A transaction's state, with Kafka's ids (in the records) and names (in the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

const STATES: [TxnState; 6] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
];

impl TxnState {
    /// The id Kafka's records hold.
    pub fn id(self) -> i8 {
        STATES.iter().position(|s| *s == self).expect("listed") as i8
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        STATES.get(usize::try_from(id).ok()?).copied()
    }

    /// The name DescribeTransactions and ListTransactions give.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        STATES.iter().copied().find(|s| s.name() == name)
    }

    /// Whether an id in this state may expire (no transaction under way).
    pub fn may_expire(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// Whether a transaction may move to this state from `prev` (Kafka's table).
    pub fn may_follow(self, prev: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(prev, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(prev, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit | PrepareAbort => prev == Ongoing,
            CompleteCommit => prev == PrepareCommit,
            CompleteAbort => prev == PrepareAbort,
        }
    }
}

/// The highest epoch a producer id is used with before InitProducerId gives a new id (Kafka's:
/// `i16::MAX` stays free, so that an open transaction can always be fenced once more).
pub const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// A topic partition in a transaction.
pub type TopicPartition = (String, i32);

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The id before the last new one (-1: none, or not known since a reload): a retried
    /// InitProducerId of a producer whose id was replaced is recognised by it.
    pub prev_producer_id: i64,
    /// -1 until the first InitProducerId.
    pub producer_epoch: i16,
    /// The epoch before the last bump by a producer that named its current one (-1: none):
    /// a retry of that InitProducerId is answered with the current epoch instead of fenced.
    /// Kept in memory only, as Kafka does.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the transaction under way (none when Empty; after a decision, those
    /// whose markers are still to be written).
    pub partitions: BTreeSet<TopicPartition>,
    /// When the transaction under way began (its first partition; -1: none yet).
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Write this state, then answer with its producer id and epoch.
    Write(TxnMetadata),
    /// A retry of a call that succeeded: answer with the current id and epoch, write nothing.
    Answer { producer_id: i64, epoch: i16 },
    /// A transaction is open: write this decision to abort it at a bumped epoch (fencing the
    /// producer that opened it), send its markers, and answer CONCURRENT_TRANSACTIONS — the
    /// client retries and then gets a new epoch.
    AbortFirst(TxnMetadata),
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Write this decision, answer, then send the markers.
    Write(TxnMetadata),
    /// A retry of an EndTxn that completed: answer at once.
    Done,
}

impl TxnMetadata {
    /// An id seen for the first time, given `producer_id`: Empty, before its first epoch.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            prev_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }

    /// InitProducerId with this id: a producer starts (fencing any other with the id), or one
    /// that hit an abortable error bumps its epoch naming the one it has (`expected`, KIP-360).
    /// `new_producer_id` is asked only when the epochs of the current id are used up.
    pub fn init_producer_id(
        &self,
        expected: Option<(i64, i16)>,
        timeout_ms: i32,
        now_ms: i64,
        new_producer_id: impl FnOnce() -> i64,
    ) -> Result<InitStep, i16> {
        if let Some((pid, epoch)) = expected {
            let known = self.producer_epoch == -1
                || pid == self.producer_id
                || (pid == self.prev_producer_id && epoch >= EPOCH_EXHAUSTED);
            if !known {
                return Err(error::PRODUCER_FENCED);
            }
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(error::CONCURRENT_TRANSACTIONS),
            TxnState::Ongoing => Ok(InitStep::AbortFirst(self.fenced(now_ms))),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let expected_epoch = expected.map(|(_, e)| e);
                let mut next = self.clone();
                if self.producer_epoch >= EPOCH_EXHAUSTED
                    && expected_epoch.is_none_or(|e| e == self.producer_epoch)
                {
                    next.prev_producer_id = self.producer_id;
                    next.producer_id = new_producer_id();
                    next.producer_epoch = 0;
                    next.last_producer_epoch = match expected {
                        Some(_) => self.producer_epoch,
                        None => -1,
                    };
                } else {
                    match expected_epoch {
                        None => next.last_producer_epoch = -1,
                        Some(e) if e == self.producer_epoch || self.producer_epoch == -1 => {
                            next.last_producer_epoch = self.producer_epoch;
                        }
                        Some(e) if e == self.last_producer_epoch => {
                            return Ok(InitStep::Answer {
                                producer_id: self.producer_id,
                                epoch: self.producer_epoch,
                            })
                        }
                        Some(_) => return Err(error::PRODUCER_FENCED),
                    }
                    next.producer_epoch = self.producer_epoch + 1;
                }
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.timeout_ms = timeout_ms;
                next.last_update_ms = now_ms;
                Ok(InitStep::Write(next))
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's partition of the offsets
    /// topic): `None` when every partition is in the transaction already (nothing to write).
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: impl IntoIterator<Item = TopicPartition>,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, i16> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(error::CONCURRENT_TRANSACTIONS),
            state => {
                let mut next = self.clone();
                next.partitions.extend(partitions);
                if state == TxnState::Ongoing && next.partitions.len() == self.partitions.len() {
                    return Ok(None);
                }
                if state != TxnState::Ongoing {
                    next.start_ms = now_ms;
                }
                next.state = TxnState::Ongoing;
                next.last_update_ms = now_ms;
                Ok(Some(next))
            }
        }
    }

    /// EndTxn: commit or abort the transaction under way.
    pub fn end_txn(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndStep, i16> {
        self.check_producer(producer_id, epoch)?;
        use TxnState::*;
        match (self.state, commit) {
            (Ongoing, _) => {
                let mut next = self.clone();
                next.state = if commit { PrepareCommit } else { PrepareAbort };
                next.last_update_ms = now_ms;
                Ok(EndStep::Write(next))
            }
            (CompleteCommit, true) | (CompleteAbort, false) => Ok(EndStep::Done),
            (PrepareCommit, true) | (PrepareAbort, false) => Err(error::CONCURRENT_TRANSACTIONS),
            _ => Err(error::INVALID_TXN_STATE),
        }
    }

    /// Once every marker of a decided transaction is written: its completion, to write.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        next.partitions.clear();
        next.last_update_ms = now_ms;
        next
    }

    /// The abort of a transaction that outlived its timeout at `now_ms`, at a bumped epoch
    /// (fencing its producer); `None` if it has not.
    pub fn timed_out(&self, now_ms: i64) -> Option<TxnMetadata> {
        let expired = self.state == TxnState::Ongoing
            && self.start_ms.saturating_add(self.timeout_ms as i64) < now_ms;
        expired.then(|| self.fenced(now_ms))
    }

    /// Whether the id has been unused for `expiration_ms` (`transactional.id.expiration.ms`)
    /// with no transaction under way: it is then forgotten (a tombstone is written).
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.state.may_expire() && self.last_update_ms <= now_ms.saturating_sub(expiration_ms)
    }

    /// The decision to abort the open transaction at the next epoch.
    fn fenced(&self, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.last_producer_epoch = -1;
        next.state = TxnState::PrepareAbort;
        next.last_update_ms = now_ms;
        next
    }

    /// A request from the producer `producer_id` at `epoch`: is it the id's current one?
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), i16> {
        if producer_id != self.producer_id {
            return Err(error::INVALID_PRODUCER_ID_MAPPING);
        }
        if epoch != self.producer_epoch {
            return Err(error::PRODUCER_FENCED);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
