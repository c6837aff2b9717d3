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
use common::{join, start, start_with, Client};

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn batch(value: &str) -> Bytes {
    common::make_batch(1, 1_700_000_000_000, value.as_bytes())
}

/// The id the broker has for topic `name` (Metadata v12).
async fn topic_id(c: &mut Client, name: &str) -> uuid::Uuid {
    let mut t = metadata_request::MetadataRequestTopic::default();
    t.name = Some(topic(name));
    let req = MetadataRequest::default().with_topics(Some(vec![t]));
    let ResponseKind::Metadata(r) = c
        .call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0, "{name}");
    r.topics[0].topic_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_served() {
    let dir = tempfile::tempdir().unwrap();
    // A new group's first rebalance completes at once (each version joins a group of its own).
    let running = start_with(dir.path(), |c| c.group_initial_rebalance_delay_ms = 0).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let mut producer_ids = std::collections::BTreeSet::new();
    for &(api, lo, hi) in SUPPORTED {
        for v in lo..=hi {
            match api {
                ApiKey::ApiVersions => {
                    let named = |name: &'static str, version: &'static str| {
                        ApiVersionsRequest::default()
                            .with_client_software_name(StrBytes::from_static_str(name))
                            .with_client_software_version(StrBytes::from_static_str(version))
                    };
                    if v >= 3 {
                        // As Kafka 4.4 answers: a name or version outside `[a-zA-Z0-9.-]`
                        // (or not beginning and ending alphanumeric) is INVALID_REQUEST, with
                        // no API listed.
                        for (name, version) in [("bad name", "1.0"), ("ok", "-1"), ("", "1")] {
                            let ResponseKind::ApiVersions(r) = c
                                .call(api, v, RequestKind::ApiVersions(named(name, version)))
                                .await
                            else {
                                panic!()
                            };
                            assert_eq!(r.error_code, 42, "v{v} {name:?} {version:?}");
                            assert!(r.api_keys.is_empty());
                        }
                    }
                    let ResponseKind::ApiVersions(r) = c
                        .call(
                            api,
                            v,
                            RequestKind::ApiVersions(named("wire-test", "1.0.0")),
                        )
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0);
                    // Client telemetry's two APIs are listed only when it is enabled.
                    assert_eq!(
                        r.api_keys.len(),
                        SUPPORTED.len() - broker::protocol::TELEMETRY_APIS.len()
                    );
                    // Feature levels from v3; a range from level 0 only from v4 (older
                    // clients cannot read it); a feature finalized at 0 is not listed.
                    let supported: Vec<&str> =
                        r.supported_features.iter().map(|f| &*f.name).collect();
                    let finalized: Vec<(&str, i16, i16)> = r
                        .finalized_features
                        .iter()
                        .map(|f| (&*f.name, f.min_version_level, f.max_version_level))
                        .collect();
                    match v {
                        0..=2 => {
                            assert!(supported.is_empty() && finalized.is_empty());
                        }
                        3 => assert_eq!(supported, ["stillwater.version"]),
                        _ => assert_eq!(
                            supported,
                            ["group.version", "transaction.version", "stillwater.version"]
                        ),
                    }
                    if v >= 3 {
                        // A new single node: every feature at its newest level.
                        assert_eq!(
                            finalized,
                            [("group.version", 1, 1), ("stillwater.version", 2, 2)]
                        );
                        assert_eq!(r.finalized_features_epoch, 0);
                    }
                }
                ApiKey::Metadata => {
                    let mut req = MetadataRequest::default();
                    let mut t = metadata_request::MetadataRequestTopic::default();
                    t.name = Some(topic("wire"));
                    req.topics = Some(vec![t]);
                    req.allow_auto_topic_creation = true;
                    req.include_topic_authorized_operations = v >= 8;
                    let ResponseKind::Metadata(r) =
                        c.call(api, v, RequestKind::Metadata(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.brokers.len(), 1);
                    assert_eq!(r.topics[0].error_code, 0, "v{v}");
                    assert_eq!(r.topics[0].partitions.len(), 1);
                    if v >= 8 {
                        // No authorizer: every topic operation, as Kafka answers.
                        assert_eq!(r.topics[0].topic_authorized_operations, 0b1101_1111_1000);
                    }
                }
                ApiKey::DescribeTopicPartitions => {
                    let req = DescribeTopicPartitionsRequest::default()
                        .with_topics(vec![
                            describe_topic_partitions_request::TopicRequest::default()
                                .with_name(topic("wire")),
                        ])
                        .with_response_partition_limit(10);
                    let ResponseKind::DescribeTopicPartitions(r) = c
                        .call(api, v, RequestKind::DescribeTopicPartitions(req))
                        .await
                    else {
                        panic!()
                    };
                    let t = &r.topics[0];
                    assert_eq!(t.error_code, 0, "v{v}");
                    assert!(!t.topic_id.is_nil(), "v{v}: the topic's id");
                    assert_eq!(t.partitions.len(), 1);
                    assert_eq!(t.partitions[0].leader_id, BrokerId(1));
                    assert!(r.next_cursor.is_none(), "v{v}: one page");
                }
                ApiKey::ConsumerGroupHeartbeat => {
                    // A member of a group of its own joins (the coordinator names it at v0)
                    // and is given the topic's one partition at the group's first epoch.
                    let req = ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(format!("kip848-v{v}"))))
                        .with_member_id(StrBytes::from_string(if v >= 1 {
                            "member-one".into()
                        } else {
                            String::new()
                        }))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(30_000)
                        .with_subscribed_topic_names(Some(vec![topic("wire")]))
                        .with_topic_partitions(Some(vec![]));
                    let ResponseKind::ConsumerGroupHeartbeat(r) = c
                        .call(api, v, RequestKind::ConsumerGroupHeartbeat(req))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0, "v{v}: {:?}", r.error_message);
                    assert_eq!(r.member_epoch, 2, "v{v}: a group starts at epoch 1");
                    assert!(r.member_id.is_some_and(|m| !m.is_empty()), "v{v}");
                    let a = r.assignment.expect("an assignment");
                    assert_eq!(a.topic_partitions.len(), 1, "v{v}");
                    assert_eq!(
                        a.topic_partitions[0].topic_id,
                        topic_id(&mut c, "wire").await
                    );
                    assert_eq!(a.topic_partitions[0].partitions, [0]);
                }
                ApiKey::ConsumerGroupDescribe => {
                    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![
                        GroupId(StrBytes::from_string(format!("kip848-v{v}"))),
                        GroupId(StrBytes::from_static_str("no-such-group")),
                    ]);
                    let ResponseKind::ConsumerGroupDescribe(r) = c
                        .call(api, v, RequestKind::ConsumerGroupDescribe(req))
                        .await
                    else {
                        panic!()
                    };
                    let g = &r.groups[0];
                    assert_eq!(g.error_code, 0, "v{v}");
                    assert_eq!(g.group_state.as_str(), "Stable", "v{v}");
                    assert_eq!((g.group_epoch, g.assignment_epoch), (2, 2), "v{v}");
                    assert_eq!(g.members.len(), 1, "v{v}");
                    let t = &g.members[0].assignment.topic_partitions[0];
                    assert_eq!(
                        (t.topic_name.as_str(), &t.partitions[..]),
                        ("wire", &[0][..])
                    );
                    assert_eq!(r.groups[1].error_code, 69, "v{v}: GROUP_ID_NOT_FOUND");
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
                    if v >= 13 {
                        // By id from v13 (the topic was made by the produces before).
                        t.topic_id = topic_id(&mut c, "wire").await;
                    }
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
                    if v >= 13 {
                        assert!(!r.responses[0].topic_id.is_nil(), "v{v}: the topic's id");
                    }
                }
                ApiKey::Fetch => {
                    let mut req = FetchRequest::default();
                    req.max_wait_ms = 10;
                    req.max_bytes = 1 << 20;
                    req.replica_id = BrokerId(-1);
                    let mut t = fetch_request::FetchTopic::default();
                    t.topic = topic("wire");
                    if v >= 13 {
                        t.topic_id = topic_id(&mut c, "wire").await;
                    }
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
                    if v >= 13 {
                        assert!(!r.responses[0].topic_id.is_nil(), "v{v}: the topic's id");
                    }
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
                ApiKey::OffsetForLeaderEpoch => {
                    // One leader forever: epoch 0 ends at the log's end; a later one is unknown.
                    for (epoch, want_epoch, end_positive) in
                        [(0, 0, true), (1, -1, false), (-1, -1, false)]
                    {
                        let mut req = OffsetForLeaderEpochRequest::default();
                        req.replica_id = BrokerId(-1);
                        let mut t =
                            offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
                        t.topic = topic("wire");
                        let mut p =
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
                        p.current_leader_epoch = 0;
                        p.leader_epoch = epoch;
                        t.partitions = vec![p];
                        req.topics = vec![t];
                        let ResponseKind::OffsetForLeaderEpoch(r) =
                            c.call(api, v, RequestKind::OffsetForLeaderEpoch(req)).await
                        else {
                            panic!()
                        };
                        let pr = &r.topics[0].partitions[0];
                        assert_eq!(pr.error_code, 0, "v{v}");
                        assert_eq!(pr.leader_epoch, want_epoch, "v{v} epoch {epoch}");
                        assert_eq!(
                            pr.end_offset > 0,
                            end_positive,
                            "v{v} epoch {epoch}: {}",
                            pr.end_offset
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
                    // An idempotent producer names no id (an empty one is refused, as Kafka).
                    req.transactional_id = None;
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
                    // A transactional id (tests/wire_txn.rs goes through the rest).
                    req.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
                    let ResponseKind::InitProducerId(r) =
                        c.call(api, v, RequestKind::InitProducerId(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, error::NONE, "v{v}");
                    assert_eq!(r.producer_epoch, v - lo, "v{v}: each call bumps the epoch");
                }
                ApiKey::FindCoordinator => {
                    let mut req = FindCoordinatorRequest::default();
                    if v >= 4 {
                        req.coordinator_keys = vec![StrBytes::from_static_str("wire-group")];
                    } else {
                        req.key = StrBytes::from_static_str("wire-group");
                    }
                    let ResponseKind::FindCoordinator(r) =
                        c.call(api, v, RequestKind::FindCoordinator(req)).await
                    else {
                        panic!()
                    };
                    let (code, port) = if v >= 4 {
                        (r.coordinators[0].error_code, r.coordinators[0].port)
                    } else {
                        (r.error_code, r.port)
                    };
                    assert_eq!(code, 0, "v{v}");
                    assert_eq!(port, running.kafka_addr.port() as i32, "v{v}");
                }
                // A whole life of a one-member group at each version of its APIs: join (twice
                // from v4, which first hands out the member id), sync, heartbeat, commit,
                // fetch, describe, list, leave.
                ApiKey::JoinGroup => {
                    let group = format!("wire-join-{v}");
                    let (member, generation) = join(&mut c, &group, v).await;
                    assert!(generation >= 1, "v{v}");
                    let mut req = SyncGroupRequest::default();
                    req.group_id = GroupId(StrBytes::from_string(group.clone()));
                    req.generation_id = generation;
                    req.member_id = member.clone();
                    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
                    a.member_id = member.clone();
                    a.assignment = Bytes::from_static(b"the assignment");
                    req.assignments = vec![a];
                    let ResponseKind::SyncGroup(r) = c
                        .call(ApiKey::SyncGroup, 0, RequestKind::SyncGroup(req))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(
                        (r.error_code, &r.assignment[..]),
                        (0, &b"the assignment"[..])
                    );
                }
                ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
                    let group = format!("wire-{api:?}-{v}");
                    let (member, generation) = join(&mut c, &group, 5).await;
                    let gid = GroupId(StrBytes::from_string(group.clone()));
                    let code = match api {
                        ApiKey::SyncGroup => {
                            let mut req = SyncGroupRequest::default();
                            req.group_id = gid;
                            req.generation_id = generation;
                            req.member_id = member.clone();
                            if v >= 5 {
                                req.protocol_type = Some(StrBytes::from_static_str("consumer"));
                                req.protocol_name = Some(StrBytes::from_static_str("range"));
                            }
                            let ResponseKind::SyncGroup(r) =
                                c.call(api, v, RequestKind::SyncGroup(req)).await
                            else {
                                panic!()
                            };
                            r.error_code
                        }
                        ApiKey::Heartbeat => {
                            let mut req = HeartbeatRequest::default();
                            req.group_id = gid;
                            req.generation_id = generation;
                            req.member_id = member.clone();
                            let ResponseKind::Heartbeat(r) =
                                c.call(api, v, RequestKind::Heartbeat(req)).await
                            else {
                                panic!()
                            };
                            r.error_code
                        }
                        _ => {
                            let mut req = LeaveGroupRequest::default();
                            req.group_id = gid;
                            if v >= 3 {
                                let mut m = leave_group_request::MemberIdentity::default();
                                m.member_id = member.clone();
                                req.members = vec![m];
                            } else {
                                req.member_id = member.clone();
                            }
                            let ResponseKind::LeaveGroup(r) =
                                c.call(api, v, RequestKind::LeaveGroup(req)).await
                            else {
                                panic!()
                            };
                            if v >= 3 {
                                r.members[0].error_code
                            } else {
                                r.error_code
                            }
                        }
                    };
                    assert_eq!(code, 0, "{api:?} v{v}");
                }
                ApiKey::OffsetCommit => {
                    let mut req = OffsetCommitRequest::default();
                    req.group_id = GroupId(StrBytes::from_string(format!("wire-commit-{v}")));
                    req.generation_id_or_member_epoch = -1;
                    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
                    t.name = topic("wire");
                    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
                    p.committed_offset = 1 + v as i64;
                    p.committed_metadata = Some(StrBytes::from_static_str("m"));
                    t.partitions = vec![p];
                    req.topics = vec![t];
                    let ResponseKind::OffsetCommit(r) =
                        c.call(api, v, RequestKind::OffsetCommit(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v}");
                }
                ApiKey::OffsetFetch => {
                    // What OffsetCommit v2 committed for its group.
                    let group = GroupId(StrBytes::from_static_str("wire-commit-2"));
                    let mut req = OffsetFetchRequest::default();
                    if v >= 8 {
                        let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                        g.group_id = group;
                        g.topics = None;
                        req.groups = vec![g];
                    } else {
                        req.group_id = group;
                        let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
                        t.name = topic("wire");
                        t.partition_indexes = vec![0];
                        req.topics = Some(vec![t]);
                    }
                    let ResponseKind::OffsetFetch(r) =
                        c.call(api, v, RequestKind::OffsetFetch(req)).await
                    else {
                        panic!()
                    };
                    let offset = if v >= 8 {
                        r.groups[0].topics[0].partitions[0].committed_offset
                    } else {
                        r.topics[0].partitions[0].committed_offset
                    };
                    assert_eq!(offset, 3, "v{v}");
                }
                ApiKey::ListGroups => {
                    let ResponseKind::ListGroups(r) = c
                        .call(api, v, RequestKind::ListGroups(Default::default()))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0);
                    assert!(r
                        .groups
                        .iter()
                        .any(|g| g.group_id.0.as_str() == "wire-commit-2"));
                }
                ApiKey::DescribeGroups => {
                    let mut req = DescribeGroupsRequest::default();
                    req.groups = vec![GroupId(StrBytes::from_static_str("wire-join-9"))];
                    let ResponseKind::DescribeGroups(r) =
                        c.call(api, v, RequestKind::DescribeGroups(req)).await
                    else {
                        panic!()
                    };
                    let g = &r.groups[0];
                    assert_eq!(
                        (g.error_code, g.group_state.as_str()),
                        (0, "Stable"),
                        "v{v}"
                    );
                    assert_eq!(g.members.len(), 1);
                }
                ApiKey::DeleteGroups => {
                    let mut req = DeleteGroupsRequest::default();
                    req.groups_names = vec![GroupId(StrBytes::from_string(format!(
                        "wire-commit-{}",
                        3 + v
                    )))];
                    let ResponseKind::DeleteGroups(r) =
                        c.call(api, v, RequestKind::DeleteGroups(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.results[0].error_code, 0, "v{v}");
                }
                ApiKey::OffsetDelete => {
                    let mut req = OffsetDeleteRequest::default();
                    req.group_id = GroupId(StrBytes::from_static_str("wire-commit-8"));
                    let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
                    t.name = topic("wire");
                    t.partitions = vec![Default::default()];
                    req.topics = vec![t];
                    let ResponseKind::OffsetDelete(r) =
                        c.call(api, v, RequestKind::OffsetDelete(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0);
                    assert_eq!(r.topics[0].partitions[0].error_code, 0);
                }
                // On a listener without SASL there is nothing to authenticate.
                ApiKey::SaslHandshake => {
                    let mut req = SaslHandshakeRequest::default();
                    req.mechanism = StrBytes::from_static_str("SCRAM-SHA-256");
                    let ResponseKind::SaslHandshake(r) =
                        c.call(api, v, RequestKind::SaslHandshake(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 34, "v{v}");
                }
                ApiKey::SaslAuthenticate => {
                    let ResponseKind::SaslAuthenticate(r) = c
                        .call(api, v, RequestKind::SaslAuthenticate(Default::default()))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 34, "v{v}");
                }
                ApiKey::AlterUserScramCredentials => {
                    let mut u =
                        alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
                    u.name = StrBytes::from_static_str("wire-user");
                    u.mechanism = 1;
                    u.iterations = 4096;
                    u.salt = bytes::Bytes::from_static(b"0123456789abcdef");
                    u.salted_password = bytes::Bytes::from_static(&[7; 32]);
                    let mut req = AlterUserScramCredentialsRequest::default();
                    req.upsertions = vec![u];
                    let ResponseKind::AlterUserScramCredentials(r) = c
                        .call(api, v, RequestKind::AlterUserScramCredentials(req))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(
                        r.results[0].error_code, 0,
                        "{:?}",
                        r.results[0].error_message
                    );
                }
                ApiKey::DescribeUserScramCredentials => {
                    let ResponseKind::DescribeUserScramCredentials(r) = c
                        .call(
                            api,
                            v,
                            RequestKind::DescribeUserScramCredentials(Default::default()),
                        )
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0);
                    // AlterUserScramCredentials comes after it in SUPPORTED: none yet.
                    assert!(r.results.is_empty(), "{:?}", r.results);
                }
                ApiKey::AlterPartitionReassignments => {
                    // A single node: a partition that does not exist is refused alone.
                    use alter_partition_reassignments_request::{
                        ReassignablePartition, ReassignableTopic,
                    };
                    let req = AlterPartitionReassignmentsRequest::default()
                        .with_timeout_ms(5_000)
                        .with_topics(vec![ReassignableTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("no-such-topic")))
                            .with_partitions(vec![ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(Some(vec![BrokerId(1)]))])]);
                    let ResponseKind::AlterPartitionReassignments(r) = c
                        .call(api, v, RequestKind::AlterPartitionReassignments(req))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0, "v{v}");
                    assert_eq!(
                        r.responses[0].partitions[0].error_code,
                        error::UNKNOWN_TOPIC_OR_PARTITION,
                        "v{v}"
                    );
                }
                ApiKey::ListPartitionReassignments => {
                    let ResponseKind::ListPartitionReassignments(r) = c
                        .call(
                            api,
                            v,
                            RequestKind::ListPartitionReassignments(Default::default()),
                        )
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0);
                    assert!(r.topics.is_empty(), "nothing moves on a single node");
                }
                ApiKey::DescribeQuorum => {
                    use kafka_protocol::messages::describe_quorum_request::{
                        PartitionData, TopicData,
                    };
                    let req =
                        DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                            .with_topic_name(TopicName(StrBytes::from_static_str(
                                "__cluster_metadata",
                            )))
                            .with_partitions(vec![PartitionData::default()])]);
                    let ResponseKind::DescribeQuorum(r) =
                        c.call(api, v, RequestKind::DescribeQuorum(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(
                        r.error_code,
                        error::INVALID_REQUEST,
                        "v{v}: no quorum on a single node"
                    );
                }
                ApiKey::UnregisterBroker => {
                    let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(2));
                    let ResponseKind::UnregisterBroker(r) =
                        c.call(api, v, RequestKind::UnregisterBroker(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, error::BROKER_ID_NOT_REGISTERED, "v{v}");
                }
                ApiKey::GetTelemetrySubscriptions => {
                    // Answered though not listed (telemetry is off), as Kafka: a new client is
                    // named and asked for nothing, at the default interval.
                    let ResponseKind::GetTelemetrySubscriptions(r) = c
                        .call(
                            api,
                            v,
                            RequestKind::GetTelemetrySubscriptions(Default::default()),
                        )
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0, "v{v}");
                    assert!(!r.client_instance_id.is_nil());
                    assert_eq!(
                        (r.push_interval_ms, r.requested_metrics.len()),
                        (300_000, 0)
                    );
                    assert_eq!(r.telemetry_max_bytes, 1 << 20);
                }
                ApiKey::PushTelemetry => {
                    // A push without a client instance id is refused.
                    let ResponseKind::PushTelemetry(r) = c
                        .call(api, v, RequestKind::PushTelemetry(Default::default()))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, error::INVALID_REQUEST, "v{v}");
                }
                ApiKey::ListConfigResources => {
                    // v0: client-metrics subscriptions only (none here). v1: every type
                    // (the topic made above, the broker and its loggers), or those named;
                    // a type the version lacks refuses the whole request.
                    let ask = |types: Vec<i8>| {
                        RequestKind::ListConfigResources(
                            ListConfigResourcesRequest::default().with_resource_types(types),
                        )
                    };
                    let listed = |r: &ListConfigResourcesResponse| -> Vec<(i8, String)> {
                        r.config_resources
                            .iter()
                            .map(|x| (x.resource_type, x.resource_name.to_string()))
                            .collect()
                    };
                    let ResponseKind::ListConfigResources(all) = c.call(api, v, ask(vec![])).await
                    else {
                        panic!()
                    };
                    assert_eq!(all.error_code, 0, "v{v}");
                    if v == 0 {
                        assert!(listed(&all).is_empty(), "v0: {all:?}");
                        continue;
                    }
                    let all = listed(&all);
                    assert!(all.contains(&(2, "wire".to_string())), "{all:?}");
                    assert!(all.contains(&(4, "1".to_string())), "{all:?}");
                    assert!(all.contains(&(8, "1".to_string())), "{all:?}");
                    let ResponseKind::ListConfigResources(brokers) =
                        c.call(api, v, ask(vec![4])).await
                    else {
                        panic!()
                    };
                    assert_eq!(listed(&brokers), [(4, "1".to_string())]);
                    let ResponseKind::ListConfigResources(bad) =
                        c.call(api, v, ask(vec![4, 3])).await
                    else {
                        panic!()
                    };
                    assert_eq!(bad.error_code, error::UNSUPPORTED_VERSION);
                    assert!(bad.config_resources.is_empty());
                }
                ApiKey::AlterClientQuotas => {
                    use kafka_protocol::messages::alter_client_quotas_request::{
                        EntityData, EntryData, OpData,
                    };
                    let entry = EntryData::default()
                        .with_entity(vec![EntityData::default()
                            .with_entity_type(StrBytes::from_static_str("client-id"))
                            .with_entity_name(Some(StrBytes::from_string(format!("wire-v{v}"))))])
                        .with_ops(vec![OpData::default()
                            .with_key(StrBytes::from_static_str("consumer_byte_rate"))
                            .with_value(1000.0)]);
                    let req = AlterClientQuotasRequest::default().with_entries(vec![entry]);
                    let ResponseKind::AlterClientQuotas(r) =
                        c.call(api, v, RequestKind::AlterClientQuotas(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.entries.len(), 1);
                    assert_eq!(r.entries[0].error_code, 0, "v{v}: {r:?}");
                }
                ApiKey::DescribeClientQuotas => {
                    // Every client id's quota set by AlterClientQuotas above (it comes first in
                    // SUPPORTED), at each of its versions.
                    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
                    let req = DescribeClientQuotasRequest::default()
                        .with_components(vec![ComponentData::default()
                            .with_entity_type(StrBytes::from_static_str("client-id"))
                            .with_match_type(2)
                            .with_match(None)])
                        .with_strict(true);
                    let ResponseKind::DescribeClientQuotas(r) =
                        c.call(api, v, RequestKind::DescribeClientQuotas(req)).await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0, "v{v}");
                    let entries = r.entries.unwrap_or_default();
                    assert!(!entries.is_empty(), "v{v}");
                    assert!(entries.iter().all(|e| e.values[0].value == 1000.0));
                }
                ApiKey::UpdateFeatures => {
                    // group.version at the level it runs at (validate-only from v1), and a
                    // feature no broker knows refused whole.
                    use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
                    let update = |name: &'static str| {
                        UpdateFeaturesRequest::default()
                            .with_timeout_ms(10_000)
                            .with_validate_only(v >= 1)
                            .with_feature_updates(vec![FeatureUpdateKey::default()
                                .with_feature(StrBytes::from_static_str(name))
                                .with_max_version_level(1)
                                .with_upgrade_type(1)])
                    };
                    let ResponseKind::UpdateFeatures(r) = c
                        .call(api, v, RequestKind::UpdateFeatures(update("group.version")))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 0, "v{v}: {r:?}");
                    assert_eq!(r.results.len(), usize::from(v < 2), "v{v}: {r:?}");
                    let ResponseKind::UpdateFeatures(r) = c
                        .call(api, v, RequestKind::UpdateFeatures(update("no.such")))
                        .await
                    else {
                        panic!()
                    };
                    assert_eq!(r.error_code, 95, "v{v}: {r:?}");
                }
                admin if common::ADMIN_APIS.contains(&admin) => {} // tests/admin.rs
                txn if common::TXN_APIS.contains(&txn) => {}       // tests/wire_txn.rs
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
        // Bytes that are no batch at all: CORRUPT_MESSAGE, as Kafka answers.
        (
            "ok-name",
            Bytes::from_static(b"\0\0\0\0"),
            error::CORRUPT_MESSAGE,
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

/// acks=0 has no answer: a produce the broker refuses (an unknown partition — in a cluster,
/// one another broker leads now) closes the connection, as Kafka does, so the client learns
/// of it and asks for metadata again; one it takes leaves the connection as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_acks0_produce_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(c.produce("zero", 0, batch("first")).await.0, 0);
    let acks0 = |partition: i32| {
        let mut req = ProduceRequest::default();
        req.acks = 0;
        req.timeout_ms = 5000;
        let mut t = produce_request::TopicProduceData::default();
        t.name = topic("zero");
        let mut p = produce_request::PartitionProduceData::default();
        p.index = partition;
        p.records = Some(batch("silent"));
        t.partition_data = vec![p];
        req.topic_data = vec![t];
        RequestKind::Produce(req)
    };
    c.send(ApiKey::Produce, 9, acks0(0)).await;
    // Taken without an answer: the next request's answer comes next.
    assert_eq!(c.produce("zero", 0, batch("after")).await, (0, 2));
    c.send(ApiKey::Produce, 9, acks0(7)).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), c.stream.read(&mut byte))
        .await
        .expect("closed, not left open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection answered: {read:?}"
    );
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
    assert_eq!(running.broker.metrics.connections_rejected.get(), 1);
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

