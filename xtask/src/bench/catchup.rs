//! `cargo xtask bench catchup`: a broker's disk replaced while the other two hold N GB. A
//! three-node cluster of release brokers of its own (in `--dir`, made anew) is filled with
//! N GB per broker (a topic of 3 partitions, 3 replicas, batches of `--records-per-batch`
//! records of 1 KiB), then for each throttle setting (`leader_replication_throttled_rate`: the
//! broker's default, then off): the brokers are started with it, 128 producers write single acks=all records,
//! node 3 is SIGKILLed (its leaderships move: not what is measured), the producers' latency is
//! measured on the two brokers left (before), then node 3's data directory is removed and it
//! is started again while the producers go on, until its replicas hold as many bytes as the
//! others' held (DescribeLogDirs): the catch-up's duration and MB/s, the produce latency during
//! it, the healthy brokers' peak resident memory, and whether any data directory failed or any
//! catch-up read did — all from one run, so the settings compare.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::ApiKey;
use tokio::time::Instant;

use super::failover;
use super::kafka::{self, ApiVersions, Connection};
use super::stats::{self, Latency, Table};
use crate::cluster;

#[derive(Args, Clone, Debug)]
pub struct CatchupArgs {
    /// Gigabytes each broker holds when node 3's disk is replaced.
    #[arg(long, default_value_t = 1.0)]
    data_gb: f64,
    /// Records of 1 KiB in each batch the topic is filled with: each batch is a Raft entry,
    /// and 1 makes a log of as many entries as records (the found black-box case).
    #[arg(long, default_value_t = 16)]
    records_per_batch: usize,
    /// Producers writing single acks=all records of 100 B, one request in flight each.
    #[arg(long, default_value_t = 128)]
    producers: usize,
    /// Seconds of that load measured before the disk is replaced.
    #[arg(long, default_value_t = 10)]
    before_secs: u64,
    /// Throttle settings to compare, in order: `default` (the broker's), or bytes per second
    /// (0: off).
    #[arg(long, value_delimiter = ',', default_value = "default,0")]
    throttle: Vec<String>,
    /// The folder of the benchmark's cluster (removed and made anew; relative to the
    /// repository).
    #[arg(long, default_value = "catchup-cluster")]
    dir: PathBuf,
    /// Keep the cluster's folder afterwards (its logs).
    #[arg(long)]
    keep: bool,
    /// The broker binary [default: the release broker, built first].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
}

const TOPIC: &str = "catchup";
const PARTITIONS: i32 = 3;
const VICTIM: u16 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// What one throttle setting measured.
struct Measured {
    setting: String,
    before: Latency,
    during: Latency,
    caught_up: Duration,
    bytes: f64,
    healthy_rss_before: Vec<u64>,
    healthy_rss_peak: Vec<u64>,
    dir_failures: f64,
    read_failures: f64,
    longest_wait: Duration,
}

