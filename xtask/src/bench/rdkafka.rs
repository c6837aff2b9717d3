//! `cargo xtask bench rdkafka`: one librdkafka producer (the `loadgen` crate), configured as
//! the common clients are, against a fresh broker per run — plain and idempotent, at each
//! record size — printing msgs/s and the broker's CPU per GB, beside a peer broker started the
//! same way when one is given (`--peer-bin`), or Apache Kafka at both its durability settings
//! (`--peer kafka`), on one node or on three at acks=all (`--cluster`).
//!
//! Many producers with a request or two each (`bench produce`) never show what one producer
//! meets when it pipelines its batches as librdkafka and the Java client do; this does. Runs
//! alternate (round by round, size by size, mode by mode, system by system), and the ratios
//! are taken within a round, because this host's speed moves between runs minutes apart.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};

use super::apache_kafka::{Durability, FreshKafka};
use super::broker_process::SpawnedBroker;
use super::stats::{self, Table};
use super::BrokerArgs;
use crate::{cargo, cluster, target_dir};

#[derive(Args)]
pub struct RdkafkaArgs {
    /// Record sizes in bytes (values, no key).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1024])]
    sizes: Vec<usize>,
    /// Producer kinds.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Plain, Mode::Idempotent])]
    modes: Vec<Mode>,
    /// Rounds: every (size, mode, system) once per round; medians over the rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// MB of record values per measured run.
    #[arg(long, default_value_t = 300.0)]
    megabytes: f64,
    /// The local three-broker cluster (started here, in <target>/bench/rdkafka-cluster), a
    /// topic of one partition with three replicas, acks=all.
    /// With `--peer kafka`, Kafka runs three nodes too.
    #[arg(long, conflicts_with = "peer_bin")]
    cluster: bool,
    /// The broker binary [default: <target>/release/broker, built first].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Extra argument for our broker (repeatable), e.g. `--broker-arg=--set=preallocate_bytes=0`.
    #[arg(long, allow_hyphen_values = true)]
    broker_arg: Vec<String>,
    /// A peer Kafka-compatible broker measured beside ours, started fresh for each run.
    #[arg(long)]
    peer_bin: Option<PathBuf>,
    /// The peer's arguments (repeatable); `{port}` and `{dir}` stand for its Kafka port and a
    /// fresh directory. Default for a binary named `tansu*`: its memory storage on {port}.
    #[arg(long, allow_hyphen_values = true, requires = "peer_bin")]
    peer_arg: Vec<String>,
    /// Apache Kafka measured beside ours, a fresh run (one node, or three with `--cluster`)
    /// for each measured run, at each of `--kafka-durability`.
    #[arg(long, value_enum, conflicts_with_all = ["peer_bin", "sasl_ssl"])]
    peer: Option<PeerKind>,
    /// Kafka's durability settings measured with `--peer kafka`.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Durability::Shipped, Durability::Flush])]
    kafka_durability: Vec<Durability>,
    /// Before each run: sync, drop the page cache and wait 3 s (as root), so that every run,
    /// of either broker, starts from the same memory state (on a VM, the first touch of memory
    /// the host has taken back costs several times a touch of memory in use).
    #[arg(long)]
    no_drop_caches: bool,
    /// Measure our broker over SASL_SSL too (SCRAM-SHA-512 on TLS, a certificate made with
    /// `openssl`), beside PLAINTEXT in the same rounds: the cost of security, as a ratio.
    #[arg(long, conflicts_with_all = ["peer_bin", "cluster"])]
    sasl_ssl: bool,
    /// After each measured run, this many messages one a millisecond, read back by a
    /// `read_committed` consumer: their end-to-end latency (0: none).
    #[arg(long, default_value_t = 2000)]
    e2e_messages: u64,
    /// Messages the producer sends (and has acknowledged) before the measured ones: with
    /// `--peer kafka`, enough for a fresh JVM to compile its hot paths.
    #[arg(long, default_value_t = 10_000)]
    warmup_messages: u64,
    /// A librdkafka property for the producer (`key=value`, repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

/// A peer that xtask knows how to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PeerKind {
    /// Apache Kafka ([`crate::kafka::VERSION`], KRaft), from Maven Central.
    Kafka,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Plain,
    Idempotent,
    /// Transactional, a commit every 100 ms.
    #[value(name = "transactional-100ms")]
    Transactional100ms,
    /// Transactional, a commit every 10 ms.
    #[value(name = "transactional-10ms")]
    Transactional10ms,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Idempotent => "idempotent",
            Mode::Transactional100ms => "transactional-100ms",
            Mode::Transactional10ms => "transactional-10ms",
        }
    }

    /// A transactional producer's commit period.
    fn commit_ms(self) -> Option<u64> {
        match self {
            Mode::Transactional100ms => Some(100),
            Mode::Transactional10ms => Some(10),
            Mode::Plain | Mode::Idempotent => None,
        }
    }
}

