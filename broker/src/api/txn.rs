//! The transaction APIs: AddPartitionsToTxn (a client's, v0–3, and the batched form with its
//! verification, v4), AddOffsetsToTxn, EndTxn, TxnOffsetCommit, WriteTxnMarkers,
//! DescribeTransactions, ListTransactions. InitProducerId with a transactional id is in
//! `producers`. Each is handed to the transaction coordinator (or, for a transaction's offsets,
//! the group coordinator); markers are written to this broker's partitions.
//!
//! In a cluster each request goes to the coordinator of its id (the leader of the id's
//! partition of `__transaction_state`; another broker answers NOT_COORDINATOR), and markers
//! are written on the partitions this broker leads.

use kafka_protocol::messages::{
    add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
    },
    describe_transactions_response::{TopicData, TransactionState},
    list_transactions_response,
    txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic},
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::group::{CommitRequest, TxnCommitRequest, OFFSETS_TOPIC};
use crate::protocol::error;
use crate::txn::metadata::TopicPartition;
use crate::txn::ListFilter;

/// What a request for the transaction coordinator gets where there is none (it never stops
/// while the broker runs).
const NO_COORDINATOR: i16 = error::COORDINATOR_NOT_AVAILABLE;

/// Before v2 of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn (v4 of InitProducerId) a
/// fenced producer is told INVALID_PRODUCER_EPOCH; PRODUCER_FENCED came later.
pub(super) fn fenced_as(code: i16, version: i16, since: i16) -> i16 {
    if code == error::PRODUCER_FENCED && version < since {
        error::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Broker {
    /// The code of partitions that do not exist here (UNKNOWN_TOPIC_OR_PARTITION); `None` when
    /// all do.
    fn unknown_partitions(&self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        // In a cluster a partition may live on other brokers: the cluster's metadata knows.
        let md = self.cluster.as_ref().map(|c| c.metadata());
        partitions
            .iter()
            .filter(|(t, p)| match &md {
                Some(md) => md.partition(t, *p).is_none(),
                None => self
                    .store
                    .topic(t)
                    .is_none_or(|topic| topic.partition(*p).is_none()),
            })
            .cloned()
            .collect()
    }

    pub(super) async fn add_partitions_to_txn(
        &self,
        req: AddPartitionsToTxnRequest,
        version: i16,
    ) -> AddPartitionsToTxnResponse {
        let mut resp = AddPartitionsToTxnResponse::default();
        if version <= 3 {
            let partitions = topic_partitions(
                req.v3_and_below_topics
                    .iter()
                    .map(|t| (name_of(&t.name), &t.partitions[..])),
            );
            let codes = self
                .add_one(
                    req.v3_and_below_transactional_id.to_string(),
                    req.v3_and_below_producer_id.0,
                    req.v3_and_below_producer_epoch,
                    partitions,
                    false,
                )
                .await;
            let codes = codes
                .into_iter()
                .map(|(tp, c)| (tp, fenced_as(c, version, 2)))
                .collect();
            resp.results_by_topic_v3_and_below = topic_results(codes);
            return resp;
        }
        for t in req.transactions {
            let partitions = topic_partitions(
                t.topics
                    .iter()
                    .map(|tp| (name_of(&tp.name), &tp.partitions[..])),
            );
            let codes = self
                .add_one(
                    t.transactional_id.to_string(),
                    t.producer_id.0,
                    t.producer_epoch,
                    partitions,
                    t.verify_only,
                )
                .await;
            let mut r = AddPartitionsToTxnResult::default();
            r.transactional_id = t.transactional_id;
            r.topic_results = topic_results(codes);
            resp.results_by_transaction.push(r);
        }
        resp
    }

    /// One transaction's partitions added (or, `verify_only`, checked): each one's code. When
    /// some do not exist, they are UNKNOWN_TOPIC_OR_PARTITION and the others
    /// OPERATION_NOT_ATTEMPTED, as Kafka answers.
    async fn add_one(
        &self,
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
        verify_only: bool,
    ) -> Vec<(TopicPartition, i16)> {
        let unknown = self.unknown_partitions(&partitions);
        if !unknown.is_empty() {
            return partitions
                .into_iter()
                .map(|tp| {
                    let code = if unknown.contains(&tp) {
                        error::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        error::OPERATION_NOT_ATTEMPTED
                    };
                    (tp, code)
                })
                .collect();
        }
        let code = match &self.txns {
            None => NO_COORDINATOR,
            Some(txns) => {
                txns.add_partitions(id, producer_id, epoch, partitions.clone(), verify_only)
                    .await
            }
        };
        partitions.into_iter().map(|tp| (tp, code)).collect()
    }

    pub(super) async fn add_offsets_to_txn(
        &self,
        req: AddOffsetsToTxnRequest,
        version: i16,
    ) -> AddOffsetsToTxnResponse {
        let mut resp = AddOffsetsToTxnResponse::default();
        resp.error_code = match &self.txns {
            None => NO_COORDINATOR,
            Some(txns) => {
                // The group's partition of the offsets topic joins the transaction; the topic
                // is made now if it is not there (its marker needs it).
                self.groups.offsets_topic_wanted();
                let partition = (
                    OFFSETS_TOPIC.to_string(),
                    self.groups.partition_for(req.group_id.as_str()),
                );
                let code = txns
                    .add_partitions(
                        req.transactional_id.to_string(),
                        req.producer_id.0,
                        req.producer_epoch,
                        vec![partition],
                        false,
                    )
                    .await;
                fenced_as(code, version, 2)
            }
        };
        resp
    }

    pub(super) async fn end_txn(&self, req: EndTxnRequest, version: i16) -> EndTxnResponse {
        let mut resp = EndTxnResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        resp.error_code = match &self.txns {
            None => NO_COORDINATOR,
            Some(txns) => {
                let code = txns
                    .end_txn(
                        req.transactional_id.to_string(),
                        req.producer_id.0,
                        req.producer_epoch,
                        req.committed,
                    )
                    .await;
                fenced_as(code, version, 2)
            }
        };
        resp
    }

    pub(super) async fn txn_offset_commit(
        &self,
        req: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let asked: Vec<(String, i32)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (name_of(&t.name).to_string(), p.partition_index))
            })
            .collect();
        let offsets = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        name_of(&t.name).to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.committed_metadata.as_ref().map(|m| m.to_string()),
                    )
                })
            })
            .collect();
        let group_partition = (
            OFFSETS_TOPIC.to_string(),
            self.groups.partition_for(req.group_id.as_str()),
        );
        let verified = match &self.txns {
            None => Err(NO_COORDINATOR),
            // The group's partition must be in the transaction (AddOffsetsToTxn first): a
            // transaction's offsets written outside it would open a transaction there that no
            // marker ever ends, holding the partition's last stable offset for good.
            // (Asked of the transaction's coordinator, wherever it is.)
            Some(txns) => match txns
                .verify(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    vec![group_partition],
                    std::time::Duration::from_secs(5),
                )
                .await
            {
                error::NONE => Ok(()),
                code => Err(code),
            },
        };
        let answer = if let Err(code) = verified {
            Err(code)
        } else {
            self.groups
                .txn_offset_commit(TxnCommitRequest {
                    commit: CommitRequest {
                        group_id: req.group_id.to_string(),
                        generation: req.generation_id,
                        member_id: req.member_id.to_string(),
                        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                        offsets,
                        unknown_group: error::ILLEGAL_GENERATION,
                        member_epoch_commit: false,
                    },
                    producer_id: req.producer_id.0,
                    producer_epoch: req.producer_epoch,
                })
                .await
        };
        let codes: Vec<i16> = match answer {
            Ok(codes) => codes,
            Err(code) => vec![code; asked.len()],
        };
        let mut resp = TxnOffsetCommitResponse::default();
        for ((topic, partition), code) in asked.into_iter().zip(codes) {
            if resp.topics.last().is_none_or(|t| name_of(&t.name) != topic) {
                let mut t = TxnOffsetCommitResponseTopic::default();
                t.name = topic_name(&topic);
                resp.topics.push(t);
            }
            let mut p = TxnOffsetCommitResponsePartition::default();
            p.partition_index = partition;
            p.error_code = code;
            if let Some(t) = resp.topics.last_mut() {
                t.partitions.push(p);
            }
        }
        resp
    }

    /// Markers written to this broker's partitions (an admin's abort of a hanging
    /// transaction; a coordinator's own go without this request, or by a call between
    /// brokers): each partition's outcome — in a cluster, NOT_LEADER_OR_FOLLOWER for a
    /// partition this broker does not lead.
    pub(super) async fn write_txn_markers(
        &self,
        req: WriteTxnMarkersRequest,
    ) -> WriteTxnMarkersResponse {
        match &self.txns {
            Some(txns) => crate::txn::peers::write_txn_markers(txns.markers(), req).await,
            None => WriteTxnMarkersResponse::default(),
        }
    }

    pub(super) async fn describe_transactions(
        &self,
        req: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let mut resp = DescribeTransactionsResponse::default();
        let ids: Vec<String> = req
            .transactional_ids
            .iter()
            .map(|i| i.to_string())
            .collect();
        let Some(txns) = &self.txns else {
            for id in ids {
                let mut s = TransactionState::default();
                s.transactional_id = TransactionalId(text(&id));
                s.error_code = NO_COORDINATOR;
                resp.transaction_states.push(s);
            }
            return resp;
        };
        for d in txns.describe(ids).await {
            let mut s = TransactionState::default();
            s.transactional_id = TransactionalId(text(&d.transactional_id));
            s.error_code = d.error;
            if d.error != crate::protocol::error::NONE {
                // Kafka's answer for an id it does not know: the error and nothing else.
                resp.transaction_states.push(s);
                continue;
            }
            s.transaction_state = text(d.state);
            s.transaction_timeout_ms = d.timeout_ms;
            s.transaction_start_time_ms = d.start_ms;
            s.producer_id = ProducerId(d.producer_id);
            s.producer_epoch = d.producer_epoch;
            for (topic, partition) in d.partitions {
                if s.topics.last().is_none_or(|t| name_of(&t.topic) != topic) {
                    let mut t = TopicData::default();
                    t.topic = topic_name(&topic);
                    s.topics.push(t);
                }
                if let Some(t) = s.topics.last_mut() {
                    t.partitions.push(partition);
                }
            }
            resp.transaction_states.push(s);
        }
        resp
    }

    pub(super) async fn list_transactions(
        &self,
        req: ListTransactionsRequest,
        version: i16,
    ) -> ListTransactionsResponse {
        let mut resp = ListTransactionsResponse::default();
        let known = |s: &str| crate::txn::metadata::TxnState::from_name(s).is_some();
        resp.unknown_state_filters = req
            .state_filters
            .iter()
            .filter(|s| !known(s.as_str()))
            .cloned()
            .collect();
        // v2 (KIP-1152): a regular expression the whole id must match; none or empty: any.
        let pattern = req
            .transactional_id_pattern
            .as_ref()
            .filter(|p| version >= 2 && !p.is_empty());
        let id_pattern = match pattern.map(|p| whole_match(p)) {
            None => None,
            Some(Ok(re)) => Some(re),
            Some(Err(_)) => {
                resp.error_code = crate::protocol::error::INVALID_REGULAR_EXPRESSION;
                return resp;
            }
        };
        let filter = ListFilter {
            id_pattern,
            states: req.state_filters.iter().map(|s| s.to_string()).collect(),
            producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
            duration_ms: if version >= 1 {
                req.duration_filter
            } else {
                -1
            },
        };
        let Some(txns) = &self.txns else {
            resp.error_code = NO_COORDINATOR;
            return resp;
        };
        match txns.list(filter).await {
            Ok(listed) => {
                for l in listed {
                    let mut s = list_transactions_response::TransactionState::default();
                    s.transactional_id = TransactionalId(text(&l.transactional_id));
                    s.producer_id = ProducerId(l.producer_id);
                    s.transaction_state = text(l.state);
                    resp.transaction_states.push(s);
                }
            }
            Err(code) => resp.error_code = code,
        }
        resp
    }
}

/// (topic, partitions) pairs as a list of partitions.
fn topic_partitions<'a>(topics: impl Iterator<Item = (&'a str, &'a [i32])>) -> Vec<TopicPartition> {
    topics
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.to_string(), *p)))
        .collect()
}

/// Per-partition codes as AddPartitionsToTxn's topic results.
fn topic_results(codes: Vec<(TopicPartition, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in codes {
        if out.last().is_none_or(|t| name_of(&t.name) != topic) {
            let mut t = AddPartitionsToTxnTopicResult::default();
            t.name = topic_name(&topic);
            out.push(t);
        }
        let mut p = AddPartitionsToTxnPartitionResult::default();
        p.partition_index = partition;
        p.partition_error_code = code;
        if let Some(t) = out.last_mut() {
            t.results_by_partition.push(p);
        }
    }
    out
}

/// A regular expression that matches a whole string only, within a bound on its size (a
/// client's expression must not take the broker's memory).
fn whole_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}
