//! `cargo xtask bench compaction`: a keyed load on a compacted topic (by default 1 M updates
//! over 10 k keys), with the log cleaner on and then off, each on a fresh release broker, in
//! one run: produce throughput and latency, the broker's CPU per update, the partition's size
//! on disk at the end and what the cleaner did — so the cleaner's cost to producers and what
//! it saves compare on the same host at the same time.
//!
//! The producers send acks=1 requests of `--batch` keyed records, one in flight each; the key
//! space is covered batch after batch (every key updated once per `keys / batch` requests),
//! the batches encoded once and sent again and again, so the client spends its CPU on the
//! wire rather than on encoding.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::time::Instant;

use super::broker_process::SpawnedBroker;
use super::kafka::{self, ApiVersions, Connection};
use super::stats::{self, Latency, Table};
use super::BrokerArgs;

#[derive(Args, Clone, Debug)]
pub struct CompactionArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Updates produced in all.
    #[arg(long, default_value_t = 1_000_000)]
    updates: u64,
    /// Distinct keys the updates cycle over.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value bytes of each update.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Keyed records per request (one batch).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent producers, one request in flight each.
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// `segment.bytes` of the compacted topic.
    #[arg(long, default_value_t = 4 << 20)]
    segment_bytes: u64,
    /// Cleaner settings to compare, in order: `on` or `off`.
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    cleaner: Vec<String>,
}

const TOPIC: &str = "table";

struct Measured {
    setting: String,
    updates: u64,
    took: Duration,
    latency: Latency,
    cpu: Option<Duration>,
    /// After the load, until the partition's size stopped changing.
    settled: Duration,
    bytes_on_disk: u64,
    metrics: stats::MetricsSample,
}

pub async fn compaction_bench(args: CompactionArgs) -> Result<()> {
    if args.keys == 0 || args.batch == 0 || args.producers == 0 || args.cleaner.is_empty() {
        bail!("--keys, --batch, --producers must be at least 1, and --cleaner name a setting");
    }
    if !args.keys.is_multiple_of(args.batch as u64) {
        bail!("--keys must be a multiple of --batch (each batch updates distinct keys)");
    }
    let load_average_before = stats::load_average();
    let mut measured = Vec::new();
    for setting in &args.cleaner {
        let enable = match setting.as_str() {
            "on" => true,
            "off" => false,
            other => bail!("--cleaner {other:?}: expected on or off"),
        };
        measured.push(run_one(&args, setting, enable).await?);
    }
    let mut table = Table::default();
    table.row("command", std::env::args().collect::<Vec<_>>().join(" "));
    table.row(
        "workload",
        format!(
            "a release broker per setting on this machine ({} CPUs); topic {TOPIC} (1 partition, \
             cleanup.policy=compact, segment.bytes={}, min.cleanable.dirty.ratio=0.5); {} \
             producers of acks=1 requests of {} keyed records of {} B, one in flight each; {} \
             updates over {} keys; log_cleaner_backoff_ms=1000",
            stats::cpu_count(),
            args.segment_bytes,
            args.producers,
            args.batch,
            args.value_bytes,
            stats::thousands(args.updates as f64),
            stats::thousands(args.keys as f64),
        ),
    );
    table.row("load average before", load_average_before);
    let first_p99 = measured.first().map(|m| m.latency.quantile_ms(0.99));
    for m in &measured {
        let secs = m.took.as_secs_f64().max(1e-9);
        let metric = |name: &str| m.metrics.get(name).copied().unwrap_or(0.0);
        table.row(
            format!("cleaner {}", m.setting),
            format!(
                "{} updates/s; produce p50/p99/max {:.1}/{:.1}/{:.0} ms{}; broker CPU {}; \
                 partition on disk {:.1} MB ({:.0} B per key), settled {:.1} s after the load; \
                 cleanings {}, records removed {}, MB freed {:.1}",
                stats::thousands(m.updates as f64 / secs),
                m.latency.quantile_ms(0.5),
                m.latency.quantile_ms(0.99),
                m.latency.max_ms(),
                first_p99
                    .map(|p| format!(" (p99 {:.2}x the first)", m.latency.quantile_ms(0.99) / p))
                    .unwrap_or_default(),
                m.cpu
                    .map(|c| format!(
                        "{:.1} µs per update",
                        c.as_secs_f64() * 1e6 / m.updates.max(1) as f64
                    ))
                    .unwrap_or_else(|| "n/a".into()),
                m.bytes_on_disk as f64 / 1e6,
                m.bytes_on_disk as f64 / args.keys as f64,
                m.settled.as_secs_f64(),
                metric("stillwater_cleaner_runs_total"),
                stats::thousands(metric("stillwater_cleaner_records_removed_total")),
                metric("stillwater_cleaner_bytes_freed_total") / 1e6,
            ),
        );
    }
    println!("Stillwater compaction benchmark");
    table.print();
    Ok(())
}

