//! `cargo xtask bench reassign`: a partition holding N GB moved to a broker that holds none of
//! it, while 128 producers write to other partitions. A four-node cluster of release brokers
//! of its own (in `--dir`, made anew): topic `moved` (one partition, three replicas) is filled
//! with N GB; then for each throttle setting (`leader_replication_throttled_rate`, which bounds
//! the reads a new replica catches up with: the broker's default, then off), the brokers are
//! started with it, the producers write single acks=all records of 100 B to topic `load`
//! (four partitions, three replicas), their latency is measured (before), and the partition is
//! moved (AlterPartitionReassignments) from its replicas to the broker that has none of it in
//! place of one of them, until ListPartitionReassignments says it is done: the move's duration
//! and MB/s and the produce latency during it, from one run, so the settings compare (each
//! setting's move goes the other way from the last's end).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, ListPartitionReassignmentsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::catchup::{fill, held_bytes_of, start_all};
use super::failover;
use super::kafka::{self, ApiVersions, Connection};
use super::stats::{self, Latency, Table};
use crate::cluster;

#[derive(Args, Clone, Debug)]
pub struct ReassignArgs {
    /// Gigabytes the moved partition holds.
    #[arg(long, default_value_t = 1.0)]
    data_gb: f64,
    /// Producers writing single acks=all records of 100 B to other partitions, one request
    /// in flight each.
    #[arg(long, default_value_t = 128)]
    producers: usize,
    /// Seconds of that load measured before each move.
    #[arg(long, default_value_t = 10)]
    before_secs: u64,
    /// Throttle settings to compare, in order: `default` (the broker's), or bytes per second
    /// (0: off).
    #[arg(long, value_delimiter = ',', default_value = "default,0")]
    throttle: Vec<String>,
    /// The folder of the benchmark's cluster (removed and made anew; relative to the
    /// repository).
    #[arg(long, default_value = "reassign-cluster")]
    dir: PathBuf,
    /// Keep the cluster's folder afterwards (its logs).
    #[arg(long)]
    keep: bool,
    /// The broker binary [default: the release broker, built first].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
}

const MOVED: &str = "moved";
const LOAD: &str = "load";
const LOAD_PARTITIONS: i32 = 4;
const NODES: u16 = 4;
const TIMEOUT: Duration = Duration::from_secs(30);

struct Measured {
    setting: String,
    from: Vec<i32>,
    to: Vec<i32>,
    before: Latency,
    during: Latency,
    took: Duration,
    bytes: f64,
}

