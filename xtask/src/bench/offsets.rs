//! `cargo xtask bench offsets`: many consumer groups committing offsets, on a fresh release
//! broker per way of bounding `__consumer_offsets`, in one run — `checkpoints` (the
//! coordinator writes its live state again and deletes what is below it;
//! `offsets_topic_compacted=false`), `compact` (checkpoints off: `offsets_checkpoint_records`
//! at its maximum, as Kafka bounds the topic) and `both` (the default). Per way: commits/s and their latency, the broker's
//! CPU per commit, the topic's size on disk through the load and after it, and how long a
//! restart takes until every group's last commit is served again.
//!
//! Each group commits `--partitions` offsets of one topic every `--interval-ms`, as a consumer
//! with auto-commit does (OffsetCommit v8 as a standalone consumer sends it: generation -1, no
//! member); the groups are spread over `--connections` connections with one request in
//! flight each. A connection that falls behind its schedule skips the rounds it missed, as an
//! auto-commit does, so the load ends on time and says how many commits it managed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::broker_process::SpawnedBroker;
use super::kafka::{self, ApiVersions, Connection};
use super::stats::{self, Latency, Table};
use super::BrokerArgs;

const COMMIT_VERSION: i16 = 8;
const OFFSET_FETCH_VERSION: i16 = 7;
/// COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE: asked again.
const NOT_YET: [i16; 3] = [14, 16, 15];
const TOPIC: &str = "bench-offsets";
/// `offsets_checkpoint_records` at the top of its range: checkpoints off in practice.
const CHECKPOINTS_OFF: &str = "100000000";

#[derive(Args, Clone, Debug)]
pub struct OffsetsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Consumer groups committing (300 × 4 partitions every 100 ms is about what this 2-core
    /// machine commits at once; more fall behind and skip rounds).
    #[arg(long, default_value_t = 300)]
    groups: usize,
    /// Partitions each commit names (the topic has this many).
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Each group commits this often.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Length of the load.
    #[arg(long, default_value_t = 180)]
    secs: u64,
    /// Connections the groups are spread over (one request in flight each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// `offsets_topic_segment_bytes` of every broker: checkpoints delete whole segments, and
    /// the cleaner never cleans the active one.
    #[arg(long, default_value_t = 1 << 20)]
    segment_bytes: u64,
    /// Ways of bounding the topic to compare, in order: checkpoints, compact, both.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "checkpoints,compact,both"
    )]
    schemes: Vec<String>,
}

struct Measured {
    scheme: String,
    commits: u64,
    took: Duration,
    latency: Latency,
    cpu: Option<Duration>,
    /// The topic's bytes on disk, sampled every second of the load: (seconds, bytes).
    sizes: Vec<(f64, u64)>,
    /// 30 s after the load.
    settled_bytes: u64,
    /// From the restarted process's start until it listens, and until every group's last
    /// commit is served.
    listening: Duration,
    served: Duration,
    metrics: stats::MetricsSample,
}

