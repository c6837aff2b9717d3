//! `cargo xtask bench produce`: N producers, each its own connection with one request in flight
//! (or, with acks=0, a stream of requests paced by TCP back-pressure).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use tokio::time::Instant;

use super::kafka::{self, ApiVersions, Connection};
use super::stats::{self, Latency};
use super::{
    count, environment_rows, latency_rows, open_window, seconds, BrokerArgs, GateTicket, Snapshot,
    StartGate, Target,
};

#[derive(Args, Clone, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Concurrent producers, each with its own connection.
    #[arg(long, default_value_t = 128)]
    producers: usize,
    /// Measured messages per producer, after the warm-up (rounded up to whole batches).
    #[arg(long, conflicts_with = "duration_secs")]
    messages_per_producer: Option<u64>,
    /// Length of the measured window [default: 10].
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Value size of each message.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// 0 (no response; throughput only), 1 (leader) or -1 (all in-sync replicas).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i16).range(-1..=1))]
    acks: i16,
    /// Messages per request, in one uncompressed record batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions to create the topic with; producer i writes partition i mod partitions.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor for a new topic [default: the broker's default].
    #[arg(long)]
    replication_factor: Option<i16>,
    /// Produce as idempotent producers: each gets a producer id (InitProducerId) and numbers
    /// its batches, as clients with `enable.idempotence` do (compare with `--acks -1`).
    #[arg(long)]
    idempotent: bool,
    /// A client quota set for every client id (the default client-id entity) before the
    /// load, `key=value` (repeatable), e.g. `producer_byte_rate=1e15` to measure what quota
    /// accounting costs when nobody is throttled.
    #[arg(long, value_parser = parse_quota)]
    client_quota: Vec<(String, f64)>,
}

fn parse_quota(text: &str) -> Result<(String, f64), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected key=value"))?;
    let value: f64 = value.parse().map_err(|e| format!("{text}: {e}"))?;
    Ok((key.to_string(), value))
}

pub async fn produce_bench(args: ProduceArgs) -> Result<()> {
    if args.producers == 0 || args.batch == 0 || args.partitions <= 0 {
        bail!("--producers, --batch and --partitions must be at least 1");
    }
    let duration = seconds(args.duration_secs.unwrap_or(10.0), "--duration-secs")?;
    let warmup = seconds(args.broker.warmup_secs, "--warmup-secs")?;
    let stop = match args.messages_per_producer {
        Some(messages) => Stop::MessagesPerProducer(messages),
        None => Stop::After(duration),
    };
    let broker = args.broker.clone();
    super::per_security(&broker, "produce", |target| {
        let args = args.clone();
        async move { produce_against(&args, &target, stop, warmup).await }
    })
    .await
}

