//! Produce: validate every record, queue the batches for the commit pipeline in the
//! connection's order, then wait for them to be durable — the whole of it, the wait for a place
//! in the queue included, within the request's timeout: a saturated broker answers
//! REQUEST_TIMED_OUT in time rather than leaving the producer to give up unanswered.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse},
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{append_code, append_refusal, name_of, storage_code, storage_refusal, Broker};
use crate::metrics::Metrics;
use crate::metrics::Refusal;
use crate::protocol::error;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::batch::BatchError;
use crate::compression;
use crate::memory::Reservation;
use crate::records::{self, Rules};
use crate::replication::node::ReplicaError;
use crate::storage::catalog::Topic;
use crate::storage::{AppendError, Appended};

impl Broker {
    pub(super) async fn produce_enqueue(
        &self,
        req: ProduceRequest,
        version: i16,
        frame: &Arc<Reservation>,
    ) -> PendingProduce {
        let acks = req.acks;
        let txn_id = req
            .transactional_id
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| t.to_string());
        let started = self.clock.now();
        let deadline = started + produce_limit(req.timeout_ms);
        let mut topics = Vec::with_capacity(req.topic_data.len());
        for t in req.topic_data {
            let name = name_of(&t.name).to_string();
            let topic = if acks != 0 && acks != 1 && acks != -1 {
                Err(error::INVALID_REQUIRED_ACKS)
            } else if name.is_empty() && version >= super::topic_ids::PRODUCE_BY_ID {
                // Named by an id no topic has.
                Err(error::UNKNOWN_TOPIC_ID)
            } else if crate::storage::catalog::is_internal(&name) {
                // As Kafka: only the broker writes its internal topics.
                Err(error::INVALID_TOPIC_EXCEPTION)
            } else {
                self.topic_or_create(&name, true).await
            };
            let mut parts = Vec::with_capacity(t.partition_data.len());
            for p in t.partition_data {
                let state = match &topic {
                    Err(code) => PartState::Done(*code, None),
                    Ok(topic) => {
                        let write = Write {
                            acks,
                            txn_id: txn_id.as_deref(),
                            deadline,
                        };
                        self.enqueue_partition(topic, p.index, p.records, write, frame)
                            .await
                    }
                };
                parts.push((p.index, state));
            }
            topics.push((t.name, t.topic_id, parts));
        }
        PendingProduce {
            acks,
            deadline,
            topics,
        }
    }

    async fn enqueue_partition(
        &self,
        topic: &Topic,
        index: i32,
        records: Option<Bytes>,
        write: Write<'_>,
        frame: &Arc<Reservation>,
    ) -> PartState {
        let Write {
            acks,
            txn_id,
            deadline,
        } = write;
        let Some(partition) = topic.partition(index) else {
            return PartState::Done(error::UNKNOWN_TOPIC_OR_PARTITION, None);
        };
        // min.insync.replicas above the partition's replicas asks for no more than all of
        // them (Kafka's effective minimum since its eligible leader replicas): on one node an
        // acks=all write needs only this broker; in a cluster the replication layer caps it.
        if self.cluster.is_some() {
            if let Err(not) = self.takes_writes(&topic.name, index) {
                return PartState::Done(
                    not.code,
                    Some(format!(
                        "this broker does not lead {}-{index} (leader {}, epoch {})",
                        topic.name, not.leader, not.epoch
                    )),
                );
            }
        }
        let payload = records.unwrap_or_default();
        let rules = Rules {
            batch_bytes_max: topic.config.max_message_bytes as usize,
            timestamp_type: topic.config.timestamp_type,
            timestamp_before_max_ms: topic.config.timestamp_before_max_ms,
            timestamp_after_max_ms: topic.config.timestamp_after_max_ms,
            now_ms: self.clock.wall_ms(),
            keys_required: topic.config.cleanup.compact,
            transactional: txn_id.is_some() && self.txns.is_some(),
        };
        let checked = records::validate_produce(&payload, &rules).and_then(|headers| {
            compression::recompress(
                &payload,
                &headers,
                topic.config.compression,
                rules.batch_bytes_max,
                rules.decompressed_bytes_max(),
            )
            .map(|rewritten| (headers, rewritten))
        });
        // Kafka's rule since Produce v3: exactly one record batch per partition.
        if let Ok((batches, _)) = &checked {
            if batches.len() != 1 {
                Metrics::inc(&self.metrics.request_errors, 1);
                return PartState::Done(
                    error::INVALID_RECORD,
                    Some(format!(
                        "a produce request carries exactly one record batch per partition, not {}",
                        batches.len()
                    )),
                );
            }
        }
        let (payload, headers, held) = match checked {
            Ok((headers, None)) => (payload, headers, frame.clone()),
            // Recompressed: the new bytes are charged to the memory budget until they are in
            // the log, as the frame's are (past the bound if need be: they exist already, and
            // the connection reads nothing more until the budget has room again).
            Ok((_, Some((rewritten, headers)))) => {
                let held = Arc::new(self.memory.charge(rewritten.len()));
                (rewritten, headers, held)
            }
            Err(e) => {
                if let Some(suppressed) = self.throttles.refused_batches.admit(self.clock.now()) {
                    tracing::warn!(topic = %topic.name, partition = index, error = %e, suppressed, "refusing produced data");
                }
                Metrics::inc(&self.metrics.request_errors, 1);
                let message = e.to_string();
                let code = match e {
                    BatchError::TooLarge { .. } => error::MESSAGE_TOO_LARGE,
                    // Damage on the way (a retry may pass), or bytes that are no batch of a
                    // format Kafka knows; everything else is how the client built the batch,
                    // and a retry would fail the same way.
                    BatchError::BadCrc { .. }
                    | BatchError::Truncated { .. }
                    | BatchError::BadLength(_) => error::CORRUPT_MESSAGE,
                    BatchError::BadMagic(magic) if magic > 2 => error::CORRUPT_MESSAGE,
                    // Kafka asks for the transactional id's WRITE permission first, and a
                    // request without an id has none.
                    BatchError::Transactional => error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    BatchError::BadMagic(_) => error::INVALID_RECORD,
                    // Refused by the log's validation: answered with its start offset.
                    BatchError::RecordsRefused {
                        timestamp,
                        refused,
                        reasons,
                    } => {
                        let code = if timestamp {
                            error::INVALID_TIMESTAMP
                        } else {
                            error::INVALID_RECORD
                        };
                        return PartState::Invalid {
                            code,
                            message,
                            refused,
                            reasons,
                            log_start: partition.to_kafka(partition.log_start_offset()),
                        };
                    }
                    _ => {
                        return PartState::Invalid {
                            code: error::INVALID_RECORD,
                            message,
                            refused: Vec::new(),
                            reasons: Vec::new(),
                            log_start: partition.to_kafka(partition.log_start_offset()),
                        }
                    }
                };
                return PartState::Done(code, Some(message));
            }
        };
        let txn_guard = match (txn_id, headers.iter().find(|h| h.is_transactional())) {
            (Some(id), Some(h)) => match self.verified(partition, id, h, deadline).await {
                Ok(guard) => guard,
                Err(code) => return PartState::Done(code, None),
            },
            _ => None,
        };
        if let Some(cluster) = &self.cluster {
            let ctx = Proposal {
                topic,
                index,
                acks,
                deadline,
                txn_guard,
            };
            return self.propose(cluster, ctx, payload, &headers, held).await;
        }
        let left = deadline.saturating_duration_since(self.clock.now());
        let queued = self.clock.timeout(
            left,
            self.store.append_guarded(
                partition.clone(),
                payload,
                headers,
                acks != 0,
                Some(held),
                txn_guard,
            ),
        );
        match queued.await {
            Ok(Ok(Some(rx))) => PartState::Waiting(rx),
            Ok(Ok(None)) => PartState::Done(error::NONE, None),
            Ok(Err(e)) => {
                self.metrics.refused_append(storage_refusal(&e));
                PartState::Done(storage_code(&e), Some(e.to_string()))
            }
            // Never queued, so never written; the client retries it.
            Err(_) => {
                self.metrics.refused_append(Refusal::QueueWaitTimedOut);
                PartState::Done(
                    error::REQUEST_TIMED_OUT,
                    Some("no place in the append queue within the request's timeout".into()),
                )
            }
        }
    }

    /// KIP-890's first part: before a transactional producer's batch opens its transaction on
    /// a partition, the coordinator confirms the partition is in that transaction; the token
    /// of the confirmation goes with the append (`None`: the transaction is open here already,
    /// nothing to confirm). A batch late from an ended transaction is refused here, or by the
    /// pipeline if its marker came between.
    async fn verified(
        &self,
        partition: &Arc<crate::storage::log::Partition>,
        txn_id: &str,
        h: &crate::batch::BatchHeader,
        deadline: tokio::time::Instant,
    ) -> Result<Option<u64>, i16> {
        let Some(txns) = &self.txns else {
            return Err(error::INVALID_REQUEST);
        };
        let open = partition
            .state()
            .producers
            .get(h.producer_id)
            .is_some_and(|e| e.epoch == h.producer_epoch && e.txn_first_offset.is_some());
        if open {
            return Ok(None);
        }
        let token = partition.state_mut().txn_guard(h.producer_id);
        let left = deadline.saturating_duration_since(self.clock.now());
        let code = txns
            .verify(
                txn_id,
                h.producer_id,
                h.producer_epoch,
                vec![(partition.topic.clone(), partition.index)],
                left,
            )
            .await;
        match code {
            error::NONE => Ok(Some(token)),
            // The coordinator cannot answer now (it moves, loads, or is busy with the id):
            // a code a producer retries, as Kafka answers clients of the original protocol.
            error::NOT_COORDINATOR
            | error::COORDINATOR_NOT_AVAILABLE
            | error::COORDINATOR_LOAD_IN_PROGRESS
            | error::CONCURRENT_TRANSACTIONS => Err(error::NOT_ENOUGH_REPLICAS),
            code => Err(code),
        }
    }

    pub(super) async fn produce_finish(
        &self,
        pending: PendingProduce,
        version: i16,
    ) -> (i16, ProduceResponse) {
        let mut resp = ProduceResponse::default();
        for (name, topic_id, parts) in pending.topics {
            let mut t = TopicProduceResponse::default();
            t.name = name;
            t.topic_id = topic_id;
            for (index, state) in parts {
                let mut p = PartitionProduceResponse::default();
                p.index = index;
                match state {
                    PartState::Done(code, msg) => {
                        p.error_code = code;
                        if version >= 8 {
                            p.error_message = msg.map(StrBytes::from_string);
                        }
                    }
                    PartState::Invalid {
                        code,
                        message,
                        refused,
                        reasons,
                        log_start,
                    } => {
                        p.error_code = code;
                        if version >= 5 {
                            p.log_start_offset = log_start;
                        }
                        if version >= 8 {
                            p.error_message = Some(StrBytes::from_string(message));
                            p.record_errors = record_errors(refused, reasons);
                        }
                    }
                    PartState::Replicated(rx, _held, stamped_ms, part) => {
                        let left = pending.deadline.saturating_duration_since(self.clock.now());
                        match self.clock.timeout(left, rx).await {
                            Ok(Ok(Ok(appended))) => {
                                let kafka =
                                    |log: i64| part.as_ref().map_or(log, |p| p.to_kafka(log));
                                p.base_offset = kafka(appended.base_offset);
                                p.log_append_time_ms = stamped_ms;
                                if version >= 5 {
                                    p.log_start_offset = kafka(appended.log_start_offset);
                                }
                            }
                            Ok(Ok(Err(e))) => {
                                p.error_code = replica_code(&e);
                                if version >= 8 {
                                    p.error_message = Some(StrBytes::from_string(e.to_string()));
                                }
                            }
                            // Not acknowledged in time: it may still commit (indefinite).
                            Ok(Err(_)) | Err(_) => {
                                self.metrics.refused_append(Refusal::TimedOut);
                                p.error_code = error::REQUEST_TIMED_OUT;
                            }
                        }
                    }
                    PartState::Waiting(rx) => {
                        let left = pending.deadline.saturating_duration_since(self.clock.now());
                        match self.clock.timeout(left, rx).await {
                            Ok(Ok(Ok(Appended {
                                base_offset,
                                log_start_offset,
                                log_append_time_ms,
                            }))) => {
                                p.base_offset = base_offset;
                                p.log_append_time_ms = log_append_time_ms;
                                if version >= 5 {
                                    p.log_start_offset = log_start_offset;
                                }
                            }
                            Ok(Ok(Err(e))) => {
                                self.metrics.refused_append(append_refusal(&e));
                                p.error_code = append_code(&e);
                                if version >= 8 {
                                    p.error_message = Some(StrBytes::from_string(e.to_string()));
                                }
                            }
                            // The pipeline dropped the answer (it stopped): whether the bytes
                            // were written is unknown, as when the request's time runs out.
                            Ok(Err(_)) | Err(_) => {
                                self.metrics.refused_append(Refusal::TimedOut);
                                p.error_code = error::REQUEST_TIMED_OUT;
                            }
                        }
                    }
                }
                if p.error_code == error::INVALID_TXN_STATE && version >= TXN_ABORTABLE_FROM {
                    // KIP-890: a batch outside its producer's transaction, told to clients
                    // that know the error as one the transaction can be aborted after.
                    p.error_code = error::TRANSACTION_ABORTABLE;
                }
                if p.error_code != error::NONE {
                    p.base_offset = -1;
                    Metrics::inc(&self.metrics.request_errors, 1);
                }
                t.partition_responses.push(p);
            }
            resp.responses.push(t);
        }
        (pending.acks, resp)
    }
}

