//! In a cluster, what the transaction coordinator and the partition leaders ask each other, as
//! calls between brokers ([`crate::replication::calls`]) carrying Kafka's own requests:
//! WriteTxnMarkers v1 (a coordinator to the leader of a transaction's partition) and
//! AddPartitionsToTxn v4 with `verify_only` (a partition leader to the coordinator of a
//! producer's transaction, before its first transactional batch there — KIP-890's first part;
//! the answer's top-level code is the verdict for every partition asked about).
//!
//! Invariant: both requests are safe to repeat (a marker written twice is harmless, a
//! verification writes nothing), so a call without an answer is asked again or treated as a
//! refusal, never as a success; each side serves at most [`CONCURRENT_MAX`] calls at once and
//! queues at most [`QUEUE`] more.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction},
    write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
    write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    },
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::markers::{MarkerWrite, Markers};
use super::metadata::TopicPartition;
use super::TxnCoordinator;
use crate::controller::Controller;
use crate::protocol::error;
use crate::replication::calls::{Call, Service};

/// WriteTxnMarkers v1, coordinator to partition leader.
const SERVICE_MARKERS: Service = 1;
/// AddPartitionsToTxn v4 (verify only), partition leader to coordinator.
const SERVICE_VERIFY: Service = 2;
/// The versions the calls carry.
const MARKERS_VERSION: i16 = 1;
const VERIFY_VERSION: i16 = 4;
/// Calls of one service waiting to be served, at most; past it they are dropped.
const QUEUE: usize = 256;
/// Calls of one service served at once, at most.
const CONCURRENT_MAX: usize = 64;
/// How long a coordinator waits for a leader to answer its markers (a marker is answered
/// once Raft commits it).
const MARKERS_LIMIT: Duration = Duration::from_secs(15);

fn encode(message: &impl Encodable, version: i16) -> Bytes {
    let mut out = BytesMut::new();
    message
        .encode(&mut out, version)
        .expect("a request of this broker's making encodes");
    out.freeze()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Serve the calls of other brokers for this coordinator and this broker's partitions.
pub(super) fn serve(cluster: &Controller, markers: Arc<Markers>, coordinator: Arc<TxnCoordinator>) {
    let calls = cluster.replication().calls();
    let marker_calls = calls.serve(SERVICE_MARKERS, QUEUE);
    tokio::spawn(serve_each(marker_calls, move |call| {
        let markers = markers.clone();
        async move {
            let mut body = call.body.clone();
            let Ok(req) = WriteTxnMarkersRequest::decode(&mut body, MARKERS_VERSION) else {
                tracing::warn!(
                    peer = call.from,
                    "a WriteTxnMarkers call that does not decode"
                );
                return;
            };
            let resp = write_txn_markers(&markers, req).await;
            call.answer(encode(&resp, MARKERS_VERSION));
        }
    }));
    let verify_calls = calls.serve(SERVICE_VERIFY, QUEUE);
    tokio::spawn(serve_each(verify_calls, move |call| {
        let coordinator = coordinator.clone();
        async move {
            let mut body = call.body.clone();
            let Ok(req) = AddPartitionsToTxnRequest::decode(&mut body, VERIFY_VERSION) else {
                tracing::warn!(
                    peer = call.from,
                    "an AddPartitionsToTxn call that does not decode"
                );
                return;
            };
            let mut resp = AddPartitionsToTxnResponse::default();
            resp.error_code = match req.transactions.into_iter().next() {
                Some(t) => {
                    let partitions = t
                        .topics
                        .iter()
                        .flat_map(|tp| tp.partitions.iter().map(|p| (tp.name.0.to_string(), *p)))
                        .collect();
                    coordinator
                        .add_partitions(
                            t.transactional_id.0.to_string(),
                            t.producer_id.0,
                            t.producer_epoch,
                            partitions,
                            true,
                        )
                        .await
                }
                None => error::INVALID_REQUEST,
            };
            call.answer(encode(&resp, VERIFY_VERSION));
        }
    }));
}

/// Take calls from `rx`, each served by its own task, at most [`CONCURRENT_MAX`] at once.
async fn serve_each<F, Fut>(mut rx: tokio::sync::mpsc::Receiver<Call>, handle: F)
where
    F: Fn(Call) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_MAX));
    while let Some(call) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let served = handle(call);
        tokio::spawn(async move {
            served.await;
            drop(permit);
        });
    }
}

