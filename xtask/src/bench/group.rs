//! `cargo xtask bench group`: N members of one consumer group reading a topic — the classic
//! protocol as a Java consumer runs it (JoinGroup, the leader's range assignment, SyncGroup,
//! offsets from OffsetFetch, heartbeats, commits every second and when a rebalance begins).
//! Prints how long the group takes to form, the records/s its members read together (wrapping
//! around at the end offsets the run started with), and how long a rebalance takes when a member
//! joins and when one leaves — from the JoinGroup or LeaveGroup until every member has its new
//! assignment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    consumer_protocol_assignment, ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
    FetchRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::kafka::{self, ApiVersions, Connection};
use super::stats;
use super::{count, environment_rows, seconds, BrokerArgs, Snapshot, Target};

const JOIN_VERSION: i16 = 7;
const SYNC_VERSION: i16 = 5;
const HEARTBEAT_VERSION: i16 = 4;
const LEAVE_VERSION: i16 = 4;
const COMMIT_VERSION: i16 = 8;
const OFFSET_FETCH_VERSION: i16 = 7;
const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;

#[derive(Args, Clone, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[arg(long, default_value = "bench-group")]
    topic: String,
    /// Partitions of the topic (made with CreateTopics if it does not exist).
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Members of the group while it is measured (one more joins, then one leaves).
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Length of the measured read window.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Before reading, produce until the topic holds at least this many MB of 100-byte values.
    #[arg(long, default_value_t = 100)]
    fill_mb: u64,
    /// Heartbeat interval of the members (Kafka's default is 3000: a rebalance is noticed
    /// within one interval).
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: i32,
}

/// What the members share with the coordinator of the benchmark.
struct Shared {
    plan: Plan,
    /// The generation each live member has its assignment for.
    synced: Mutex<BTreeMap<usize, i32>>,
    changed: Notify,
    measuring: AtomicBool,
    records: AtomicU64,
    bytes: AtomicU64,
}

struct Plan {
    addr: String,
    topic: String,
    group: String,
    fetch_version: i16,
    response_timeout: Duration,
    heartbeat: Duration,
    session_timeout_ms: i32,
    starts: Vec<i64>,
    ends: Vec<i64>,
}

pub async fn group_bench(args: GroupArgs) -> Result<()> {
    if args.members == 0 || args.partitions <= 0 {
        bail!("--members and --partitions must be at least 1");
    }
    let duration = seconds(args.duration_secs, "--duration-secs")?;
    let target = Target::new(&args.broker, args.broker.only_security()?).await?;
    let result = group_against(&args, &target, duration).await;
    let stopped = target.stop().await;
    result?;
    stopped
}

async fn group_against(args: &GroupArgs, target: &Target, duration: Duration) -> Result<()> {
    let response_timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&target.addr, response_timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    for api in [ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::OffsetCommit] {
        if !versions.supports(api) {
            bail!("the broker does not speak {api:?}: no consumer groups");
        }
    }
    let fetch_version = versions.pick(
        ApiKey::Fetch,
        kafka::FETCH_VERSIONS.0,
        kafka::FETCH_VERSIONS.1,
    )?;
    let partitions =
        kafka::prepare_topic(&mut admin, &versions, &args.topic, args.partitions, None).await?;
    let (starts, ends) = super::fetch::filled(
        &mut admin,
        target,
        &versions,
        &args.topic,
        partitions,
        args.fill_mb,
        response_timeout,
    )
    .await?;
    let group = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let shared = Arc::new(Shared {
        plan: Plan {
            addr: target.addr.clone(),
            topic: args.topic.clone(),
            group: group.clone(),
            fetch_version,
            response_timeout,
            heartbeat: Duration::from_millis(args.heartbeat_ms),
            session_timeout_ms: args.session_timeout_ms,
            starts,
            ends,
        },
        synced: Mutex::default(),
        changed: Notify::new(),
        measuring: AtomicBool::new(false),
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });

    // The group forms (a new group waits group.initial.rebalance.delay.ms for more members).
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for index in 0..args.members {
        let (stop, stopped) = watch::channel(false);
        stops.push(stop);
        tasks.push(tokio::spawn(member(index, Arc::clone(&shared), stopped)));
    }
    let (formed_gen, _) = settled(&shared, (0..args.members).collect(), -1).await?;
    let formation = started.elapsed();

    // Reading together.
    let before = Snapshot::take(target).await;
    shared.records.store(0, Ordering::Relaxed);
    shared.bytes.store(0, Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let window_start = Instant::now();
    tokio::time::sleep(duration).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let window = window_start.elapsed().as_secs_f64();
    let after = Snapshot::take(target).await;
    let records = shared.records.load(Ordering::Relaxed);
    let bytes = shared.bytes.load(Ordering::Relaxed);

    // A member joins.
    let joined_at = Instant::now();
    let newcomer = args.members;
    let (stop, stopped) = watch::channel(false);
    stops.push(stop);
    tasks.push(tokio::spawn(member(newcomer, Arc::clone(&shared), stopped)));
    let (join_gen, _) = settled(&shared, (0..=newcomer).collect(), formed_gen).await?;
    let join_time = joined_at.elapsed();

    // A member leaves (LeaveGroup).
    let left_at = Instant::now();
    stops[0].send_replace(true);
    let (_, _) = settled(&shared, (1..=newcomer).collect(), join_gen).await?;
    let leave_time = left_at.elapsed();

    for stop in &stops {
        stop.send_replace(true);
    }
    for task in tasks {
        task.await
            .map_err(|e| anyhow!("member task failed: {e}"))??;
    }

    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "group of {} on topic {} ({}, {} records), range assignment, heartbeats every {} ms, \
             commits every 1 s, Fetch v{fetch_version}",
            count(args.members as i64, "member"),
            args.topic,
            count(i64::from(partitions), "partition"),
            stats::thousands(
                shared
                    .plan
                    .ends
                    .iter()
                    .zip(&shared.plan.starts)
                    .map(|(e, s)| (e - s) as f64)
                    .sum()
            ),
            args.heartbeat_ms
        ),
    );
    table.row(
        "group formed",
        format!(
            "{:.0} ms for {} (includes the broker's group_initial_rebalance_delay_ms for a new group)",
            formation.as_secs_f64() * 1e3,
            count(args.members as i64, "member")
        ),
    );
    table.row(
        "records/s",
        format!(
            "{} ({:.1} MB/s, all members together, {window:.2} s window)",
            stats::thousands(records as f64 / window),
            bytes as f64 / window / 1e6
        ),
    );
    table.row(
        "rebalance: a member joins",
        format!(
            "{:.0} ms (JoinGroup sent → all {} members have the new assignment)",
            join_time.as_secs_f64() * 1e3,
            args.members + 1
        ),
    );
    table.row(
        "rebalance: a member leaves",
        format!(
            "{:.0} ms (LeaveGroup sent → all {} remaining members have the new assignment)",
            leave_time.as_secs_f64() * 1e3,
            args.members
        ),
    );
    environment_rows(&mut table, target, &before, &after);
    println!("Stillwater consumer group benchmark");
    table.print();
    Ok(())
}