pub async fn catchup_bench(args: CatchupArgs) -> Result<()> {
    if args.throttle.is_empty()
        || args.producers == 0
        || args.data_gb <= 0.0
        || args.records_per_batch == 0
    {
        bail!("--throttle needs a setting, --producers, --data-gb and --records-per-batch must be above 0");
    }
    let binary = match &args.broker_bin {
        Some(b) => b.clone(),
        None => cluster::release_broker()?,
    };
    let dir = cluster::resolve(&args.dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let load_average_before = stats::load_average();
    let outcome = run(&args, &dir, &binary).await;
    for node in 1..=cluster::NODES {
        let _ = cluster::stop_node(&dir, node);
    }
    let measured = outcome?;
    let mut table = Table::default();
    table.row("command", std::env::args().collect::<Vec<_>>().join(" "));
    table.row(
        "workload",
        format!(
            "3 release brokers on this machine ({} CPUs), topic {TOPIC} of {PARTITIONS} \
             partitions x 3 replicas filled with {:.2} GB per broker (batches of {} records of \
             1 KiB); {} producers of single acks=all records of 100 B, one request in flight \
             each; node {VICTIM} SIGKILLed, its data directory removed, started again",
            stats::cpu_count(),
            args.data_gb,
            args.records_per_batch,
            args.producers
        ),
    );
    table.row("load average before", load_average_before);
    let ms = |l: &Latency, q: f64| l.quantile_ms(q);
    for m in &measured {
        table.row(
            format!("throttle {}", m.setting),
            format!(
                "caught up {:.0} MB in {:.1} s ({:.1} MB/s); produce p50/p99/max before {:.1}/{:.1}/{:.0} ms \
                 ({} acks), during {:.1}/{:.1}/{:.0} ms ({} acks; p99 {:.2}x before; longest wait \
                 for an ack {:.2} s); healthy brokers' RSS before {} MiB, peak {} MiB; data \
                 directories failed {}, catch-up reads failed {}",
                m.bytes / 1e6,
                m.caught_up.as_secs_f64(),
                m.bytes / 1e6 / m.caught_up.as_secs_f64().max(1e-3),
                ms(&m.before, 0.5),
                ms(&m.before, 0.99),
                m.before.max_ms(),
                m.before.count(),
                ms(&m.during, 0.5),
                ms(&m.during, 0.99),
                m.during.max_ms(),
                m.during.count(),
                ms(&m.during, 0.99) / ms(&m.before, 0.99).max(1e-3),
                m.longest_wait.as_secs_f64(),
                mib(&m.healthy_rss_before),
                mib(&m.healthy_rss_peak),
                m.dir_failures,
                m.read_failures,
            ),
        );
    }
    table.row("load average after", stats::load_average());
    println!("Stillwater catch-up benchmark");
    table.print();
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn mib(bytes: &[u64]) -> String {
    bytes
        .iter()
        .map(|b| (b >> 20).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A broker's settings for a throttle setting of the command line (`default`: none).
pub(super) fn settings(throttle: &str) -> Vec<String> {
    match throttle {
        "default" => Vec::new(),
        rate => vec![format!("leader_replication_throttled_rate={rate}")],
    }
}

/// Start every node of the cluster in `dir` with a throttle setting, until all are registered.
pub(super) async fn start_all(dir: &Path, binary: &Path, throttle: &str) -> Result<()> {
    for node in 1..=cluster::size_of(dir) {
        cluster::start_node_with(dir, node, binary, &settings(throttle))?;
    }
    cluster::wait_registered(dir).await?;
    Ok(())
}

async fn run(args: &CatchupArgs, dir: &Path, binary: &Path) -> Result<Vec<Measured>> {
    start_all(dir, binary, &args.throttle[0]).await?;
    let bootstrap = format!("127.0.0.1:{}", cluster::client_port(1));
    let mut admin = Connection::connect(&bootstrap, TIMEOUT).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    kafka::prepare_topic(&mut admin, &versions, TOPIC, PARTITIONS, Some(3)).await?;
    drop(admin);
    super::topics::writable(&bootstrap, &versions, TOPIC, PARTITIONS, TIMEOUT).await?;
    let started = Instant::now();
    let bytes = (args.data_gb * 1e9) as u64;
    fill(&versions, TOPIC, PARTITIONS, bytes, args.records_per_batch).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "xtask: filled {:.2} GB per broker in {took:.1} s ({:.0} MB/s)",
        args.data_gb,
        bytes as f64 / 1e6 / took
    );
    let mut out = Vec::new();
    for (i, throttle) in args.throttle.iter().enumerate() {
        if i > 0 {
            for node in 1..=cluster::NODES {
                cluster::stop_node(dir, node)?;
            }
            start_all(dir, binary, throttle).await?;
            super::topics::writable(&bootstrap, &versions, TOPIC, PARTITIONS, TIMEOUT).await?;
        }
        println!("xtask: throttle {throttle}: measuring");
        out.push(measure(args, dir, binary, &versions, throttle).await?);
    }
    Ok(out)
}

/// Write batches of `records` records of 1 KiB to every partition's leader until `topic`
/// holds `bytes` (of record values) — four writers per partition, sixteen for single records.
pub(super) async fn fill(
    versions: &ApiVersions,
    topic: &str,
    partitions: i32,
    bytes: u64,
    records: usize,
) -> Result<()> {
    let written = Arc::new(AtomicU64::new(0));
    let batch = kafka::encode_record_batch(records, 1024, 0)?;
    let per_batch = records as u64 * 1024;
    let writers = if records == 1 { 16 } else { 4 };
    let mut tasks = Vec::new();
    for w in 0..writers * partitions {
        let (versions, written, batch) = (versions.clone(), written.clone(), batch.clone());
        let topic = topic.to_string();
        tasks.push(tokio::spawn(async move {
            let partition = w % partitions;
            let produce_version = versions.pick(
                ApiKey::Produce,
                kafka::PRODUCE_VERSIONS.0,
                kafka::PRODUCE_VERSIONS.1,
            )?;
            let mut conn = leader_conn(&versions, &topic, partition).await?;
            while written.load(Ordering::Relaxed) < bytes {
                let sent = kafka::produce_one(
                    &mut conn,
                    produce_version,
                    &topic,
                    partition,
                    -1,
                    batch.clone(),
                )
                .await;
                match sent {
                    Ok(Ok(_)) => {
                        written.fetch_add(per_batch, Ordering::Relaxed);
                    }
                    _ => conn = leader_conn(&versions, &topic, partition).await?,
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("a writer panicked")??;
    }
    Ok(())
}

/// A connection to the leader of `topic`'s `partition`, asked of the brokers in turn (within
/// 60 s).
async fn leader_conn(versions: &ApiVersions, topic: &str, partition: i32) -> Result<Connection> {
    let metadata_version = versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut node = 1;
    loop {
        let addr = format!("127.0.0.1:{}", cluster::client_port(node));
        node = node % cluster::NODES + 1;
        let leader = async {
            let mut c = Connection::connect(&addr, TIMEOUT).await?;
            let l = kafka::leaders(&mut c, metadata_version, topic).await?;
            let to = l
                .addr_of(partition, &addr)
                .ok_or_else(|| anyhow::anyhow!("partition {partition} has no leader"))?;
            Connection::connect(&to, TIMEOUT).await
        }
        .await;
        match leader {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The bytes node `node`'s replicas of the topic hold (DescribeLogDirs, asked of it).
async fn held_bytes(node: u16) -> Result<i64> {
    held_bytes_of(node, TOPIC).await
}

/// The bytes node `node`'s replicas of `topic` hold (DescribeLogDirs, asked of it).
pub(super) async fn held_bytes_of(node: u16, topic: &str) -> Result<i64> {
    let mut c = Connection::connect(
        &format!("127.0.0.1:{}", cluster::client_port(node)),
        TIMEOUT,
    )
    .await?;
    log_bytes(&mut c, topic).await
}

/// The bytes of log the broker at the other end of `c` holds of `topic`, as DescribeLogDirs
/// says (what its segments hold, not what the files preallocate).
pub(super) async fn log_bytes(c: &mut Connection, topic: &str) -> Result<i64> {
    use kafka_protocol::messages::DescribeLogDirsRequest;
    let response = c
        .call(1, &DescribeLogDirsRequest::default().with_topics(None))
        .await
        .context("DescribeLogDirs")?;
    Ok(response
        .results
        .iter()
        .flat_map(|d| d.topics.iter())
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.partition_size)
        .sum())
}

async fn metric(node: u16, name: &str) -> Result<f64> {
    let sample =
        stats::scrape_metrics(&format!("127.0.0.1:{}", cluster::metrics_port(node))).await?;
    Ok(sample.get(name).copied().unwrap_or(0.0))
}

async fn measure(
    args: &CatchupArgs,
    dir: &Path,
    binary: &Path,
    versions: &ApiVersions,
    throttle: &str,
) -> Result<Measured> {
    let load = failover::Load::start(versions, TOPIC, PARTITIONS, args.producers, TIMEOUT);
    let outcome = async {
        // Node 3 goes first: its leaderships move to the others (a failover, not what is
        // measured); then the latency on the two brokers left, the window before.
        let victim = cluster::running(dir, VICTIM)
            .ok_or_else(|| anyhow::anyhow!("node {VICTIM} does not run"))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .context("kill -KILL")?;
        while cluster::alive(victim) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.before_secs)).await;
        let before_to = Instant::now();
        let healthy: Vec<u16> = (1..=cluster::NODES).filter(|&n| n != VICTIM).collect();
        let pids: Vec<u32> = healthy
            .iter()
            .filter_map(|&n| cluster::running(dir, n))
            .collect();
        let healthy_rss_before: Vec<u64> = pids.iter().map(|&p| stats::rss_bytes(p)).collect();
        let held = held_bytes(healthy[0]).await?;
        if held < (args.data_gb * 0.9e9) as i64 {
            bail!(
                "node {} holds {held} bytes of the topic, not the {:.2} GB filled",
                healthy[0],
                args.data_gb
            );
        }
        // The replaced disk.
        let data = dir.join(format!("node{VICTIM}")).join("data");
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        let wiped_at = Instant::now();
        cluster::start_node_with(dir, VICTIM, binary, &settings(throttle))?;
        let mut peak = healthy_rss_before.clone();
        let deadline = wiped_at + Duration::from_secs(1200);
        loop {
            for (i, &p) in pids.iter().enumerate() {
                peak[i] = peak[i].max(stats::rss_bytes(p));
            }
            let got = held_bytes(VICTIM).await.unwrap_or(0);
            if got >= held {
                break;
            }
            if Instant::now() >= deadline {
                bail!("node {VICTIM} holds {got} of {held} bytes after 1200 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caught_at = Instant::now();
        let mut dir_failures = 0.0;
        let mut read_failures = 0.0;
        for n in 1..=cluster::NODES {
            dir_failures += metric(n, "stillwater_log_dir_failures_total").await?;
            read_failures += metric(n, "stillwater_replica_catch_up_read_failures_total").await?;
        }
        Ok::<_, anyhow::Error>((
            (before_from, before_to, wiped_at, caught_at),
            (
                held as f64,
                healthy_rss_before,
                peak,
                dir_failures,
                read_failures,
            ),
        ))
    }
    .await;
    let all = load.stop().await;
    let ((before_from, before_to, wiped_at, caught_at), (held, rss_before, peak, dirs, reads)) =
        outcome?;
    let window = |from: Instant, to: Instant| failover::latency_between(&all, from, to);
    let mut acked_times: Vec<Instant> = all
        .iter()
        .map(|(_, a)| *a)
        .filter(|a| *a >= wiped_at && *a <= caught_at)
        .collect();
    acked_times.sort();
    let mut longest_wait = Duration::ZERO;
    let mut last = wiped_at;
    for t in acked_times.iter().chain(std::iter::once(&caught_at)) {
        longest_wait = longest_wait.max(t.saturating_duration_since(last));
        last = *t;
    }
    Ok(Measured {
        setting: throttle.to_string(),
        before: window(before_from, before_to)?,
        during: window(wiped_at, caught_at)?,
        caught_up: caught_at - wiped_at,
        bytes: held,
        healthy_rss_before: rss_before,
        healthy_rss_peak: peak,
        dir_failures: dirs,
        read_failures: reads,
        longest_wait,
    })
}
