//! `__consumer_offsets` stays bounded without compaction: a partition that grows past its
//! live state is checkpointed (its live state written again, the records before it deleted)
//! and loads the same after a restart; the offsets of groups without members expire; a
//! compacted offsets topic (`offsets_topic_compacted`) loads past the batches its cleaner emptied.
#![cfg(not(madsim))]

use std::time::Duration;

use broker::config::Config;
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;
use common::{join, restart, start_with, Client};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn small(c: &mut Config) {
    c.group_initial_rebalance_delay_ms = 0;
    c.offsets_topic_partitions = 1;
    c.offsets_checkpoint_records = 100;
}

/// Commit `offsets[p]` for partitions `0..` of topic "t" as a consumer without a generation
/// (manual assignment) or as `member` of `generation`.
async fn commit(c: &mut Client, group: &str, member: Option<(&StrBytes, i32)>, offsets: &[i64]) {
    let req = commit_request(group, member, offsets);
    let ResponseKind::OffsetCommit(r) = c
        .call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))
        .await
    else {
        panic!()
    };
    for p in &r.topics[0].partitions {
        assert_eq!(p.error_code, 0, "commit of {group}");
    }
}

fn commit_request(
    group: &str,
    member: Option<(&StrBytes, i32)>,
    offsets: &[i64],
) -> OffsetCommitRequest {
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partitions = offsets
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
            p.partition_index = i as i32;
            p.committed_offset = *o;
            p
        })
        .collect();
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s(group));
    match member {
        Some((id, generation)) => {
            req.member_id = id.clone();
            req.generation_id_or_member_epoch = generation;
        }
        None => req.generation_id_or_member_epoch = -1,
    }
    req.topics = vec![t];
    req
}

/// The group's committed offsets of topic "t", by partition (-1: none).
async fn committed(c: &mut Client, group: &str, partitions: i32) -> Vec<i64> {
    let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s(group));
    let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
    t.name = TopicName(s("t"));
    t.partition_indexes = (0..partitions).collect();
    g.topics = Some(vec![t]);
    let mut req = OffsetFetchRequest::default();
    req.groups = vec![g];
    let ResponseKind::OffsetFetch(r) = c
        .call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(req))
        .await
    else {
        panic!()
    };
    r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

async fn group_state(c: &mut Client, group: &str) -> (String, usize) {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(s(group))];
    let ResponseKind::DescribeGroups(r) = c
        .call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(req))
        .await
    else {
        panic!()
    };
    let g = &r.groups[0];
    (g.group_state.to_string(), g.members.len())
}

/// Topic "t" with three partitions.
async fn create_t(c: &mut Client) {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(s("t"));
    t.num_partitions = 3;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let ResponseKind::CreateTopics(r) = c
        .call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_the_offsets_topic_is_checkpointed_and_loads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start_with(dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    create_t(&mut c).await;
    // A group with a member (its metadata must survive the checkpoint) and one without.
    let (member, generation) = join(&mut c, "members", 5).await;
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(s("members"));
    sync.generation_id = generation;
    sync.member_id = member.clone();
    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
    a.member_id = member.clone();
    a.assignment = Bytes::from_static(b"all of t");
    sync.assignments = vec![a];
    let ResponseKind::SyncGroup(r) = c
        .call(ApiKey::SyncGroup, 5, RequestKind::SyncGroup(sync))
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    for round in 0..120i64 {
        commit(&mut c, "manual", None, &[round, round + 1, round + 2]).await;
        commit(
            &mut c,
            "members",
            Some((&member, generation)),
            &[10 * round],
        )
        .await;
    }
    let offsets = running.broker.store.topic("__consumer_offsets").unwrap();
    let p = offsets.partitions[0].clone();
    let (start, end) = (p.log_start_offset(), p.high_watermark());
    assert!(
        start > 0,
        "the partition was never checkpointed ({end} records)"
    );
    assert!(
        end - start < 150,
        "{} records kept past the log start of {start}",
        end - start
    );
    assert_eq!(committed(&mut c, "manual", 3).await, vec![119, 120, 121]);
    drop(c);
    running = restart(running, dir.path(), small).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(committed(&mut c, "manual", 3).await, vec![119, 120, 121]);
    assert_eq!(committed(&mut c, "members", 1).await, vec![1190]);
    assert_eq!(group_state(&mut c, "members").await, ("Stable".into(), 1));
    // The member goes on where it was: same generation, heartbeats accepted.
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(s("members"));
    hb.generation_id = generation;
    hb.member_id = member;
    let ResponseKind::Heartbeat(r) = c
        .call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(hb))
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    drop(c);
    running.shutdown().await;
}