/// What one run measured.
#[derive(Clone, Copy)]
struct Sample {
    msgs_per_sec: f64,
    mb_per_sec: f64,
    /// The broker's (or brokers') CPU seconds per GB of record values produced.
    cpu_s_per_gb: f64,
    /// A transactional producer's commits: their latency's median and 99th percentile (ms).
    commit_ms: Option<(f64, f64)>,
    /// End to end, from the send to a `read_committed` consumer: median and 99th percentile
    /// (ms).
    e2e_ms: Option<(f64, f64)>,
    /// The broker's (or brokers', summed) peak resident memory, MB.
    peak_rss_mb: f64,
}

/// One broker (or cluster) under test, started fresh for each run.
enum System<'a> {
    Ours {
        binary: &'a Path,
    },
    /// Ours, the producer on a SASL_SSL listener.
    OursSecured {
        binary: &'a Path,
        certs: PathBuf,
    },
    Peer {
        binary: &'a Path,
        args: Vec<String>,
    },
    Kafka {
        durability: Durability,
    },
}

impl System<'_> {
    fn name(&self) -> String {
        match self {
            System::Ours { .. } => "stillwater".into(),
            System::OursSecured { .. } => "stillwater over SASL_SSL".into(),
            System::Peer { binary, .. } => binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "peer".into()),
            System::Kafka { durability } => durability.name(),
        }
    }
}

