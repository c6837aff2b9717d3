//! `cargo xtask bench produce | fetch | group | topics | failover | catchup | reassign | connect |
//! rdkafka | perf-test | compaction | offsets`:
//! load a broker and print a table of the results.
//!
//! Every table carries the exact command line, the workload, the measured window, the broker's
//! group-commit and fsync counters over that window, and how busy the machine was — on a small
//! shared machine the last matters as much as the throughput.

mod apache_kafka;
mod batches;
mod broker_process;
mod catchup;
mod compaction;
mod connect;
mod failover;
mod fetch;
mod group;
pub(crate) mod kafka;
mod offsets;
mod partitions;
mod partitions_failover;
mod perf_test;
mod produce;
mod rdkafka;
mod reassign;
mod stats;
mod topics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use tokio::time::Instant;

use broker_process::SpawnedBroker;
use stats::{CpuTimes, MetricsSample, Table};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Concurrent producers, one request in flight each.
    Produce(produce::ProduceArgs),
    /// Consumers reading the topic from its start (filling it first if it is nearly empty).
    Fetch(fetch::FetchArgs),
    /// A consumer group reading the topic: records/s, and rebalance times when a member joins
    /// and when one leaves.
    Group(group::GroupArgs),
    /// Topic-creation latency: until CreateTopics answers, and until every partition took an
    /// acks=all write.
    Topics(topics::TopicsArgs),
    /// Many partitions on the local cluster (--cluster-dir): one CreateTopics per --count,
    /// until answered and until every partition is led (--busy: on a loaded host), the
    /// elections it took, a record to every partition, then each broker's idle CPU and RSS.
    Partitions(partitions::PartitionsArgs),
    /// On the local cluster (--cluster-dir): from SIGKILL of a leader to the first acknowledged
    /// write on each partition it led.
    Failover(failover::FailoverArgs),
    /// A broker's disk replaced while the others hold N GB: catch-up MB/s, the healthy brokers'
    /// peak memory, produce latency during the catch-up against before, per throttle setting.
    Catchup(catchup::CatchupArgs),
    /// A partition holding N GB moved to a broker without it (AlterPartitionReassignments)
    /// while producers write to other partitions: the move's time and MB/s, produce latency
    /// during it against before, per throttle setting.
    Reassign(reassign::ReassignArgs),
    /// Connection set-up: clients that connect, log in, ask ApiVersions and close, in a loop —
    /// connections/s and the broker's CPU per connection (`--security plaintext,sasl-ssl`).
    Connect(connect::ConnectArgs),
    /// A keyed load on a compacted topic (1 M updates over 10 k keys) with the log cleaner on
    /// and off, a fresh release broker each: updates/s, produce latency, broker CPU per update,
    /// the partition's size on disk and what the cleaner did.
    Compaction(compaction::CompactionArgs),
    /// Consumer groups committing offsets (300 groups, 4 partitions each, every 100 ms) on a
    /// fresh release broker per way of bounding `__consumer_offsets` (checkpoints, compaction,
    /// both): commits/s, commit latency, the topic's size through the load, the time a restart
    /// takes to serve every group's offsets again.
    Offsets(offsets::OffsetsArgs),
    /// One librdkafka producer (plain and idempotent, per record size) against a fresh broker
    /// per run: msgs/s and the broker's CPU per GB, beside a peer broker (--peer-bin) or Apache
    /// Kafka at both durability settings (--peer kafka), one node or three at acks=all
    /// (--cluster).
    Rdkafka(rdkafka::RdkafkaArgs),
    /// Kafka's own kafka-producer-perf-test and kafka-consumer-perf-test (1 and 8 producers,
    /// plain and idempotent, 100 B and 1 KiB) against a fresh broker and against Apache Kafka
    /// as shipped and with flush.messages=1, runs alternating; --cluster: three nodes each.
    PerfTest(perf_test::PerfTestArgs),
}

