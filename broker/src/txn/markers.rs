//! The markers that end a transaction on each of its partitions, written by each partition's
//! leader like produced data (checked against the partition's producers, so a marker of a
//! fenced epoch or an older coordinator is refused): on a single node through the commit
//! pipeline, all of a decision's partitions queued together so that they share commit rounds;
//! in a cluster proposed to each partition's Raft group and answered once committed — by
//! this broker for the partitions it leads, by a call to the leader for the others
//! ([`super::peers`]). A marker on a partition of the offsets topic also tells that broker's
//! group coordinator, which then makes the transaction's offsets committed (or drops them).
//!
//! The coordinator writes a decision's markers until every one is written or can never be
//! (its partition deleted, its producer fenced there by a newer epoch), or until it is no longer
//! the coordinator (its successor writes them again: a marker written twice is harmless);
//! WriteTxnMarkers (an admin's abort of a hanging transaction, or a coordinator's call) writes
//! them once and answers each partition's outcome as a code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use io_backend::Clock;

use super::metadata::TopicPartition;
use super::Groups;
use crate::batch;
use crate::controller::Controller;
use crate::producer_state::ProducerError;
use crate::protocol::error;
use crate::replication::node::ReplicaError;
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

/// A partition's outcome as a code: what WriteTxnMarkers answers.
fn append_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Storage(_) => error::KAFKA_STORAGE_ERROR,
        AppendError::PartitionGone { .. } => error::UNKNOWN_TOPIC_OR_PARTITION,
        AppendError::Producer(ProducerError::InvalidEpoch { .. }) => error::INVALID_PRODUCER_EPOCH,
        AppendError::Producer(ProducerError::CoordinatorFenced { .. }) => {
            error::TRANSACTION_COORDINATOR_FENCED
        }
        AppendError::Producer(_) => error::INVALID_TXN_STATE,
    }
}

fn replica_code(e: &ReplicaError) -> i16 {
    match e {
        ReplicaError::NotLeader { .. } | ReplicaError::Unknown => error::NOT_LEADER_OR_FOLLOWER,
        ReplicaError::Storage(e) => append_code(e),
        ReplicaError::NotEnoughReplicas { .. } => error::NOT_ENOUGH_REPLICAS,
        ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
            error::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        }
        ReplicaError::Stopped | ReplicaError::MembershipChange(_) => error::REQUEST_TIMED_OUT,
    }
}

/// Whether a marker refused with `code` may be written by trying again (the leader moved, the
/// directory failed, too few replicas, the write's fate unknown).
pub fn retriable(code: i16) -> bool {
    matches!(
        code,
        error::NOT_LEADER_OR_FOLLOWER
            | error::KAFKA_STORAGE_ERROR
            | error::NOT_ENOUGH_REPLICAS
            | error::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | error::REQUEST_TIMED_OUT
            | error::COORDINATOR_NOT_AVAILABLE
    )
}

/// Where markers are written from this broker.
pub struct Markers {
    pub(super) store: Arc<Store>,
    pub(super) groups: Arc<Groups>,
    pub(super) cluster: Option<Arc<Controller>>,
    pub(super) clock: Arc<dyn Clock>,
}

impl Markers {
    /// Write the markers of `w` to the partitions this broker holds (a single node) or leads
    /// (a cluster: NOT_LEADER_OR_FOLLOWER for the others); each partition's code, in order.
    pub async fn write_here(&self, w: &MarkerWrite) -> Vec<(TopicPartition, i16)> {
        let marker = Marker {
            commit: w.commit,
            coordinator_epoch: w.coordinator_epoch,
        }
        .encode(w.producer_id, w.producer_epoch, self.clock.wall_ms());
        let headers = batch::validate_all(&marker, usize::MAX).expect("a marker batch is valid");
        // Every partition's marker queued first, then all awaited: they share commit rounds.
        let mut queued = Vec::with_capacity(w.partitions.len());
        for tp in &w.partitions {
            queued.push((tp.clone(), self.queue(tp, &marker, &headers).await));
        }
        let mut out = Vec::with_capacity(queued.len());
        for (tp, q) in queued {
            let code = match q {
                Err(code) => code,
                Ok(Queued::Local(rx)) => match rx.await {
                    Ok(Ok(_)) => error::NONE,
                    Ok(Err(e)) => append_code(&e),
                    Err(_) => error::REQUEST_TIMED_OUT,
                },
                Ok(Queued::Replicated(rx)) => match rx.await {
                    Ok(Ok(_)) => error::NONE,
                    Ok(Err(e)) => replica_code(&e),
                    Err(_) => error::REQUEST_TIMED_OUT,
                },
            };
            if code == error::NONE && tp.0 == OFFSETS_TOPIC {
                self.groups
                    .txn_completed(tp.1, w.producer_id, w.commit)
                    .await;
            }
            out.push((tp, code));
        }
        out
    }