/// Wait until exactly the `members` are synced to one generation newer than `after`; that
/// generation.
async fn settled(shared: &Shared, members: Vec<usize>, after: i32) -> Result<(i32, ())> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let notified = shared.changed.notified();
        {
            let synced = shared.synced.lock().map_err(|_| anyhow!("poisoned"))?;
            let gens: Vec<i32> = members
                .iter()
                .filter_map(|m| synced.get(m).copied())
                .collect();
            let same = gens.len() == members.len()
                && synced.len() == members.len()
                && gens.windows(2).all(|w| w[0] == w[1]);
            if same && gens[0] > after {
                return Ok((gens[0], ()));
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => bail!("the group did not settle within 120 s"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn consumer_protocol<T: Encodable>(m: &T) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    let _ = m.encode(&mut buf, 1);
    buf.freeze()
}

/// One member: join, read its partitions, heartbeat and commit, rejoin when told; leave when
/// stopped.
async fn member(index: usize, shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Result<()> {
    let plan = &shared.plan;
    let mut c = Connection::connect(&plan.addr, plan.response_timeout).await?;
    c.set_frame_bytes_max(64 << 20);
    let mut member_id = String::new();
    let mut generation = -1;
    let mut joined = false;
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut next_heartbeat = Instant::now();
    let mut next_commit = Instant::now();
    loop {
        if *stop.borrow() {
            commit(&mut c, plan, generation, &member_id, &positions).await?;
            let req = LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&plan.group)))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member_id))]);
            c.call(LEAVE_VERSION, &req).await.context("LeaveGroup")?;
            shared
                .synced
                .lock()
                .map_err(|_| anyhow!("poisoned"))?
                .remove(&index);
            shared.changed.notify_waiters();
            return Ok(());
        }
        if !joined {
            let (id, gen, mine) = join(&mut c, plan, &member_id).await?;
            member_id = id;
            if gen < 0 {
                continue;
            }
            generation = gen;
            positions = committed(&mut c, plan, &mine).await?;
            joined = true;
            next_heartbeat = Instant::now() + plan.heartbeat;
            next_commit = Instant::now() + Duration::from_secs(1);
            shared
                .synced
                .lock()
                .map_err(|_| anyhow!("poisoned"))?
                .insert(index, generation);
            shared.changed.notify_waiters();
            continue;
        }
        if Instant::now() >= next_heartbeat {
            next_heartbeat = Instant::now() + plan.heartbeat;
            let req = HeartbeatRequest::default()
                .with_group_id(GroupId(s(&plan.group)))
                .with_generation_id(generation)
                .with_member_id(s(&member_id));
            let code = c
                .call(HEARTBEAT_VERSION, &req)
                .await
                .context("Heartbeat")?
                .error_code;
            if code == REBALANCE_IN_PROGRESS {
                commit(&mut c, plan, generation, &member_id, &positions).await?;
                joined = false;
                continue;
            }
            if code != 0 {
                if code == UNKNOWN_MEMBER_ID {
                    member_id.clear();
                }
                joined = false;
                continue;
            }
        }
        if Instant::now() >= next_commit {
            next_commit = Instant::now() + Duration::from_secs(1);
            commit(&mut c, plan, generation, &member_id, &positions).await?;
        }
        if positions.is_empty() {
            tokio::time::sleep(plan.heartbeat / 2).await;
            continue;
        }
        for (p, pos) in positions.iter_mut() {
            let (start, end) = (plan.starts[*p as usize], plan.ends[*p as usize]);
            if *pos >= end || *pos < start {
                *pos = start;
            }
        }
        let req = fetch_request(plan, &positions);
        let response = c.call(plan.fetch_version, &req).await.context("Fetch")?;
        let measuring = shared.measuring.load(Ordering::Relaxed);
        for partition in response.responses.iter().flat_map(|t| t.partitions.iter()) {
            let Some(records) = &partition.records else {
                continue;
            };
            for batch in kafka::walk_batches(records)? {
                if let Some(pos) = positions.get_mut(&partition.partition_index) {
                    *pos = (*pos).max(batch.last_offset + 1);
                }
                if measuring {
                    shared
                        .records
                        .fetch_add(batch.record_count as u64, Ordering::Relaxed);
                    shared
                        .bytes
                        .fetch_add(batch.size_bytes as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// JoinGroup (twice when the broker first hands out the member id), the leader's range
/// assignment, SyncGroup: the member id, generation and this member's partitions.
async fn join(c: &mut Connection, plan: &Plan, member_id: &str) -> Result<(String, i32, Vec<i32>)> {
    let mut member_id = member_id.to_string();
    let subscription = consumer_protocol(
        &ConsumerProtocolSubscription::default().with_topics(vec![s(&plan.topic)]),
    );
    let joined = loop {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&plan.group)))
            .with_session_timeout_ms(plan.session_timeout_ms)
            .with_rebalance_timeout_ms(plan.session_timeout_ms)
            .with_member_id(s(&member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription.clone())]);
        let r = c.call(JOIN_VERSION, &req).await.context("JoinGroup")?;
        if r.error_code == MEMBER_ID_REQUIRED {
            member_id = r.member_id.to_string();
            continue;
        }
        if r.error_code != 0 {
            bail!("JoinGroup: {}", kafka::error_name(r.error_code));
        }
        break r;
    };
    let member_id = joined.member_id.to_string();
    let assignments = if joined.leader == joined.member_id {
        let mut members: Vec<String> = joined
            .members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect();
        members.sort();
        let n = members.len() as i32;
        let total = plan.ends.len() as i32;
        let (each, extra) = (total / n, total % n);
        let mut next = 0;
        members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let k = each + i32::from((i as i32) < extra);
                let mine: Vec<i32> = (next..next + k).collect();
                next += k;
                let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(TopicName(s(&plan.topic)))
                        .with_partitions(mine),
                ]);
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(m))
                    .with_assignment(consumer_protocol(&a))
            })
            .collect()
    } else {
        Vec::new()
    };
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(&plan.group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member_id))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(assignments);
    let r = c.call(SYNC_VERSION, &req).await.context("SyncGroup")?;
    if r.error_code != 0 {
        // The group moved on while this member synced: join again.
        return Ok((member_id, -1, Vec::new()));
    }
    let mut data = r.assignment.clone();
    let mine = if data.len() >= 2 {
        let _ = bytes::Buf::get_i16(&mut data);
        ConsumerProtocolAssignment::decode(&mut data, 1)
            .map(|a| {
                a.assigned_partitions
                    .iter()
                    .flat_map(|tp| tp.partitions.clone())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok((member_id, joined.generation_id, mine))
}

/// The group's committed offsets of `partitions` (the log start where there are none).
async fn committed(
    c: &mut Connection,
    plan: &Plan,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(&plan.group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(&plan.topic)))
            .with_partition_indexes(partitions.to_vec())]));
    let r = c
        .call(OFFSET_FETCH_VERSION, &req)
        .await
        .context("OffsetFetch")?;
    let mut out = BTreeMap::new();
    for p in r.topics.iter().flat_map(|t| t.partitions.iter()) {
        let start = plan.starts[p.partition_index as usize];
        out.insert(
            p.partition_index,
            if p.committed_offset < 0 {
                start
            } else {
                p.committed_offset
            },
        );
    }
    Ok(out)
}

async fn commit(
    c: &mut Connection,
    plan: &Plan,
    generation: i32,
    member_id: &str,
    positions: &BTreeMap<i32, i64>,
) -> Result<()> {
    if positions.is_empty() || generation < 0 {
        return Ok(());
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(&plan.group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(&plan.topic)))
            .with_partitions(
                positions
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )]);
    // A refused commit (the group is rebalancing) is retried at the next one.
    c.call(COMMIT_VERSION, &req).await.context("OffsetCommit")?;
    Ok(())
}

fn fetch_request(plan: &Plan, positions: &BTreeMap<i32, i64>) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(&plan.topic)))
            .with_partitions(
                positions
                    .iter()
                    .map(|(p, o)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )])
}