/// Which broker to load, and how to reach its metrics.
#[derive(Args, Clone, Debug)]
struct BrokerArgs {
    /// Kafka listener of the broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    addr: String,
    /// The broker's Prometheus endpoint (host:port; GET /metrics).
    #[arg(long, default_value = "127.0.0.1:9644")]
    metrics_addr: String,
    /// Build and start the release broker on free ports and a fresh data directory, run the
    /// benchmark against it, then stop it (ignores --addr and --metrics-addr).
    #[arg(long)]
    spawn_broker: bool,
    /// The broker binary --spawn-broker starts [default: <target>/release/broker, built first].
    #[arg(long, requires = "spawn_broker")]
    broker_bin: Option<PathBuf>,
    /// Extra argument for the spawned broker (repeatable), e.g. `--broker-arg --io-engine=blocking`.
    #[arg(long, requires = "spawn_broker", allow_hyphen_values = true)]
    broker_arg: Vec<String>,
    /// Deadline for each response; a broker that stops answering fails the run.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Seconds of load before the measured window starts.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// The brokers are the local cluster `cargo xtask cluster up` started in this folder
    /// (`cluster`, relative to the repository): requests go to each partition's leader, and the
    /// counters and CPU of all three brokers are reported.
    #[arg(long, conflicts_with = "spawn_broker")]
    cluster_dir: Option<PathBuf>,
    /// With --spawn-broker: the clients' security — `plaintext`, or `sasl-ssl` (the broker's
    /// one listener SASL_SSL with SCRAM-SHA-512, the authorizer on; the clients log in as its
    /// super user over TLS); `plaintext,sasl-ssl` runs the workload on a fresh broker for each
    /// and ends with a table comparing them. The local cluster's is what `cluster up` made it.
    #[arg(long, value_delimiter = ',', default_value = "plaintext")]
    security: Vec<Security>,
}

/// How the benchmark's clients reach the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    Plaintext,
    SaslSsl,
}

impl Security {
    fn name(self) -> &'static str {
        match self {
            Security::Plaintext => "PLAINTEXT",
            Security::SaslSsl => "SASL_SSL",
        }
    }
}

impl BrokerArgs {
    /// The security modes to run, each once (several only with --spawn-broker).
    fn security_modes(&self) -> Result<Vec<Security>> {
        let mut modes = self.security.clone();
        modes.dedup();
        if modes.is_empty() {
            modes.push(Security::Plaintext);
        }
        if !self.spawn_broker && modes != [Security::Plaintext] {
            bail!("--security other than plaintext needs --spawn-broker (the local cluster's is what `cargo xtask cluster up` made it)");
        }
        Ok(modes)
    }

    /// The one security mode of a workload that does not compare them.
    fn only_security(&self) -> Result<Security> {
        match self.security_modes()?.as_slice() {
            [one] => Ok(*one),
            _ => bail!("this benchmark runs with one --security at a time"),
        }
    }
}