/// The first Produce version whose clients know TRANSACTION_ABORTABLE.
const TXN_ABORTABLE_FROM: i16 = 11;

pub(super) enum PartState {
    Done(i16, Option<String>),
    /// Refused by the validation of its records: the whole batch, or some of its records (each
    /// by its index in the batch, and why for the first); answered, as Kafka answers what its
    /// log refuses, with the partition's log start offset.
    Invalid {
        code: i16,
        message: String,
        refused: Vec<i32>,
        reasons: Vec<String>,
        log_start: i64,
    },
    Waiting(oneshot::Receiver<Result<Appended, AppendError>>),
    /// Proposed to the partition's Raft group; the frame's memory is held until answered.
    Replicated(
        oneshot::Receiver<Result<Appended, ReplicaError>>,
        Arc<Reservation>,
        /// The time the batches were stamped with under LogAppendTime; -1 otherwise.
        i64,
        /// The partition: its log answers in log offsets, the client is told Kafka offsets.
        Option<Arc<crate::storage::log::Partition>>,
    ),
}

/// A partition's share of a produce in a cluster.
struct Proposal<'a> {
    topic: &'a Topic,
    index: i32,
    acks: i16,
    deadline: tokio::time::Instant,
    /// The partition's token of the coordinator's confirmation of a first transactional
    /// batch (KIP-890's first part).
    txn_guard: Option<u64>,
}