pub async fn rdkafka_bench(args: RdkafkaArgs) -> Result<()> {
    if args.sizes.is_empty() || args.modes.is_empty() || args.rounds == 0 || args.megabytes <= 0.0 {
        bail!("--sizes, --modes, --rounds and --megabytes must not be empty or zero");
    }
    let loadgen = build_loadgen(args.sasl_ssl)?;
    let binary = match &args.broker_bin {
        Some(b) => b.clone(),
        None => cluster::release_broker()?,
    };
    let mut systems = vec![System::Ours { binary: &binary }];
    if let Some(peer) = &args.peer_bin {
        if !peer.is_file() {
            bail!("--peer-bin {} does not exist", peer.display());
        }
        systems.push(System::Peer {
            binary: peer,
            args: peer_args(peer, &args.peer_arg)?,
        });
    }
    if args.peer == Some(PeerKind::Kafka) {
        if args.kafka_durability.is_empty() {
            bail!("--kafka-durability must not be empty");
        }
        systems.extend(
            args.kafka_durability
                .iter()
                .map(|&durability| System::Kafka { durability }),
        );
    }
    if args.sasl_ssl {
        systems.push(System::OursSecured {
            binary: &binary,
            certs: bench_certificate()?,
        });
    }
    let load_average_before = stats::load_average();
    // samples[size][mode][system][round]
    let mut samples =
        vec![vec![vec![Vec::new(); systems.len()]; args.modes.len()]; args.sizes.len()];
    for round in 1..=args.rounds {
        for (si, &size) in args.sizes.iter().enumerate() {
            for (mi, &mode) in args.modes.iter().enumerate() {
                for (yi, system) in systems.iter().enumerate() {
                    let sample = run_one(&args, &loadgen, system, size, mode).await?;
                    println!(
                        "xtask: round {round}, {size} B, {}, {}: {} msg/s, {:.1} MB/s, broker CPU {:.2} s/GB, peak RSS {:.0} MB",
                        mode.name(),
                        system.name(),
                        stats::thousands(sample.msgs_per_sec),
                        sample.mb_per_sec,
                        sample.cpu_s_per_gb,
                        sample.peak_rss_mb
                    );
                    samples[si][mi][yi].push(sample);
                }
            }
        }
    }
    let mut table = Table::default();
    table.row("command", crate::invocation());
    table.row("commit", stats::commit_of_repo());
    table.row(
        "workload",
        format!(
            "one {} producer (loadgen: acks=all, linger.ms 5, batch.size 1000000{}), \
             {:.0} MB of record values per run, topic of 1 partition{}; a fresh broker and data \
             directory per run; {} round(s), runs alternating; {} CPUs",
            rdkafka_version(&loadgen),
            args.settings
                .iter()
                .map(|s| format!(", {s}"))
                .collect::<String>(),
            args.megabytes,
            stats::replicas_note(args.cluster),
            args.rounds,
            stats::cpu_count()
        ),
    );
    table.row("load average before", load_average_before);
    for (si, &size) in args.sizes.iter().enumerate() {
        for (mi, &mode) in args.modes.iter().enumerate() {
            for (yi, system) in systems.iter().enumerate() {
                let runs = &samples[si][mi][yi];
                let msgs: Vec<f64> = runs.iter().map(|s| s.msgs_per_sec).collect();
                let commits: Vec<(f64, f64)> = runs.iter().filter_map(|s| s.commit_ms).collect();
                let latency = |what: &str, values: Vec<(f64, f64)>| {
                    if values.is_empty() {
                        return String::new();
                    }
                    format!(
                        ", {what} p50 {:.1} ms, p99 {:.1} ms",
                        stats::median(&values.iter().map(|c| c.0).collect::<Vec<_>>()),
                        stats::median(&values.iter().map(|c| c.1).collect::<Vec<_>>())
                    )
                };
                let commits = latency("commit", commits)
                    + &latency(
                        "read_committed end to end",
                        runs.iter().filter_map(|s| s.e2e_ms).collect(),
                    );
                table.row(
                    format!("{size} B {} {}", mode.name(), system.name()),
                    format!(
                        "{} msg/s (runs {}), {:.1} MB/s, broker CPU {:.2} s/GB, peak RSS {:.0} MB{commits}",
                        stats::thousands(stats::median(&msgs)),
                        msgs.iter()
                            .map(|m| stats::thousands(*m))
                            .collect::<Vec<_>>()
                            .join(" / "),
                        stats::median(&runs.iter().map(|s| s.mb_per_sec).collect::<Vec<_>>()),
                        stats::median(&runs.iter().map(|s| s.cpu_s_per_gb).collect::<Vec<_>>()),
                        stats::median(&runs.iter().map(|s| s.peak_rss_mb).collect::<Vec<_>>()),
                    ),
                );
            }
            // A transactional producer against the idempotent one, round by round.
            if let (Some(idem), Some(_)) = (
                args.modes.iter().position(|m| *m == Mode::Idempotent),
                mode.commit_ms(),
            ) {
                for (yi, system) in systems.iter().enumerate() {
                    let ratio = ratios(&samples[si][mi][yi], &samples[si][idem][yi]);
                    table.row(
                        format!("{size} B {} / idempotent, {}", mode.name(), system.name()),
                        format!("{ratio:.2}"),
                    );
                }
            }
            // Same-round ratios, then their median.
            if let (Some(plain), Some(idem)) = (
                args.modes.iter().position(|m| *m == Mode::Plain),
                args.modes.iter().position(|m| *m == Mode::Idempotent),
            ) {
                if mi == idem {
                    for (yi, system) in systems.iter().enumerate() {
                        let ratio = ratios(&samples[si][idem][yi], &samples[si][plain][yi]);
                        table.row(
                            format!("{size} B idempotent / plain, {}", system.name()),
                            format!("{ratio:.2}"),
                        );
                    }
                }
            }
            let ours = &samples[si][mi][0];
            let cpu = |runs: &[Sample]| {
                stats::median(&runs.iter().map(|s| s.cpu_s_per_gb).collect::<Vec<_>>())
            };
            for (yi, other) in systems.iter().enumerate().skip(1) {
                let other_runs = &samples[si][mi][yi];
                table.row(
                    format!("{size} B {} stillwater / {}", mode.name(), other.name()),
                    format!(
                        "{:.2} msg/s, {:.2} CPU per GB",
                        ratios(ours, other_runs),
                        cpu(ours) / cpu(other_runs).max(1e-9)
                    ),
                );
            }
        }
    }
    table.row("load average after", stats::load_average());
    println!("Stillwater single-producer benchmark (librdkafka)");
    table.print();
    Ok(())
}

