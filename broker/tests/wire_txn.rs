//! The transaction APIs at every served version, against an in-process broker: a whole
//! transaction per version (InitProducerId, a produce refused before its partition is added,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn and its retry), what each
//! reader sees after (OffsetFetch with and without require_stable, Fetch and ListOffsets at
//! read_committed), DescribeTransactions and ListTransactions, a fenced producer told the code
//! of its version, the batched verification (AddPartitionsToTxn v4) and an admin's
//! WriteTxnMarkers ending a transaction its producer left open.
//!
//! Data volume: one record per produce, a few dozen requests per version.
#![cfg(not(madsim))]

use std::time::Duration;

use broker::protocol::{error, SUPPORTED};
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;
use common::{start_with, transactional_batch, Client};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

/// The highest version of `api` served, at most `v`.
fn at(api: ApiKey, v: i16) -> i16 {
    let (_, lo, hi) = SUPPORTED.iter().find(|(k, _, _)| *k == api).unwrap();
    v.clamp(*lo, *hi)
}

async fn init(c: &mut Client, v: i16, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = Some(TransactionalId(s(id)));
    req.transaction_timeout_ms = timeout_ms;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let v = at(ApiKey::InitProducerId, v);
    let ResponseKind::InitProducerId(r) = c
        .call(ApiKey::InitProducerId, v, RequestKind::InitProducerId(req))
        .await
    else {
        panic!()
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

async fn add(c: &mut Client, v: i16, id: &str, pid: i64, epoch: i16, t: &str) -> i16 {
    let v = at(ApiKey::AddPartitionsToTxn, v.min(3));
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = TransactionalId(s(id));
    req.v3_and_below_producer_id = ProducerId(pid);
    req.v3_and_below_producer_epoch = epoch;
    let mut tp = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    tp.name = topic(t);
    tp.partitions = vec![0];
    req.v3_and_below_topics = vec![tp];
    let ResponseKind::AddPartitionsToTxn(r) = c
        .call(
            ApiKey::AddPartitionsToTxn,
            v,
            RequestKind::AddPartitionsToTxn(req),
        )
        .await
    else {
        panic!()
    };
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn produce_txn(c: &mut Client, id: &str, records: Bytes) -> (i16, i64) {
    let mut req = ProduceRequest::default();
    req.transactional_id = Some(TransactionalId(s(id)));
    req.acks = -1;
    req.timeout_ms = 10_000;
    let mut p = produce_request::PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = produce_request::TopicProduceData::default();
    t.name = topic("t");
    t.partition_data = vec![p];
    req.topic_data = vec![t];
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, RequestKind::Produce(req)).await
    else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn end(c: &mut Client, v: i16, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let v = at(ApiKey::EndTxn, v);
    let ResponseKind::EndTxn(r) = c.call(ApiKey::EndTxn, v, RequestKind::EndTxn(req)).await else {
        panic!()
    };
    r.error_code
}

async fn describe(c: &mut Client, id: &str) -> describe_transactions_response::TransactionState {
    let req =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    let ResponseKind::DescribeTransactions(r) = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(req),
        )
        .await
    else {
        panic!()
    };
    r.transaction_states[0].clone()
}

/// TxnOffsetCommit of `offset` for t-0 in `group`: the partition's code.
async fn txn_commit(
    c: &mut Client,
    v: i16,
    id: &str,
    group: &str,
    pid: i64,
    epoch: i16,
    offset: i64,
) -> i16 {
    let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    p.committed_leader_epoch = -1;
    let mut t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
    t.name = topic("t");
    t.partitions = vec![p];
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![t]);
    let ResponseKind::TxnOffsetCommit(r) = c
        .call(
            ApiKey::TxnOffsetCommit,
            v,
            RequestKind::TxnOffsetCommit(req),
        )
        .await
    else {
        panic!()
    };
    r.topics[0].partitions[0].error_code
}

/// The group's committed offset of t-0 and its code (`require_stable`: OffsetFetch v7).
async fn committed(c: &mut Client, group: &str, require_stable: bool) -> (i16, i64) {
    let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
    t.name = topic("t");
    t.partition_indexes = vec![0];
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]))
        .with_require_stable(require_stable);
    let ResponseKind::OffsetFetch(r) = c
        .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(req))
        .await
    else {
        panic!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// A read_committed Fetch of t-0 from 0: the last stable offset and the aborted transactions.
async fn fetch_committed(c: &mut Client, v: i16) -> (i16, i64, Vec<(i64, i64)>) {
    let mut p = fetch_request::FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = 0;
    p.partition_max_bytes = 1 << 20;
    p.current_leader_epoch = -1;
    let mut t = fetch_request::FetchTopic::default();
    t.topic = topic("t");
    t.partitions = vec![p];
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(req)).await else {
        panic!()
    };
    let p = &r.responses[0].partitions[0];
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    (p.error_code, p.last_stable_offset, aborted)
}