/// The code of a proposal that was not acknowledged.
fn replica_code(e: &ReplicaError) -> i16 {
    match e {
        ReplicaError::NotLeader { .. } | ReplicaError::Unknown => error::NOT_LEADER_OR_FOLLOWER,
        ReplicaError::Storage(e) => append_code(e),
        ReplicaError::Stopped => error::REQUEST_TIMED_OUT,
        ReplicaError::NotEnoughReplicas { .. } => error::NOT_ENOUGH_REPLICAS,
        ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
            error::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        }
        // (Not a produce's answer: proposals of records are never membership changes.)
        ReplicaError::MembershipChange(_) => error::UNKNOWN_SERVER_ERROR,
    }
}

impl Broker {
    /// Propose a partition's validated batches to its Raft group (this broker leads it), one
    /// entry per batch; under LogAppendTime the leader stamps them first, so every replica
    /// stores the same bytes.
    async fn propose(
        &self,
        cluster: &crate::controller::Controller,
        ctx: Proposal<'_>,
        payload: Bytes,
        headers: &[crate::batch::BatchHeader],
        held: Arc<Reservation>,
    ) -> PartState {
        let Some(view) = cluster.replication().replica(&ctx.topic.name, ctx.index) else {
            return PartState::Done(error::NOT_LEADER_OR_FOLLOWER, None);
        };
        let log_append_time =
            ctx.topic.config.timestamp_type == crate::records::TimestampType::LogAppendTime;
        let now_ms = self.clock.wall_ms();
        let mut batches = Vec::with_capacity(headers.len());
        let mut from = 0usize;
        for h in headers {
            let one = payload.slice(from..from + h.size);
            from += h.size;
            batches.push(if log_append_time {
                let mut copy = bytes::BytesMut::from(&one[..]);
                crate::batch::stamp_log_append_time(&mut copy, now_ms);
                copy.freeze()
            } else {
                one
            });
        }
        let left = ctx.deadline.saturating_duration_since(self.clock.now());
        let proposed = self
            .clock
            .timeout(left, async {
                let min_insync = match ctx.acks {
                    -1 => ctx.topic.config.min_insync_replicas.max(1) as usize,
                    _ => 1,
                };
                cluster
                    .replication()
                    .propose_produced(view.group, batches, ctx.acks, min_insync, ctx.txn_guard)
                    .await
            })
            .await;
        match proposed {
            Ok(Ok(Some(rx))) => {
                let stamped_ms = if log_append_time { now_ms } else { -1 };
                let partition = ctx.topic.partition(ctx.index).cloned();
                PartState::Replicated(rx, held, stamped_ms, partition)
            }
            Ok(Ok(None)) => PartState::Done(error::NONE, None),
            Ok(Err(e)) => PartState::Done(replica_code(&e), Some(e.to_string())),
            Err(_) => PartState::Done(
                error::REQUEST_TIMED_OUT,
                Some(
                    "the partition's replication did not take it within the request's timeout"
                        .into(),
                ),
            ),
        }
    }
}

