//! `cargo xtask bench perf-test`: Kafka's own load tools — `kafka-producer-perf-test` and
//! `kafka-consumer-perf-test` (`org.apache.kafka.tools`, on the class path Maven resolves for
//! Kafka) — against a fresh broker of ours and against Apache Kafka at each durability setting,
//! in the same run, runs alternating.
//!
//! A run: a fresh system (one node, or three with `--cluster`), a topic of `--partitions`
//! partitions made with `kafka-topics`, then `--producers` Java producers at once (acks=all,
//! the Java client's other defaults; `plain` turns its default idempotence off), each sending
//! its share of `--megabytes` with a fifth of it as warm-up, then one consumer reading the
//! whole backlog; before it, a warm-up on a topic of its own. Throughput is the producers' steady-state rates summed; CPU is the brokers'
//! over each phase, per GB of record values; RSS is the brokers' peak.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};

use super::apache_kafka::{Durability, FreshKafka};
use super::broker_process::SpawnedBroker;
use super::stats::{self, Table};
use crate::{cluster, target_dir};

#[derive(Args)]
pub struct PerfTestArgs {
    /// Producer processes at once (each a `kafka-producer-perf-test`).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8])]
    producers: Vec<usize>,
    /// Record sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1024])]
    sizes: Vec<usize>,
    /// Producer kinds.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Plain, Mode::Idempotent])]
    modes: Vec<Mode>,
    /// Rounds: every (size, producers, mode, system) once per round; medians over the rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// MB of record values per run, shared among the producers.
    #[arg(long, default_value_t = 200.0)]
    megabytes: f64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Three nodes each (ours: a local cluster in <target>/bench/perf-test-cluster), the topic
    /// replicated three ways.
    #[arg(long)]
    cluster: bool,
    /// Kafka's durability settings measured beside ours.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Durability::Shipped, Durability::Flush])]
    kafka_durability: Vec<Durability>,
    /// Ours alone, no Kafka (a quicker look at one of our own rows).
    #[arg(long)]
    no_kafka: bool,
    /// The broker binary [default: <target>/release/broker, built first].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// MB of record values one producer sends (and one consumer reads) on a topic of its own
    /// before the measured phase: a JVM broker compiles its hot paths in its first seconds
    /// under load, and each run starts a fresh one.
    #[arg(long, default_value_t = 50.0)]
    warmup_megabytes: f64,
    /// Before each run: sync, drop the page cache and wait 3 s (as root), so that no run
    /// pays for the writes an earlier one left in the page cache.
    #[arg(long)]
    no_drop_caches: bool,
    /// Each tool's Java heap.
    #[arg(long, default_value = "256m")]
    tool_heap: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `enable.idempotence=false`.
    Plain,
    /// `enable.idempotence=true` (the Java client's default), 5 requests in flight.
    Idempotent,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Idempotent => "idempotent",
        }
    }
}

#[derive(Clone, Copy)]
enum System {
    Ours,
    Kafka(Durability),
}