/// WriteTxnMarkers: each marker written to the partitions this broker holds or leads, and each
/// partition's code (an admin's abort of a hanging transaction, or a coordinator's call).
pub async fn write_txn_markers(
    markers: &Markers,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut resp = WriteTxnMarkersResponse::default();
    for m in req.markers {
        let write = MarkerWrite {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
            partitions: m
                .topics
                .iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(|p| (t.name.0.to_string(), *p))
                })
                .collect(),
        };
        let outcomes = markers.write_here(&write).await;
        let mut r = WritableTxnMarkerResult::default();
        r.producer_id = m.producer_id;
        for ((topic, partition), code) in outcomes {
            if r.topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
                let mut t = WritableTxnMarkerTopicResult::default();
                t.name = topic_name(&topic);
                r.topics.push(t);
            }
            let mut p = WritableTxnMarkerPartitionResult::default();
            p.partition_index = partition;
            p.error_code = code;
            if let Some(t) = r.topics.last_mut() {
                t.partitions.push(p);
            }
        }
        resp.markers.push(r);
    }
    resp
}

/// Ask broker `leader` to write the markers of `w` (it leads their partitions, as far as this
/// broker knows); each partition's code (REQUEST_TIMED_OUT for all without an answer).
pub(super) async fn write_markers_at(
    cluster: &Controller,
    leader: u64,
    w: &MarkerWrite,
) -> Vec<(TopicPartition, i16)> {
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(w.producer_id);
    marker.producer_epoch = w.producer_epoch;
    marker.transaction_result = w.commit;
    marker.coordinator_epoch = w.coordinator_epoch;
    for (topic, partition) in &w.partitions {
        if marker
            .topics
            .last()
            .is_none_or(|t| t.name.0.as_str() != topic)
        {
            let mut t = WritableTxnMarkerTopic::default();
            t.name = topic_name(topic);
            marker.topics.push(t);
        }
        if let Some(t) = marker.topics.last_mut() {
            t.partition_indexes.push(*partition);
        }
    }
    let mut req = WriteTxnMarkersRequest::default();
    req.markers.push(marker);
    let all = |code| w.partitions.iter().map(|tp| (tp.clone(), code)).collect();
    let answer = cluster
        .replication()
        .calls()
        .call(
            leader,
            SERVICE_MARKERS,
            &encode(&req, MARKERS_VERSION),
            MARKERS_LIMIT,
        )
        .await;
    let mut body = match answer {
        Ok(body) => body,
        Err(e) => {
            tracing::debug!(leader, error = %e, "no answer to a transaction's markers");
            return all(error::REQUEST_TIMED_OUT);
        }
    };
    let Ok(resp) = WriteTxnMarkersResponse::decode(&mut body, MARKERS_VERSION) else {
        return all(error::REQUEST_TIMED_OUT);
    };
    let mut out: Vec<(TopicPartition, i16)> = resp
        .markers
        .into_iter()
        .flat_map(|m| m.topics)
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions
                .into_iter()
                .map(move |p| ((name.clone(), p.partition_index), p.error_code))
        })
        .filter(|(tp, _)| w.partitions.contains(tp))
        .collect();
    // A partition the answer left out was not written.
    for tp in &w.partitions {
        if !out.iter().any(|(t, _)| t == tp) {
            out.push((tp.clone(), error::REQUEST_TIMED_OUT));
        }
    }
    out
}

/// Ask broker `coordinator` whether `partitions` are in the transaction of `id`'s producer
/// (`producer_id`, `epoch`): its code (NONE: they are), or REQUEST_TIMED_OUT without an answer
/// within `limit`.
pub(super) async fn verify_at(
    cluster: &Controller,
    coordinator: u64,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[TopicPartition],
    limit: Duration,
) -> i16 {
    let mut t = AddPartitionsToTxnTransaction::default();
    t.transactional_id = TransactionalId(StrBytes::from_string(id.to_string()));
    t.producer_id = ProducerId(producer_id);
    t.producer_epoch = epoch;
    t.verify_only = true;
    for (topic, partition) in partitions {
        if t.topics.last().is_none_or(|x| x.name.0.as_str() != topic) {
            let mut x = AddPartitionsToTxnTopic::default();
            x.name = topic_name(topic);
            t.topics.push(x);
        }
        if let Some(x) = t.topics.last_mut() {
            x.partitions.push(*partition);
        }
    }
    let mut req = AddPartitionsToTxnRequest::default();
    req.transactions.push(t);
    let answer = cluster
        .replication()
        .calls()
        .call(
            coordinator,
            SERVICE_VERIFY,
            &encode(&req, VERIFY_VERSION),
            limit,
        )
        .await;
    match answer {
        Ok(mut body) => AddPartitionsToTxnResponse::decode(&mut body, VERIFY_VERSION)
            .map_or(error::REQUEST_TIMED_OUT, |r| r.error_code),
        Err(_) => error::REQUEST_TIMED_OUT,
    }
}