/// A Fetch's `max_bytes` bounds the whole response: only its first batch may exceed it (KIP-74,
/// so a consumer always progresses); a later partition whose next batch does not fit in what
/// is left returns nothing this time (librdkafka's test 0082 got 1.8 MB for a 1 MB limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_returns_an_oversized_batch_only_first() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), |c| c.default_partitions = 3).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let big = "x".repeat(600_000);
    for p in 0..3 {
        // Auto-created with three partitions by the first produce.
        let mut code = c.produce("big", p, batch(&big)).await.0;
        if code != 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            code = c.produce("big", p, batch(&big)).await.0;
        }
        assert_eq!(code, 0, "partition {p}");
    }
    let fetch = |max_bytes: i32| {
        let mut t = fetch_request::FetchTopic::default();
        t.topic = topic("big");
        t.partitions = (0..3)
            .map(|i| {
                let mut p = fetch_request::FetchPartition::default();
                p.partition = i;
                p.partition_max_bytes = 20_000_000;
                p
            })
            .collect();
        let mut req = FetchRequest::default();
        req.max_wait_ms = 0;
        req.max_bytes = max_bytes;
        req.topics = vec![t];
        RequestKind::Fetch(req)
    };
    let sizes = |r: &FetchResponse| -> Vec<usize> {
        r.responses[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0);
                p.records.as_ref().map_or(0, Bytes::len)
            })
            .collect()
    };
    // 1 MB: the first batch (over half of it), nothing more fits.
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, fetch(1_000_000)).await else {
        panic!()
    };
    let got = sizes(&r);
    assert!(got[0] > 600_000 && got[1..] == [0, 0], "{got:?}");
    // 100 kB: still the first batch whole (a consumer must progress), only it.
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, fetch(100_000)).await else {
        panic!()
    };
    let got = sizes(&r);
    assert!(got[0] > 600_000 && got[1..] == [0, 0], "{got:?}");
    // 1.5 MB: two batches.
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, fetch(1_500_000)).await else {
        panic!()
    };
    let got = sizes(&r);
    assert!(got[0] > 0 && got[1] > 0 && got[2] == 0, "{got:?}");
    drop(c);
    running.shutdown().await;
}