/// The median of the per-round ratios `a[i] / b[i]` of msgs/s.
fn ratios(a: &[Sample], b: &[Sample]) -> f64 {
    let r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.msgs_per_sec / b.msgs_per_sec.max(1e-9))
        .collect();
    stats::median(&r)
}

/// One measured run on a fresh broker (or cluster).
async fn run_one(
    args: &RdkafkaArgs,
    loadgen: &Path,
    system: &System<'_>,
    size: usize,
    mode: Mode,
) -> Result<Sample> {
    if !args.no_drop_caches {
        drop_caches();
    }
    let messages = ((args.megabytes * 1e6) / size as f64).ceil() as u64;
    let mut loadgen_args = vec![
        format!("--size={size}"),
        format!("--messages={messages}"),
        "--create-partitions=1".to_string(),
        "--wait-go".to_string(),
        format!("--warmup={}", args.warmup_messages),
    ];
    if mode == Mode::Idempotent {
        loadgen_args.push("--idempotent".into());
    }
    if args.e2e_messages > 0 {
        loadgen_args.push(format!("--e2e-messages={}", args.e2e_messages));
    }
    if let Some(ms) = mode.commit_ms() {
        loadgen_args.push(format!("--transactional-commit-ms={ms}"));
    }
    loadgen_args.extend(args.settings.iter().map(|s| format!("--set={s}")));
    match system {
        System::Ours { binary } if args.cluster => {
            let dir = target_dir().join("bench").join("rdkafka-cluster");
            let _ = std::fs::remove_dir_all(&dir);
            let mut pids = Vec::new();
            for node in 1..=cluster::NODES {
                pids.push(cluster::start_node_with(&dir, node, binary, &[])?);
            }
            let outcome = async {
                cluster::wait_registered(&dir).await?;
                let bootstrap = (1..=cluster::NODES)
                    .map(|n| format!("127.0.0.1:{}", cluster::client_port(n)))
                    .collect::<Vec<_>>()
                    .join(",");
                loadgen_args.push("--replication-factor=3".into());
                measure(loadgen, &bootstrap, &loadgen_args, &pids, size, messages)
            }
            .await;
            for node in 1..=cluster::NODES {
                let _ = cluster::stop_node(&dir, node);
            }
            if outcome.is_ok() {
                // Kept after a failure: the brokers' logs are in it.
                let _ = std::fs::remove_dir_all(&dir);
            }
            outcome
        }
        System::Ours { binary } | System::OursSecured { binary, .. } => {
            let (broker, bootstrap) = match system {
                System::OursSecured { certs, .. } => {
                    let secured = format!("127.0.0.1:{}", super::broker_process::free_port()?);
                    let mut broker_arg = args.broker_arg.clone();
                    broker_arg.extend([
                        "--add-scram=SCRAM-SHA-512=[name=bench,password=bench-secret]".to_string(),
                        format!(
                            "--set=ssl_certificate_location={}",
                            certs.join("cert.pem").display()
                        ),
                        format!("--set=ssl_key_location={}", certs.join("key.pem").display()),
                    ]);
                    let listeners = |addr: &str| format!("PLAINTEXT://{addr},SASL_SSL://{secured}");
                    let broker = SpawnedBroker::start_with_listeners(
                        &spawn_args(binary, broker_arg),
                        listeners,
                    )
                    .await?;
                    for setting in [
                        "security.protocol=SASL_SSL".to_string(),
                        format!("ssl.ca.location={}", certs.join("cert.pem").display()),
                        "sasl.mechanisms=SCRAM-SHA-512".into(),
                        "sasl.username=bench".into(),
                        "sasl.password=bench-secret".into(),
                    ] {
                        loadgen_args.push(format!("--set={setting}"));
                    }
                    (broker, secured)
                }
                _ => {
                    let broker =
                        SpawnedBroker::start(&spawn_args(binary, args.broker_arg.clone())).await?;
                    let addr = broker.addr.clone();
                    (broker, addr)
                }
            };
            let outcome = measure(
                loadgen,
                &bootstrap,
                &loadgen_args,
                &[broker.child.id()],
                size,
                messages,
            );
            broker.stop().await?;
            outcome
        }
        System::Peer { binary, args: peer } => {
            let mut peer = Peer::start(binary, peer).await?;
            let outcome = measure(
                loadgen,
                &peer.addr,
                &loadgen_args,
                &[peer.child.id()],
                size,
                messages,
            );
            peer.stop();
            outcome
        }
        System::Kafka { durability } => {
            let kafka = FreshKafka::start(if args.cluster { 3 } else { 1 }, *durability)?;
            if args.cluster {
                loadgen_args.push("--replication-factor=3".into());
            }
            let outcome = measure(
                loadgen,
                kafka.bootstrap(),
                &loadgen_args,
                &kafka.pids(),
                size,
                messages,
            );
            kafka.stop(outcome.is_err());
            outcome
        }
    }
}