/// What one run of a workload measured, to compare security modes.
pub struct Measured {
    /// What is counted: `msg`, `record`, `connection`.
    pub unit: &'static str,
    pub per_s: f64,
    /// The broker's CPU time per unit (all brokers together).
    pub broker_cpu_us: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Measured {
    fn of(
        unit: &'static str,
        messages: u64,
        window_s: f64,
        latency: &stats::Latency,
        before: &Snapshot,
        after: &Snapshot,
    ) -> Measured {
        let cpu = match (before.broker_cpu, after.broker_cpu) {
            (Some(start), Some(end)) if messages > 0 => {
                Some(end.saturating_sub(start).as_secs_f64() * 1e6 / messages as f64)
            }
            _ => None,
        };
        Measured {
            unit,
            per_s: messages as f64 / window_s.max(1e-9),
            broker_cpu_us: cpu,
            latency_p99_ms: (latency.count() > 0).then(|| latency.quantile_ms(0.99)),
        }
    }
}

/// Run `once` against a fresh target for each security mode of `args`; with several, print a
/// table comparing them (each as a ratio to the first).
async fn per_security<F, Fut>(args: &BrokerArgs, what: &str, mut once: F) -> Result<()>
where
    F: FnMut(Arc<Target>) -> Fut,
    Fut: std::future::Future<Output = Result<Measured>>,
{
    let mut measured = Vec::new();
    for security in args.security_modes()? {
        let target = Arc::new(Target::new(args, security).await?);
        let result = once(target.clone()).await;
        let target =
            Arc::try_unwrap(target).map_err(|_| anyhow!("the benchmark still holds its target"))?;
        let stopped = target.stop().await;
        measured.push((security, result?));
        stopped?;
    }
    crate::secure::use_for_clients(None);
    if measured.len() < 2 {
        return Ok(());
    }
    let mut table = Table::default();
    table.row("command", crate::invocation());
    let (_, first) = &measured[0];
    for (security, m) in &measured {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!(" ({:.2}×)", a / b),
            _ => String::new(),
        };
        let cpu = m
            .broker_cpu_us
            .map_or("n/a".into(), |c| format!("{c:.2} µs"));
        let p99 = m
            .latency_p99_ms
            .map_or("n/a".into(), |l| format!("{l:.2} ms"));
        table.row(
            security.name(),
            format!(
                "{} {}s/s{}, broker CPU {cpu}/{}{}, p99 {p99}",
                stats::thousands(m.per_s),
                m.unit,
                ratio(Some(m.per_s), Some(first.per_s)),
                m.unit,
                ratio(m.broker_cpu_us, first.broker_cpu_us),
            ),
        );
    }
    println!("Stillwater {what} benchmark, by security (ratios to the first)");
    table.print();
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        match args.workload {
            Workload::Produce(args) => produce::produce_bench(args).await,
            Workload::Fetch(args) => fetch::fetch_bench(args).await,
            Workload::Group(args) => group::group_bench(args).await,
            Workload::Topics(args) => topics::topics_bench(args).await,
            Workload::Partitions(args) => partitions::partitions_bench(args).await,
            Workload::Failover(args) => failover::failover_bench(args).await,
            Workload::Catchup(args) => catchup::catchup_bench(args).await,
            Workload::Reassign(args) => reassign::reassign_bench(args).await,
            Workload::Rdkafka(args) => rdkafka::rdkafka_bench(args).await,
            Workload::Connect(args) => connect::connect_bench(args).await,
            Workload::Compaction(args) => compaction::compaction_bench(args).await,
            Workload::Offsets(args) => offsets::offsets_bench(args).await,
            Workload::PerfTest(args) => perf_test::perf_test_bench(args).await,
        }
    })
}

/// Starts the measured window for all workers at once.
///
/// Each worker warms up, then arrives at the gate and waits; once every worker has arrived (or
/// failed), nothing is in flight, the coordinator samples the broker's counters and opens the
/// gate. So the counters' deltas cover exactly the measured requests, and requests buffered during
/// the warm-up (acks=0) do not leak into the window.
pub struct StartGate {
    workers: usize,
    arrived: tokio::sync::watch::Sender<usize>,
    opened: tokio::sync::watch::Sender<Option<Instant>>,
}

impl StartGate {
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            workers,
            arrived: tokio::sync::watch::Sender::new(0),
            opened: tokio::sync::watch::Sender::new(None),
        })
    }

    /// A worker's place at the gate; dropping it unused (the worker failed) counts as arriving,
    /// so a failed worker cannot keep the others waiting.
    pub fn ticket(self: &Arc<Self>) -> GateTicket {
        GateTicket {
            gate: Arc::clone(self),
            arrived: false,
        }
    }

    /// Coordinator: wait until every worker has arrived or failed.
    pub async fn all_arrived(&self) -> Result<()> {
        let workers = self.workers;
        self.arrived
            .subscribe()
            .wait_for(|&arrived| arrived >= workers)
            .await
            .map_err(|_| anyhow!("start gate closed"))?;
        Ok(())
    }

    /// Coordinator: start the measured window now.
    pub fn open(&self) -> Instant {
        let now = Instant::now();
        self.opened.send_replace(Some(now));
        now
    }

    /// When the window started, once open.
    pub fn opened_at(&self) -> Option<Instant> {
        *self.opened.borrow()
    }
}

pub struct GateTicket {
    gate: Arc<StartGate>,
    arrived: bool,
}