async fn produce_against(
    args: &ProduceArgs,
    target: &Target,
    stop: Stop,
    warmup: Duration,
) -> Result<super::Measured> {
    let response_timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&target.addr, response_timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    let produce_version = versions.pick(
        ApiKey::Produce,
        kafka::PRODUCE_VERSIONS.0,
        kafka::PRODUCE_VERSIONS.1,
    )?;
    if !args.client_quota.is_empty() {
        kafka::set_default_client_quotas(&mut admin, &versions, &args.client_quota).await?;
    }
    let partitions = kafka::prepare_topic(
        &mut admin,
        &versions,
        &args.topic,
        args.partitions,
        args.replication_factor,
    )
    .await?;
    // Each partition's requests go to its leader (all to the one broker on a single node).
    let metadata_version = versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let leaders = kafka::leaders(&mut admin, metadata_version, &args.topic).await?;
    let partition_addrs = (0..partitions)
        .map(|p| {
            leaders
                .addr_of(p, &target.addr)
                .ok_or_else(|| anyhow!("partition {p} of {} has no leader", args.topic))
        })
        .collect::<Result<Vec<String>>>()?;

    let plan = Arc::new(ProducePlan {
        partition_addrs,
        topic: args.topic.clone(),
        partitions,
        producers: args.producers,
        batch: args.batch,
        message_bytes: args.message_bytes,
        acks: args.acks,
        stop,
        produce_version,
        response_timeout,
        idempotent: args
            .idempotent
            .then(|| {
                versions.pick(
                    ApiKey::InitProducerId,
                    kafka::INIT_PRODUCER_ID_VERSIONS.0,
                    kafka::INIT_PRODUCER_ID_VERSIONS.1,
                )
            })
            .transpose()?,
    });
    let connections = connect_all(&plan).await?;
    let gate = StartGate::new(connections.len());
    let warmup_end = Instant::now() + warmup;
    let mut producers = tokio::spawn(run(
        Arc::clone(&plan),
        connections,
        warmup_end,
        Arc::clone(&gate),
    ));
    let before = open_window(target, &gate, &mut producers).await?;
    let outcome = producers
        .await
        .map_err(|error| anyhow!("producer tasks failed: {error}"))??;
    let after = Snapshot::take(target).await;

    let window_s = outcome.window.as_secs_f64().max(1e-9);
    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "{}{}, 1 request in flight each, {} × {} B per request, acks={}, topic {} ({}), \
             Produce v{produce_version}",
            count(args.producers as i64, "producer"),
            if args.idempotent { " (idempotent)" } else { "" },
            args.batch,
            args.message_bytes,
            args.acks,
            args.topic,
            count(i64::from(partitions), "partition")
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
        "messages/s",
        stats::thousands(outcome.ok_messages as f64 / window_s),
    );
    table.row(
        "MB/s",
        format!(
            "{:.2} (message values, 1 MB = 10^6 B)",
            (outcome.ok_messages * args.message_bytes as u64) as f64 / window_s / 1e6
        ),
    );
    table.row(
        "requests/s",
        stats::thousands(outcome.ok_requests as f64 / window_s),
    );
    if args.acks == 0 {
        table.row("latency", "n/a (acks=0: the broker does not answer)");
    } else {
        latency_rows(&mut table, &outcome.latency);
    }
    let requests = outcome.ok_requests + outcome.failed_requests;
    table.row(
        "errors",
        if outcome.failed_requests == 0 {
            format!("0 of {} requests", stats::thousands(requests as f64))
        } else {
            format!(
                "{} of {} requests: {}",
                stats::thousands(outcome.failed_requests as f64),
                stats::thousands(requests as f64),
                describe_errors(&outcome.errors)
            )
        },
    );
    environment_rows(&mut table, target, &before, &after);
    match fdatasync_baseline(200) {
        Ok((p50, dir)) => table.row(
            "fdatasync p50",
            format!(
                "{:.3} ms (the disk alone: 200 × 100 B append + fdatasync in {}, after the run)",
                p50.as_secs_f64() * 1e3,
                dir.display()
            ),
        ),
        Err(e) => table.row("fdatasync p50", format!("not measured: {e:#}")),
    }
    println!("Stillwater produce benchmark");
    table.print();
    Ok(super::Measured::of(
        "msg",
        outcome.ok_messages,
        window_s,
        &outcome.latency,
        &before,
        &after,
    ))
}

/// When each producer stops.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this many measured messages (rounded up to whole batches).
    MessagesPerProducer(u64),
    /// When this much time has passed since the measured window opened.
    After(Duration),
}

pub struct ProducePlan {
    /// Each partition's leader.
    pub partition_addrs: Vec<String>,
    pub topic: String,
    pub partitions: i32,
    pub producers: usize,
    pub batch: usize,
    pub message_bytes: usize,
    pub acks: i16,
    pub stop: Stop,
    pub produce_version: i16,
    pub response_timeout: Duration,
    /// With the InitProducerId version to use: producers are idempotent.
    pub idempotent: Option<i16>,
}

/// What the producers did inside the measured window.
pub struct ProduceOutcome {
    pub ok_messages: u64,
    pub ok_requests: u64,
    pub failed_requests: u64,
    /// Failed requests by error.
    pub errors: BTreeMap<String, u64>,
    /// Per-request latency (empty with acks=0).
    pub latency: Latency,
    /// From the opening of the window until the last producer finished.
    pub window: Duration,
}

/// Open every producer's connection before the clock starts, so connection set-up is not
/// measured and a broker that refuses connections fails here, not mid-run.
pub async fn connect_all(plan: &ProducePlan) -> Result<Vec<Connection>> {
    let connects = (0..plan.producers).map(|index| async move {
        let addr = &plan.partition_addrs[index % plan.partition_addrs.len()];
        Connection::connect(addr, plan.response_timeout)
            .await
            .with_context(|| format!("producer {index}"))
    });
    futures::future::try_join_all(connects).await
}

