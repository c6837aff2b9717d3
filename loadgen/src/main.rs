//! `loadgen`: one librdkafka producer, configured as the common clients are, driving a broker
//! the way `rdkafka_performance -P` does — the load generator of `cargo xtask bench rdkafka`.
//!
//! It creates the topic if asked, sends a warm-up (so connections, metadata and the producer
//! id are settled), prints `ready` and waits for a line on stdin (the caller samples the
//! broker's CPU then), sends the measured messages as fast as the client takes them, waits
//! for every delivery report, and prints one `result key=value …` line. Every message must be
//! acknowledged: a failed delivery fails the run (exit code 1). Transactional
//! (`--transactional-commit-ms`), it commits on that period and reports the commits' latency.
//! With `--e2e-messages N` it then sends N more messages, one a millisecond, read back by a
//! `read_committed` consumer, and prints their end-to-end latency (`e2e …`): from the send to
//! the consumer's poll, so a transaction's records count from their send to the commit that
//! lets them out.

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::ClientContext;

#[derive(Parser, Debug)]
#[command(about = "One librdkafka producer at full speed; prints a `result` line")]
struct Args {
    /// bootstrap.servers
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "rdkafka-bench")]
    topic: String,
    /// Create the topic first with this many partitions (an existing topic is kept).
    #[arg(long)]
    create_partitions: Option<i32>,
    /// Replication factor of a topic it creates.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Bytes of each record's value (no key).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Measured messages.
    #[arg(long, default_value_t = 300_000)]
    messages: u64,
    /// Messages sent (and acknowledged) before `ready`.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// enable.idempotence=true.
    #[arg(long)]
    idempotent: bool,
    /// Transactional: a transactional id, and a commit every this many milliseconds (the
    /// result line then gives the commits' latency).
    #[arg(long)]
    transactional_commit_ms: Option<u64>,
    /// Any other librdkafka property, `key=value` (repeatable); applied last.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// After the result: this many messages, one a millisecond, read by a `read_committed`
    /// consumer; prints `e2e messages=… p50_ms=… p99_ms=…`.
    #[arg(long, default_value_t = 0)]
    e2e_messages: u64,
    /// Wait for a line on stdin after `ready` before the measured messages.
    #[arg(long)]
    wait_go: bool,
    /// Print the version of librdkafka built in, and exit.
    #[arg(long)]
    librdkafka_version: bool,
}

/// Delivery reports, counted from librdkafka's callback.
#[derive(Default)]
struct Reports {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if args.librdkafka_version {
        println!("{}", rdkafka::util::get_rdkafka_version().1);
        return Ok(());
    }
    if let Some(partitions) = args.create_partitions {
        create_topic(&args, partitions)?;
    }
    let mut config = ClientConfig::new();
    // The settings of the reference runs (rdkafka_performance -P): acks=all, 5 ms of
    // linger, batches up to 1 MB, and a queue large enough that the client is never starved.
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000")
        .set(
            "enable.idempotence",
            // A transactional producer is idempotent too.
            if args.idempotent || args.transactional_commit_ms.is_some() {
                "true"
            } else {
                "false"
            },
        );
    if args.transactional_commit_ms.is_some() {
        config.set(
            "transactional.id",
            format!("loadgen-{}", std::process::id()),
        );
    }
    for kv in &args.settings {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--set {kv}: expected key=value");
        };
        config.set(k, v);
    }
    let producer: BaseProducer<Reports> = config
        .create_with_context(Reports::default())
        .context("creating the producer")?;
    let mut txn = args.transactional_commit_ms.map(|ms| Txn {
        every: Duration::from_millis(ms),
        began: Instant::now(),
        commits: Vec::new(),
    });
    if let Some(t) = &mut txn {
        producer
            .init_transactions(Duration::from_secs(30))
            .context("init_transactions")?;
        producer.begin_transaction().context("begin_transaction")?;
        t.began = Instant::now();
    }
    let payload = vec![b'x'; args.size];
    send(&producer, &args.topic, &payload, args.warmup, txn.as_mut())?;
    println!("ready");
    if args.wait_go {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    if let Some(t) = &mut txn {
        t.commits.clear();
    }
    let before = producer.context().delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    send(
        &producer,
        &args.topic,
        &payload,
        args.messages,
        txn.as_mut(),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let delivered = producer.context().delivered.load(Ordering::Relaxed) - before;
    let commits = match &mut txn {
        Some(t) => {
            t.commits.sort();
            let at = |q: f64| {
                let i = ((t.commits.len() as f64 * q).ceil() as usize).clamp(1, t.commits.len());
                t.commits[i - 1].as_secs_f64() * 1e3
            };
            format!(
                " commits={} commit_p50_ms={:.2} commit_p99_ms={:.2}",
                t.commits.len(),
                at(0.5),
                at(0.99)
            )
        }
        None => String::new(),
    };
    println!(
        "result messages={delivered} bytes={} seconds={seconds:.4} msgs_per_sec={:.0} mb_per_sec={:.1}{commits}",
        delivered * args.size as u64,
        delivered as f64 / seconds,
        (delivered * args.size as u64) as f64 / seconds / 1e6
    );
    if args.e2e_messages > 0 {
        end_to_end(&args, &producer, txn.as_mut())?;
    }
    Ok(())
}

/// The microseconds since the Unix epoch: what an end-to-end message carries from its send.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `--e2e-messages` messages, one a millisecond (each `e2e:<send time in µs>`), read by a
/// `read_committed` consumer on another thread from the partitions' ends; prints their
/// latencies' median and 99th percentile.
fn end_to_end(
    args: &Args,
    producer: &BaseProducer<Reports>,
    mut txn: Option<&mut Txn>,
) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("loadgen-e2e-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the end-to-end consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .context("the topic's metadata")?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(t.name(), p.id(), Offset::End)?;
        }
    }
    consumer.assign(&assignment)?;
    // Until every partition's end is resolved (the first poll fetches it).
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    let expected = args.e2e_messages;
    let reader = std::thread::spawn(move || -> Vec<u64> {
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60 + expected / 100);
        while (latencies.len() as u64) < expected && Instant::now() < deadline {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let sent = m
                .payload()
                .and_then(|p| p.strip_prefix(b"e2e:"))
                .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u64>().ok());
            if let Some(sent) = sent {
                latencies.push(now_us().saturating_sub(sent));
            }
        }
        latencies
    });
    let started = Instant::now();
    for i in 0..expected {
        if let Some(t) = txn.as_deref_mut() {
            t.maybe_commit(producer, false)?;
        }
        let payload = format!("e2e:{}", now_us());
        producer
            .send(BaseRecord::<(), [u8]>::to(&args.topic).payload(payload.as_bytes()))
            .map_err(|(e, _)| e)
            .context("producing an end-to-end message")?;
        producer.poll(Duration::ZERO);
        let next = started + Duration::from_millis(i + 1);
        while Instant::now() < next {
            producer.poll(next.saturating_duration_since(Instant::now()));
        }
    }
    match txn {
        Some(t) => t.maybe_commit(producer, true)?,
        None => producer
            .flush(Duration::from_secs(60))
            .context("waiting for the end-to-end messages' reports")?,
    }
    let mut latencies = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the end-to-end reader panicked"))?;
    if latencies.is_empty() {
        bail!("the read_committed consumer got none of the end-to-end messages");
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        latencies[i - 1] as f64 / 1e3
    };
    println!(
        "e2e messages={} p50_ms={:.2} p99_ms={:.2}",
        latencies.len(),
        at(0.5),
        at(0.99)
    );
    Ok(())
}