async fn run_one(args: &CompactionArgs, setting: &str, enable: bool) -> Result<Measured> {
    let mut broker_args = args.broker.clone();
    broker_args.spawn_broker = true;
    let broker = SpawnedBroker::start_with(&broker_args, |_| {
        vec![
            format!("--set=log_cleaner_enable={enable}"),
            "--set=log_cleaner_backoff_ms=1000".into(),
        ]
    })
    .await?;
    let outcome = load(args, &broker).await;
    let partition = broker.data_dir.join(format!("{TOPIC}-0"));
    let settled = settle(&partition).await;
    let bytes_on_disk = dir_bytes(&partition);
    let metrics = stats::scrape_metrics(&broker.metrics_addr).await;
    let cpu = stats::process_cpu_time(broker.child.id()).ok();
    broker.stop().await?;
    let (took, latency) = outcome?;
    Ok(Measured {
        setting: setting.to_string(),
        updates: args.updates / (args.batch as u64) * args.batch as u64,
        took,
        latency,
        cpu,
        settled,
        bytes_on_disk,
        metrics: metrics?,
    })
}

/// Create the topic and produce every update: the time producing took and the latency of
/// every request.
async fn load(args: &CompactionArgs, broker: &SpawnedBroker) -> Result<(Duration, Latency)> {
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&broker.addr, timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    create_compacted(&mut admin, &versions, args.segment_bytes).await?;
    kafka::prepare_topic(&mut admin, &versions, TOPIC, 1, None).await?;
    let produce_version = versions.pick(
        ApiKey::Produce,
        kafka::PRODUCE_VERSIONS.0,
        kafka::PRODUCE_VERSIONS.1,
    )?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let frames: Arc<Vec<BytesMut>> = Arc::new(
        (0..args.keys / args.batch as u64)
            .map(|n| {
                let batch = keyed_batch(n * args.batch as u64, args.batch, args.value_bytes)?;
                kafka::produce_frame(produce_version, TOPIC, 0, 1, timeout_ms, batch)
            })
            .collect::<Result<_>>()?,
    );
    let requests = args.updates / args.batch as u64;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.producers {
        let mut connection = Connection::connect(&broker.addr, timeout).await?;
        let (frames, next) = (frames.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::new()?;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= requests {
                    return Ok::<_, anyhow::Error>(latency);
                }
                let mut frame = frames[(n % frames.len() as u64) as usize].clone();
                let id = connection.take_correlation_id();
                kafka::set_correlation_id(&mut frame, id);
                let sent = Instant::now();
                connection.write_frame(&frame).await?;
                let response = connection.read_frame().await?;
                latency.record(sent.elapsed());
                check_produced(response, produce_version, id)?;
            }
        }));
    }
    let mut latency = Latency::new()?;
    for task in tasks {
        latency.merge(&task.await.context("a producer task")??)?;
    }
    Ok((started.elapsed(), latency))
}

/// Wait until the partition's size on disk has not changed for 30 s (at most 300 s): the
/// cleaner, if on, has caught up with what was written (a cleaning's first phase only reads,
/// for as long as the dirty part takes at `log_cleaner_io_max_bytes_per_second`). How long
/// after the load the size last changed.
async fn settle(dir: &Path) -> Duration {
    let started = Instant::now();
    let (mut last, mut since) = (dir_bytes(dir), Instant::now());
    while since.elapsed() < Duration::from_secs(30) && started.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = dir_bytes(dir);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    since.saturating_duration_since(started)
}

/// The Produce response to request `id`: an error fails the benchmark (a keyed load on a
/// compacted topic has no reason to be refused).
fn check_produced(response: Bytes, version: i16, id: i32) -> Result<()> {
    let response = kafka::decode_response::<ProduceRequest>(response, version, id)
        .context("decoding a Produce response")?;
    let partition = response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .next()
        .context("a Produce response without its partition")?;
    if partition.error_code != 0 {
        bail!(
            "produce refused: {}",
            kafka::error_name(partition.error_code)
        );
    }
    Ok(())
}

async fn create_compacted(
    admin: &mut Connection,
    versions: &ApiVersions,
    segment_bytes: u64,
) -> Result<()> {
    let version = versions.pick(
        ApiKey::CreateTopics,
        kafka::CREATE_TOPICS_VERSIONS.0,
        kafka::CREATE_TOPICS_VERSIONS.1,
    )?;
    let config = |name: &str, value: String| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_string(name.into()))
            .with_value(Some(StrBytes::from_string(value)))
    };
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(vec![
                config("cleanup.policy", "compact".into()),
                config("segment.bytes", segment_bytes.to_string()),
            ])]);
    let response = admin
        .call(version, &request)
        .await
        .context("CreateTopics")?;
    for t in &response.topics {
        if t.error_code != 0 {
            bail!(
                "creating {TOPIC}: {} {:?}",
                kafka::error_name(t.error_code),
                t.error_message
            );
        }
    }
    Ok(())
}

/// One batch of `count` records with keys `key-{first}`.., each value `value_bytes` long.
fn keyed_batch(first: u64, count: usize, value_bytes: usize) -> Result<Bytes> {
    let now = super::produce::unix_time_ms();
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(Bytes::from(format!("key-{:08}", first + i as u64))),
            value: Some(Bytes::from(vec![b'v'; value_bytes])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .context("encoding a keyed batch")?;
    Ok(out.freeze())
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