/// ListOffsets LATEST of t-0 at `isolation_level`.
async fn latest(c: &mut Client, isolation_level: i8) -> i64 {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -1;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = topic("t");
    t.partitions = vec![p];
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![t]);
    let ResponseKind::ListOffsets(r) = c
        .call(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(req))
        .await
    else {
        panic!()
    };
    r.topics[0].partitions[0].offset
}

/// Wait for the transaction of `id` to be complete (its markers written).
async fn completed(c: &mut Client, id: &str) -> String {
    for _ in 0..200 {
        let state = describe(c, id).await.transaction_state.to_string();
        if state.starts_with("Complete") {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the transaction of {id} did not complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_transaction_at_every_served_version() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), |c| c.transaction_max_timeout_ms = 120_000).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic("t"))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    c.call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(create))
        .await;
    // A timeout past transaction.max.timeout.ms is refused.
    assert_eq!(
        init(&mut c, 4, "too-long", 600_000).await.0,
        error::INVALID_TRANSACTION_TIMEOUT
    );
    for v in 0..=4i16 {
        let id = format!("wire-{v}");
        let group = format!("group-{v}");
        let commit = v % 2 == 0;
        let (code, pid, epoch) = init(&mut c, v, &id, 60_000).await;
        assert_eq!((code, epoch), (error::NONE, 0), "v{v}");

        // Before its partition is added, a producer's transactional batch is refused.
        let (code, _) = produce_txn(&mut c, &id, transactional_batch(pid, epoch, 0, 1, 8)).await;
        assert_eq!(code, error::INVALID_TXN_STATE, "v{v}: not added yet");
        assert_eq!(
            add(&mut c, v, &id, pid, epoch, "t").await,
            error::NONE,
            "v{v}"
        );
        let (code, first) =
            produce_txn(&mut c, &id, transactional_batch(pid, epoch, 0, 1, 8)).await;
        assert_eq!(code, error::NONE, "v{v}");
        assert_eq!(
            latest(&mut c, 1).await,
            first,
            "v{v}: stable up to the open transaction"
        );

        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(s(&group)));
        let av = at(ApiKey::AddOffsetsToTxn, v);
        let ResponseKind::AddOffsetsToTxn(r) = c
            .call(
                ApiKey::AddOffsetsToTxn,
                av,
                RequestKind::AddOffsetsToTxn(req),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(r.error_code, error::NONE, "v{v}");

        let tv = at(ApiKey::TxnOffsetCommit, v);
        // A group whose partition was not added to the transaction: refused, nothing written.
        let outside = format!("not-added-{v}");
        assert_ne!(
            common::partition_of(&outside, 50),
            common::partition_of(&group, 50),
            "a group on another partition of the offsets topic"
        );
        assert_eq!(
            txn_commit(&mut c, tv, &id, &outside, pid, epoch, 1).await,
            error::INVALID_TXN_STATE,
            "v{v}"
        );
        assert_eq!(
            txn_commit(&mut c, tv, &id, &group, pid, epoch, 5 + v as i64).await,
            error::NONE,
            "v{v}"
        );
        // Pending: not committed yet, and unstable for a reader that requires stable offsets.
        assert_eq!(
            committed(&mut c, &group, false).await,
            (error::NONE, -1),
            "v{v}"
        );
        assert_eq!(
            committed(&mut c, &group, true).await.0,
            error::UNSTABLE_OFFSET_COMMIT,
            "v{v}"
        );
        let d = describe(&mut c, &id).await;
        assert_eq!(d.transaction_state.as_str(), "Ongoing", "v{v}");
        assert_eq!(d.topics.len(), 2, "v{v}: t and the offsets topic: {d:?}");

        assert_eq!(
            end(&mut c, v, &id, pid, epoch, commit).await,
            error::NONE,
            "v{v}"
        );
        let state = completed(&mut c, &id).await;
        assert_eq!(
            state,
            if commit {
                "CompleteCommit"
            } else {
                "CompleteAbort"
            }
        );
        // The retry of the same decision is answered; the other decision is refused.
        assert_eq!(
            end(&mut c, v, &id, pid, epoch, commit).await,
            error::NONE,
            "v{v}"
        );
        assert_eq!(
            end(&mut c, v, &id, pid, epoch, !commit).await,
            error::INVALID_TXN_STATE,
            "v{v}"
        );
        let want = if commit { 5 + v as i64 } else { -1 };
        assert_eq!(
            committed(&mut c, &group, true).await,
            (error::NONE, want),
            "v{v}"
        );
        let (code, lso, aborted) = fetch_committed(&mut c, 4 + v).await;
        assert_eq!(code, error::NONE);
        assert_eq!(lso, latest(&mut c, 0).await, "v{v}: all stable again");
        assert_eq!(
            aborted.contains(&(pid, first)),
            !commit,
            "v{v}: {aborted:?}"
        );

        // A new producer with the id fences this one: its code as its version names it.
        let (code, _, new_epoch) = init(&mut c, v, &id, 60_000).await;
        assert_eq!((code, new_epoch), (error::NONE, 1), "v{v}");
        let fenced = add(&mut c, v, &id, pid, epoch, "t").await;
        let want = if at(ApiKey::AddPartitionsToTxn, v) < 2 {
            error::INVALID_PRODUCER_EPOCH
        } else {
            error::PRODUCER_FENCED
        };
        assert_eq!(fenced, want, "v{v}");
    }

    // The batched form a partition leader verifies with (v4): in the transaction or not.
    let (_, pid, epoch) = init(&mut c, 4, "verified", 60_000).await;
    let verify = |verify_only| {
        let mut tp = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
        tp.name = topic("t");
        tp.partitions = vec![0];
        let mut tx = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
        tx.transactional_id = TransactionalId(s("verified"));
        tx.producer_id = ProducerId(pid);
        tx.producer_epoch = epoch;
        tx.verify_only = verify_only;
        tx.topics = vec![tp];
        AddPartitionsToTxnRequest::default().with_transactions(vec![tx])
    };
    let code = |r: ResponseKind| {
        let ResponseKind::AddPartitionsToTxn(r) = r else {
            panic!()
        };
        r.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code
    };
    let r = c
        .call(
            ApiKey::AddPartitionsToTxn,
            4,
            RequestKind::AddPartitionsToTxn(verify(true)),
        )
        .await;
    assert_eq!(code(r), error::INVALID_TXN_STATE);
    let r = c
        .call(
            ApiKey::AddPartitionsToTxn,
            4,
            RequestKind::AddPartitionsToTxn(verify(false)),
        )
        .await;
    assert_eq!(code(r), error::NONE);
    let r = c
        .call(
            ApiKey::AddPartitionsToTxn,
            4,
            RequestKind::AddPartitionsToTxn(verify(true)),
        )
        .await;
    assert_eq!(code(r), error::NONE);

    // Its producer goes silent with the transaction open; an admin aborts it on the partition.
    let (code_, first) =
        produce_txn(&mut c, "verified", transactional_batch(pid, epoch, 0, 1, 8)).await;
    assert_eq!(code_, error::NONE);
    assert_eq!(latest(&mut c, 1).await, first);
    let mut mt = write_txn_markers_request::WritableTxnMarkerTopic::default();
    mt.name = topic("t");
    mt.partition_indexes = vec![0];
    let mut m = write_txn_markers_request::WritableTxnMarker::default();
    m.producer_id = ProducerId(pid);
    m.producer_epoch = epoch;
    m.transaction_result = false;
    m.coordinator_epoch = 0;
    m.topics = vec![mt];
    let req = WriteTxnMarkersRequest::default().with_markers(vec![m]);
    let ResponseKind::WriteTxnMarkers(r) = c
        .call(
            ApiKey::WriteTxnMarkers,
            1,
            RequestKind::WriteTxnMarkers(req),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.markers[0].topics[0].partitions[0].error_code, error::NONE);
    assert_eq!(latest(&mut c, 1).await, latest(&mut c, 0).await);

    // ListTransactions: by state, by producer, past a duration; unknown states named.
    for v in 0..=1 {
        let req = ListTransactionsRequest::default()
            .with_state_filters(vec![s("Ongoing"), s("Bogus")])
            .with_duration_filter(-1);
        let ResponseKind::ListTransactions(r) = c
            .call(
                ApiKey::ListTransactions,
                v,
                RequestKind::ListTransactions(req),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(r.error_code, error::NONE);
        assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
        let ids: Vec<_> = r
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.to_string())
            .collect();
        assert_eq!(ids, vec!["verified".to_string()], "v{v}");
    }
    let req = ListTransactionsRequest::default().with_duration_filter(3_600_000);
    let ResponseKind::ListTransactions(r) = c
        .call(
            ApiKey::ListTransactions,
            1,
            RequestKind::ListTransactions(req),
        )
        .await
    else {
        panic!()
    };
    assert!(
        !r.transaction_states
            .iter()
            .any(|t| t.transactional_id.as_str() == "verified"),
        "a transaction begun just now is not an hour old"
    );
    assert_eq!(
        describe(&mut c, "never-seen").await.error_code,
        error::TRANSACTIONAL_ID_NOT_FOUND
    );
    drop(c);
    running.shutdown().await;
}
