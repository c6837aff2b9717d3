//! The transaction calls of the simulated client, as Kafka's Java producer makes them before
//! KIP-890's second part: FindCoordinator for a transactional id, InitProducerId with it,
//! AddPartitionsToTxn (v3), transactional batches, AddOffsetsToTxn and TxnOffsetCommit (v3, a
//! pipeline's input offsets), EndTxn (v3); and a `read_committed` Fetch
//! that drops aborted transactions' records as a client does (the answer's aborted
//! transactions, each producer's records from its first offset up to its abort marker).

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use kafka_protocol::messages::{
    add_partitions_to_txn_request::AddPartitionsToTxnTopic, txn_offset_commit_request,
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest,
    FindCoordinatorRequest, GroupId, ProducerId, RequestKind, ResponseKind, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, TimestampType};

use super::{topic_name, Client, ClientError, FETCH_VERSION, PRODUCE_VERSION};

const FIND_COORDINATOR_VERSION: i16 = 4;
const ADD_PARTITIONS_VERSION: i16 = 3;
const END_TXN_VERSION: i16 = 3;
const ADD_OFFSETS_VERSION: i16 = 3;
const TXN_OFFSET_COMMIT_VERSION: i16 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn unexpected(other: ResponseKind) -> ClientError {
    ClientError::Protocol(format!("unexpected response {other:?}"))
}

/// One partition's `read_committed` answer: the records kept (offset, value), the high
/// watermark, the last stable offset, and where the next fetch starts.
pub type CommittedRead = Result<(Vec<(i64, Bytes)>, i64, i64, Option<i64>), i16>;

impl Client {
    /// The broker that coordinates `key` (key type 0: a group; 1: a transactional id), by its
    /// node id.
    pub async fn find_coordinator_of(
        &mut self,
        key: &str,
        key_type: i8,
    ) -> Result<i32, ClientError> {
        let mut req = FindCoordinatorRequest::default();
        req.key_type = key_type;
        req.coordinator_keys = vec![s(key)];
        match self
            .call(
                ApiKey::FindCoordinator,
                FIND_COORDINATOR_VERSION,
                RequestKind::FindCoordinator(req),
            )
            .await?
        {
            ResponseKind::FindCoordinator(r) => match r.coordinators.first() {
                Some(c) if c.error_code == 0 => Ok(c.node_id.0),
                Some(c) => Err(ClientError::Kafka(c.error_code)),
                None => Err(ClientError::Protocol("no coordinator in the answer".into())),
            },
            other => Err(unexpected(other)),
        }
    }

