//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): partitions' replicas
//! moved to new brokers, such moves cancelled, and those in progress listed — the record
//! proposed to the cluster metadata and each partition's outcome answered
//! ([`crate::controller::moves`]); the moves themselves are made by the partitions' leaders.
//!
//! A single node has one replica of everything: a move to itself is nothing to do, any other
//! is refused (INVALID_REPLICA_ASSIGNMENT), and nothing is ever in progress.

use std::time::Duration;

use kafka_protocol::messages::{
    alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    },
    list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    },
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::controller::records::Reassignment;
use crate::controller::state::MetadataError;
use crate::controller::SubmitError;
use crate::protocol::error;
use crate::replication::transport::NodeId;

type Answer = (i16, Option<String>);

impl Broker {
    pub(super) async fn alter_partition_reassignments(
        &self,
        req: AlterPartitionReassignmentsRequest,
        version: i16,
    ) -> AlterPartitionReassignmentsResponse {
        let limit = Duration::from_millis(req.timeout_ms.clamp(100, 60_000) as u64);
        // v1 may forbid a move that changes how many replicas a partition has (KIP-860).
        let allow_rf_change = version < 1 || req.allow_replication_factor_change;
        let mut asks = Vec::new();
        let mut answers: Vec<(usize, usize, Answer)> = Vec::new();
        for (t, topic) in req.topics.iter().enumerate() {
            for (p, part) in topic.partitions.iter().enumerate() {
                let replicas: Option<Vec<NodeId>> = part
                    .replicas
                    .as_ref()
                    .map(|r| r.iter().map(|b| b.0.max(0) as NodeId).collect());
                match self.check_move(
                    name_of(&topic.name),
                    part.partition_index,
                    &replicas,
                    allow_rf_change,
                ) {
                    Err(refusal) => answers.push((t, p, refusal)),
                    Ok(()) => asks.push((
                        t,
                        p,
                        Reassignment {
                            topic: name_of(&topic.name).to_string(),
                            partition: part.partition_index,
                            replicas,
                        },
                    )),
                }
            }
        }
        if !asks.is_empty() {
            let outcomes = self
                .submit_moves(asks.iter().map(|(_, _, a)| a.clone()).collect(), limit)
                .await;
            for (i, (t, p, _)) in asks.into_iter().enumerate() {
                let answer = match &outcomes {
                    Ok(o) => move_answer(o.get(i).cloned().flatten()),
                    Err(a) => a.clone(),
                };
                answers.push((t, p, answer));
            }
        }
        let mut responses: Vec<ReassignableTopicResponse> = req
            .topics
            .iter()
            .map(|t| {
                ReassignableTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                ReassignablePartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                            })
                            .collect(),
                    )
            })
            .collect();
        for (t, p, (code, message)) in answers {
            let r = &mut responses[t].partitions[p];
            r.error_code = code;
            r.error_message = message.map(StrBytes::from_string);
        }
        let mut resp = AlterPartitionReassignmentsResponse::default().with_responses(responses);
        if version >= 1 {
            resp.allow_replication_factor_change = req.allow_replication_factor_change;
        }
        resp
    }

    /// What can be refused without asking the cluster: an unknown partition, a replica
    /// count that may not change, and on a single node any move elsewhere.
    fn check_move(
        &self,
        topic: &str,
        index: i32,
        replicas: &Option<Vec<NodeId>>,
        allow_rf_change: bool,
    ) -> Result<(), Answer> {
        let unknown = || {
            (
                error::UNKNOWN_TOPIC_OR_PARTITION,
                Some("unknown topic or partition".to_string()),
            )
        };
        let Some(cluster) = &self.cluster else {
            let known = self
                .store
                .topic(topic)
                .is_some_and(|t| index >= 0 && (index as usize) < t.partitions.len());
            if !known {
                return Err(unknown());
            }
            return match replicas {
                None => Err(no_move()),
                Some(r) if r.as_slice() == [self.config.node_id as NodeId] => Ok(()),
                Some(_) => Err((
                    error::INVALID_REPLICA_ASSIGNMENT,
                    Some(format!(
                        "a single node has one replica, broker {}",
                        self.config.node_id
                    )),
                )),
            };
        };
        let md = cluster.metadata();
        let p = md.partition(topic, index).ok_or_else(unknown)?;
        if let Some(target) = replicas {
            let now = p
                .moving
                .as_ref()
                .map_or(p.replicas.len(), |m| m.original.len());
            if !allow_rf_change && target.len() != now {
                return Err((
                    error::INVALID_REPLICATION_FACTOR,
                    Some(format!(
                        "the move changes the partition's {now} replicas to {} and the request does not allow it",
                        target.len()
                    )),
                ));
            }
        }
        Ok(())
    }

    /// Propose the moves; each partition's outcome, or the answer for all of them.
    async fn submit_moves(
        &self,
        moves: Vec<Reassignment>,
        limit: Duration,
    ) -> Result<Vec<Option<MetadataError>>, Answer> {
        let Some(cluster) = &self.cluster else {
            return Ok(vec![None; moves.len()]);
        };
        cluster
            .alter_reassignments(moves, limit)
            .await
            .map_err(|e| match e {
                SubmitError::TimedOut(_) => (
                    error::REQUEST_TIMED_OUT,
                    Some("the cluster metadata did not take the change in time".into()),
                ),
                SubmitError::Stopped => (
                    error::NOT_CONTROLLER,
                    Some("the controller has stopped".into()),
                ),
                SubmitError::Failed(e) => move_answer(Some(e)),
            })
    }

    pub(super) fn list_partition_reassignments(
        &self,
        req: ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        let mut resp = ListPartitionReassignmentsResponse::default();
        let Some(cluster) = &self.cluster else {
            return resp;
        };
        let md = cluster.metadata();
        // Null: every partition with a move in progress.
        let asked: Vec<(String, Option<Vec<i32>>)> = match req.topics {
            Some(list) => list
                .into_iter()
                .map(|t| (name_of(&t.name).to_string(), Some(t.partition_indexes)))
                .collect(),
            None => md.topics.keys().map(|name| (name.clone(), None)).collect(),
        };
        let brokers = |ids: &[NodeId]| -> Vec<BrokerId> {
            ids.iter().map(|&id| BrokerId(id as i32)).collect()
        };
        for (name, indexes) in asked {
            let Some(t) = md.topics.get(&name) else {
                continue;
            };
            let indexes = indexes.unwrap_or_else(|| (0..t.partitions.len() as i32).collect());
            let partitions: Vec<OngoingPartitionReassignment> = indexes
                .into_iter()
                .filter_map(|i| {
                    let p = t.partitions.get(usize::try_from(i).ok()?)?;
                    let m = p.reassigning()?;
                    Some(
                        OngoingPartitionReassignment::default()
                            .with_partition_index(i)
                            .with_replicas(brokers(&p.replicas))
                            .with_adding_replicas(brokers(&m.adding()))
                            .with_removing_replicas(brokers(&m.removing())),
                    )
                })
                .collect();
            if !partitions.is_empty() {
                resp.topics.push(
                    OngoingTopicReassignment::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions),
                );
            }
        }
        resp
    }
}

fn no_move() -> Answer {
    (
        error::NO_REASSIGNMENT_IN_PROGRESS,
        Some("no reassignment of the partition is in progress".into()),
    )
}

fn move_answer(refused: Option<MetadataError>) -> Answer {
    match refused {
        None => (error::NONE, None),
        Some(MetadataError::NoReassignmentInProgress) => no_move(),
        Some(MetadataError::UnknownTopic) => (
            error::UNKNOWN_TOPIC_OR_PARTITION,
            Some("unknown topic or partition".into()),
        ),
        Some(e) => (error::INVALID_REPLICA_ASSIGNMENT, Some(e.to_string())),
    }
}
