//! `cargo xtask bench failover`: on the local cluster of `cargo xtask cluster up`, the time
//! from SIGKILL of a partition's leader to the first acknowledged acks=all write on each
//! partition it led, while a writer per partition keeps producing (asking Metadata again after
//! any error, 10 ms apart); the killed broker is started again and the next round kills
//! whichever broker then leads partition 0.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::ApiKey;
use tokio::time::Instant;

use super::kafka::{self, ApiVersions, Connection};
use super::{BrokerArgs, Target};
use crate::{cluster, target_dir};

#[derive(Args, Clone, Debug)]
pub struct FailoverArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Leaders to kill, one after another.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value = "failover")]
    topic: String,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The broker binary restarted after each kill [default: <target>/release/broker].
    #[arg(long)]
    restart_bin: Option<PathBuf>,
}

pub async fn failover_bench(args: FailoverArgs) -> Result<()> {
    let target = Target::new(&args.broker, args.broker.only_security()?).await?;
    let Some(dir) = target.cluster.clone() else {
        bail!("the failover benchmark kills brokers of the local cluster: give --cluster-dir cluster (after `cargo xtask cluster up`)");
    };
    for node in 1..=cluster::NODES {
        if cluster::running(&dir, node).is_none() {
            bail!(
                "node {node} of the cluster in {} does not run; `cargo xtask cluster up` first",
                dir.display()
            );
        }
    }
    let binary = args
        .restart_bin
        .clone()
        .unwrap_or_else(|| target_dir().join("release").join("broker"));
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&target.addr, timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    let partitions =
        kafka::prepare_topic(&mut admin, &versions, &args.topic, args.partitions, Some(3)).await?;
    drop(admin);
    super::topics::writable(&target.addr, &versions, &args.topic, partitions, timeout).await?;

    let acks: Arc<AckLog> = Arc::new(Mutex::new(vec![Vec::new(); partitions as usize]));
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for p in 0..partitions {
        writers.push(tokio::spawn(write(
            Writer {
                topic: args.topic.clone(),
                partition: p,
                versions: versions.clone(),
                timeout,
            },
            acks.clone(),
            stopping.clone(),
        )));
    }
    let mut rounds = Vec::new();
    let outcome = async {
        for round in 1..=args.rounds {
            tokio::time::sleep(Duration::from_secs(2)).await;
            rounds.push(
                kill_round(round, &dir, &binary, &versions, &args.topic, &acks, timeout).await?,
            );
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    outcome?;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut firsts: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r.each.iter().map(|(_, d)| ms(*d)))
        .collect();
    firsts.sort_by(f64::total_cmp);
    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "topic {} ({partitions} partitions, 3 replicas); a writer per partition, one acks=all \
             record per request, one request in flight, Metadata asked again after any error \
             (10 ms apart); {} rounds: SIGKILL the leader of partition 0, time the first \
             acknowledged write on each partition it led, start it again",
            args.topic, args.rounds
        ),
    );
    for r in &rounds {
        table.row(
            format!("round {}", r.round),
            format!(
                "killed node {} (leader of {} partitions): first write acknowledged after {}",
                r.node,
                r.each.len(),
                r.each
                    .iter()
                    .map(|(p, d)| format!("p{p} {:.0} ms", ms(*d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if !firsts.is_empty() {
        let p = |q: f64| firsts[((firsts.len() - 1) as f64 * q).round() as usize];
        table.row(
            "SIGKILL to first acknowledged write",
            format!(
                "p50 {:.0} ms, max {:.0} ms, min {:.0} ms ({} partitions over {} rounds)",
                p(0.5),
                firsts[firsts.len() - 1],
                firsts[0],
                firsts.len(),
                rounds.len()
            ),
        );
    }
    println!("Stillwater failover benchmark");
    table.print();
    Ok(())
}

/// Per partition, each acknowledged write as (sent, acknowledged).
pub(super) type AckLog = Mutex<Vec<Vec<(Instant, Instant)>>>;

/// `producers` writers ([`write`]) over a topic's partitions in turn, sharing one log of
/// acknowledgements.
pub(super) struct Load {
    acks: Arc<AckLog>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Load {
    pub(super) fn start(
        versions: &ApiVersions,
        topic: &str,
        partitions: i32,
        producers: usize,
        timeout: Duration,
    ) -> Load {
        let acks: Arc<AckLog> = Arc::new(Mutex::new(vec![Vec::new(); partitions as usize]));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = (0..producers)
            .map(|i| {
                tokio::spawn(write(
                    Writer {
                        topic: topic.to_string(),
                        partition: i as i32 % partitions,
                        versions: versions.clone(),
                        timeout,
                    },
                    acks.clone(),
                    stopping.clone(),
                ))
            })
            .collect();
        Load {
            acks,
            stopping,
            writers,
        }
    }

    /// Stop the writers; every acknowledged write, as (sent, acknowledged).
    pub(super) async fn stop(self) -> Vec<(Instant, Instant)> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.writers {
            let _ = w.await;
        }
        all_acks(&self.acks)
    }
}

/// Every acknowledged write of the log, as (sent, acknowledged).
pub(super) fn all_acks(acks: &AckLog) -> Vec<(Instant, Instant)> {
    acks.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .flatten()
        .copied()
        .collect()
}

/// The latency of the writes among `all` sent in `[from, to)`.
pub(super) fn latency_between(
    all: &[(Instant, Instant)],
    from: Instant,
    to: Instant,
) -> Result<super::stats::Latency> {
    let mut l = super::stats::Latency::new()?;
    for (sent, acked) in all {
        if *sent >= from && *sent < to {
            l.record(acked.saturating_duration_since(*sent));
        }
    }
    Ok(l)
}

struct Round {
    round: usize,
    node: u16,
    /// Per partition the killed node led: from the kill to its first acknowledged write.
    each: Vec<(i32, Duration)>,
}

async fn kill_round(
    round: usize,
    dir: &Path,
    binary: &Path,
    versions: &ApiVersions,
    topic: &str,
    acks: &AckLog,
    timeout: Duration,
) -> Result<Round> {
    let metadata_version = versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let leaders = any_metadata(dir, metadata_version, topic, timeout).await?;
    let (leader_id, _) = leaders.partitions[0]
        .clone()
        .ok_or_else(|| anyhow!("partition 0 has no leader"))?;
    let node = u16::try_from(leader_id).context("a broker id that is no node of the cluster")?;
    let led: Vec<i32> = leaders
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_ref().is_some_and(|(id, _)| *id == leader_id))
        .map(|(p, _)| p as i32)
        .collect();
    let pid = cluster::running(dir, node).ok_or_else(|| anyhow!("node {node} does not run"))?;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("kill -KILL")?;
    let at = Instant::now();
    if !killed.success() {
        bail!("kill -KILL {pid} failed");
    }
    println!("xtask: round {round}: killed node {node} (pid {pid}), leader of partitions {led:?}");
    let deadline = at + Duration::from_secs(60);
    let mut each = Vec::new();
    for &p in &led {
        loop {
            let first = acks.lock().unwrap_or_else(|e| e.into_inner())[p as usize]
                .iter()
                .find(|(sent, _)| *sent >= at)
                .map(|(_, acked)| acked.saturating_duration_since(at));
            if let Some(d) = first {
                each.push((p, d));
                break;
            }
            if Instant::now() >= deadline {
                bail!("round {round}: partition {p} took no write within 60 s of the kill");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Back, and caught up, before the next round.
    cluster::start_node(dir, node, binary)?;
    cluster::wait_registered(dir).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(Round { round, node, each })
}

/// Metadata from whichever broker of the cluster answers.
pub(super) async fn any_metadata(
    dir: &Path,
    version: i16,
    topic: &str,
    timeout: Duration,
) -> Result<kafka::Leaders> {
    let mut last = anyhow!("no broker runs");
    for node in 1..=cluster::NODES {
        if cluster::running(dir, node).is_none() {
            continue;
        }
        let addr = format!("127.0.0.1:{}", cluster::client_port(node));
        match async {
            let mut c = Connection::connect(&addr, timeout).await?;
            kafka::leaders(&mut c, version, topic).await
        }
        .await
        {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub(super) struct Writer {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) versions: ApiVersions,
    pub(super) timeout: Duration,
}

/// Produce to the partition's leader until told to stop; every acknowledged write is recorded
/// as (sent, acknowledged).
pub(super) async fn write(
    w: Writer,
    acks: Arc<AckLog>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let metadata_version = w.versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let produce_version = w.versions.pick(
        ApiKey::Produce,
        kafka::PRODUCE_VERSIONS.0,
        kafka::PRODUCE_VERSIONS.1,
    )?;
    let batch = kafka::encode_record_batch(1, 100, 0)?;
    let mut conn: Option<Connection> = None;
    let mut bootstrap = 1u16;
    while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
        if conn.is_none() {
            // Ask the brokers in turn who leads.
            let addr = format!("127.0.0.1:{}", cluster::client_port(bootstrap));
            bootstrap = bootstrap % cluster::NODES + 1;
            let leader = async {
                let mut c = Connection::connect(&addr, w.timeout).await?;
                let l = kafka::leaders(&mut c, metadata_version, &w.topic).await?;
                l.addr_of(w.partition, &addr)
                    .ok_or_else(|| anyhow!("no leader"))
            }
            .await;
            conn = match leader {
                Ok(addr) => Connection::connect(&addr, Duration::from_secs(5))
                    .await
                    .ok(),
                Err(_) => None,
            };
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = Instant::now();
        match kafka::produce_one(c, produce_version, &w.topic, w.partition, -1, batch.clone()).await
        {
            Ok(Ok(_)) => acks.lock().unwrap_or_else(|e| e.into_inner())[w.partition as usize]
                .push((sent, Instant::now())),
            Ok(Err(_)) | Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(())
}
