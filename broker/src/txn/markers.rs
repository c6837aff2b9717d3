//! The markers that end a transaction on each of its partitions: written through the commit
//! pipeline like produced data (checked against the partition's producers, so a marker of a
//! fenced epoch or an older coordinator is refused), all of a decision's partitions queued
//! together so that they share commit rounds. A marker on a partition of the offsets topic
//! also tells the group coordinator, which then makes the transaction's offsets committed (or
//! drops them).
//!
//! The coordinator writes a decision's markers until every one is written or can never be
//! (its partition deleted, its producer fenced there by a newer epoch); WriteTxnMarkers (an
//! admin's abort of a hanging transaction) writes them once and answers each partition's
//! outcome.

use std::sync::Arc;
use std::time::Duration;

use io_backend::Clock;

use super::metadata::TopicPartition;
use super::Groups;
use crate::batch;
use crate::storage::catalog::OFFSETS_TOPIC;
use crate::storage::{AppendError, Store};
use crate::txn_marker::Marker;

/// The markers of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWrite {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<TopicPartition>,
}

/// Why a marker was not written.
#[derive(Debug, Clone)]
pub enum MarkerError {
    /// No such partition here.
    Unknown,
    Append(AppendError),
}

impl MarkerError {
    /// Whether writing it again may succeed (the directory failed, or the write's fate is
    /// unknown).
    fn retriable(&self) -> bool {
        matches!(self, MarkerError::Append(AppendError::Storage(_)))
    }
}

/// Write the markers of `w` to this broker's partitions; each partition's outcome, in order.
pub async fn write_local(
    store: &Store,
    groups: &Groups,
    now_ms: i64,
    w: &MarkerWrite,
) -> Vec<(TopicPartition, Result<(), MarkerError>)> {
    let marker = Marker {
        commit: w.commit,
        coordinator_epoch: w.coordinator_epoch,
    }
    .encode(w.producer_id, w.producer_epoch, now_ms);
    let headers = batch::validate_all(&marker, usize::MAX).expect("a marker batch is valid");
    // Every partition's marker queued first, then all awaited: they share commit rounds.
    let mut queued = Vec::with_capacity(w.partitions.len());
    for tp in &w.partitions {
        let partition = store.topic(&tp.0).and_then(|t| t.partition(tp.1).cloned());
        let Some(partition) = partition else {
            queued.push((tp.clone(), Err(MarkerError::Unknown)));
            continue;
        };
        let appended = store
            .append(partition, marker.clone(), headers.clone(), true, None)
            .await;
        queued.push((tp.clone(), Ok(appended)));
    }
    let mut out = Vec::with_capacity(queued.len());
    for (tp, q) in queued {
        let outcome = match q {
            Err(e) => Err(e),
            Ok(Err(e)) => Err(MarkerError::Append(AppendError::Storage(e))),
            Ok(Ok(None)) => Err(MarkerError::Unknown),
            Ok(Ok(Some(rx))) => match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(MarkerError::Append(e)),
                Err(_) => Err(MarkerError::Unknown),
            },
        };
        if outcome.is_ok() && tp.0 == OFFSETS_TOPIC {
            groups.txn_completed(tp.1, w.producer_id, w.commit).await;
        }
        out.push((tp, outcome));
    }
    out
}

/// Write the markers of `w` until every one is written, or can never be.
pub async fn write_until_done(
    store: &Arc<Store>,
    groups: &Groups,
    clock: &Arc<dyn Clock>,
    w: &MarkerWrite,
) {
    let mut left = w.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcomes = write_local(store, groups, clock.wall_ms(), &left).await;
        let mut again = Vec::new();
        for (tp, outcome) in outcomes {
            match outcome {
                Ok(()) => {}
                Err(e) if e.retriable() => again.push(tp),
                Err(e) => {
                    tracing::warn!(topic = %tp.0, partition = tp.1, producer_id = w.producer_id, error = ?e, "a transaction marker cannot be written; that partition is done with")
                }
            }
        }
        if again.is_empty() {
            return;
        }
        left.partitions = again;
        clock.sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