/// A transactional producer's commits: every `every`, each one's latency kept.
struct Txn {
    every: Duration,
    began: Instant,
    commits: Vec<Duration>,
}

impl Txn {
    /// Commit the transaction under way if it is due (or `force`), and begin the next.
    fn maybe_commit(&mut self, producer: &BaseProducer<Reports>, force: bool) -> Result<()> {
        if !force && self.began.elapsed() < self.every {
            return Ok(());
        }
        let started = Instant::now();
        // Every delivery report served here first, a millisecond at a time: left to the flush
        // inside commit_transaction (or to BaseProducer::flush), each commit waited 100 ms
        // whatever it held (measured: 101 ms at 10 and at 100 ms between commits), where
        // confluent-kafka's commit of 20,000 records takes 2 to 17 ms on the same broker.
        let deadline = Instant::now() + Duration::from_secs(60);
        while producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                bail!("the transaction's records were not delivered within 60 s");
            }
            producer.poll(Duration::from_millis(1));
        }
        producer
            .commit_transaction(Duration::from_secs(60))
            .context("commit_transaction")?;
        self.commits.push(started.elapsed());
        producer.begin_transaction().context("begin_transaction")?;
        self.began = Instant::now();
        Ok(())
    }
}

/// Send `n` messages as fast as the client takes them (a full queue is waited out by serving
/// delivery reports), then wait for every report; any failed delivery fails the run.
fn send(
    producer: &BaseProducer<Reports>,
    topic: &str,
    payload: &[u8],
    n: u64,
    mut txn: Option<&mut Txn>,
) -> Result<()> {
    for i in 0..n {
        if let Some(t) = txn.as_deref_mut() {
            t.maybe_commit(producer, false)?;
        }
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(payload)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("producing: {e}"),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    match txn {
        // A commit flushes: every report is in once it returns.
        Some(t) => t.maybe_commit(producer, true)?,
        None => producer
            .flush(Duration::from_secs(120))
            .context("waiting for the delivery reports")?,
    }
    let reports = producer.context();
    let failed = reports.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = reports
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        bail!(
            "{failed} message(s) not delivered; the first: {}",
            first.unwrap_or_default()
        );
    }
    Ok(())
}

fn create_topic(args: &Args, partitions: i32) -> Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.bootstrap);
    // How to reach the broker (TLS, SASL) holds for the admin client too.
    for (k, v) in args.settings.iter().filter_map(|kv| kv.split_once('=')) {
        if ["security.", "ssl.", "sasl."]
            .iter()
            .any(|p| k.starts_with(p))
        {
            config.set(k, v);
        }
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the admin client")?;
    let topic = NewTopic::new(
        &args.topic,
        partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options))
        .context("creating the topic")?;
    for r in results {
        match r {
            Ok(_) | Err((_, Code::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