/// Runs the producers: load until `warmup_end`, then arrive at `gate`, then the measured run.
pub async fn run(
    plan: Arc<ProducePlan>,
    connections: Vec<Connection>,
    warmup_end: Instant,
    gate: Arc<StartGate>,
) -> Result<ProduceOutcome> {
    let tickets: Vec<GateTicket> = (0..connections.len()).map(|_| gate.ticket()).collect();
    let timeout_ms = i32::try_from(plan.response_timeout.as_millis()).unwrap_or(i32::MAX);
    // One batch, encoded once and sent again and again: the client shares the machine with the
    // broker, so it should spend its CPU on the wire, not on re-encoding identical records.
    let batch = kafka::encode_record_batch(plan.batch, plan.message_bytes, unix_time_ms())?;
    let mut tasks = Vec::with_capacity(connections.len());
    for (index, (mut connection, ticket)) in connections.into_iter().zip(tickets).enumerate() {
        let partition = (index % plan.partitions.max(1) as usize) as i32;
        // An idempotent producer's batch carries its id; its base sequence moves each send.
        let (batch, sequence) = match plan.idempotent {
            None => (batch.clone(), None),
            Some(version) => {
                let id = kafka::init_producer_id(&mut connection, version).await?;
                let own = kafka::encode_idempotent_batch(
                    plan.batch,
                    plan.message_bytes,
                    unix_time_ms(),
                    (id, 0),
                )?;
                let len = own.len();
                (
                    own,
                    Some(Sequence {
                        batch_bytes: len,
                        next: 0,
                    }),
                )
            }
        };
        let frame = kafka::produce_frame(
            plan.produce_version,
            &plan.topic,
            partition,
            plan.acks,
            timeout_ms,
            batch,
        )?;
        let producer = Producer {
            plan: Arc::clone(&plan),
            connection,
            frame,
            partition,
            sequence,
        };
        tasks.push(tokio::spawn(async move {
            producer
                .run(warmup_end, ticket)
                .await
                .with_context(|| format!("producer {index} (partition {partition})"))
        }));
    }

    let mut outcome = ProduceOutcome {
        ok_messages: 0,
        ok_requests: 0,
        failed_requests: 0,
        errors: BTreeMap::new(),
        latency: Latency::new()?,
        window: Duration::ZERO,
    };
    let mut failures = Vec::new();
    for task in futures::future::join_all(tasks).await {
        match task {
            Ok(Ok(tally)) => {
                outcome.ok_messages += tally.ok_messages;
                outcome.ok_requests += tally.ok_requests;
                outcome.failed_requests += tally.failed_requests;
                for (error, count) in tally.errors {
                    *outcome.errors.entry(error).or_insert(0) += count;
                }
                outcome.latency.merge(&tally.latency)?;
                if let Some(opened) = gate.opened_at() {
                    let window = tally.finished.saturating_duration_since(opened);
                    outcome.window = outcome.window.max(window);
                }
            }
            Ok(Err(error)) => failures.push(error),
            Err(join_error) => failures.push(anyhow!("producer task failed: {join_error}")),
        }
    }
    let failed_producers = failures.len();
    if let Some(first) = failures.into_iter().next() {
        return Err(first.context(format!(
            "{failed_producers} of {} producers failed; the first failure",
            plan.producers
        )));
    }
    if outcome.ok_requests == 0 && outcome.failed_requests > 0 {
        bail!(
            "every produce request failed ({} requests): {}",
            outcome.failed_requests,
            describe_errors(&outcome.errors)
        );
    }
    Ok(outcome)
}