/// Backpressure is a full queue, never a refusal: sixteen producers on an append queue of two
/// slots all get their batches in, and the broker counts no refused append — while a batch it
/// must refuse (out of sequence) is counted under its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loaded_broker_with_a_tiny_queue_refuses_nothing() {
    use broker::metrics::Refusal;
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), |c| c.append_queue_capacity = 2).await;
    let addr = running.kafka_addr;
    let mut c = Client::connect(addr).await;
    let mut code = c.produce("loaded", 0, batch("first")).await.0;
    if code != 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        code = c.produce("loaded", 0, batch("first")).await.0;
    }
    assert_eq!(code, 0);
    let producers: Vec<_> = (0..16)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                for n in 0..40 {
                    let (code, _) = c.produce("loaded", 0, batch(&format!("{i}-{n}"))).await;
                    assert_eq!(code, 0, "producer {i}, batch {n}");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    let metrics = &running.broker.metrics;
    let reasons = [
        Refusal::DirectoryFailed,
        Refusal::WriteFailed,
        Refusal::SyncUnconfirmed,
        Refusal::PartitionDeleted,
        Refusal::ProducerState,
        Refusal::TimedOut,
    ];
    for why in reasons {
        assert_eq!(metrics.refused_appends(why), 0, "{why:?}");
    }
    let t = running.broker.store.topic("loaded").unwrap();
    assert_eq!(t.partitions[0].high_watermark(), 1 + 16 * 40);
    // A batch that must be refused is counted under its reason.
    assert_eq!(
        c.produce("loaded", 0, common::idempotent_batch(7, 0, 0, 2))
            .await
            .0,
        0
    );
    let (code, _) = c
        .produce("loaded", 0, common::idempotent_batch(7, 0, 5, 1))
        .await;
    assert_eq!(code, error::OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(metrics.refused_appends(Refusal::ProducerState), 1);
    assert!(metrics
        .render()
        .contains("stillwater_appends_refused_total{reason=\"producer_state\"} 1"));
    drop(c);
    running.shutdown().await;
}
