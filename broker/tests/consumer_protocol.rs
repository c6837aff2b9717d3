//! The consumer group protocol (KIP-848) at the wire, against the broker in this process:
//! two members share a topic's partitions with revocation before assignment (a partition is
//! never given while another member holds it), Kafka's errors for stale epochs and unknown
//! members, offsets committed with member epochs, and a restart after which the members go
//! on at their epochs with their assignments (the group's records loaded from
//! `__consumer_offsets`, also past a checkpoint). Data: one topic of 6 partitions, two members.
#![cfg(not(madsim))]

use std::collections::BTreeSet;

use broker::config::Config;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;
use common::{restart, start_with, Client};

const GROUP: &str = "kip848";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn small(c: &mut Config) {
    c.offsets_topic_partitions = 1;
    c.offsets_checkpoint_records = 100;
}

async fn create(c: &mut Client, name: &str, partitions: i32) -> uuid::Uuid {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(s(name));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(5000);
    let ResponseKind::CreateTopics(r) = c
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);
    r.topics[0].topic_id
}

/// A heartbeat of `member` of group [`GROUP`] at `epoch`; `owned`: the partitions it says it
/// owns (none: not told); a join (epoch 0) subscribes to "t".
async fn beat(
    c: &mut Client,
    member: &str,
    epoch: i32,
    owned: Option<&BTreeSet<i32>>,
    topic: uuid::Uuid,
) -> ConsumerGroupHeartbeatResponse {
    beat_as(c, GROUP, (member, None), epoch, owned, topic).await
}

/// [`beat`] in `group`, by `member` with its static instance id, if any.
async fn beat_as(
    c: &mut Client,
    group: &str,
    (member, instance): (&str, Option<&str>),
    epoch: i32,
    owned: Option<&BTreeSet<i32>>,
    topic: uuid::Uuid,
) -> ConsumerGroupHeartbeatResponse {
    let mut req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_instance_id(instance.map(s))
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 });
    if epoch == 0 {
        req.subscribed_topic_names = Some(vec![TopicName(s("t"))]);
        req.topic_partitions = Some(vec![]);
    } else if let Some(owned) = owned {
        req.topic_partitions = Some(vec![
            consumer_group_heartbeat_request::TopicPartitions::default()
                .with_topic_id(topic)
                .with_partitions(owned.iter().copied().collect()),
        ]);
    }
    let ResponseKind::ConsumerGroupHeartbeat(r) = c
        .call(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(req),
        )
        .await
    else {
        panic!()
    };
    r
}

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<i32>> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect()
    })
}