/// How long a produce may take, from when it is read to its answer (its `timeout_ms`, within
/// sane bounds).
fn produce_limit(timeout_ms: i32) -> Duration {
    Duration::from_millis(timeout_ms.clamp(100, 300_000) as u64)
}

/// A topic's name and id (as the request gave it: nil before v13) and its partitions' states.
type PendingTopic = (TopicName, uuid::Uuid, Vec<(i32, PartState)>);

pub(super) struct PendingProduce {
    acks: i16,
    /// When the answer is due (the request's timeout from when it was read).
    deadline: tokio::time::Instant,
    topics: Vec<PendingTopic>,
}

/// A produce response's record errors (v8+): every refused record by its index in the batch,
/// with why for the first ones ([`crate::batch::REFUSED_REASONS_MAX`]): the index is all a client
/// acts on.
fn record_errors(refused: Vec<i32>, reasons: Vec<String>) -> Vec<BatchIndexAndErrorMessage> {
    let mut reasons = reasons.into_iter();
    refused
        .into_iter()
        .map(|index| {
            let mut e = BatchIndexAndErrorMessage::default();
            e.batch_index = index;
            e.batch_index_error_message = reasons.next().map(StrBytes::from_string);
            e
        })
        .collect()
}

/// How a produce request writes: its acks, its transactional id, and by when.
#[derive(Clone, Copy)]
struct Write<'a> {
    acks: i16,
    txn_id: Option<&'a str>,
    deadline: tokio::time::Instant,
}