    async fn queue(
        &self,
        tp: &TopicPartition,
        marker: &bytes::Bytes,
        headers: &[batch::BatchHeader],
    ) -> Result<Queued, i16> {
        if let Some(cluster) = &self.cluster {
            let view = cluster
                .replication()
                .replica(&tp.0, tp.1)
                .ok_or(error::NOT_LEADER_OR_FOLLOWER)?;
            return match cluster
                .replication()
                .propose(view.group, vec![marker.clone()], -1)
                .await
            {
                Ok(Some(rx)) => Ok(Queued::Replicated(rx)),
                Ok(None) => Err(error::REQUEST_TIMED_OUT),
                Err(e) => Err(replica_code(&e)),
            };
        }
        let partition = self
            .store
            .topic(&tp.0)
            .and_then(|t| t.partition(tp.1).cloned())
            .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)?;
        match self
            .store
            .append(partition, marker.clone(), headers.to_vec(), true, None)
            .await
        {
            Ok(Some(rx)) => Ok(Queued::Local(rx)),
            Ok(None) => Err(error::UNKNOWN_TOPIC_OR_PARTITION),
            Err(_) => Err(error::KAFKA_STORAGE_ERROR),
        }
    }

    /// Write the markers of `w` wherever their partitions are led: here, or by a call to the
    /// leader; each partition's code.
    async fn write_anywhere(&self, w: &MarkerWrite) -> Vec<(TopicPartition, i16)> {
        let Some(cluster) = &self.cluster else {
            return self.write_here(w).await;
        };
        let me = cluster.replication().node_id();
        let md = cluster.metadata();
        let mut by_leader: BTreeMap<u64, Vec<TopicPartition>> = BTreeMap::new();
        let mut out = Vec::new();
        for tp in &w.partitions {
            let Some(p) = md.partition(&tp.0, tp.1) else {
                out.push((tp.clone(), error::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            // The leader as this broker knows it: its own replica's view when it is fresher.
            let mut leader = p.leader.map(|l| (l, p.leader_term));
            if let Some(view) = cluster.replication().replica(&tp.0, tp.1) {
                let s = view.status();
                if let Some(l) = s.leader.filter(|_| s.term >= p.leader_term) {
                    leader = Some((l, s.term));
                }
            }
            match leader {
                Some((l, _)) => by_leader.entry(l).or_default().push(tp.clone()),
                None => out.push((tp.clone(), error::NOT_LEADER_OR_FOLLOWER)),
            }
        }
        drop(md);
        let writes = by_leader.into_iter().map(|(leader, partitions)| {
            let part = MarkerWrite {
                partitions,
                ..w.clone()
            };
            async move {
                if leader == me {
                    self.write_here(&part).await
                } else {
                    super::peers::write_markers_at(cluster, leader, &part).await
                }
            }
        });
        for done in futures::future::join_all(writes).await {
            out.extend(done);
        }
        out
    }

    /// Write the markers of `w` until every one is written or can never be; false when it
    /// stopped because `still_coordinator` said this broker no longer coordinates the
    /// transaction, or a partition said a newer coordinator wrote there (its successor writes
    /// them).
    pub async fn write_until_done(
        &self,
        w: &MarkerWrite,
        still_coordinator: impl Fn() -> bool,
    ) -> bool {
        let mut left = w.clone();
        let mut backoff = Duration::from_millis(50);
        loop {
            let outcomes = self.write_anywhere(&left).await;
            let mut again = Vec::new();
            for (tp, code) in outcomes {
                match code {
                    error::NONE => {}
                    error::TRANSACTION_COORDINATOR_FENCED => {
                        tracing::warn!(topic = %tp.0, partition = tp.1, producer_id = w.producer_id, coordinator_epoch = w.coordinator_epoch, "a newer coordinator wrote this transaction's markers; this one stops");
                        return false;
                    }
                    c if retriable(c) => again.push(tp),
                    c => {
                        tracing::warn!(topic = %tp.0, partition = tp.1, producer_id = w.producer_id, code = c, "a transaction marker cannot be written; that partition is done with")
                    }
                }
            }
            if again.is_empty() {
                return true;
            }
            if !still_coordinator() {
                return false;
            }
            left.partitions = again;
            self.clock.sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// A marker queued for a partition.
enum Queued {
    Local(tokio::sync::oneshot::Receiver<Result<crate::storage::Appended, AppendError>>),
    Replicated(tokio::sync::oneshot::Receiver<Result<crate::storage::Appended, ReplicaError>>),
}