/// How a fresh broker of ours is started for one run.
pub(super) fn spawn_args(binary: &Path, broker_arg: Vec<String>) -> BrokerArgs {
    BrokerArgs {
        addr: String::new(),
        metrics_addr: String::new(),
        spawn_broker: true,
        broker_bin: Some(binary.to_path_buf()),
        broker_arg,
        request_timeout_secs: 30,
        warmup_secs: 0.0,
        cluster_dir: None,
        security: vec![super::Security::Plaintext],
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost (made once with `openssl`, in
/// `<target>/bench/certs`): the broker's and, as its own CA, the producer's trust.
fn bench_certificate() -> Result<PathBuf> {
    let dir = target_dir().join("bench").join("certs");
    if dir.join("cert.pem").is_file() && dir.join("key.pem").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "3650", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running openssl (apt-get install openssl) to make the benchmark's certificate")?;
    if !status.success() {
        bail!("openssl could not make the benchmark's certificate ({status})");
    }
    Ok(dir)
}

/// Run the load generator against `bootstrap`; the brokers' CPU is sampled after its warm-up
/// and after its last delivery report.
fn measure(
    loadgen: &Path,
    bootstrap: &str,
    loadgen_args: &[String],
    pids: &[u32],
    size: usize,
    messages: u64,
) -> Result<Sample> {
    let mut child = Command::new(loadgen)
        .arg(format!("--bootstrap={bootstrap}"))
        .args(loadgen_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", loadgen.display()))?;
    let e2e = loadgen_args
        .iter()
        .any(|a| a.starts_with("--e2e-messages="));
    let outcome = drive(&mut child, pids, e2e);
    let peak_rss: u64 = pids.iter().map(|&p| stats::peak_rss_bytes(p)).sum();
    let _ = child.kill();
    let status = child.wait()?;
    let (cpu, result, e2e) = outcome.with_context(|| format!("loadgen ({status})"))?;
    let field_of = |line: &str, key: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("loadgen's line has no {key}: {line}"))
    };
    let field = |key: &str| field_of(&result, key);
    let delivered = field("messages")?;
    if delivered < messages as f64 {
        bail!("loadgen delivered {delivered} of {messages} messages");
    }
    let seconds = field("seconds")?;
    let gb = delivered * size as f64 / 1e9;
    let commit_ms = match (field("commit_p50_ms"), field("commit_p99_ms")) {
        (Ok(p50), Ok(p99)) => Some((p50, p99)),
        _ => None,
    };
    let e2e_ms = match e2e {
        Some(line) => Some((field_of(&line, "p50_ms")?, field_of(&line, "p99_ms")?)),
        None => None,
    };
    Ok(Sample {
        msgs_per_sec: delivered / seconds,
        mb_per_sec: gb * 1e3 / seconds,
        cpu_s_per_gb: cpu.as_secs_f64() / gb,
        commit_ms,
        e2e_ms,
        peak_rss_mb: peak_rss as f64 / 1e6,
    })
}

/// `ready` → sample the CPU, say go → `result …` → sample again; then the `e2e …` line, when
/// the arguments ask for one.
fn drive(child: &mut Child, pids: &[u32], e2e: bool) -> Result<(Duration, String, Option<String>)> {
    let stdout: ChildStdout = child.stdout.take().context("loadgen's stdout")?;
    let mut stdin: ChildStdin = child.stdin.take().context("loadgen's stdin")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next = |what: &str| -> Result<String> {
        lines
            .next()
            .transpose()?
            .ok_or_else(|| anyhow!("loadgen ended before {what}"))
    };
    while next("ready")?.trim() != "ready" {}
    let cpu = |pids: &[u32]| -> Result<Duration> {
        pids.iter().map(|&p| stats::process_cpu_time(p)).sum()
    };
    let before = cpu(pids)?;
    writeln!(stdin, "go")?;
    let result = loop {
        let line = next("its result")?;
        if line.starts_with("result ") {
            break line;
        }
    };
    let after = cpu(pids)?;
    let e2e = if e2e {
        Some(loop {
            let line = next("its end-to-end latency")?;
            if line.starts_with("e2e ") {
                break line;
            }
        })
    } else {
        None
    };
    Ok((after.saturating_sub(before), result, e2e))
}

/// A peer broker process on a free port and a fresh directory.
struct Peer {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Peer {
    async fn start(binary: &Path, args: &[String]) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let dir = target_dir()
            .join("bench")
            .join(format!("peer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("peer.log"))?;
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.to_string_lossy())
            })
            .collect();
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut peer = Peer {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&peer.addr).await.is_err() {
            if let Some(status) = peer.child.try_wait()? {
                bail!(
                    "the peer exited ({status}) before listening; its log: {}",
                    peer.dir.join("peer.log").display()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                peer.stop();
                bail!("the peer is not listening on {} after 30 s", peer.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(peer)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The peer's arguments: as given, or tansu's memory storage when the binary is tansu's.
fn peer_args(binary: &Path, given: &[String]) -> Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("tansu") {
        return Ok([
            "broker",
            "--storage-engine=memory://tansu/",
            "--listener-url=tcp://127.0.0.1:{port}",
            "--advertised-listener-url=tcp://127.0.0.1:{port}",
        ]
        .map(String::from)
        .to_vec());
    }
    bail!("--peer-arg is needed for {name}: its arguments, with {{port}} for its Kafka port")
}

/// Sync, then drop the page cache, dentries and inodes, and let the host take the memory
/// back; silently skipped where not permitted.
pub(super) fn drop_caches() {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok() {
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The release load generator, built first.
/// The load generator, with TLS and SCRAM (librdkafka on the system's OpenSSL) when `tls`.
fn build_loadgen(tls: bool) -> Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--release", "-p", "loadgen"]);
    if tls {
        command.args(["--features", "tls"]);
    }
    println!("xtask: {command:?}");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!(
            "building loadgen failed ({status}){}",
            if tls {
                "; --sasl-ssl needs OpenSSL's headers: apt-get install libssl-dev pkg-config"
            } else {
                ""
            }
        );
    }
    Ok(target_dir().join("release").join("loadgen"))
}

fn rdkafka_version(loadgen: &Path) -> String {
    Command::new(loadgen)
        .arg("--librdkafka-version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| format!("librdkafka {}", s.trim()))
        .filter(|s| s.len() > "librdkafka ".len())
        .unwrap_or_else(|| "librdkafka".into())
}