impl GateTicket {
    /// Worker: arrive and wait for the window to open; returns when it opened.
    pub async fn arrive_and_wait(&mut self) -> Result<Instant> {
        if !self.arrived {
            self.arrived = true;
            self.gate.arrived.send_modify(|arrived| *arrived += 1);
        }
        let mut opened = self.gate.opened.subscribe();
        let start = opened
            .wait_for(Option::is_some)
            .await
            .map_err(|_| anyhow!("start gate closed"))?;
        (*start).ok_or_else(|| anyhow!("start gate opened without a time"))
    }
}

impl Drop for GateTicket {
    fn drop(&mut self) {
        if !self.arrived {
            self.gate.arrived.send_modify(|arrived| *arrived += 1);
        }
    }
}

/// Where the broker under test is, and the process if we started it.
struct Target {
    addr: String,
    metrics_addr: String,
    spawned: Option<SpawnedBroker>,
    /// The local cluster's folder, when the target is the cluster of `cargo xtask cluster up`.
    cluster: Option<PathBuf>,
}

impl Target {
    /// The broker to load, its clients reaching it with `security` (a spawned broker is made
    /// to serve it; the local cluster's is what `cluster up` made it).
    async fn new(args: &BrokerArgs, security: Security) -> Result<Self> {
        crate::secure::use_for_clients(None);
        if let Some(dir) = &args.cluster_dir {
            let dir = crate::cluster::resolve(dir);
            let up: Vec<u16> = (1..=crate::cluster::NODES)
                .filter(|&n| crate::cluster::running(&dir, n).is_some())
                .collect();
            if up.is_empty() {
                bail!(
                    "no broker of the cluster in {} runs; start it with `cargo xtask cluster up`",
                    dir.display()
                );
            }
            crate::secure::use_for_clients(crate::secure::cluster_client(&dir)?);
            return Ok(Self {
                addr: format!("127.0.0.1:{}", crate::cluster::client_port(up[0])),
                metrics_addr: format!("127.0.0.1:{}", crate::cluster::metrics_port(up[0])),
                spawned: None,
                cluster: Some(dir),
            });
        }
        if !args.spawn_broker {
            return Ok(Self {
                addr: args.addr.clone(),
                metrics_addr: args.metrics_addr.clone(),
                spawned: None,
                cluster: None,
            });
        }
        let spawned = match security {
            Security::Plaintext => SpawnedBroker::start(args).await?,
            Security::SaslSsl => {
                let certs =
                    crate::secure::certificates(&crate::target_dir().join("bench").join("ca"))?;
                let password = crate::secure::new_password()?;
                let spawned = SpawnedBroker::start_with(args, |addr| {
                    let mut extra: Vec<String> =
                        crate::secure::broker_settings(&certs, addr, false)
                            .into_iter()
                            .map(|kv| format!("--set={kv}"))
                            .collect();
                    extra.push(format!(
                        "--add-scram={}",
                        crate::secure::add_admin(&password)
                    ));
                    extra
                })
                .await?;
                crate::secure::use_for_clients(Some(crate::secure::SaslSsl::new(
                    &certs.ca,
                    crate::secure::ADMIN,
                    &password,
                )?));
                spawned
            }
        };
        Ok(Self {
            addr: spawned.addr.clone(),
            metrics_addr: spawned.metrics_addr.clone(),
            spawned: Some(spawned),
            cluster: None,
        })
    }

    /// A figures table that starts with the command line and the broker measured.
    fn table(&self) -> stats::Table {
        let mut table = stats::Table::default();
        table.row("command", crate::invocation());
        table.row("broker", self.describe());
        table.row(
            "clients",
            match crate::secure::for_clients() {
                None => "PLAINTEXT".to_string(),
                Some(s) => format!(
                    "SASL_SSL: TLS, SCRAM-SHA-512 login as {} on every connection",
                    s.user
                ),
            },
        );
        table
    }

    fn describe(&self) -> String {
        if let Some(dir) = &self.cluster {
            return format!(
                "the local cluster in {} (127.0.0.1:{}-{})",
                dir.display(),
                crate::cluster::client_port(1),
                crate::cluster::client_port(crate::cluster::NODES)
            );
        }
        match &self.spawned {
            None => self.addr.clone(),
            Some(spawned) => format!(
                "{} (spawned {}, data {})",
                self.addr,
                spawned.binary.display(),
                spawned.data_dir.display()
            ),
        }
    }