impl System {
    fn name(self) -> String {
        match self {
            System::Ours => "stillwater".into(),
            System::Kafka(durability) => durability.name(),
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy)]
struct Sample {
    /// The producers' steady-state rates, summed.
    produce_msgs_per_sec: f64,
    produce_mb_per_sec: f64,
    /// The worst producer's steady-state 99th percentile of acknowledgement latency (ms).
    produce_p99_ms: f64,
    produce_cpu_s_per_gb: f64,
    /// The consumer's rate while fetching (its group join left out).
    consume_mb_per_sec: f64,
    consume_cpu_s_per_gb: f64,
    peak_rss_mb: f64,
}

pub async fn perf_test_bench(args: PerfTestArgs) -> Result<()> {
    if args.producers.contains(&0)
        || args.producers.is_empty()
        || args.sizes.is_empty()
        || args.modes.is_empty()
        || args.rounds == 0
        || args.megabytes <= 0.0
        || args.partitions == 0
    {
        bail!("--producers, --sizes, --modes, --rounds, --megabytes and --partitions must not be empty or zero");
    }
    let classpath = crate::kafka::classpath()?;
    let binary = match &args.broker_bin {
        Some(b) => b.clone(),
        None => cluster::release_broker()?,
    };
    let mut systems = vec![System::Ours];
    if !args.no_kafka {
        systems.extend(args.kafka_durability.iter().map(|&d| System::Kafka(d)));
    }
    let load_average_before = stats::load_average();
    let mut cases = Vec::new();
    for &size in &args.sizes {
        for &producers in &args.producers {
            for &mode in &args.modes {
                cases.push((size, producers, mode));
            }
        }
    }
    // samples[case][system][round]
    let mut samples = vec![vec![Vec::new(); systems.len()]; cases.len()];
    for round in 1..=args.rounds {
        for (ci, &(size, producers, mode)) in cases.iter().enumerate() {
            for (yi, &system) in systems.iter().enumerate() {
                let sample = run_one(&args, &classpath, &binary, system, size, producers, mode)
                    .await
                    .with_context(|| {
                        format!(
                            "{size} B, {producers} producer(s), {}, {}",
                            mode.name(),
                            system.name()
                        )
                    })?;
                println!(
                    "xtask: round {round}, {size} B, {producers} producer(s), {}, {}: produce {} msg/s ({:.1} MB/s, p99 {:.0} ms, {:.2} CPU s/GB), consume {:.1} MB/s ({:.2} CPU s/GB), peak RSS {:.0} MB",
                    mode.name(),
                    system.name(),
                    stats::thousands(sample.produce_msgs_per_sec),
                    sample.produce_mb_per_sec,
                    sample.produce_p99_ms,
                    sample.produce_cpu_s_per_gb,
                    sample.consume_mb_per_sec,
                    sample.consume_cpu_s_per_gb,
                    sample.peak_rss_mb
                );
                samples[ci][yi].push(sample);
            }
        }
    }
    let mut table = Table::default();
    table.row("command", crate::invocation());
    table.row("commit", stats::commit_of_repo());
    table.row(
        "workload",
        format!(
            "Kafka {}'s kafka-producer-perf-test (acks=all, the Java client's defaults \
             otherwise, a fifth of each producer's records as warm-up) then \
             kafka-consumer-perf-test reading the backlog; {:.0} MB of record values per run; \
             topic of {} partition(s){}; a fresh system per run; {} round(s), runs alternating; \
             {} CPUs",
            crate::kafka::VERSION,
            args.megabytes,
            args.partitions,
            stats::replicas_note(args.cluster),
            args.rounds,
            stats::cpu_count()
        ),
    );
    table.row("load average before", load_average_before);
    let med = |runs: &[Sample], f: fn(&Sample) -> f64| {
        stats::median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    for (ci, &(size, producers, mode)) in cases.iter().enumerate() {
        let label = format!("{size} B x{producers} {}", mode.name());
        for (yi, system) in systems.iter().enumerate() {
            let runs = &samples[ci][yi];
            table.row(
                format!("{label} {}", system.name()),
                format!(
                    "produce {} msg/s (runs {}), {:.1} MB/s, p99 {:.0} ms, CPU {:.2} s/GB; \
                     consume {:.1} MB/s, CPU {:.2} s/GB; peak RSS {:.0} MB",
                    stats::thousands(med(runs, |s| s.produce_msgs_per_sec)),
                    runs.iter()
                        .map(|s| stats::thousands(s.produce_msgs_per_sec))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    med(runs, |s| s.produce_mb_per_sec),
                    med(runs, |s| s.produce_p99_ms),
                    med(runs, |s| s.produce_cpu_s_per_gb),
                    med(runs, |s| s.consume_mb_per_sec),
                    med(runs, |s| s.consume_cpu_s_per_gb),
                    med(runs, |s| s.peak_rss_mb),
                ),
            );
        }
        // Ours against each Kafka, round by round.
        let ours = &samples[ci][0];
        for (yi, system) in systems.iter().enumerate().skip(1) {
            let other = &samples[ci][yi];
            let ratio = |f: fn(&Sample) -> f64| {
                stats::median(
                    &ours
                        .iter()
                        .zip(other)
                        .map(|(a, b)| f(a) / f(b).max(1e-9))
                        .collect::<Vec<_>>(),
                )
            };
            table.row(
                format!("{label} stillwater / {}", system.name()),
                format!(
                    "produce {:.2} msg/s, {:.2} CPU per GB; consume {:.2} MB/s, {:.2} CPU per GB",
                    ratio(|s| s.produce_msgs_per_sec),
                    ratio(|s| s.produce_cpu_s_per_gb),
                    ratio(|s| s.consume_mb_per_sec),
                    ratio(|s| s.consume_cpu_s_per_gb),
                ),
            );
        }
        // Idempotent against plain, system by system.
        if mode == Mode::Idempotent {
            if let Some(plain) = cases
                .iter()
                .position(|&c| c == (size, producers, Mode::Plain))
            {
                for (yi, system) in systems.iter().enumerate() {
                    let r: Vec<f64> = samples[ci][yi]
                        .iter()
                        .zip(&samples[plain][yi])
                        .map(|(i, p)| i.produce_msgs_per_sec / p.produce_msgs_per_sec.max(1e-9))
                        .collect();
                    table.row(
                        format!(
                            "{size} B x{producers} idempotent / plain, {}",
                            system.name()
                        ),
                        format!("{:.2}", stats::median(&r)),
                    );
                }
            }
        }
    }
    table.row("load average after", stats::load_average());
    println!("Stillwater beside Apache Kafka: Kafka's own perf-test tools");
    table.print();
    Ok(())
}

/// A system started fresh for one run.
enum Running {
    Single(SpawnedBroker),
    Cluster { dir: PathBuf, pids: Vec<u32> },
    Kafka(FreshKafka),
}

impl Running {
    async fn start(args: &PerfTestArgs, binary: &Path, system: System) -> Result<Running> {
        let nodes = if args.cluster { 3 } else { 1 };
        Ok(match system {
            System::Kafka(durability) => Running::Kafka(FreshKafka::start(nodes, durability)?),
            System::Ours if args.cluster => {
                let dir = target_dir().join("bench").join("perf-test-cluster");
                let _ = std::fs::remove_dir_all(&dir);
                let mut pids = Vec::new();
                for node in 1..=cluster::NODES {
                    pids.push(cluster::start_node_with(&dir, node, binary, &[])?);
                }
                let running = Running::Cluster { dir, pids };
                if let Running::Cluster { dir, .. } = &running {
                    cluster::wait_registered(dir).await?;
                }
                running
            }
            System::Ours => Running::Single(
                SpawnedBroker::start(&super::rdkafka::spawn_args(binary, Vec::new())).await?,
            ),
        })
    }

    fn bootstrap(&self) -> String {
        match self {
            Running::Single(broker) => broker.addr.clone(),
            Running::Cluster { .. } => (1..=cluster::NODES)
                .map(|n| format!("127.0.0.1:{}", cluster::client_port(n)))
                .collect::<Vec<_>>()
                .join(","),
            Running::Kafka(kafka) => kafka.bootstrap().to_string(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Single(broker) => vec![broker.child.id()],
            Running::Cluster { pids, .. } => pids.clone(),
            Running::Kafka(kafka) => kafka.pids(),
        }
    }

    /// Stop it; its data is kept after a failure (the logs are in it).
    async fn stop(self, failed: bool) -> Result<()> {
        match self {
            Running::Single(broker) => broker.stop().await?,
            Running::Cluster { dir, .. } => {
                for node in 1..=cluster::NODES {
                    let _ = cluster::stop_node(&dir, node);
                }
                if !failed {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Running::Kafka(kafka) => kafka.stop(failed),
        }
        Ok(())
    }
}

async fn run_one(
    args: &PerfTestArgs,
    classpath: &str,
    binary: &Path,
    system: System,
    size: usize,
    producers: usize,
    mode: Mode,
) -> Result<Sample> {
    if !args.no_drop_caches {
        super::rdkafka::drop_caches();
    }
    let running = Running::start(args, binary, system).await?;
    let outcome = measure(args, classpath, &running, size, producers, mode);
    let failed = outcome.is_err();
    running.stop(failed).await?;
    outcome
}

const TOPIC: &str = "perf-test";
const WARMUP_TOPIC: &str = "perf-test-warmup";

/// The tools of one run, against one system.
struct Tools<'a> {
    args: &'a PerfTestArgs,
    classpath: &'a str,
    bootstrap: String,
    pids: Vec<u32>,
}

impl Tools<'_> {
    fn tool(&self, class: &str) -> std::process::Command {
        crate::kafka::tool(self.classpath, &self.args.tool_heap, class)
    }

    fn cpu(&self) -> Result<Duration> {
        self.pids.iter().map(|&p| stats::process_cpu_time(p)).sum()
    }

    fn create_topic(&self, topic: &str) -> Result<()> {
        let mut create = self.tool("org.apache.kafka.tools.TopicCommand");
        create
            .args(["--bootstrap-server", &self.bootstrap, "--create"])
            .args(["--topic", topic])
            .args(["--partitions", &self.args.partitions.to_string()])
            .args([
                "--replication-factor",
                if self.args.cluster { "3" } else { "1" },
            ]);
        finished("kafka-topics --create", create.output()?)?;
        Ok(())
    }

    /// `producers` producers at once, `records` each; each one's steady-state summary line, and
    /// the brokers' CPU meanwhile.
    fn produce(
        &self,
        topic: &str,
        producers: usize,
        records: u64,
        size: usize,
        mode: Mode,
    ) -> Result<(Vec<String>, Duration)> {
        let before = self.cpu()?;
        let children = (0..producers)
            .map(|_| {
                let mut producer = self.tool("org.apache.kafka.tools.ProducerPerformance");
                producer
                    .args(["--bootstrap-server", &self.bootstrap, "--topic", topic])
                    .args(["--num-records", &records.to_string()])
                    .args(["--warmup-records", &(records / 5).to_string()])
                    .args(["--record-size", &size.to_string(), "--throughput", "-1"])
                    .args([
                        "--command-property",
                        "acks=all",
                        &format!("enable.idempotence={}", mode == Mode::Idempotent),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                producer
                    .spawn()
                    .context("starting kafka-producer-perf-test")
            })
            .collect::<Result<Vec<_>>>()?;
        // Every producer's output read at once: one waited for in turn while the others fill
        // their pipes would stall them, and their rates with them.
        let outputs: Vec<std::io::Result<Output>> = std::thread::scope(|s| {
            let readers: Vec<_> = children
                .into_iter()
                .map(|child| s.spawn(move || child.wait_with_output()))
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().expect("a reader does not panic"))
                .collect()
        });
        let mut steady = Vec::new();
        for output in outputs {
            let output = finished("kafka-producer-perf-test", output?)?;
            let line = output
                .lines()
                .find(|l| l.contains("steady state records sent"))
                .ok_or_else(|| {
                    anyhow!("kafka-producer-perf-test printed no steady state: {output}")
                })?
                .to_string();
            steady.push(line);
        }
        Ok((steady, self.cpu()?.saturating_sub(before)))
    }

    /// One consumer reading `records` from the topic's start: its MB/s while fetching, and the
    /// brokers' CPU meanwhile.
    fn consume(&self, topic: &str, records: u64) -> Result<(f64, Duration)> {
        let before = self.cpu()?;
        let mut consumer = self.tool("org.apache.kafka.tools.ConsumerPerformance");
        consumer
            .args(["--bootstrap-server", &self.bootstrap, "--topic", topic])
            .args(["--num-records", &records.to_string(), "--timeout", "60000"]);
        let output = finished("kafka-consumer-perf-test", consumer.output()?)?;
        let cpu = self.cpu()?.saturating_sub(before);
        Ok((consumed_mb_per_sec(&output, records)?, cpu))
    }
}

fn measure(
    args: &PerfTestArgs,
    classpath: &str,
    running: &Running,
    size: usize,
    producers: usize,
    mode: Mode,
) -> Result<Sample> {
    let tools = Tools {
        args,
        classpath,
        bootstrap: running.bootstrap(),
        pids: running.pids(),
    };
    // Warm-up (a JVM broker compiles its hot paths in the first seconds of load): one producer
    // and one consumer on a topic of its own, not measured.
    let warmup = (args.warmup_megabytes * 1e6 / size as f64).ceil() as u64;
    if warmup > 0 {
        tools.create_topic(WARMUP_TOPIC)?;
        tools.produce(WARMUP_TOPIC, 1, warmup, size, mode)?;
        tools.consume(WARMUP_TOPIC, warmup)?;
    }

    tools.create_topic(TOPIC)?;
    let per_producer = ((args.megabytes * 1e6) / size as f64 / producers as f64).ceil() as u64;
    let (steady, produce_cpu) = tools.produce(TOPIC, producers, per_producer, size, mode)?;
    let mut msgs = 0.0;
    let mut mb = 0.0;
    let mut p99: f64 = 0.0;
    for line in &steady {
        msgs += number_before(line, " records/sec")?;
        mb += number_before(line, " MB/sec")?;
        p99 = p99.max(number_before(line, " ms 99th")?);
    }
    let total = per_producer * producers as u64;
    let gb = total as f64 * size as f64 / 1e9;
    let (consume_mb_per_sec, consume_cpu) = tools.consume(TOPIC, total)?;
    let peak_rss: u64 = tools.pids.iter().map(|&p| stats::peak_rss_bytes(p)).sum();
    Ok(Sample {
        produce_msgs_per_sec: msgs,
        produce_mb_per_sec: mb,
        produce_p99_ms: p99,
        produce_cpu_s_per_gb: produce_cpu.as_secs_f64() / gb,
        consume_mb_per_sec,
        consume_cpu_s_per_gb: consume_cpu.as_secs_f64() / gb,
        peak_rss_mb: peak_rss as f64 / 1e6,
    })
}

/// A tool's standard output, or its failure with what it printed.
fn finished(what: &str, output: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail = |s: &str| s[s.floor_char_boundary(s.len().saturating_sub(2000))..].to_string();
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            tail(&stdout),
            tail(&stderr)
        );
    }
    Ok(stdout)
}

/// The number just before `marker` in `line` (`… 100704.93 records/sec …`).
fn number_before(line: &str, marker: &str) -> Result<f64> {
    let (head, _) = line
        .split_once(marker)
        .ok_or_else(|| anyhow!("no `{marker}` in: {line}"))?;
    head.rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no number before `{marker}` in: {line}"))
}

/// `fetch.MB.sec` of `kafka-consumer-perf-test`'s summary, after checking that it read all
/// `records`.
fn consumed_mb_per_sec(output: &str, records: u64) -> Result<f64> {
    let mut lines = output.lines().skip_while(|l| !l.starts_with("start.time"));
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("kafka-consumer-perf-test printed no summary: {output}"))?
        .split(',')
        .map(str::trim)
        .collect();
    let values: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("kafka-consumer-perf-test printed no figures: {output}"))?
        .split(',')
        .map(str::trim)
        .collect();
    let field = |name: &str| -> Result<f64> {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| values.get(i)?.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in kafka-consumer-perf-test's summary: {output}"))
    };
    let read = field("data.consumed.in.nMsg")?;
    if read < records as f64 {
        bail!("kafka-consumer-perf-test read {read} of {records} records");
    }
    field("fetch.MB.sec")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tools_summaries() {
        let line = "250000 steady state records sent, 113224.637681 records/sec (110.57 MB/sec), \
                    228.71 ms avg latency, 398.00 ms max latency, 216 ms 50th, 353 ms 95th, \
                    373 ms 99th, 386 ms 99.9th.";
        assert_eq!(number_before(line, " records/sec").unwrap(), 113224.637681);
        assert_eq!(number_before(line, " MB/sec").unwrap(), 110.57);
        assert_eq!(number_before(line, " ms 99th").unwrap(), 373.0);
        assert!(number_before(line, " ms 42th").is_err());
        let consumer = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, \
                        nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                        2026-11-30 12:38:59:195, 2026-11-30 12:39:03:322, 292.9688, 70.9883, \
                        300000, 72692.0281, 3310, 817, 358.5909, 367197.0624\n";
        assert_eq!(consumed_mb_per_sec(consumer, 300000).unwrap(), 358.5909);
        assert!(consumed_mb_per_sec(consumer, 300001).is_err());
    }
}