fn expiring(c: &mut Config) {
    small(c);
    // Long enough that the read right after the commit sees it on a loaded machine (at 300 ms
    // it once expired first while a sweep used both cores); the test waits up to 10 s for it.
    c.offsets_retention_ms = 2_000;
    c.offsets_retention_check_interval_ms = 50;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_of_a_group_without_members_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start_with(dir.path(), expiring).await;
    let mut c = Client::connect(running.kafka_addr).await;
    create_t(&mut c).await;
    commit(&mut c, "abandoned", None, &[5, 6]).await;
    assert_eq!(committed(&mut c, "abandoned", 2).await, vec![5, 6]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while committed(&mut c, "abandoned", 2).await != vec![-1, -1] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the offsets never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ResponseKind::DescribeGroups(r) = c
        .call(ApiKey::DescribeGroups, 5, {
            let mut req = DescribeGroupsRequest::default();
            req.groups = vec![GroupId(s("abandoned"))];
            RequestKind::DescribeGroups(req)
        })
        .await
    else {
        panic!()
    };
    assert_eq!(r.groups[0].group_state.as_str(), "Dead");
    // Gone for good: the tombstones are in the log.
    drop(c);
    running = restart(running, dir.path(), expiring).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(committed(&mut c, "abandoned", 2).await, vec![-1, -1]);
    drop(c);
    running.shutdown().await;
}

/// Commits sent one after another on a connection without waiting for their answers (as
/// librdkafka's asynchronous commits are) take effect in the order they were sent, whatever
/// order their writes' durability is reported in: OffsetFetch answers the last one, also after
/// a restart (librdkafka's test 0030 once read back an older commit than the last acknowledged).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_commits_take_effect_in_the_order_they_were_sent() {
    fn one_partition(c: &mut Config) {
        c.group_initial_rebalance_delay_ms = 0;
        c.offsets_topic_partitions = 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut running = start_with(dir.path(), one_partition).await;
    let mut c = Client::connect(running.kafka_addr).await;
    create_t(&mut c).await;
    let mut last = 0;
    for round in 0..5 {
        let mut sent = Vec::new();
        for _ in 0..60 {
            last += 1;
            let req = commit_request("async", None, &[last, 2 * last]);
            sent.push(
                c.send(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))
                    .await,
            );
        }
        for id in sent {
            let ResponseKind::OffsetCommit(r) = c.receive(ApiKey::OffsetCommit, 8, id).await else {
                panic!()
            };
            for p in &r.topics[0].partitions {
                assert_eq!(p.error_code, 0, "round {round}");
            }
        }
        assert_eq!(
            committed(&mut c, "async", 2).await,
            vec![last, 2 * last],
            "round {round}: the last acknowledged commit"
        );
    }
    drop(c);
    running = restart(running, dir.path(), one_partition).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(committed(&mut c, "async", 2).await, vec![last, 2 * last]);
    drop(c);
    running.shutdown().await;
}

fn compacted(c: &mut Config) {
    c.group_initial_rebalance_delay_ms = 0;
    c.offsets_topic_partitions = 1;
    c.offsets_topic_compacted = true;
    c.offsets_checkpoint_records = 100_000_000;
    c.offsets_topic_segment_bytes = 16 << 10;
    c.log_cleaner_backoff_ms = 50;
}

/// Data: 24,000 commits of 3 offsets by 4 groups (~6 MB in 16 KiB segments). Compacted, every
/// batch but the last few of each key is emptied: more than 1 MiB of 61-byte headers in a row,
/// more than one read of the coordinator's load returns. The load reads past them (it once
/// read the same emptied batches again forever, and the coordinator answered nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_offsets_topic_loads_past_runs_of_emptied_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start_with(dir.path(), compacted).await;
    let mut c = Client::connect(running.kafka_addr).await;
    create_t(&mut c).await;
    let mut committers = Vec::new();
    for g in 0..4 {
        let addr = running.kafka_addr;
        committers.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for round in 0..6_000i64 {
                commit(
                    &mut c,
                    &format!("g{g}"),
                    None,
                    &[round, round + g, round + 2 * g],
                )
                .await;
            }
        }));
    }
    for t in committers {
        t.await.unwrap();
    }
    let metrics = running.broker.metrics.clone();
    tokio::time::timeout(Duration::from_secs(120), async {
        while metrics.cleaner_records_removed.get() < 60_000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the cleaner removed {} records",
            metrics.cleaner_records_removed.get()
        )
    });
    drop(c);
    running = restart(running, dir.path(), compacted).await;
    let mut c = Client::connect(running.kafka_addr).await;
    for g in 0..4i64 {
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            committed(&mut c, &format!("g{g}"), 3),
        )
        .await
        .expect("the coordinator answers once it has loaded its topic");
        assert_eq!(got, vec![5_999, 5_999 + g, 5_999 + 2 * g]);
    }
    drop(c);
    running.shutdown().await;
}