pub async fn offsets_bench(args: OffsetsArgs) -> Result<()> {
    if args.groups == 0 || args.partitions < 1 || args.connections == 0 || args.secs == 0 {
        bail!("--groups, --partitions, --connections and --secs must be at least 1");
    }
    let load_average_before = stats::load_average();
    let mut measured = Vec::new();
    for scheme in &args.schemes {
        let settings: Vec<String> = match scheme.as_str() {
            "checkpoints" => vec!["--set=offsets_topic_compacted=false".into()],
            "compact" => vec![
                "--set=offsets_topic_compacted=true".into(),
                format!("--set=offsets_checkpoint_records={CHECKPOINTS_OFF}"),
            ],
            "both" => vec!["--set=offsets_topic_compacted=true".into()],
            other => bail!("--schemes {other:?}: expected checkpoints, compact or both"),
        };
        measured.push(run_one(&args, scheme, settings).await?);
    }
    let mut table = Table::default();
    table.row("command", std::env::args().collect::<Vec<_>>().join(" "));
    table.row(
        "workload",
        format!(
            "a release broker per scheme on this machine ({} CPUs), __consumer_offsets of 50 \
             partitions, segments of {} bytes; {} groups each committing {} partitions every {} \
             ms for {} s (OffsetCommit v8, generation -1), over {} connections with one \
             request in flight each; log_cleaner_backoff_ms=1000; the topic's size is what \
             DescribeLogDirs says",
            stats::cpu_count(),
            args.segment_bytes,
            stats::thousands(args.groups as f64),
            args.partitions,
            args.interval_ms,
            args.secs,
            args.connections,
        ),
    );
    table.row("load average before", load_average_before);
    let due = (args.groups as u64 * args.secs * 1000 / args.interval_ms.max(1)) as f64;
    let first = measured
        .first()
        .map(|m| (m.latency.quantile_ms(0.99), m.served));
    for m in &measured {
        let secs = m.took.as_secs_f64().max(1e-9);
        let metric = |name: &str| m.metrics.get(name).copied().unwrap_or(0.0);
        let quarter = |q: usize| {
            m.sizes
                .get((m.sizes.len() * q / 4).min(m.sizes.len().saturating_sub(1)))
                .map(|(_, b)| format!("{:.1}", *b as f64 / 1e6))
                .unwrap_or_else(|| "-".into())
        };
        let peak = m.sizes.iter().map(|(_, b)| *b).max().unwrap_or(0);
        table.row(
            m.scheme.clone(),
            format!(
                "{} commits/s ({:.0} % of those due); commit p50/p99/max {:.1}/{:.1}/{:.0} ms{}; broker CPU {}; \
                 topic MB at 1/4, 1/2, 3/4, end of the load {}, {}, {}, {} (peak {:.1}), \
                 30 s later {:.1}; restart: listening after {:.2} s, every group's offsets \
                 served after {:.2} s{}; cleanings {}, MB freed {:.1}",
                stats::thousands(m.commits as f64 / secs),
                100.0 * m.commits as f64 / due.max(1.0),
                m.latency.quantile_ms(0.5),
                m.latency.quantile_ms(0.99),
                m.latency.max_ms(),
                first
                    .map(|(p, _)| format!(
                        " (p99 {:.2}x the first)",
                        m.latency.quantile_ms(0.99) / p
                    ))
                    .unwrap_or_default(),
                m.cpu
                    .map(|c| format!(
                        "{:.1} µs per commit",
                        c.as_secs_f64() * 1e6 / m.commits.max(1) as f64
                    ))
                    .unwrap_or_else(|| "n/a".into()),
                quarter(1),
                quarter(2),
                quarter(3),
                quarter(4),
                peak as f64 / 1e6,
                m.settled_bytes as f64 / 1e6,
                m.listening.as_secs_f64(),
                m.served.as_secs_f64(),
                first
                    .map(|(_, s)| format!(
                        " ({:.2}x the first)",
                        m.served.as_secs_f64() / s.as_secs_f64().max(1e-9)
                    ))
                    .unwrap_or_default(),
                metric("stillwater_cleaner_runs_total"),
                metric("stillwater_cleaner_bytes_freed_total") / 1e6,
            ),
        );
    }
    println!("Stillwater __consumer_offsets benchmark");
    table.print();
    Ok(())
}

async fn run_one(args: &OffsetsArgs, scheme: &str, settings: Vec<String>) -> Result<Measured> {
    let mut broker_args = args.broker.clone();
    broker_args.spawn_broker = true;
    let mut settings = settings;
    settings.push("--set=log_cleaner_backoff_ms=1000".into());
    settings.push(format!(
        "--set=offsets_topic_segment_bytes={}",
        args.segment_bytes
    ));
    let mut broker = SpawnedBroker::start_with(&broker_args, |_| settings.clone()).await?;
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let outcome = async {
        let mut admin = Connection::connect(&broker.addr, timeout).await?;
        let versions = ApiVersions::fetch(&mut admin).await?;
        kafka::prepare_topic(&mut admin, &versions, TOPIC, args.partitions, None).await?;
        // The first commit makes __consumer_offsets (as Kafka does): made before the clock runs.
        commit_until_accepted(&mut admin, "bench-offsets-0", args.partitions, 0).await?;
        load(args, &broker).await
    }
    .await;
    let (took, latency, sizes, rounds) = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = broker.stop().await;
            return Err(e);
        }
    };
    tokio::time::sleep(Duration::from_secs(30)).await;
    let settled_bytes = match Connection::connect(&broker.addr, timeout).await {
        Ok(mut c) => offsets_bytes(&mut c).await,
        Err(e) => Err(e),
    };
    let settled_bytes = match settled_bytes {
        Ok(b) => b,
        Err(e) => {
            let _ = broker.stop().await;
            return Err(e);
        }
    };
    let metrics = stats::scrape_metrics(&broker.metrics_addr).await;
    let cpu = stats::process_cpu_time(broker.child.id()).ok();
    let restarted = broker.restart().await;
    let served = match restarted {
        Ok(listening) => all_served(args, &broker.addr, &rounds, timeout)
            .await
            .map(|served| (listening, served + listening)),
        Err(e) => Err(e),
    };
    broker.stop().await?;
    let (listening, served) = served?;
    Ok(Measured {
        scheme: scheme.to_string(),
        commits: latency.count(),
        took,
        latency,
        cpu,
        sizes,
        settled_bytes,
        listening,
        served,
        metrics: metrics?,
    })
}

