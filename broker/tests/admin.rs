//! The admin API against an in-process broker on the wire: every advertised version of
//! CreatePartitions, DeleteRecords, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs,
//! DescribeCluster, DescribeLogDirs, the ACL APIs, ElectLeaders and DescribeProducers, and what
//! they do — configs honoured, refused by name and
//! kept across a restart; broker-wide defaults changed at run time; partitions added; records
//! deleted durably.
#![cfg(not(madsim))]

use std::path::Path;
use std::time::Duration;

use broker::protocol::{error, SUPPORTED};
use broker::server::Running;
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;
use common::{start, Client, ADMIN_APIS};

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// CreateTopics v7 with these configs; the topic's result.
async fn create(
    c: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> create_topics_response::CreatableTopicResult {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = topic(name);
    t.num_partitions = partitions;
    t.replication_factor = -1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = create_topics_request::CreatableTopicConfig::default();
            c.name = s(k);
            c.value = Some(s(v));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    req.validate_only = validate_only;
    let ResponseKind::CreateTopics(mut r) = c
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
        .await
    else {
        panic!()
    };
    r.topics.remove(0)
}

/// DescribeConfigs (v4, with synonyms and documentation) of one resource.
async fn describe(
    c: &mut Client,
    ty: i8,
    name: &str,
    version: i16,
) -> describe_configs_response::DescribeConfigsResult {
    let mut res = describe_configs_request::DescribeConfigsResource::default();
    res.resource_type = ty;
    res.resource_name = s(name);
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    req.include_synonyms = true;
    req.include_documentation = version >= 3;
    let ResponseKind::DescribeConfigs(mut r) = c
        .call(
            ApiKey::DescribeConfigs,
            version,
            RequestKind::DescribeConfigs(req),
        )
        .await
    else {
        panic!()
    };
    r.results.remove(0)
}

/// A config's value and source in a DescribeConfigs result.
fn config_of(r: &describe_configs_response::DescribeConfigsResult, key: &str) -> (String, i8) {
    let c = r
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} is not described"));
    (c.value.as_ref().unwrap().to_string(), c.config_source)
}

/// IncrementalAlterConfigs v1 of a topic: `(key, op, value)`; the error code and message.
async fn alter_incremental(
    c: &mut Client,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    alter_incremental_of(c, 2, name, ops, validate_only).await
}