    /// The brokers' processes whose CPU is measured.
    fn broker_pids(&self) -> Vec<u32> {
        match (&self.cluster, &self.spawned) {
            (Some(dir), _) => (1..=crate::cluster::NODES)
                .filter_map(|n| crate::cluster::running(dir, n))
                .collect(),
            (None, Some(spawned)) => vec![spawned.child.id()],
            (None, None) => Vec::new(),
        }
    }

    /// Every broker's metrics endpoint.
    fn metrics_addrs(&self) -> Vec<String> {
        match &self.cluster {
            Some(_) => (1..=crate::cluster::NODES)
                .map(|n| format!("127.0.0.1:{}", crate::cluster::metrics_port(n)))
                .collect(),
            None => vec![self.metrics_addr.clone()],
        }
    }

    async fn stop(self) -> Result<()> {
        match self.spawned {
            Some(spawned) => spawned.stop().await,
            None => Ok(()),
        }
    }
}

/// Counters sampled at the start and at the end of the measured window.
struct Snapshot {
    cpu: Option<CpuTimes>,
    metrics: Result<MetricsSample>,
    broker_cpu: Option<Duration>,
    at: Instant,
}

impl Snapshot {
    async fn take(target: &Target) -> Self {
        let at = Instant::now();
        let cpu = CpuTimes::now().ok();
        let pids = target.broker_pids();
        let broker_cpu = (!pids.is_empty())
            .then(|| {
                pids.iter()
                    .map(|&pid| stats::process_cpu_time(pid).ok())
                    .sum::<Option<Duration>>()
            })
            .flatten();
        // Summed over the brokers (a cluster's three).
        let mut metrics: Result<MetricsSample> = Ok(MetricsSample::new());
        for addr in target.metrics_addrs() {
            match (stats::scrape_metrics(&addr).await, &mut metrics) {
                (Ok(sample), Ok(sum)) => {
                    for (name, value) in sample {
                        *sum.entry(name).or_insert(0.0) += value;
                    }
                }
                (Err(e), Ok(_)) => metrics = Err(e),
                (_, Err(_)) => {}
            }
        }
        Self {
            cpu,
            metrics,
            broker_cpu,
            at,
        }
    }
}

/// The rows every benchmark prints about the broker and the machine.
fn environment_rows(table: &mut Table, target: &Target, before: &Snapshot, after: &Snapshot) {
    match (&before.metrics, &after.metrics) {
        (Ok(start), Ok(end)) => {
            let appends = stats::metric_delta(start, end, stats::COMMIT_APPENDS);
            let rounds = stats::metric_delta(start, end, stats::COMMIT_ROUNDS);
            let syncs = stats::metric_delta(start, end, stats::DISK_SYNC_OPS);
            let shown = |delta: Option<f64>| delta.map_or("n/a".to_string(), stats::thousands);
            let per_round = match (appends, rounds) {
                (Some(appends), Some(rounds)) if rounds > 0.0 => {
                    format!("{:.1} appends/round", appends / rounds)
                }
                _ => "n/a".to_string(),
            };
            table.row(
                "group commit",
                format!(
                    "{} appends in {} rounds = {per_round}",
                    shown(appends),
                    shown(rounds)
                ),
            );
            let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
            let sync_rate = match syncs {
                Some(syncs) if seconds > 0.0 => {
                    format!(" ({}/s)", stats::thousands(syncs / seconds))
                }
                _ => String::new(),
            };
            table.row("disk syncs", format!("{}{sync_rate}", shown(syncs)));
        }
        (Err(error), _) | (_, Err(error)) => {
            table.row(
                "broker metrics",
                format!("unavailable from {}: {error:#}", target.metrics_addr),
            );
        }
    }
    if let (Some(start), Some(end)) = (before.cpu, after.cpu) {
        if let Some(usage) = stats::cpu_usage(start, end) {
            table.row(
                "machine CPU",
                format!(
                    "{:.1} % busy of {} CPUs (iowait {:.1} %, steal {:.1} %)",
                    usage.busy_percent,
                    stats::cpu_count(),
                    usage.iowait_percent,
                    usage.steal_percent
                ),
            );
        }
    }
    if let (Some(start), Some(end)) = (before.broker_cpu, after.broker_cpu) {
        let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
        if seconds > 0.0 {
            let cores = end.saturating_sub(start).as_secs_f64() / seconds;
            let brokers = target.broker_pids().len();
            let of = if brokers > 1 {
                format!(" ({brokers} brokers together)")
            } else {
                String::new()
            };
            table.row("broker CPU", format!("{cores:.2} cores{of}"));
        }
    }
    table.row(
        "load average",
        format!("{} (1, 5, 15 min, at end)", stats::load_average()),
    );
}

