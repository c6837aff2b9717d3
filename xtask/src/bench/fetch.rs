//! `cargo xtask bench fetch`: consumers that each read every partition of the topic from its
//! start, walking forward batch by batch, and wrap around at the end offset the run started with.
//! A nearly empty topic is filled first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::kafka::{self, ApiVersions, Connection};
use super::produce;
use super::stats::{self, Latency};
use super::{
    count, environment_rows, latency_rows, open_window, seconds, BrokerArgs, GateTicket, Snapshot,
    StartGate, Target,
};

const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Fetches that return no complete batch in a row before the consumer gives up: below the end
/// offset there is always data, so this means the broker cannot serve it (or a batch is larger
/// than what the broker will return).
const EMPTY_FETCHES_MAX: u32 = 100;

#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Concurrent consumers, each its own connection reading every partition from the start.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Fetch max_bytes, for the response and for each partition.
    #[arg(long, default_value_t = 1_048_576)]
    max_bytes: i32,
    /// Length of the measured window.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Before fetching, produce until the topic holds at least this many MB (of 100-byte values).
    #[arg(long, default_value_t = 200)]
    fill_mb: u64,
}

pub async fn fetch_bench(args: FetchArgs) -> Result<()> {
    if args.consumers == 0 || args.max_bytes <= 0 {
        bail!("--consumers and --max-bytes must be at least 1");
    }
    let duration = seconds(args.duration_secs, "--duration-secs")?;
    let warmup = seconds(args.broker.warmup_secs, "--warmup-secs")?;
    let broker = args.broker.clone();
    super::per_security(&broker, "fetch", |target| {
        let args = args.clone();
        async move { fetch_against(&args, &target, duration, warmup).await }
    })
    .await
}

async fn fetch_against(
    args: &FetchArgs,
    target: &Target,
    duration: Duration,
    warmup: Duration,
) -> Result<super::Measured> {
    let response_timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&target.addr, response_timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    let fetch_version = versions.pick(
        ApiKey::Fetch,
        kafka::FETCH_VERSIONS.0,
        kafka::FETCH_VERSIONS.1,
    )?;
    let partitions = kafka::prepare_topic(&mut admin, &versions, &args.topic, 1, None).await?;

    let (starts, ends) = filled(
        &mut admin,
        target,
        &versions,
        &args.topic,
        partitions,
        args.fill_mb,
        response_timeout,
    )
    .await?;
    if ends.iter().zip(&starts).all(|(end, start)| end <= start) {
        bail!("topic {} is empty after filling it", args.topic);
    }

    let plan = Arc::new(FetchPlan {
        addr: target.addr.clone(),
        topic: args.topic.clone(),
        consumers: args.consumers,
        max_bytes: args.max_bytes,
        max_wait_ms: 500,
        fetch_version,
        response_timeout,
        duration,
        starts: starts.clone(),
        ends: ends.clone(),
    });
    let connections = connect_all(&plan).await?;
    let gate = StartGate::new(connections.len());
    let warmup_end = Instant::now() + warmup;
    let mut consumers = tokio::spawn(run(
        Arc::clone(&plan),
        connections,
        warmup_end,
        Arc::clone(&gate),
    ));
    let before = open_window(target, &gate, &mut consumers).await?;
    let outcome = consumers
        .await
        .map_err(|error| anyhow!("consumer tasks failed: {error}"))??;
    let after = Snapshot::take(target).await;

    let window_s = outcome.window.as_secs_f64().max(1e-9);
    let stored: i64 = ends
        .iter()
        .zip(&starts)
        .map(|(end, start)| end - start)
        .sum();
    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "{}, 1 fetch in flight each, max_bytes {}, topic {} ({}, {} records), \
             Fetch v{fetch_version}",
            count(args.consumers as i64, "consumer"),
            args.max_bytes,
            args.topic,
            count(i64::from(partitions), "partition"),
            stats::thousands(stored as f64)
        ),
    );
    table.row(
        "window",
        format!(
            "{:.2} s after {:.1} s warm-up",
            window_s,
            warmup.as_secs_f64()
        ),
    );
    table.row(
        "MB/s",
        format!(
            "{:.2} (record batches, 1 MB = 10^6 B)",
            outcome.bytes as f64 / window_s / 1e6
        ),
    );
    table.row(
        "records/s",
        stats::thousands(outcome.records as f64 / window_s),
    );
    table.row(
        "fetches/s",
        stats::thousands(outcome.fetches as f64 / window_s),
    );
    latency_rows(&mut table, &outcome.latency);
    table.row(
        "errors",
        if outcome.errors.is_empty() {
            format!("0 in {} fetches", stats::thousands(outcome.fetches as f64))
        } else {
            produce::describe_errors(&outcome.errors)
        },
    );
    environment_rows(&mut table, target, &before, &after);
    println!("Stillwater fetch benchmark");
    table.print();
    Ok(super::Measured::of(
        "record",
        outcome.records,
        window_s,
        &outcome.latency,
        &before,
        &after,
    ))
}