async fn commit(c: &mut Client, member: &str, epoch: i32, partition: i32, offset: i64) -> i16 {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(partition)
        .with_committed_offset(offset);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s("t")))
        .with_partitions(vec![p]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![t]);
    let ResponseKind::OffsetCommit(r) = c
        .call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(req))
        .await
    else {
        panic!()
    };
    r.topics[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_revoking_first_and_keep_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start_with(dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let t = create(&mut c, "t", 6).await;

    // The first member gets everything at epoch 2 (a group starts at 1, as in Kafka 4.4).
    let a = beat(&mut c, "a", 0, None, t).await;
    assert_eq!(
        (a.error_code, a.member_epoch),
        (0, 2),
        "{:?}",
        a.error_message
    );
    let mut a_owns = assigned(&a).unwrap();
    assert_eq!(a_owns.len(), 6);

    // A second member joins: epoch 3, but it waits for what "a" still holds.
    let b = beat(&mut c, "b", 0, None, t).await;
    assert_eq!((b.error_code, b.member_epoch), (0, 3));
    let mut b_owns = assigned(&b).unwrap();
    assert!(b_owns.is_empty(), "nothing free yet: {b_owns:?}");

    // "a" is told to give three up and keeps its epoch until it has.
    let r = beat(&mut c, "a", 2, Some(&a_owns), t).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 2));
    let kept = assigned(&r).unwrap();
    assert_eq!(kept.len(), 3);
    // Still owning them: no change, and "b" gets nothing meanwhile.
    let r = beat(&mut c, "a", 2, Some(&a_owns), t).await;
    assert_eq!((r.member_epoch, r.assignment.is_none()), (2, true));
    let r = beat(&mut c, "b", 3, Some(&b_owns), t).await;
    assert!(assigned(&r).is_none_or(|p| p.is_empty()));
    // A commit at its epoch still goes.
    let first = *a_owns.iter().next().unwrap();
    assert_eq!(commit(&mut c, "a", 2, first, 42).await, 0);
    // Revoked: "a" moves to epoch 3, and "b" takes the released three.
    a_owns = kept;
    let r = beat(&mut c, "a", 2, Some(&a_owns), t).await;
    assert_eq!(r.member_epoch, 3);
    let r = beat(&mut c, "b", 3, Some(&b_owns), t).await;
    b_owns = assigned(&r).unwrap();
    assert_eq!(b_owns.len(), 3);
    assert!(a_owns.is_disjoint(&b_owns));

    // Kafka's errors: an epoch from the future is fenced, an unknown member is unknown. A
    // commit at the previous epoch goes for a partition still held (KIP-1251), not for one
    // given away, nor at an older epoch.
    let r = beat(&mut c, "a", 7, Some(&a_owns), t).await;
    assert_eq!(r.error_code, 110, "FENCED_MEMBER_EPOCH");
    let r = beat(&mut c, "nobody", 3, None, t).await;
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    let moved = *b_owns.iter().next().unwrap();
    let held = *a_owns.iter().next().unwrap();
    assert_eq!(
        commit(&mut c, "a", 2, moved, 1).await,
        113,
        "STALE_MEMBER_EPOCH"
    );
    assert_eq!(commit(&mut c, "a", 2, held, 5).await, 0);
    assert_eq!(
        commit(&mut c, "a", 1, held, 5).await,
        113,
        "STALE_MEMBER_EPOCH"
    );
    assert_eq!(commit(&mut c, "a", 3, held, 6).await, 0);

    // Many heartbeats (past the checkpoint bound), then a restart: the members go on.
    for _ in 0..150 {
        beat(&mut c, "a", 3, Some(&a_owns), t).await;
        commit(&mut c, "a", 3, held, 7).await;
    }
    running = restart(running, dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let r = beat(&mut c, "a", 3, Some(&a_owns), t).await;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 3),
        "{:?}",
        r.error_message
    );
    let r = beat(&mut c, "b", 3, Some(&b_owns), t).await;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 3),
        "{:?}",
        r.error_message
    );
    let described = c
        .call(
            ApiKey::ConsumerGroupDescribe,
            1,
            RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]),
            ),
        )
        .await;
    let ResponseKind::ConsumerGroupDescribe(d) = described else {
        panic!()
    };
    let g = &d.groups[0];
    assert_eq!((g.group_state.as_str(), g.group_epoch), ("Stable", 3));
    let held: usize = g
        .members
        .iter()
        .map(|m| {
            m.assignment
                .topic_partitions
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(held, 6);

    // "b" leaves for good: the group's epoch moves on and "a" is given everything again.
    let r = beat(&mut c, "b", -1, None, t).await;
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    let r = beat(&mut c, "a", 3, Some(&a_owns), t).await;
    assert_eq!(r.member_epoch, 4);
    assert_eq!(assigned(&r).unwrap().len(), 6);
    running.shutdown().await;
}

/// Static members (`group.instance.id`): one that leaves for a while (epoch -2) keeps its
/// partitions for its return, which under a new member id takes them back at its epoch with no
/// new group epoch; while it is still in the group, another member with its instance id is
/// refused UNRELEASED_INSTANCE_ID. Data: one topic of 4 partitions, two static members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_comes_back_to_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let t = create(&mut c, "t", 4).await;
    let g = "kip848-static";
    // A join refused for its regular expression leaves nothing behind: no group, no member.
    let bad = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(g)))
        .with_member_id(s("ghost"))
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_regex(Some(s("(unclosed")))
        .with_topic_partitions(Some(vec![]));
    let ResponseKind::ConsumerGroupHeartbeat(r) = c
        .call(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(bad),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 128, "INVALID_REGULAR_EXPRESSION");
    let described = c
        .call(
            ApiKey::ConsumerGroupDescribe,
            1,
            RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(g))]),
            ),
        )
        .await;
    let ResponseKind::ConsumerGroupDescribe(d) = described else {
        panic!()
    };
    assert_eq!(
        d.groups[0].error_code, 69,
        "GROUP_ID_NOT_FOUND: nothing was made"
    );
    let a = beat_as(&mut c, g, ("a1", Some("i-a")), 0, None, t).await;
    assert_eq!(
        (a.error_code, a.member_epoch),
        (0, 2),
        "{:?}",
        a.error_message
    );
    let b = beat_as(&mut c, g, ("b1", Some("i-b")), 0, None, t).await;
    assert_eq!(b.member_epoch, 3);
    // "a" gives two up; "b" takes them: both at epoch 3.
    let all = assigned(&a).unwrap();
    let r = beat_as(&mut c, g, ("a1", Some("i-a")), 2, Some(&all), t).await;
    let a_owns = assigned(&r).unwrap();
    assert_eq!(a_owns.len(), 2);
    let r = beat_as(&mut c, g, ("a1", Some("i-a")), 2, Some(&a_owns), t).await;
    assert_eq!(r.member_epoch, 3);
    let r = beat_as(&mut c, g, ("b1", Some("i-b")), 3, Some(&BTreeSet::new()), t).await;
    let b_owns = assigned(&r).unwrap();
    assert_eq!(b_owns.len(), 2);

    // While "a1" is in the group, its instance id is not free.
    let r = beat_as(&mut c, g, ("a2", Some("i-a")), 0, None, t).await;
    assert_eq!(
        r.error_code, 111,
        "UNRELEASED_INSTANCE_ID: {:?}",
        r.error_message
    );
    // It leaves for a while; back under a new id, it has its partitions and its epoch.
    let r = beat_as(&mut c, g, ("a1", Some("i-a")), -2, None, t).await;
    assert_eq!((r.error_code, r.member_epoch), (0, -2));
    let r = beat_as(&mut c, g, ("a2", Some("i-a")), 0, None, t).await;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 3),
        "{:?}",
        r.error_message
    );
    assert_eq!(assigned(&r).unwrap(), a_owns);
    // The group's epoch did not move: "b" goes on at 3 with its partitions.
    let r = beat_as(&mut c, g, ("b1", Some("i-b")), 3, Some(&b_owns), t).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 3));
    // The old id is gone, across a restart too; the new one holds the partitions.
    let running = restart(running, dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let r = beat_as(&mut c, g, ("a1", Some("i-a")), 3, Some(&a_owns), t).await;
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    let r = beat_as(&mut c, g, ("a2", Some("i-a")), 3, Some(&a_owns), t).await;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 3),
        "{:?}",
        r.error_message
    );
    let r = beat_as(&mut c, g, ("b1", Some("i-b")), 3, Some(&b_owns), t).await;
    assert_eq!((r.error_code, r.member_epoch, r.assignment), (0, 3, None));
    running.shutdown().await;
}