/// Waits until every worker has warmed up (or failed), samples the counters while nothing is in
/// flight, and opens the measured window.
async fn open_window<T>(
    target: &Target,
    gate: &StartGate,
    workers: &mut tokio::task::JoinHandle<Result<T>>,
) -> Result<Snapshot> {
    tokio::select! {
        arrived = gate.all_arrived() => arrived?,
        finished = &mut *workers => {
            finished.map_err(|error| anyhow!("worker tasks failed: {error}"))??;
            bail!("the workers finished before the measured window opened");
        }
    }
    let snapshot = Snapshot::take(target).await;
    gate.open();
    Ok(snapshot)
}

fn latency_rows(table: &mut Table, latency: &stats::Latency) {
    if latency.count() == 0 {
        table.row("latency", "n/a");
        return;
    }
    table.row(
        "latency p50",
        format!("{:.2} ms", latency.quantile_ms(0.50)),
    );
    table.row(
        "latency p99",
        format!("{:.2} ms", latency.quantile_ms(0.99)),
    );
    table.row(
        "latency p99.9",
        format!("{:.2} ms", latency.quantile_ms(0.999)),
    );
    table.row("latency max", format!("{:.2} ms", latency.max_ms()));
}

/// `1 partition`, `3 partitions`.
fn count(n: i64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn seconds(secs: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow!("{what} must be a non-negative number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        workload: Workload,
    }

    fn bench(args: &[&str]) -> Result<()> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?;
        run(BenchArgs {
            workload: cli.workload,
        })
    }

    /// The broker binary that `cargo test --workspace` has just built.
    fn broker_bin() -> String {
        std::env::var("STILLWATER_BROKER_BIN").unwrap_or_else(|_| {
            crate::target_dir()
                .join("debug/broker")
                .display()
                .to_string()
        })
    }

    #[test]
    fn produce_and_fetch_against_the_real_broker() -> Result<()> {
        let bin = broker_bin();
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: run through `cargo test --workspace`, which builds it"
        );
        let spawn = [
            "--spawn-broker",
            "--broker-bin",
            &bin,
            "--warmup-secs",
            "0.1",
        ];
        let run_with = |first: &str, extra: &[&str]| {
            let args: Vec<&str> = [first].iter().chain(&spawn).chain(extra).copied().collect();
            bench(&args)
        };
        run_with(
            "produce",
            &[
                "--producers",
                "4",
                "--partitions",
                "2",
                "--duration-secs",
                "0.5",
            ],
        )?;
        run_with(
            "produce",
            &[
                "--producers",
                "3",
                "--batch",
                "10",
                "--messages-per-producer",
                "95",
            ],
        )?;
        run_with(
            "produce",
            &[
                "--producers",
                "2",
                "--acks",
                "0",
                "--messages-per-producer",
                "1000",
            ],
        )?;
        run_with(
            "fetch",
            &[
                "--consumers",
                "2",
                "--duration-secs",
                "0.3",
                "--fill-mb",
                "2",
            ],
        )?;
        run_with(
            "group",
            &[
                "--members",
                "2",
                "--partitions",
                "4",
                "--duration-secs",
                "0.3",
                "--fill-mb",
                "1",
                "--broker-arg",
                "--set=group_initial_rebalance_delay_ms=0",
            ],
        )
    }
}