/// IncrementalAlterConfigs v1 of a resource of type `ty` (2 topic, 4 broker).
async fn alter_incremental_of(
    c: &mut Client,
    ty: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
    res.resource_type = ty;
    res.resource_name = s(name);
    res.configs = ops
        .iter()
        .map(|(k, op, v)| {
            let mut c = incremental_alter_configs_request::AlterableConfig::default();
            c.name = s(k);
            c.config_operation = *op;
            c.value = v.map(s);
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    req.validate_only = validate_only;
    let ResponseKind::IncrementalAlterConfigs(r) = c
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(req),
        )
        .await
    else {
        panic!()
    };
    let r = &r.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// AlterConfigs (the legacy call that replaces a resource's whole set) at `version`.
async fn alter_legacy(
    c: &mut Client,
    ty: i8,
    name: &str,
    configs: &[(&str, &str)],
    version: i16,
) -> (i16, String) {
    let mut res = alter_configs_request::AlterConfigsResource::default();
    res.resource_type = ty;
    res.resource_name = s(name);
    res.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = alter_configs_request::AlterableConfig::default();
            c.name = s(k);
            c.value = Some(s(v));
            c
        })
        .collect();
    let mut req = AlterConfigsRequest::default();
    req.resources = vec![res];
    let ResponseKind::AlterConfigs(r) = c
        .call(
            ApiKey::AlterConfigs,
            version,
            RequestKind::AlterConfigs(req),
        )
        .await
    else {
        panic!()
    };
    let r = &r.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// CreatePartitions to `count` at `version`; the error code and message.
async fn grow(
    c: &mut Client,
    name: &str,
    count: i32,
    validate_only: bool,
    version: i16,
) -> (i16, String) {
    let mut t = create_partitions_request::CreatePartitionsTopic::default();
    t.name = topic(name);
    t.count = count;
    t.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    req.validate_only = validate_only;
    let ResponseKind::CreatePartitions(r) = c
        .call(
            ApiKey::CreatePartitions,
            version,
            RequestKind::CreatePartitions(req),
        )
        .await
    else {
        panic!()
    };
    let r = &r.results[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// DeleteRecords below `offset` of one partition at `version`; the error code and low watermark.
async fn delete_records(
    c: &mut Client,
    name: &str,
    partition: i32,
    offset: i64,
    version: i16,
) -> (i16, i64) {
    let mut p = delete_records_request::DeleteRecordsPartition::default();
    p.partition_index = partition;
    p.offset = offset;
    let mut t = delete_records_request::DeleteRecordsTopic::default();
    t.name = topic(name);
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    let ResponseKind::DeleteRecords(r) = c
        .call(
            ApiKey::DeleteRecords,
            version,
            RequestKind::DeleteRecords(req),
        )
        .await
    else {
        panic!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// ListOffsets v8 for `timestamp` (or a special value); the error, offset and timestamp.
async fn list_offset(
    c: &mut Client,
    name: &str,
    partition: i32,
    timestamp: i64,
    version: i16,
) -> (i16, i64, i64) {
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = timestamp;
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = topic(name);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let ResponseKind::ListOffsets(r) = c
        .call(ApiKey::ListOffsets, version, RequestKind::ListOffsets(req))
        .await
    else {
        panic!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// Fetch v12 from `offset`: the partition's error code.
async fn fetch_code(c: &mut Client, name: &str, partition: i32, offset: i64) -> i16 {
    let mut p = fetch_request::FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = fetch_request::FetchTopic::default();
    t.topic = topic(name);
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.max_bytes = 1 << 20;
    req.topics = vec![t];
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)).await else {
        panic!()
    };
    r.responses[0].partitions[0].error_code
}

async fn partition_count(c: &mut Client, name: &str) -> usize {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(topic(name));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![t]);
    let ResponseKind::Metadata(r) = c
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        .await
    else {
        panic!()
    };
    r.topics[0].partitions.len()
}

fn batch_at(ts: i64, value: &str) -> Bytes {
    common::make_batch(1, ts, value.as_bytes())
}

/// Stop a node and wait until its data directory is free again.
async fn restart(running: Running, dir: &Path) -> Running {
    let closed = running.broker.store.closed();
    running.shutdown().await;
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the store closes after shutdown");
    start(dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_version_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(create(&mut c, "admin", 1, &[], false).await.error_code, 0);
    for i in 0..20 {
        assert_eq!(c.produce("admin", 0, batch_at(1_000 + i, "r")).await.0, 0);
    }
    let mut covered = Vec::new();
    for &(api, lo, hi) in SUPPORTED.iter().filter(|(a, _, _)| ADMIN_APIS.contains(a)) {
        covered.push(api);
        for v in lo..=hi {
            match api {
                ApiKey::CreatePartitions => {
                    let name = format!("grow-{v}");
                    assert_eq!(create(&mut c, &name, 1, &[], false).await.error_code, 0);
                    assert_eq!(grow(&mut c, &name, 3, false, v).await.0, 0, "v{v}");
                    assert_eq!(partition_count(&mut c, &name).await, 3);
                    // Validate-only changes nothing; shrinking is refused.
                    assert_eq!(grow(&mut c, &name, 5, true, v).await.0, 0, "v{v}");
                    assert_eq!(partition_count(&mut c, &name).await, 3);
                    let (code, msg) = grow(&mut c, &name, 2, false, v).await;
                    assert_eq!(code, error::INVALID_PARTITIONS, "v{v}: {msg}");
                }
                ApiKey::DeleteRecords => {
                    let (code, low) = delete_records(&mut c, "admin", 0, 2 + v as i64, v).await;
                    assert_eq!((code, low), (0, 2 + v as i64), "v{v}");
                }
                ApiKey::DescribeConfigs => {
                    let r = describe(&mut c, 2, "admin", v).await;
                    assert_eq!(r.error_code, 0, "v{v}");
                    assert_eq!(config_of(&r, "retention.ms"), ("604800000".into(), 5));
                    let retention = r
                        .configs
                        .iter()
                        .find(|c| c.name.as_str() == "retention.ms")
                        .unwrap();
                    // Kafka lists no default synonym under retention.ms (log.retention.ms
                    // has none: the default comes from log.retention.hours); it does under
                    // cleanup.policy.
                    assert!(retention.synonyms.is_empty(), "v{v}: synonyms");
                    let cleanup = r
                        .configs
                        .iter()
                        .find(|c| c.name.as_str() == "cleanup.policy")
                        .unwrap();
                    if v >= 1 {
                        assert_eq!(cleanup.synonyms.len(), 1, "v{v}: synonyms");
                        assert_eq!(cleanup.synonyms[0].name.as_str(), "log.cleanup.policy");
                    }
                    if v >= 3 {
                        assert_eq!(retention.config_type, 5, "LONG");
                        assert!(retention.documentation.is_some());
                    }
                    let r = describe(&mut c, 4, "1", v).await;
                    assert_eq!(r.error_code, 0, "v{v}");
                    assert_eq!(config_of(&r, "num.partitions").0, "1");
                    // The cluster default ("") holds only what was set for it: nothing yet.
                    let r = describe(&mut c, 4, "", v).await;
                    assert_eq!((r.error_code, r.configs.len()), (0, 0), "v{v}");
                }
                ApiKey::AlterConfigs => {
                    let want = (10_000 + v as i64).to_string();
                    let (code, msg) =
                        alter_legacy(&mut c, 2, "admin", &[("retention.ms", &want)], v).await;
                    assert_eq!(code, 0, "v{v}: {msg}");
                    let r = describe(&mut c, 2, "admin", 4).await;
                    assert_eq!(config_of(&r, "retention.ms"), (want, 1));
                }
                ApiKey::IncrementalAlterConfigs => {
                    let (code, msg) = alter_incremental(
                        &mut c,
                        "admin",
                        &[
                            ("segment.ms", 0, Some("3600000")),
                            ("retention.ms", 1, None),
                        ],
                        false,
                    )
                    .await;
                    assert_eq!(code, 0, "v{v}: {msg}");
                    let r = describe(&mut c, 2, "admin", 4).await;
                    assert_eq!(config_of(&r, "segment.ms"), ("3600000".into(), 1));
                    assert_eq!(config_of(&r, "retention.ms"), ("604800000".into(), 5));
                }
                ApiKey::DescribeCluster => {
                    let mut req = DescribeClusterRequest::default();
                    req.include_cluster_authorized_operations = true;
                    let ResponseKind::DescribeCluster(r) =
                        c.call(api, v, RequestKind::DescribeCluster(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0, "v{v}");
                    assert_eq!(r.brokers.len(), 1);
                    assert_eq!(r.brokers[0].port, running.kafka_addr.port() as i32);
                    assert_eq!(r.controller_id, r.brokers[0].broker_id);
                    assert!(r.cluster_authorized_operations > 0);
                }
                ApiKey::DescribeLogDirs => {
                    let mut req = DescribeLogDirsRequest::default();
                    req.topics = None;
                    let ResponseKind::DescribeLogDirs(r) =
                        c.call(api, v, RequestKind::DescribeLogDirs(req)).await
                    else {
                        panic!()
                    };
                    let d = &r.results[0];
                    assert_eq!(d.error_code, 0, "v{v}");
                    let t = d
                        .topics
                        .iter()
                        .find(|t| t.name.0.as_str() == "admin")
                        .expect("the topic is in the log dir");
                    assert!(t.partitions[0].partition_size > 0);
                }
                // No authorizer: the ACL APIs answer SECURITY_DISABLED, as Kafka's do.
                ApiKey::DescribeAcls => {
                    let ResponseKind::DescribeAcls(r) = c
                        .call(api, v, RequestKind::DescribeAcls(Default::default()))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, error::SECURITY_DISABLED, "v{v}");
                }
                ApiKey::CreateAcls => {
                    let mut req = CreateAclsRequest::default();
                    req.creations = vec![Default::default()];
                    let ResponseKind::CreateAcls(r) =
                        c.call(api, v, RequestKind::CreateAcls(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.results[0].error_code, error::SECURITY_DISABLED, "v{v}");
                }
                ApiKey::DeleteAcls => {
                    let mut req = DeleteAclsRequest::default();
                    req.filters = vec![Default::default()];
                    let ResponseKind::DeleteAcls(r) =
                        c.call(api, v, RequestKind::DeleteAcls(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(
                        r.filter_results[0].error_code,
                        error::SECURITY_DISABLED,
                        "v{v}"
                    );
                }
                ApiKey::ElectLeaders => {
                    let mut tp = elect_leaders_request::TopicPartitions::default();
                    tp.topic = topic("admin");
                    tp.partitions = vec![0, 7];
                    let mut req = ElectLeadersRequest::default();
                    req.topic_partitions = Some(vec![tp]);
                    req.timeout_ms = 5000;
                    let ResponseKind::ElectLeaders(r) =
                        c.call(api, v, RequestKind::ElectLeaders(req)).await
                    else {
                        panic!()
                    };
                    let codes: Vec<i16> = r.replica_election_results[0]
                        .partition_result
                        .iter()
                        .map(|p| p.error_code)
                        .collect();
                    let settled = if v >= 1 {
                        error::ELECTION_NOT_NEEDED
                    } else {
                        0
                    };
                    assert_eq!(codes, [settled, error::UNKNOWN_TOPIC_OR_PARTITION], "v{v}");
                }
                ApiKey::DescribeProducers => {
                    // An idempotent producer's batch, then what the partition knows of it.
                    assert_eq!(
                        c.produce("admin", 0, common::idempotent_batch(42, 3, 0, 2))
                            .await
                            .0,
                        0
                    );
                    let mut t = describe_producers_request::TopicRequest::default();
                    t.name = topic("admin");
                    t.partition_indexes = vec![0, 9];
                    let mut req = DescribeProducersRequest::default();
                    req.topics = vec![t];
                    let ResponseKind::DescribeProducers(r) =
                        c.call(api, v, RequestKind::DescribeProducers(req)).await
                    else {
                        panic!()
                    };
                    let p = &r.topics[0].partitions;
                    assert_eq!(p[0].error_code, 0);
                    let producer = &p[0].active_producers[0];
                    assert_eq!(
                        (
                            producer.producer_id.0,
                            producer.producer_epoch,
                            producer.last_sequence
                        ),
                        (42, 3, 1)
                    );
                    assert_eq!(p[1].error_code, error::UNKNOWN_TOPIC_OR_PARTITION);
                }
                other => panic!("no admin test for {other:?}"),
            }
        }
    }
    assert_eq!(
        covered.len(),
        ADMIN_APIS.len(),
        "every admin API is advertised"
    );
    drop(c);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_honoured_refused_by_name_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    // Refused by name: unsupported values, unknown keys, bad numbers — validate-only or not.
    for (key, value) in [
        ("cleanup.policy", "forget"),
        ("compression.type", "brotli"),
        ("preallocate", "true"),
        ("no.such.config", "1"),
        ("retention.ms", "soon"),
        ("segment.bytes", "10"),
    ] {
        for validate_only in [true, false] {
            let r = create(&mut c, "cfg", 1, &[(key, value)], validate_only).await;
            assert_eq!(r.error_code, error::INVALID_CONFIG, "{key}={value}");
            let msg = r.error_message.unwrap().to_string();
            assert!(msg.contains(key), "{msg:?} names {key}");
        }
    }
    assert!(running.broker.store.topic("cfg").is_none());
    // Kafka's default of a key that does nothing here is accepted (and described).
    let r = create(
        &mut c,
        "cfg",
        2,
        &[
            ("max.message.bytes", "1000"),
            ("preallocate", "false"),
            ("flush.messages", "1"),
            // Met whatever its value (a read holds its segment's file open).
            ("file.delete.delay.ms", "10000"),
        ],
        false,
    )
    .await;
    assert_eq!(r.error_code, 0);
    let configs = r.configs.unwrap();
    let mmb = configs
        .iter()
        .find(|c| c.name.as_str() == "max.message.bytes")
        .unwrap();
    assert_eq!(
        (mmb.value.as_ref().unwrap().as_str(), mmb.config_source),
        ("1000", 1)
    );
    // Honoured: a batch over max.message.bytes is refused, until the topic allows more.
    let big = batch_at(1, &"x".repeat(2000));
    assert_eq!(
        c.produce("cfg", 0, big.clone()).await.0,
        error::MESSAGE_TOO_LARGE
    );
    let (code, msg) = alter_incremental(
        &mut c,
        "cfg",
        &[("max.message.bytes", 0, Some("100000"))],
        true,
    )
    .await;
    assert_eq!(code, 0, "{msg}");
    assert_eq!(
        c.produce("cfg", 0, big.clone()).await.0,
        error::MESSAGE_TOO_LARGE,
        "validate-only changes nothing"
    );
    for (ops, key) in [
        (
            vec![("cleanup.policy", 2i8, Some("forget"))],
            "cleanup.policy",
        ),
        (vec![("retention.ms", 2, Some("5"))], "retention.ms"),
        (vec![("unknown.key", 0, Some("1"))], "unknown.key"),
        (vec![("segment.ms", 0, Some("-5"))], "segment.ms"),
    ] {
        let (code, msg) = alter_incremental(&mut c, "cfg", &ops, false).await;
        assert_ne!(code, 0, "{ops:?}");
        assert!(msg.contains(key), "{msg:?} names {key}");
    }
    let (code, msg) = alter_incremental(
        &mut c,
        "cfg",
        &[
            ("max.message.bytes", 0, Some("100000")),
            ("retention.ms", 0, Some("86400000")),
        ],
        false,
    )
    .await;
    assert_eq!(code, 0, "{msg}");
    assert_eq!(c.produce("cfg", 0, big.clone()).await.0, 0);
    // Broker settings: described; a static one's change is refused by name.
    let r = describe(&mut c, 4, "1", 4).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(config_of(&r, "log.retention.ms").0, "604800000");
    assert_eq!(
        describe(&mut c, 4, "99", 4).await.error_code,
        error::INVALID_REQUEST
    );
    let (code, msg) = alter_legacy(&mut c, 4, "", &[("num.io.threads", "1")], 2).await;
    assert_eq!(code, error::INVALID_CONFIG);
    assert!(msg.contains("num.io.threads"), "{msg}");
    assert_eq!(
        describe(&mut c, 2, "no-such-topic", 4).await.error_code,
        error::UNKNOWN_TOPIC_OR_PARTITION
    );
    // The overrides survive a restart; the rest follow the broker's defaults.
    drop(c);
    running = restart(running, dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let r = describe(&mut c, 2, "cfg", 4).await;
    assert_eq!(config_of(&r, "max.message.bytes"), ("100000".into(), 1));
    assert_eq!(config_of(&r, "retention.ms"), ("86400000".into(), 1));
    assert_eq!(config_of(&r, "flush.messages"), ("1".into(), 1));
    assert_eq!(config_of(&r, "file.delete.delay.ms"), ("10000".into(), 1));
    assert_eq!(config_of(&r, "segment.bytes"), ("1073741824".into(), 5));
    assert_eq!(c.produce("cfg", 1, big.clone()).await.0, 0);
    // AlterConfigs replaces the whole set: what it leaves out returns to the default.
    let (code, msg) = alter_legacy(&mut c, 2, "cfg", &[("segment.ms", "60000")], 1).await;
    assert_eq!(code, 0, "{msg}");
    let r = describe(&mut c, 2, "cfg", 4).await;
    assert_eq!(config_of(&r, "max.message.bytes"), ("1048588".into(), 5));
    assert_eq!(config_of(&r, "segment.ms"), ("60000".into(), 1));
    drop(c);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_and_deleted_records_stay_deleted_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    // Small segments, so deleting records also removes whole segments.
    let r = create(&mut c, "logs", 1, &[("segment.bytes", "1024")], false).await;
    assert_eq!(r.error_code, 0);
    for i in 0..40 {
        let ts = if i == 7 { 9_000 } else { 1_000 + i };
        assert_eq!(
            c.produce(
                "logs",
                0,
                batch_at(ts, &format!("record {i:03} {}", "p".repeat(60)))
            )
            .await,
            (0, i)
        );
    }
    // The record with the largest timestamp, and the first at or after a time.
    assert_eq!(list_offset(&mut c, "logs", 0, -3, 7).await, (0, 7, 9_000));
    assert_eq!(
        list_offset(&mut c, "logs", 0, 1_010, 8).await,
        (0, 7, 9_000)
    );
    assert_eq!(
        list_offset(&mut c, "logs", 0, 1_005, 8).await,
        (0, 5, 1_005)
    );
    let segments = |dir: &Path| common::segment_files(&dir.join("logs-0"));
    let before = segments(dir.path());
    assert!(before > 3, "{before} segments");
    assert_eq!(delete_records(&mut c, "logs", 0, 25, 2).await, (0, 25));
    assert!(
        segments(dir.path()) < before,
        "segments below the start are removed"
    );
    assert_eq!(
        fetch_code(&mut c, "logs", 0, 10).await,
        error::OFFSET_OUT_OF_RANGE
    );
    assert_eq!(fetch_code(&mut c, "logs", 0, 25).await, 0);
    assert_eq!(list_offset(&mut c, "logs", 0, -2, 8).await.1, 25);
    assert_eq!(list_offset(&mut c, "logs", 0, -4, 8).await.1, 25);
    // Records below the start no longer count: not for the largest timestamp, not by time.
    assert_eq!(list_offset(&mut c, "logs", 0, -3, 8).await, (0, 39, 1_039));
    assert_eq!(list_offset(&mut c, "logs", 0, 1_000, 8).await.1, 25);
    // Past the end is refused; below the start changes nothing.
    assert_eq!(
        delete_records(&mut c, "logs", 0, 41, 2).await.0,
        error::OFFSET_OUT_OF_RANGE
    );
    assert_eq!(delete_records(&mut c, "logs", 0, 3, 2).await, (0, 25));
    assert_eq!(
        delete_records(&mut c, "nope", 0, 3, 2).await.0,
        error::UNKNOWN_TOPIC_OR_PARTITION
    );
    // Partitions: grow to 4, write to a new one.
    assert_eq!(grow(&mut c, "logs", 4, false, 3).await.0, 0);
    assert_eq!(c.produce("logs", 3, batch_at(5, "new")).await, (0, 0));
    let (code, msg) = grow(&mut c, "logs", 4, false, 3).await;
    assert_eq!(code, error::INVALID_PARTITIONS, "{msg}");
    assert_eq!(
        grow(&mut c, "__consumer_offsets", 60, false, 3).await.0,
        error::INVALID_REQUEST,
        "the offsets topic's partitions decide where groups live"
    );
    // A name that collides with another in metric names ('.' and '_') is refused.
    assert_eq!(create(&mut c, "a.b", 1, &[], false).await.error_code, 0);
    assert_eq!(
        create(&mut c, "a_b", 1, &[], false).await.error_code,
        error::INVALID_TOPIC_EXCEPTION
    );
    drop(c);
    running = restart(running, dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(partition_count(&mut c, "logs").await, 4);
    assert_eq!(list_offset(&mut c, "logs", 0, -2, 8).await.1, 25);
    assert_eq!(
        fetch_code(&mut c, "logs", 0, 24).await,
        error::OFFSET_OUT_OF_RANGE
    );
    assert_eq!(list_offset(&mut c, "logs", 3, -1, 8).await.1, 1);
    // Everything: the start moves to the end, and the log goes on from there.
    assert_eq!(delete_records(&mut c, "logs", 0, -1, 2).await, (0, 40));
    assert_eq!(c.produce("logs", 0, batch_at(5, "after")).await, (0, 40));
    drop(c);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_wide_defaults_change_at_run_time_for_topics_without_their_own() {
    const SET: i8 = 0;
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(create(&mut c, "follows", 1, &[], false).await.error_code, 0);
    let own = create(&mut c, "own", 1, &[("retention.ms", "1000")], false).await;
    assert_eq!(own.error_code, 0);
    // The cluster-wide default (""), then this broker's value over it.
    let cluster_set = [
        ("log.retention.ms", SET, Some("5000")),
        ("log.segment.bytes", SET, Some("2097152")),
    ];
    assert_eq!(
        alter_incremental_of(&mut c, 4, "", &cluster_set, false).await,
        (0, String::new())
    );
    let node_set = [("log.retention.ms", SET, Some("7000"))];
    assert_eq!(
        alter_incremental_of(&mut c, 4, "1", &node_set, false)
            .await
            .0,
        0
    );
    // Validate-only changes nothing.
    let tried = [("log.retention.ms", SET, Some("1"))];
    assert_eq!(
        alter_incremental_of(&mut c, 4, "1", &tried, true).await.0,
        0
    );
    let follows = running.broker.store.topic("follows").unwrap();
    assert_eq!(
        (follows.config.retention_ms, follows.config.segment_bytes),
        (7000, 2 << 20)
    );
    assert_eq!(follows.partitions[0].config().retention_ms, 7000);
    assert_eq!(
        running
            .broker
            .store
            .topic("own")
            .unwrap()
            .config
            .retention_ms,
        1000
    );
    // Described with where each value comes from (2: this broker, 3: the cluster default).
    let d = describe(&mut c, 2, "follows", 4).await;
    assert_eq!(config_of(&d, "retention.ms"), ("7000".into(), 2));
    assert_eq!(config_of(&d, "segment.bytes"), ("2097152".into(), 3));
    let b = describe(&mut c, 4, "1", 4).await;
    assert_eq!(config_of(&b, "log.retention.ms"), ("7000".into(), 2));
    let cluster = describe(&mut c, 4, "", 4).await;
    assert_eq!(config_of(&cluster, "log.retention.ms"), ("5000".into(), 3));
    assert_eq!(cluster.configs.len(), 2, "only what is set for the cluster");
    // Static settings, bad values and defaults of unsupported features: refused by name.
    for (k, v) in [
        ("num.partitions", "2"),
        ("log.segment.bytes", "10"),
        ("log.preallocate", "true"),
    ] {
        let (code, msg) = alter_incremental_of(&mut c, 4, "1", &[(k, SET, Some(v))], false).await;
        assert_eq!(code, error::INVALID_CONFIG, "{k}");
        assert!(msg.contains(k), "{msg}");
    }
    // A topic created now starts from the dynamic defaults.
    assert_eq!(create(&mut c, "later", 1, &[], false).await.error_code, 0);
    let later = running.broker.store.topic("later").unwrap();
    assert_eq!(later.config.retention_ms, 7000);
    // Kept across a restart.
    drop(c);
    running = restart(running, dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let follows = running.broker.store.topic("follows").unwrap();
    assert_eq!(follows.config.retention_ms, 7000);
    // AlterConfigs replaces this broker's whole set: the cluster default shows through.
    let (code, msg) = alter_legacy(&mut c, 4, "1", &[("message.max.bytes", "50000")], 2).await;
    assert_eq!(code, 0, "{msg}");
    let follows = running.broker.store.topic("follows").unwrap();
    assert_eq!(
        (
            follows.config.retention_ms,
            follows.config.max_message_bytes
        ),
        (5000, 50_000)
    );
    drop(c);
    running.shutdown().await;
}