pub async fn reassign_bench(args: ReassignArgs) -> Result<()> {
    if args.throttle.is_empty() || args.producers == 0 || args.data_gb <= 0.0 {
        bail!("--throttle needs a setting; --producers and --data-gb must be above 0");
    }
    let binary = match &args.broker_bin {
        Some(b) => b.clone(),
        None => cluster::release_broker()?,
    };
    let dir = cluster::resolve(&args.dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("nodes"), format!("{NODES}\n"))?;
    let load_average_before = stats::load_average();
    let outcome = run(&args, &dir, &binary).await;
    for node in 1..=NODES {
        let _ = cluster::stop_node(&dir, node);
    }
    let measured = outcome?;
    let mut table = Table::default();
    table.row("command", std::env::args().collect::<Vec<_>>().join(" "));
    table.row(
        "workload",
        format!(
            "{NODES} release brokers on this machine ({} CPUs); topic {MOVED} (1 partition x 3 \
             replicas) filled with {:.2} GB (batches of 16 records of 1 KiB) and moved to the \
             broker without it in place of one replica; {} producers of single acks=all records \
             of 100 B to topic {LOAD} ({LOAD_PARTITIONS} partitions x 3 replicas), one request \
             in flight each",
            stats::cpu_count(),
            args.data_gb,
            args.producers
        ),
    );
    table.row("load average before", load_average_before);
    let ms = |l: &Latency, q: f64| l.quantile_ms(q);
    for m in &measured {
        table.row(
            format!("throttle {}", m.setting),
            format!(
                "moved {:?} -> {:?}: {:.0} MB in {:.1} s ({:.1} MB/s); produce p50/p99/max before \
                 {:.1}/{:.1}/{:.0} ms ({} acks), during {:.1}/{:.1}/{:.0} ms ({} acks; p99 {:.2}x before)",
                m.from,
                m.to,
                m.bytes / 1e6,
                m.took.as_secs_f64(),
                m.bytes / 1e6 / m.took.as_secs_f64().max(1e-3),
                ms(&m.before, 0.5),
                ms(&m.before, 0.99),
                m.before.max_ms(),
                m.before.count(),
                ms(&m.during, 0.5),
                ms(&m.during, 0.99),
                m.during.max_ms(),
                m.during.count(),
                ms(&m.during, 0.99) / ms(&m.before, 0.99).max(1e-3),
            ),
        );
    }
    table.row("load average after", stats::load_average());
    println!("Stillwater reassignment benchmark");
    table.print();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn run(args: &ReassignArgs, dir: &Path, binary: &Path) -> Result<Vec<Measured>> {
    start_all(dir, binary, &args.throttle[0]).await?;
    let bootstrap = format!("127.0.0.1:{}", cluster::client_port(1));
    let mut admin = Connection::connect(&bootstrap, TIMEOUT).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    kafka::prepare_topic(&mut admin, &versions, MOVED, 1, Some(3)).await?;
    kafka::prepare_topic(&mut admin, &versions, LOAD, LOAD_PARTITIONS, Some(3)).await?;
    drop(admin);
    super::topics::writable(&bootstrap, &versions, MOVED, 1, TIMEOUT).await?;
    super::topics::writable(&bootstrap, &versions, LOAD, LOAD_PARTITIONS, TIMEOUT).await?;
    let started = Instant::now();
    let bytes = (args.data_gb * 1e9) as u64;
    fill(&versions, MOVED, 1, bytes, 16).await?;
    println!(
        "xtask: filled {:.2} GB in {:.1} s",
        args.data_gb,
        started.elapsed().as_secs_f64()
    );
    let mut out = Vec::new();
    for (i, throttle) in args.throttle.iter().enumerate() {
        if i > 0 {
            for node in 1..=NODES {
                cluster::stop_node(dir, node)?;
            }
            start_all(dir, binary, throttle).await?;
            super::topics::writable(&bootstrap, &versions, LOAD, LOAD_PARTITIONS, TIMEOUT).await?;
        }
        println!("xtask: throttle {throttle}: measuring");
        out.push(measure(args, &versions, throttle).await?);
    }
    Ok(out)
}

/// The replicas of partition 0 of `moved`, as broker 1 names them.
async fn replicas(versions: &ApiVersions) -> Result<Vec<i32>> {
    let version = versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let mut c =
        Connection::connect(&format!("127.0.0.1:{}", cluster::client_port(1)), TIMEOUT).await?;
    let request = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(MOVED)))),
    ]));
    let md = c.call(version, &request).await?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| anyhow::anyhow!("no topic {MOVED}"))?;
    let p = t
        .partitions
        .first()
        .ok_or_else(|| anyhow::anyhow!("no partition of {MOVED}"))?;
    Ok(p.replica_nodes.iter().map(|b| b.0).collect())
}

/// Move partition 0 of `moved` to `target`, and wait until it is done (within 1200 s).
async fn move_partition(target: &[i32]) -> Result<()> {
    let addr = format!("127.0.0.1:{}", cluster::client_port(1));
    let mut c = Connection::connect(&addr, TIMEOUT).await?;
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(MOVED)))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(
                    target.iter().map(|&b| BrokerId(b)).collect(),
                ))])]);
    let r = c
        .call(0, &request)
        .await
        .context("AlterPartitionReassignments")?;
    let code = r
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .map_or(r.error_code, |p| p.error_code);
    if code != 0 {
        bail!("AlterPartitionReassignments refused the move: error {code}");
    }
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let listed = c
            .call(
                0,
                &ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000),
            )
            .await
            .context("ListPartitionReassignments")?;
        if listed.topics.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the move did not finish within 1200 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(args: &ReassignArgs, versions: &ApiVersions, throttle: &str) -> Result<Measured> {
    let from = replicas(versions).await?;
    let newcomer = (1..=NODES as i32)
        .find(|n| !from.contains(n))
        .ok_or_else(|| anyhow::anyhow!("every broker holds {MOVED}: {from:?}"))?;
    // The new broker takes the place of the last replica (not the preferred leader's).
    let mut to = from.clone();
    let last = to.len() - 1;
    to[last] = newcomer;
    let load = failover::Load::start(versions, LOAD, LOAD_PARTITIONS, args.producers, TIMEOUT);
    let outcome = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.before_secs)).await;
        let before_to = Instant::now();
        let held = held_bytes_of(from[0] as u16, MOVED).await?;
        if held < (args.data_gb * 0.9e9) as i64 {
            bail!(
                "broker {} holds {held} bytes of {MOVED}, not the {:.2} GB filled",
                from[0],
                args.data_gb
            );
        }
        let moving_from = Instant::now();
        move_partition(&to).await?;
        Ok::<_, anyhow::Error>((before_from, before_to, moving_from, Instant::now(), held))
    }
    .await;
    let all = load.stop().await;
    let (before_from, before_to, moving_from, moved_at, held) = outcome?;
    let window = |from: Instant, to: Instant| failover::latency_between(&all, from, to);
    Ok(Measured {
        setting: throttle.to_string(),
        from,
        to,
        before: window(before_from, before_to)?,
        during: window(moving_from, moved_at)?,
        took: moved_at - moving_from,
        bytes: held as f64,
    })
}