pub fn describe_errors(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(error, count)| format!("{error} × {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct ProducerTally {
    ok_messages: u64,
    ok_requests: u64,
    failed_requests: u64,
    errors: BTreeMap<String, u64>,
    latency: Latency,
    finished: Instant,
}

impl ProducerTally {
    fn fail(&mut self, error: String) {
        self.failed_requests += 1;
        *self.errors.entry(error).or_insert(0) += 1;
    }
}

struct Producer {
    plan: Arc<ProducePlan>,
    connection: Connection,
    /// The complete request frame; only its correlation id (and, idempotent, the batch's base
    /// sequence) changes between sends.
    frame: BytesMut,
    partition: i32,
    sequence: Option<Sequence>,
}

/// An idempotent producer's numbering: the batch is the frame's last `batch_bytes`.
struct Sequence {
    batch_bytes: usize,
    next: i32,
}

impl Producer {
    /// The next batch in sequence (idempotent producers; a no-op otherwise).
    fn number_batch(&mut self) {
        if let Some(seq) = &mut self.sequence {
            let at = self.frame.len() - seq.batch_bytes;
            kafka::set_base_sequence(&mut self.frame[at..], seq.next);
            seq.next = seq.next.wrapping_add(self.plan.batch as i32) & i32::MAX;
        }
    }
}

impl Producer {
    async fn run(mut self, warmup_end: Instant, mut ticket: GateTicket) -> Result<ProducerTally> {
        let acknowledged = self.plan.acks != 0;
        while Instant::now() < warmup_end {
            if acknowledged {
                // Warm-up answers are not counted, errors included: the measured window
                // reports whatever the broker still gets wrong.
                let (_latency, _result) = self.request().await?;
            } else {
                self.send().await?;
            }
        }
        if !acknowledged {
            // Drain what the warm-up left in the socket buffers before the window opens.
            if let Err(error) = self.fence().await? {
                bail!("the acks=1 fence after the warm-up failed: {error}");
            }
        }
        let opened = ticket.arrive_and_wait().await?;

        let mut tally = ProducerTally {
            ok_messages: 0,
            ok_requests: 0,
            failed_requests: 0,
            errors: BTreeMap::new(),
            latency: Latency::new()?,
            finished: opened,
        };
        let batch = self.plan.batch as u64;
        let requests_max = match self.plan.stop {
            Stop::MessagesPerProducer(messages) => messages.div_ceil(batch),
            Stop::After(_) => u64::MAX,
        };
        let deadline = match self.plan.stop {
            Stop::MessagesPerProducer(_) => None,
            Stop::After(duration) => Some(opened + duration),
        };
        while tally.ok_requests + tally.failed_requests < requests_max
            && deadline.is_none_or(|deadline| Instant::now() < deadline)
        {
            if acknowledged {
                let (latency, result) = self.request().await?;
                tally.latency.record(latency);
                match result {
                    Ok(()) => {
                        tally.ok_requests += 1;
                        tally.ok_messages += batch;
                    }
                    Err(error) => tally.fail(error),
                }
            } else {
                self.send().await?;
                tally.ok_requests += 1;
                tally.ok_messages += batch;
            }
        }
        if !acknowledged {
            // The window closes when the broker has taken everything sent in it.
            if let Err(error) = self.fence().await? {
                tally.fail(format!("acks=1 fence: {error}"));
            }
        }
        tally.finished = Instant::now();
        Ok(tally)
    }

    /// One request and its response. Outer error: the connection is unusable. Inner error: the
    /// broker answered with an error for our partition.
    async fn request(&mut self) -> Result<(Duration, std::result::Result<(), String>)> {
        self.number_batch();
        let correlation_id = self.connection.take_correlation_id();
        kafka::set_correlation_id(&mut self.frame, correlation_id);
        let sent = Instant::now();
        self.connection.write_frame(&self.frame).await?;
        let response = self.connection.read_frame().await?;
        let latency = sent.elapsed();
        let result = check_produce_response(&self.plan, self.partition, response, correlation_id)?;
        Ok((latency, result))
    }

    /// acks=0: the broker sends no response; TCP back-pressure paces the sender.
    async fn send(&mut self) -> Result<()> {
        self.number_batch();
        let correlation_id = self.connection.take_correlation_id();
        kafka::set_correlation_id(&mut self.frame, correlation_id);
        self.connection.write_frame(&self.frame).await
    }

    /// An acks=1 request on the same connection and partition after acks=0 requests: its
    /// response means the broker has taken everything sent before it.
    async fn fence(&mut self) -> Result<std::result::Result<(), String>> {
        let timeout_ms = i32::try_from(self.plan.response_timeout.as_millis()).unwrap_or(i32::MAX);
        let batch = kafka::encode_record_batch(1, self.plan.message_bytes, unix_time_ms())?;
        let mut fence = kafka::produce_frame(
            self.plan.produce_version,
            &self.plan.topic,
            self.partition,
            1,
            timeout_ms,
            batch,
        )?;
        let correlation_id = self.connection.take_correlation_id();
        kafka::set_correlation_id(&mut fence, correlation_id);
        self.connection.write_frame(&fence).await?;
        let response = self
            .connection
            .read_frame()
            .await
            .context("waiting for the acks=1 fence after acks=0 requests")?;
        check_produce_response(&self.plan, self.partition, response, correlation_id)
    }
}

fn check_produce_response(
    plan: &ProducePlan,
    partition: i32,
    response: Bytes,
    correlation_id: i32,
) -> Result<std::result::Result<(), String>> {
    let response =
        kafka::decode_response::<ProduceRequest>(response, plan.produce_version, correlation_id)
            .context("decoding a Produce response")?;
    let partition_response = response
        .responses
        .iter()
        .filter(|topic| topic.name.0.as_str() == plan.topic)
        .flat_map(|topic| topic.partition_responses.iter())
        .find(|response| response.index == partition);
    Ok(match partition_response {
        None => Err(format!("no response for {}-{partition}", plan.topic)),
        Some(response) if response.error_code != 0 => Err(kafka::error_name(response.error_code)),
        Some(_) => Ok(()),
    })
}

pub fn unix_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The latency of one small append + fdatasync on this disk, as the yardstick for a lone
/// producer's latency (which cannot beat one sync). Measured in the target directory, where the
/// spawned broker keeps its data (not /tmp, which may be memory).
fn fdatasync_baseline(rounds: usize) -> Result<(Duration, std::path::PathBuf)> {
    use std::io::Write;
    let dir = crate::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("fdatasync-baseline-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let record = [b'x'; 100];
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = std::time::Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        took.push(start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    took.sort();
    Ok((took[took.len() / 2], dir))
}
