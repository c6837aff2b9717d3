//! A replicated log's start (DeleteRecords, the checkpoints that bound `__consumer_offsets`).
//!
//! A log start moved on one replica alone would not hold: another replica, leading after it,
//! would serve the records below it again. So the move is a Raft entry — a log-start mark
//! ([`crate::batch::log_start_batch`], a control batch every client skips) proposed by the
//! leader — and every replica moves its own log start there once the mark is committed (the
//! loop's `apply`, through the admin lane's DeleteRecords: the new start durable before it is
//! visible, then the whole segments below it removed). A replica that crashes in between finds
//! the mark again where its log records it (the Raft record's `log_starts`, or the active
//! segment's batches) and moves once it learns the commit.

use std::sync::Arc;

use super::node::{ReplicaError, Replication};
use super::wire::GroupId;
use crate::storage::catalog::TopicError;
use crate::storage::log::Partition;
use crate::storage::Store;

/// Why a replicated log start did not move.
#[derive(Debug, thiserror::Error)]
pub enum LogStartError {
    /// The mark was not committed (this node does not lead, or stopped leading).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Refused (an offset out of range), or this replica could not move its own start.
    #[error(transparent)]
    Topic(#[from] TopicError),
}

impl Replication {
    /// Move the start of `partition` (whose group `group` this node leads) up to `offset`
    /// (-1: its high watermark) on every replica: answered with the new start once the mark is
    /// committed and this replica's start moved; unchanged when it is past `offset` already.
    pub async fn delete_records(
        &self,
        store: &Store,
        partition: Arc<Partition>,
        group: GroupId,
        offset: i64,
    ) -> Result<i64, LogStartError> {
        let (start, hw) = (partition.log_start_offset(), partition.high_watermark());
        let target = if offset == -1 { hw } else { offset };
        if !(0..=hw).contains(&target) {
            return Err(TopicError::OffsetOutOfRange(format!(
                "cannot delete records below offset {offset} of {}-{}: it is not between 0 and the high watermark {hw}",
                partition.topic, partition.index
            ))
            .into());
        }
        if target <= start {
            return Ok(start);
        }
        let mark = crate::batch::log_start_batch(target);
        let Some(committed) = self.propose(group, vec![mark], -1).await? else {
            return Err(ReplicaError::Stopped.into());
        };
        committed.await.map_err(|_| ReplicaError::Stopped)??;
        // The loop moves this replica's start as well; whichever comes first, the other finds
        // it done.
        Ok(store.delete_records(partition, target).await?)
    }
}