/// The partitions `r` assigns, by topic id.
fn assigned_by_topic(
    r: &ConsumerGroupHeartbeatResponse,
) -> std::collections::BTreeMap<uuid::Uuid, usize> {
    r.assignment
        .iter()
        .flat_map(|a| &a.topic_partitions)
        .map(|t| (t.topic_id, t.partitions.len()))
        .collect()
}

/// A regular expression new to the group matches nothing in the heartbeat that brings it in
/// (its topics come at the next heartbeat, a new epoch), as Kafka resolves it in the
/// background; the named topics come at once. A commit at generation -1 from outside group
/// management (a member id given, as librdkafka's consumer gives one) makes no member and is
/// taken by an empty or absent group; a topic the cluster lacks is UNKNOWN_TOPIC_OR_PARTITION.
/// Data: topics of 2, 3 and 4 partitions, one member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_regular_expression_is_resolved_at_the_next_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let named = create(&mut c, "named", 2).await;
    let re1 = create(&mut c, "re-one", 3).await;
    let re2 = create(&mut c, "re-two", 4).await;
    let g = "kip848-regex";
    let call = |req: ConsumerGroupHeartbeatRequest| {
        RequestKind::ConsumerGroupHeartbeat(req.with_group_id(GroupId(s(g))))
    };
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_member_id(s("m"))
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("named"))]))
        .with_subscribed_topic_regex(Some(s("re-.*")))
        .with_topic_partitions(Some(vec![]));
    let ResponseKind::ConsumerGroupHeartbeat(first) =
        c.call(ApiKey::ConsumerGroupHeartbeat, 1, call(join)).await
    else {
        panic!()
    };
    assert_eq!(first.error_code, 0, "{first:?}");
    assert_eq!(
        assigned_by_topic(&first),
        [(named, 2)].into_iter().collect(),
        "the named topic first"
    );
    let owned = vec![consumer_group_heartbeat_request::TopicPartitions::default()
        .with_topic_id(named)
        .with_partitions(vec![0, 1])];
    let next = ConsumerGroupHeartbeatRequest::default()
        .with_member_id(s("m"))
        .with_member_epoch(first.member_epoch)
        .with_topic_partitions(Some(owned));
    let ResponseKind::ConsumerGroupHeartbeat(second) =
        c.call(ApiKey::ConsumerGroupHeartbeat, 1, call(next)).await
    else {
        panic!()
    };
    assert_eq!(second.error_code, 0, "{second:?}");
    assert_eq!(second.member_epoch, first.member_epoch + 1);
    assert_eq!(
        assigned_by_topic(&second),
        [(named, 2), (re1, 3), (re2, 4)].into_iter().collect(),
        "the expression's topics at the next heartbeat"
    );

    let simple = |topic: &str| {
        let p = offset_commit_request::OffsetCommitRequestPartition::default()
            .with_partition_index(0)
            .with_committed_offset(7);
        let t = offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![p]);
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("kip848-simple")))
                .with_member_id(s("self-named"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![t]),
        )
    };
    for (topic, code) in [("no-such-topic", 3), ("named", 0), ("named", 0)] {
        let ResponseKind::OffsetCommit(r) = c.call(ApiKey::OffsetCommit, 9, simple(topic)).await
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, code, "{topic}");
    }
}

/// The first heartbeats of a broker that has no `__consumer_offsets` yet (the first write
/// makes it): a second member joining right after the first gets nothing the first holds.
/// Data: one topic of 5 partitions, two members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_while_the_offsets_topic_is_made_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), |c| c.offsets_topic_partitions = 50).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let t = create(&mut c, "t", 5).await;
    let a = beat(&mut c, "first", 0, None, t).await;
    assert_eq!(a.error_code, 0, "{a:?}");
    assert_eq!(assigned(&a), Some((0..5).collect()));
    let b = beat(&mut c, "second", 0, None, t).await;
    assert_eq!(b.error_code, 0, "{b:?}");
    assert_eq!(
        assigned(&b),
        Some(BTreeSet::new()),
        "held by the first: {b:?}"
    );
}