/// Commit for every group on its schedule for `--secs`: the time it took, the latency of every
/// commit, the topic's size each second, and the last round each group committed (its offset
/// is the round).
async fn load(
    args: &OffsetsArgs,
    broker: &SpawnedBroker,
) -> Result<(Duration, Latency, Vec<(f64, u64)>, Arc<Vec<AtomicU64>>)> {
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let rounds: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.groups).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let until = started + Duration::from_secs(args.secs);
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let mut connection = Connection::connect(&broker.addr, timeout).await?;
        let groups: Vec<usize> = (c..args.groups).step_by(args.connections).collect();
        let (rounds, partitions) = (rounds.clone(), args.partitions);
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::new()?;
            let mut round = 1u64;
            loop {
                let due = started + interval * (round - 1) as u32;
                if due >= until {
                    return Ok::<_, anyhow::Error>(latency);
                }
                tokio::time::sleep_until(due).await;
                for &g in &groups {
                    let sent = Instant::now();
                    commit(&mut connection, &group_name(g), partitions, round as i64).await?;
                    latency.record(sent.elapsed());
                    rounds[g].store(round, Ordering::Relaxed);
                }
                // A connection that fell behind skips the rounds it missed (a consumer's
                // auto-commit commits its latest position, not every one it passed).
                let now_round = (started.elapsed().as_nanos() / interval.as_nanos()) as u64 + 1;
                round = (round + 1).max(now_round);
            }
        }));
    }
    let mut sizes = Vec::new();
    let mut sizer = Connection::connect(&broker.addr, timeout).await?;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sizes.push((
            started.elapsed().as_secs_f64(),
            offsets_bytes(&mut sizer).await?,
        ));
    }
    // The last rounds' commits end a little after `until`.
    let mut latency = Latency::new()?;
    for task in tasks {
        latency.merge(&task.await.context("a committing task")??)?;
    }
    sizes.push((
        started.elapsed().as_secs_f64(),
        offsets_bytes(&mut sizer).await?,
    ));
    Ok((started.elapsed(), latency, sizes, rounds))
}

fn group_name(g: usize) -> String {
    format!("bench-offsets-{g}")
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Commit `offset` for every partition of the topic, as group `group`: an error code fails the
/// benchmark (nothing in this load should be refused).
async fn commit(c: &mut Connection, group: &str, partitions: i32, offset: i64) -> Result<()> {
    let code = try_commit(c, group, partitions, offset).await?;
    if code != 0 {
        bail!(
            "OffsetCommit of {group} refused: {}",
            kafka::error_name(code)
        );
    }
    Ok(())
}

async fn try_commit(c: &mut Connection, group: &str, partitions: i32, offset: i64) -> Result<i16> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(text(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(text(TOPIC)))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                    })
                    .collect(),
            )]);
    let r = c.call(COMMIT_VERSION, &req).await.context("OffsetCommit")?;
    Ok(r.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.error_code)
        .find(|&e| e != 0)
        .unwrap_or(0))
}

/// Commit until the coordinator takes it (it makes its topic on the first commit).
async fn commit_until_accepted(
    c: &mut Connection,
    group: &str,
    partitions: i32,
    offset: i64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let code = try_commit(c, group, partitions, offset).await?;
        if code == 0 {
            return Ok(());
        }
        if !NOT_YET.contains(&code) || Instant::now() > deadline {
            bail!(
                "the first OffsetCommit refused: {}",
                kafka::error_name(code)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From now until every group's offsets are what it last committed (asked again while the
/// coordinator loads).
async fn all_served(
    args: &OffsetsArgs,
    addr: &str,
    rounds: &[AtomicU64],
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut c = loop {
        match Connection::connect(addr, timeout).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    for (g, round) in rounds.iter().enumerate() {
        let expected = round.load(Ordering::Relaxed) as i64;
        loop {
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(text(&group_name(g))))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(text(TOPIC)))
                    .with_partition_indexes((0..args.partitions).collect())]));
            let r = c
                .call(OFFSET_FETCH_VERSION, &req)
                .await
                .context("OffsetFetch")?;
            if NOT_YET.contains(&r.error_code) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let got: Vec<i64> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.committed_offset)
                .collect();
            if r.error_code != 0 || got != vec![expected; args.partitions as usize] {
                bail!(
                    "after the restart {} has offsets {got:?} ({}), not its last commit {expected}",
                    group_name(g),
                    kafka::error_name(r.error_code)
                );
            }
            break;
        }
    }
    Ok(started.elapsed())
}

/// The bytes of log `__consumer_offsets` holds, every partition (DescribeLogDirs).
async fn offsets_bytes(c: &mut Connection) -> Result<u64> {
    Ok(super::catchup::log_bytes(c, "__consumer_offsets")
        .await?
        .max(0) as u64)
}