    /// AddPartitionsToTxn (v3): the first partition's error, if any.
    pub async fn add_partitions_to_txn(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), ClientError> {
        let mut t = AddPartitionsToTxnTopic::default();
        t.name = topic_name(topic);
        t.partitions = partitions.to_vec();
        let mut req = AddPartitionsToTxnRequest::default();
        req.v3_and_below_transactional_id = TransactionalId(s(id));
        req.v3_and_below_producer_id = ProducerId(producer_id);
        req.v3_and_below_producer_epoch = epoch;
        req.v3_and_below_topics = vec![t];
        match self
            .call(
                ApiKey::AddPartitionsToTxn,
                ADD_PARTITIONS_VERSION,
                RequestKind::AddPartitionsToTxn(req),
            )
            .await?
        {
            ResponseKind::AddPartitionsToTxn(r) => {
                let code = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter())
                    .map(|p| p.partition_error_code)
                    .find(|&c| c != 0);
                match code {
                    Some(c) => Err(ClientError::Kafka(c)),
                    None => Ok(()),
                }
            }
            other => Err(unexpected(other)),
        }
    }

    /// AddOffsetsToTxn (v3): the offsets of `group` join the transaction.
    pub async fn add_offsets_to_txn(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        group: &str,
    ) -> Result<(), ClientError> {
        let mut req = AddOffsetsToTxnRequest::default();
        req.transactional_id = TransactionalId(s(id));
        req.producer_id = ProducerId(producer_id);
        req.producer_epoch = epoch;
        req.group_id = GroupId(s(group));
        match self
            .call(
                ApiKey::AddOffsetsToTxn,
                ADD_OFFSETS_VERSION,
                RequestKind::AddOffsetsToTxn(req),
            )
            .await?
        {
            ResponseKind::AddOffsetsToTxn(r) if r.error_code == 0 => Ok(()),
            ResponseKind::AddOffsetsToTxn(r) => Err(ClientError::Kafka(r.error_code)),
            other => Err(unexpected(other)),
        }
    }

    /// TxnOffsetCommit (v3), to `group`'s coordinator: `offsets` of `topic` committed with the
    /// transaction, by a producer that names no consumer membership (generation -1). The first
    /// partition's error, if any.
    pub async fn txn_offset_commit(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), ClientError> {
        let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
        t.name = topic_name(topic);
        t.partitions = offsets
            .iter()
            .map(|&(p, o)| {
                let mut x = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
                x.partition_index = p;
                x.committed_offset = o;
                x.committed_leader_epoch = -1;
                x
            })
            .collect();
        let mut req = TxnOffsetCommitRequest::default();
        req.transactional_id = TransactionalId(s(id));
        req.group_id = GroupId(s(group));
        req.producer_id = ProducerId(producer_id);
        req.producer_epoch = epoch;
        req.generation_id = -1;
        req.topics = vec![t];
        match self
            .call(
                ApiKey::TxnOffsetCommit,
                TXN_OFFSET_COMMIT_VERSION,
                RequestKind::TxnOffsetCommit(req),
            )
            .await?
        {
            ResponseKind::TxnOffsetCommit(r) => {
                match r
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .map(|p| p.error_code)
                    .find(|&c| c != 0)
                {
                    Some(c) => Err(ClientError::Kafka(c)),
                    None => Ok(()),
                }
            }
            other => Err(unexpected(other)),
        }
    }

    /// EndTxn (v3): commit or abort.
    pub async fn end_txn(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        commit: bool,
    ) -> Result<(), ClientError> {
        let mut req = EndTxnRequest::default();
        req.transactional_id = TransactionalId(s(id));
        req.producer_id = ProducerId(producer_id);
        req.producer_epoch = epoch;
        req.committed = commit;
        match self
            .call(ApiKey::EndTxn, END_TXN_VERSION, RequestKind::EndTxn(req))
            .await?
        {
            ResponseKind::EndTxn(r) if r.error_code == 0 => Ok(()),
            ResponseKind::EndTxn(r) => Err(ClientError::Kafka(r.error_code)),
            other => Err(unexpected(other)),
        }
    }

    /// Produce `(key, value)` as one transactional batch of transactional id `id`'s producer
    /// `(producer id, epoch, sequence)`, acks=all; its offset.
    pub async fn produce_transactional(
        &mut self,
        id: &str,
        topic: &str,
        partition: i32,
        timestamp: i64,
        (key, value): (Bytes, Bytes),
        (producer_id, producer_epoch, sequence): (i64, i16, i32),
    ) -> Result<i64, ClientError> {
        let record = Record {
            transactional: true,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence,
            timestamp,
            key: Some(key),
            value: Some(value),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut req = super::produce_of(topic, partition, std::slice::from_ref(&record))?;
        req.transactional_id = Some(TransactionalId(s(id)));
        req.acks = -1;
        req.timeout_ms = self.request_timeout_ms;
        let resp = self
            .call(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(req))
            .await?;
        super::produce_answer(resp)
    }

    /// Fetch partitions of `topic` at `read_committed`, each from its own offset.
    pub async fn fetch_committed(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        max_wait_ms: i32,
    ) -> Result<Vec<(i32, CommittedRead)>, ClientError> {
        let mut req = super::fetch_request(topic, positions, max_wait_ms);
        req.isolation_level = 1;
        let resp = match self
            .call(ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(req))
            .await?
        {
            ResponseKind::Fetch(r) => r,
            other => return Err(unexpected(other)),
        };
        let mut out = Vec::new();
        for pd in resp.responses.iter().flat_map(|t| t.partitions.iter()) {
            if pd.error_code != 0 {
                out.push((pd.partition_index, Err(pd.error_code)));
                continue;
            }
            let from = positions
                .iter()
                .find(|(p, _)| *p == pd.partition_index)
                .map_or(0, |(_, o)| *o);
            let mut aborted: VecDeque<(i64, i64)> = pd
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.first_offset, a.producer_id.0))
                .collect();
            aborted.make_contiguous().sort();
            let mut dropping: BTreeSet<i64> = BTreeSet::new();
            let (kept, next) = super::records_of(pd.records.clone(), |r| {
                while aborted.front().is_some_and(|(first, _)| *first <= r.offset) {
                    let (_, producer) = aborted.pop_front().expect("checked");
                    dropping.insert(producer);
                }
                if r.control {
                    if r.transactional && abort_marker(r) {
                        dropping.remove(&r.producer_id);
                    }
                    return false;
                }
                r.offset >= from && !(r.transactional && dropping.contains(&r.producer_id))
            })?;
            let records = kept
                .into_iter()
                .map(|r| (r.offset, r.value.unwrap_or_default()))
                .collect();
            out.push((
                pd.partition_index,
                Ok((records, pd.high_watermark, pd.last_stable_offset, next)),
            ));
        }
        Ok(out)
    }
}

/// Whether a control record is an abort marker (its key: version, then type 0).
fn abort_marker(r: &Record) -> bool {
    r.key
        .as_ref()
        .filter(|k| k.len() >= 4)
        .is_some_and(|k| i16::from_be_bytes([k[2], k[3]]) == 0)
}
