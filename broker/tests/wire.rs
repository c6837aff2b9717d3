//! Every advertised API version against an in-process broker: the request decodes, the broker
//! answers, and the response decodes with the `kafka-protocol` crate at the same version
//! (failure mode 24: advertising a version and then refusing or mis-encoding it).
#![cfg(not(madsim))] // These run the real disk and network; the simulator has its own tests.

use std::time::Duration;

use broker::protocol::{error, SUPPORTED};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{start, start_with, Client};

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn batch(value: &str) -> Bytes {
    common::make_batch(1, 1_700_000_000_000, value.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let mut producer_ids = std::collections::BTreeSet::new();
    for &(api, lo, hi) in SUPPORTED {
        for v in lo..=hi {
            match api {
                ApiKey::ApiVersions => {
                    let ResponseKind::ApiVersions(r) = c
                        .call(api, v, RequestKind::ApiVersions(Default::default()))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0);
                    assert_eq!(r.api_keys.len(), SUPPORTED.len());
                }
                ApiKey::Metadata => {
                    let mut req = MetadataRequest::default();
                    let mut t = metadata_request::MetadataRequestTopic::default();
                    t.name = Some(topic("wire"));
                    req.topics = Some(vec![t]);
                    req.allow_auto_topic_creation = true;
                    let ResponseKind::Metadata(r) =
                        c.call(api, v, RequestKind::Metadata(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.brokers.len(), 1);
                    assert_eq!(r.topics[0].error_code, 0, "v{v}");
                    assert_eq!(r.topics[0].partitions.len(), 1);
                }
                ApiKey::CreateTopics => {
                    let mut req = CreateTopicsRequest::default();
                    let mut t = create_topics_request::CreatableTopic::default();
                    t.name = topic(&format!("created-{v}"));
                    t.num_partitions = 2;
                    t.replication_factor = 1;
                    req.topics = vec![t];
                    req.timeout_ms = 5000;
                    let ResponseKind::CreateTopics(r) =
                        c.call(api, v, RequestKind::CreateTopics(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.topics[0].error_code, 0, "v{v}");
                }
                ApiKey::Produce => {
                    let mut req = ProduceRequest::default();
                    req.acks = -1;
                    req.timeout_ms = 5000;
                    let mut t = produce_request::TopicProduceData::default();
                    t.name = topic("wire");
                    let mut p = produce_request::PartitionProduceData::default();
                    p.index = 0;
                    p.records = Some(batch(&format!("produce v{v}")));
                    t.partition_data = vec![p];
                    req.topic_data = vec![t];
                    let ResponseKind::Produce(r) = c.call(api, v, RequestKind::Produce(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "v{v}");
                }
                ApiKey::Fetch => {
                    let mut req = FetchRequest::default();
                    req.max_wait_ms = 10;
                    req.max_bytes = 1 << 20;
                    req.replica_id = BrokerId(-1);
                    let mut t = fetch_request::FetchTopic::default();
                    t.topic = topic("wire");
                    let mut p = fetch_request::FetchPartition::default();
                    p.partition = 0;
                    p.fetch_offset = 0;
                    p.partition_max_bytes = 1 << 20;
                    t.partitions = vec![p];
                    req.topics = vec![t];
                    let ResponseKind::Fetch(r) = c.call(api, v, RequestKind::Fetch(req)).await
                    else {
                        panic!()
                    };
                    let pd = &r.responses[0].partitions[0];
                    assert_eq!(pd.error_code, 0, "v{v}");
                    assert!(pd.high_watermark > 0);
                    assert!(!pd.records.as_ref().unwrap().is_empty());
                }
                ApiKey::ListOffsets => {
                    for (ts, want_positive) in [(-1i64, true), (-2, false)] {
                        let mut req = ListOffsetsRequest::default();
                        req.replica_id = BrokerId(-1);
                        let mut t = list_offsets_request::ListOffsetsTopic::default();
                        t.name = topic("wire");
                        let mut p = list_offsets_request::ListOffsetsPartition::default();
                        p.partition_index = 0;
                        p.timestamp = ts;
                        t.partitions = vec![p];
                        req.topics = vec![t];
                        let ResponseKind::ListOffsets(r) =
                            c.call(api, v, RequestKind::ListOffsets(req)).await
                        else {
                            panic!()
                        };
                        let pr = &r.topics[0].partitions[0];
                        assert_eq!(pr.error_code, 0);
                        assert_eq!(
                            pr.offset > 0,
                            want_positive,
                            "v{v} ts {ts}: offset {}",
                            pr.offset
                        );
                    }
                }
                ApiKey::DeleteTopics => {
                    let name = format!("created-{}", 2 + (v - lo));
                    let mut req = DeleteTopicsRequest::default();
                    req.timeout_ms = 5000;
                    if v >= 6 {
                        let mut s = delete_topics_request::DeleteTopicState::default();
                        s.name = Some(topic(&name));
                        req.topics = vec![s];
                    } else {
                        req.topic_names = vec![topic(&name)];
                    }
                    let ResponseKind::DeleteTopics(r) =
                        c.call(api, v, RequestKind::DeleteTopics(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.responses[0].error_code, 0, "v{v} deleting {name}");
                }
                ApiKey::InitProducerId => {
                    let mut req = InitProducerIdRequest::default();
                    req.transaction_timeout_ms = 60_000;
                    req.producer_id = ProducerId(-1);
                    req.producer_epoch = -1;
                    let ResponseKind::InitProducerId(r) = c
                        .call(api, v, RequestKind::InitProducerId(req.clone()))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!((r.error_code, r.producer_epoch), (0, 0), "v{v}");
                    assert!(r.producer_id.0 >= 0, "v{v}");
                    assert!(
                        producer_ids.insert(r.producer_id.0),
                        "v{v}: id {} handed out twice",
                        r.producer_id.0
                    );
                    // A transactional id: refused at once, not left waiting for a coordinator.
                    req.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
                    let ResponseKind::InitProducerId(r) =
                        c.call(api, v, RequestKind::InitProducerId(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
                }
                other => panic!("no wire test for {other:?}"),
            }
        }
    }
    drop(c);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_produce_data_and_names_get_errors_and_the_connection_lives() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let mut bad = BytesMut::from(&batch("corrupt me")[..]);
    let last = bad.len() - 2;
    bad[last] ^= 0xff;
    for (name, records, want) in [
        ("ok-name", bad.freeze(), error::CORRUPT_MESSAGE),
        ("bad/name", batch("x"), error::INVALID_TOPIC_EXCEPTION),
        (
            "ok-name",
            Bytes::from_static(b"\0\0\0\0"),
            error::INVALID_RECORD,
        ),
    ] {
        let mut req = ProduceRequest::default();
        req.acks = 1;
        req.timeout_ms = 5000;
        let mut t = produce_request::TopicProduceData::default();
        t.name = topic(name);
        let mut p = produce_request::PartitionProduceData::default();
        p.records = Some(records);
        t.partition_data = vec![p];
        req.topic_data = vec![t];
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 7, RequestKind::Produce(req)).await
        else {
            panic!()
        };
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, want,
            "{name}"
        );
    }
    // Nothing was stored for the corrupt batch.
    let t = running.broker.store.topic("ok-name").unwrap();
    assert_eq!(t.partitions[0].high_watermark(), 0);
    drop(c);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_and_the_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), |c| c.max_connections = 2).await;
    let mut a = Client::connect(running.kafka_addr).await;
    let mut b = Client::connect(running.kafka_addr).await;
    a.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(Default::default()),
    )
    .await;
    b.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(Default::default()),
    )
    .await;
    // The third connection is accepted by the kernel and closed by the broker at once.
    let mut c = TcpStream::connect(running.kafka_addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "over-limit connection not closed: {read:?}"
    );
    a.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(Default::default()),
    )
    .await;
    assert_eq!(
        running
            .broker
            .metrics
            .connections_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Closing one frees its slot.
    drop(b);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut d = Client::connect(running.kafka_addr).await;
        let mut h = RequestHeader::default();
        h.request_api_key = ApiKey::ApiVersions as i16;
        h.request_api_version = 0;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        h.encode(&mut buf, 1).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        d.stream.write_all(&buf).await.unwrap();
        let mut len = [0u8; 4];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(2), d.stream.read_exact(&mut len)).await
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "a freed slot was not reused");
    drop(a);
    running.shutdown().await;
}