/// Fill `topic` up to `fill_mb` MB of 100-byte records if it holds fewer; its start and end
/// offsets, per partition.
pub(super) async fn filled(
    admin: &mut Connection,
    target: &Target,
    versions: &ApiVersions,
    topic: &str,
    partitions: i32,
    fill_mb: u64,
    response_timeout: Duration,
) -> Result<(Vec<i64>, Vec<i64>)> {
    let mut ends = kafka::list_offsets(admin, versions, topic, partitions, -1).await?;
    let held_records: i64 = ends.iter().sum();
    let wanted_records = i64::try_from(fill_mb.saturating_mul(1_000_000) / 100).unwrap_or(i64::MAX);
    if held_records < wanted_records {
        fill_topic(
            target,
            versions,
            topic,
            partitions,
            wanted_records - held_records,
            response_timeout,
        )
        .await?;
        ends = kafka::list_offsets(admin, versions, topic, partitions, -1).await?;
    }
    let starts = kafka::list_offsets(admin, versions, topic, partitions, -2).await?;
    Ok((starts, ends))
}

/// Produces `records` more 100-byte records, spread over the partitions, in batches of 1000.
async fn fill_topic(
    target: &Target,
    versions: &ApiVersions,
    topic: &str,
    partitions: i32,
    records: i64,
    response_timeout: Duration,
) -> Result<()> {
    const PRODUCERS: usize = 8;
    const BATCH: usize = 1000;
    let per_producer = u64::try_from(records)
        .unwrap_or(0)
        .div_ceil(PRODUCERS as u64);
    println!(
        "xtask: filling topic {topic}: producing {} records of 100 B ({} MB)…",
        stats::thousands(records as f64),
        records / 10_000
    );
    let plan = Arc::new(produce::ProducePlan {
        partition_addrs: vec![target.addr.clone()],
        topic: topic.to_string(),
        partitions,
        producers: PRODUCERS,
        batch: BATCH,
        message_bytes: 100,
        acks: 1,
        stop: produce::Stop::MessagesPerProducer(per_producer),
        produce_version: versions.pick(
            ApiKey::Produce,
            kafka::PRODUCE_VERSIONS.0,
            kafka::PRODUCE_VERSIONS.1,
        )?,
        response_timeout,
        idempotent: None,
    });
    let connections = produce::connect_all(&plan).await?;
    let started = Instant::now();
    let gate = StartGate::new(connections.len());
    gate.open();
    let outcome = produce::run(plan, connections, started, gate)
        .await
        .context("filling the topic")?;
    if outcome.failed_requests > 0 {
        bail!(
            "filling the topic: {} produce requests failed: {}",
            outcome.failed_requests,
            produce::describe_errors(&outcome.errors)
        );
    }
    println!("xtask: filled in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

pub struct FetchPlan {
    pub addr: String,
    pub topic: String,
    pub consumers: usize,
    pub max_bytes: i32,
    pub max_wait_ms: i32,
    pub fetch_version: i16,
    pub response_timeout: Duration,
    pub duration: Duration,
    /// Per partition: where reading starts (the log start) and the end offset it wraps at.
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
}

pub struct FetchOutcome {
    pub bytes: u64,
    pub records: u64,
    pub fetches: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency: Latency,
    pub window: Duration,
}

pub async fn connect_all(plan: &FetchPlan) -> Result<Vec<Connection>> {
    let frame_bytes_max = (2 * plan.max_bytes.max(0) as usize + (1 << 20)).max(64 << 20);
    let connects = (0..plan.consumers).map(|index| async move {
        let mut connection = Connection::connect(&plan.addr, plan.response_timeout)
            .await
            .with_context(|| format!("consumer {index}"))?;
        connection.set_frame_bytes_max(frame_bytes_max);
        Ok::<_, anyhow::Error>(connection)
    });
    futures::future::try_join_all(connects).await
}

/// Runs the consumers: fetch until `warmup_end`, then arrive at `gate`, then the measured run.
pub async fn run(
    plan: Arc<FetchPlan>,
    connections: Vec<Connection>,
    warmup_end: Instant,
    gate: Arc<StartGate>,
) -> Result<FetchOutcome> {
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| {
            let plan = Arc::clone(&plan);
            let ticket = gate.ticket();
            tokio::spawn(async move {
                consume(&plan, connection, warmup_end, ticket)
                    .await
                    .with_context(|| format!("consumer {index}"))
            })
        })
        .collect();
    let mut outcome = FetchOutcome {
        bytes: 0,
        records: 0,
        fetches: 0,
        errors: BTreeMap::new(),
        latency: Latency::new()?,
        window: Duration::ZERO,
    };
    for task in futures::future::join_all(tasks).await {
        let tally = task.map_err(|error| anyhow!("consumer task failed: {error}"))??;
        outcome.bytes += tally.bytes;
        outcome.records += tally.records;
        outcome.fetches += tally.fetches;
        for (error, count) in tally.errors {
            *outcome.errors.entry(error).or_insert(0) += count;
        }
        outcome.latency.merge(&tally.latency)?;
        if let Some(opened) = gate.opened_at() {
            let window = tally.finished.saturating_duration_since(opened);
            outcome.window = outcome.window.max(window);
        }
    }
    Ok(outcome)
}

struct ConsumerTally {
    bytes: u64,
    records: u64,
    fetches: u64,
    errors: BTreeMap<String, u64>,
    latency: Latency,
    finished: Instant,
}

async fn consume(
    plan: &FetchPlan,
    mut connection: Connection,
    warmup_end: Instant,
    mut ticket: GateTicket,
) -> Result<ConsumerTally> {
    let mut tally = ConsumerTally {
        bytes: 0,
        records: 0,
        fetches: 0,
        errors: BTreeMap::new(),
        latency: Latency::new()?,
        finished: Instant::now(),
    };
    let mut positions = plan.starts.clone();
    let mut empty_fetches = 0;
    let mut measure_end = None;
    loop {
        let now = Instant::now();
        let measured = match measure_end {
            None if now < warmup_end => false,
            None => {
                let opened = ticket.arrive_and_wait().await?;
                measure_end = Some(opened + plan.duration);
                true
            }
            Some(end) if now < end => true,
            Some(_) => break,
        };
        for (position, (&start, &end)) in
            positions.iter_mut().zip(plan.starts.iter().zip(&plan.ends))
        {
            if *position >= end {
                *position = start;
            }
        }
        let request = fetch_request(plan, &positions);
        let sent = Instant::now();
        let response = connection.call(plan.fetch_version, &request).await?;
        let latency = sent.elapsed();

        let mut fetched_batches = 0;
        let mut errors = Vec::new();
        if response.error_code != 0 {
            errors.push(kafka::error_name(response.error_code));
        }
        for partition in response
            .responses
            .iter()
            .filter(|topic| topic.topic.0.as_str() == plan.topic)
            .flat_map(|topic| topic.partitions.iter())
        {
            let index = usize::try_from(partition.partition_index)
                .ok()
                .filter(|&index| index < positions.len())
                .ok_or_else(|| {
                    anyhow!(
                        "response for unknown partition {}",
                        partition.partition_index
                    )
                })?;
            if partition.error_code == OFFSET_OUT_OF_RANGE && partition.log_start_offset >= 0 {
                // Retention moved the log start past us: carry on from there.
                positions[index] = partition.log_start_offset;
            }
            if partition.error_code != 0 {
                errors.push(kafka::error_name(partition.error_code));
                continue;
            }
            let Some(records) = &partition.records else {
                continue;
            };
            for batch in kafka::walk_batches(records)
                .with_context(|| format!("partition {index} at offset {}", positions[index]))?
            {
                fetched_batches += 1;
                positions[index] = positions[index].max(batch.last_offset + 1);
                if measured {
                    tally.bytes += batch.size_bytes as u64;
                    tally.records += batch.record_count as u64;
                }
            }
        }
        if measured {
            tally.fetches += 1;
            tally.latency.record(latency);
            for error in errors.iter().cloned() {
                *tally.errors.entry(error).or_insert(0) += 1;
            }
        }
        if fetched_batches == 0 {
            empty_fetches += 1;
            if empty_fetches >= EMPTY_FETCHES_MAX {
                bail!(
                    "{EMPTY_FETCHES_MAX} fetches in a row returned no complete record batch \
                     (positions {positions:?}, end offsets {:?}, errors: {}); is --max-bytes \
                     smaller than one batch?",
                    plan.ends,
                    if errors.is_empty() {
                        "none".to_string()
                    } else {
                        errors.join(", ")
                    }
                );
            }
        } else {
            empty_fetches = 0;
        }
    }
    tally.finished = Instant::now();
    Ok(tally)
}

fn fetch_request(plan: &FetchPlan, positions: &[i64]) -> FetchRequest {
    let partitions = positions
        .iter()
        .enumerate()
        .filter(|&(index, _)| plan.ends[index] > plan.starts[index])
        .map(|(index, &position)| {
            FetchPartition::default()
                .with_partition(index as i32)
                .with_fetch_offset(position)
                .with_partition_max_bytes(plan.max_bytes)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(plan.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(plan.max_bytes)
        .with_isolation_level(0)
        // Session id 0 with epoch -1: a full fetch, no incremental fetch session.
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(plan.topic.clone())))
            .with_partitions(partitions)])
}
