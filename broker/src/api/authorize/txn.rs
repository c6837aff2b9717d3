//! The transaction APIs' checks, Kafka's: WRITE on the transactional id for a producer's calls
//! (and its transactional Produce), WRITE on each topic it adds, READ on the group whose
//! offsets it commits (and on their topics), CLUSTER_ACTION for a broker's calls (the batched
//! AddPartitionsToTxn, WriteTxnMarkers), DESCRIBE on a transactional id to see it.
//!
//! Where Kafka would serve the authorized part of a request and refuse the rest, a producer's
//! call here is refused whole (the refused parts with their code, the others
//! OPERATION_NOT_ATTEMPTED): a transaction is never left with part of what its producer asked.

use kafka_protocol::messages::*;

use super::{Access, Gate, Parts, Refused};
use crate::api::name_of;
use crate::protocol::error;
use crate::security::acl::{op, resource};

/// Whether `body` is a request of the transaction APIs ([`gate`] decides it).
pub(super) fn handles(body: &RequestKind) -> bool {
    use RequestKind as R;
    matches!(
        body,
        R::AddPartitionsToTxn(_)
            | R::AddOffsetsToTxn(_)
            | R::EndTxn(_)
            | R::TxnOffsetCommit(_)
            | R::WriteTxnMarkers(_)
            | R::DescribeTransactions(_)
            | R::ListTransactions(_)
    )
}

/// A transactional Produce whose producer may not write as its transactional id: refused
/// whole, every partition TRANSACTIONAL_ID_AUTHORIZATION_FAILED (Kafka's). `None`: go on.
pub(super) fn produce_refused(access: &Access, r: &ProduceRequest) -> Option<Gate> {
    let refused = r
        .transactional_id
        .as_ref()
        .is_some_and(|id| !access.allows(op::WRITE, resource::TRANSACTIONAL_ID, id.as_str()));
    if !refused {
        return None;
    }
    let responses = r
        .topic_data
        .iter()
        .map(|t| {
            produce_response::TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            produce_response::PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(Gate::Answer(ResponseKind::Produce(
        ProduceResponse::default().with_responses(responses),
    )))
}

/// The gate of a transaction API's request (one [`handles`]).
pub(super) fn gate(access: &Access, body: RequestKind, version: i16) -> Gate {
    use RequestKind as R;
    let txn_id = |id: &str, operation| access.allows(operation, resource::TRANSACTIONAL_ID, id);
    let serve = |body| Gate::Serve(body, Refused::new(access, Parts::Nothing));
    match body {
        R::AddPartitionsToTxn(r) if version >= 4 => {
            if access.cluster(op::CLUSTER_ACTION) {
                return serve(R::AddPartitionsToTxn(r));
            }
            Gate::Answer(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default()
                    .with_error_code(error::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        R::AddPartitionsToTxn(r) => {
            let id_ok = txn_id(r.v3_and_below_transactional_id.as_str(), op::WRITE);
            let refused_topic = |t: &str| !access.topic(op::WRITE, t);
            let any_topic = r
                .v3_and_below_topics
                .iter()
                .any(|t| refused_topic(name_of(&t.name)));
            if id_ok && !any_topic {
                return serve(R::AddPartitionsToTxn(r));
            }
            let code = |t: &str| {
                if !id_ok {
                    error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                } else if refused_topic(t) {
                    error::TOPIC_AUTHORIZATION_FAILED
                } else {
                    error::OPERATION_NOT_ATTEMPTED
                }
            };
            let results = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let c = code(name_of(&t.name));
                    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(c)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gate::Answer(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        R::AddOffsetsToTxn(r) => {
            let code = if !txn_id(r.transactional_id.as_str(), op::WRITE) {
                error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            } else if !access.group(op::READ, r.group_id.as_str()) {
                error::GROUP_AUTHORIZATION_FAILED
            } else {
                return serve(R::AddOffsetsToTxn(r));
            };
            Gate::Answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code),
            ))
        }
        R::EndTxn(r) => {
            if txn_id(r.transactional_id.as_str(), op::WRITE) {
                return serve(R::EndTxn(r));
            }
            Gate::Answer(ResponseKind::EndTxn(
                EndTxnResponse::default()
                    .with_error_code(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ))
        }
        R::TxnOffsetCommit(r) => {
            let id_ok = txn_id(r.transactional_id.as_str(), op::WRITE);
            let group_ok = access.group(op::READ, r.group_id.as_str());
            let topic_ok = |t: &str| access.topic(op::READ, t);
            if id_ok && group_ok && r.topics.iter().all(|t| topic_ok(name_of(&t.name))) {
                return serve(R::TxnOffsetCommit(r));
            }
            let code = |t: &str| {
                if !id_ok {
                    error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                } else if !group_ok {
                    error::GROUP_AUTHORIZATION_FAILED
                } else if !topic_ok(t) {
                    error::TOPIC_AUTHORIZATION_FAILED
                } else {
                    error::OPERATION_NOT_ATTEMPTED
                }
            };
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    let c = code(name_of(&t.name));
                    txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(c)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gate::Answer(ResponseKind::TxnOffsetCommit(
                TxnOffsetCommitResponse::default().with_topics(topics),
            ))
        }
        R::WriteTxnMarkers(r) => {
            if access.cluster(op::CLUSTER_ACTION) {
                return serve(R::WriteTxnMarkers(r));
            }
            let markers = r
                .markers
                .iter()
                .map(|m| {
                    write_txn_markers_response::WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(*p)
                                                        .with_error_code(error::CLUSTER_AUTHORIZATION_FAILED)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            Gate::Answer(ResponseKind::WriteTxnMarkers(
                WriteTxnMarkersResponse::default().with_markers(markers),
            ))
        }
        R::DescribeTransactions(mut r) => {
            let names = super::split_names(
                &mut r.transactional_ids,
                |i| i.as_str(),
                |i| txn_id(i, op::DESCRIBE),
            );
            Gate::Serve(R::DescribeTransactions(r), Refused::names(access, names))
        }
        // The answer lists only the ids the principal may describe (see `merge`).
        R::ListTransactions(r) => serve(R::ListTransactions(r)),
        // Only the requests `handles` names come here.
        other => serve(other),
    }
}
