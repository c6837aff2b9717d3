//! `cargo xtask bench partitions`: many partitions on the local three-broker cluster. For each
//! count: one CreateTopics of that many partitions, timed until it is answered and until
//! Metadata names a leader for every partition; the elections that took (a new partition's
//! first term needs none); a record written to every partition through its leader; then, idle,
//! each broker's CPU and resident memory; then the failure half (`partitions_failover`): the
//! broker leading the most partitions SIGKILLed and started again. `--busy` loads the host while the topic is made (a
//! thread spinning on each core and one writing and syncing a file in a loop), as a production
//! host is at times: the case where a thousand new partitions once never got a leader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::ApiKey;
use tokio::time::Instant;

use super::kafka::{self, ApiVersions, Connection};
use super::partitions_failover::{kill_and_restart, Failover};
use super::stats::{self, MetricsSample};
use super::{BrokerArgs, Target};

#[derive(Args, Clone, Debug)]
pub struct PartitionsArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Partition counts, one topic each, made one after another (e.g. `1000,3000,10000`).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    count: Vec<i32>,
    #[arg(long, default_value_t = 3)]
    replication_factor: i16,
    /// How long every partition may take to have a leader before the run says it has not.
    #[arg(long, default_value_t = 600)]
    led_within_secs: u64,
    /// Load the host while each topic is made and led: a spinning thread per core and one
    /// writing and syncing a file in a loop (in the cluster's folder).
    #[arg(long)]
    busy: bool,
    /// Seconds over which idle CPU is measured, after the writes.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Seconds between the last write and the idle measurement: the groups written to go
    /// quiet after two election timeouts without traffic.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    /// Keep the topics (they are deleted after the run otherwise).
    #[arg(long)]
    keep: bool,
    /// Skip the failure half: the broker leading the most partitions SIGKILLed, then started
    /// again (timed until its leaderships moved, it serves, and it leads as many again).
    #[arg(long)]
    no_failover: bool,
}

/// What one count measured.
struct Figures {
    count: i32,
    answered: Duration,
    /// Until every partition had a leader, or `None`: not within `--led-within-secs` (then
    /// how many had one).
    led: std::result::Result<Duration, usize>,
    written: Option<Duration>,
    elections: f64,
    first_terms: f64,
    syncs: f64,
    idle_cpu: Vec<(u32, f64)>,
    rss_bytes: Vec<(u32, u64)>,
    failover: Option<Failover>,
}

pub async fn partitions_bench(args: PartitionsArgs) -> Result<()> {
    if args.count.iter().any(|&c| c <= 0) {
        bail!("--count takes partition counts of at least 1");
    }
    let target = Target::new(&args.broker, args.broker.only_security()?).await?;
    let Some(dir) = target.cluster.clone() else {
        bail!("bench partitions runs on the local cluster: pass --cluster-dir (after `cargo xtask cluster up`)");
    };
    let result = against(&args, &target, &dir).await;
    let stopped = target.stop().await;
    result?;
    stopped
}

async fn against(args: &PartitionsArgs, target: &Target, dir: &Path) -> Result<()> {
    let timeout = Duration::from_secs(args.broker.request_timeout_secs);
    let mut admin = Connection::connect(&target.addr, timeout).await?;
    let versions = ApiVersions::fetch(&mut admin).await?;
    let create_version = versions.pick(ApiKey::CreateTopics, 4, kafka::CREATE_TOPICS_VERSIONS.1)?;
    let metadata_version = versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut all = Vec::new();
    for &count in &args.count {
        let name = format!("bench-partitions-{run}-{count}");
        let before = scrape_all(target).await?;
        let load = args.busy.then(|| Load::start(dir));
        let started = Instant::now();
        let wait_ms = (args.led_within_secs * 1000).min(i32::MAX as u64) as i32;
        let rf = args.replication_factor;
        kafka::create_topic(&mut admin, create_version, &name, count, rf, wait_ms).await?;
        let answered = started.elapsed();
        let led = all_led(
            &target.addr,
            metadata_version,
            &name,
            count,
            started + Duration::from_secs(args.led_within_secs),
            timeout,
        )
        .await?
        .map(|()| started.elapsed());
        drop(load);
        let written = match led {
            Ok(_) => {
                let from = Instant::now();
                let within = Duration::from_secs(60);
                write_everywhere(&target.addr, &versions, &name, count, timeout, within).await?;
                Some(from.elapsed())
            }
            Err(_) => None,
        };
        let after = scrape_all(target).await?;
        let delta = |metric: &str| -> f64 {
            before
                .iter()
                .zip(&after)
                .filter_map(|(b, a)| stats::metric_delta(b, a, metric))
                .sum()
        };
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let pids = target.broker_pids();
        let cpu_before: Vec<Option<Duration>> = pids
            .iter()
            .map(|&p| stats::process_cpu_time(p).ok())
            .collect();
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        let idle_cpu = pids
            .iter()
            .zip(&cpu_before)
            .filter_map(|(&pid, before)| {
                let used = stats::process_cpu_time(pid).ok()?.checked_sub((*before)?)?;
                Some((pid, used.as_secs_f64() / args.idle_secs as f64))
            })
            .collect();
        let rss_bytes = pids.iter().map(|&p| (p, stats::rss_bytes(p))).collect();
        let failover = match (&led, args.no_failover) {
            (Ok(_), false) => {
                let k = kill_and_restart(dir, metadata_version, &name, count, timeout).await?;
                // The broker killed may have been the one the admin connection was to.
                admin = Connection::connect(&target.addr, timeout).await?;
                Some(k)
            }
            _ => None,
        };
        all.push(Figures {
            count,
            answered,
            led,
            written,
            elections: delta("stillwater_raft_elections_total"),
            first_terms: delta("stillwater_raft_first_terms_led_total"),
            syncs: delta(stats::DISK_SYNC_OPS),
            idle_cpu,
            rss_bytes,
            failover,
        });
        if !args.keep {
            if let Err(e) = kafka::delete_topics(&mut admin, &versions, &[name]).await {
                println!("xtask: could not delete the benchmark's topic: {e:#}");
            }
        }
    }
    print(args, target, &all);
    Ok(())
}

fn print(args: &PartitionsArgs, target: &Target, all: &[Figures]) {
    let mut table = target.table();
    table.row(
        "workload",
        format!(
            "one topic per count, replication factor {}, made with one CreateTopics{}; then one \
             record (acks=all) to every partition; then {} s idle (measured from {} s after the \
             last write); then (unless --no-failover) the broker leading the most partitions \
             SIGKILLed and started again",
            args.replication_factor,
            if args.busy {
                ", the host loaded meanwhile (a spinning thread per core, a file written and \
                 synced in a loop)"
            } else {
                ""
            },
            args.idle_secs,
            args.settle_secs
        ),
    );
    let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    for f in all {
        let led = match f.led {
            Ok(d) => s(d),
            Err(n) => format!(
                "NOT within {} s: {n} of {} led",
                args.led_within_secs, f.count
            ),
        };
        table.row(
            format!("{} partitions", f.count),
            format!(
                "answered {}, all led {}, a record on each {}; elections {}, first terms led \
                 without one {}, syncs {} (all brokers)",
                s(f.answered),
                led,
                f.written.map_or("-".to_string(), s),
                f.elections,
                f.first_terms,
                f.syncs
            ),
        );
        table.row(
            format!("{} partitions, idle", f.count),
            f.idle_cpu
                .iter()
                .zip(&f.rss_bytes)
                .map(|((pid, cpu), (_, rss))| {
                    format!(
                        "pid {pid}: CPU {:.2} % of a core, RSS {} MiB",
                        cpu * 100.0,
                        rss >> 20
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        );
        if let Some(k) = &f.failover {
            let waited = |r: &std::result::Result<Duration, usize>, what: &str| match r {
                Ok(d) => s(*d),
                Err(n) => format!("NOT within 180 s ({n} {what})"),
            };
            table.row(
                format!("{} partitions, failure", f.count),
                format!(
                    "node {} (leader of {}) SIGKILLed: its leaderships moved in {} ({} elections); \
                     started again: serving in {}, leading {} again in {} ({} elections), RSS {} MiB",
                    k.node,
                    k.led,
                    waited(&k.moved, "not moved"),
                    k.moved_elections,
                    k.serving.map_or("NOT within 180 s".to_string(), s),
                    k.led,
                    waited(&k.led_again, "led"),
                    k.restart_elections,
                    k.rss_bytes >> 20
                ),
            );
        }
    }
    println!("Stillwater many-partitions benchmark");
    table.print();
}

async fn scrape_all(target: &Target) -> Result<Vec<MetricsSample>> {
    let mut out = Vec::new();
    for addr in target.metrics_addrs() {
        out.push(stats::scrape_metrics(&addr).await?);
    }
    Ok(out)
}

/// Until Metadata names a leader for each of `count` partitions: `Ok(())`, or `Err(led)` at
/// `deadline`.
async fn all_led(
    bootstrap: &str,
    version: i16,
    topic: &str,
    count: i32,
    deadline: Instant,
    timeout: Duration,
) -> Result<std::result::Result<(), usize>> {
    let mut meta = Connection::connect(bootstrap, timeout).await?;
    let mut last_report = Instant::now();
    loop {
        let leaders = kafka::leaders(&mut meta, version, topic).await?;
        let led = leaders.partitions.iter().filter(|p| p.is_some()).count();
        if led == count as usize {
            return Ok(Ok(()));
        }
        if Instant::now() >= deadline {
            return Ok(Err(led));
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!("xtask: {topic}: {led} of {count} partitions led");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One record (acks=all) to every partition through its leader, as a client writes: one
/// Produce request per leader for up to [`PRODUCE_PARTITIONS_MAX`] of its partitions, every
/// leader's in flight together on a connection of its own; Metadata asked again for those that
/// failed, until all took one (`within` at most).
pub async fn write_everywhere(
    bootstrap: &str,
    versions: &ApiVersions,
    topic: &str,
    count: i32,
    timeout: Duration,
    within: Duration,
) -> Result<()> {
    let metadata_version = versions.pick(
        ApiKey::Metadata,
        kafka::METADATA_VERSIONS.0,
        kafka::METADATA_VERSIONS.1,
    )?;
    let produce_version = versions.pick(
        ApiKey::Produce,
        kafka::PRODUCE_VERSIONS.0,
        kafka::PRODUCE_VERSIONS.1,
    )?;
    let batch: Bytes = kafka::encode_record_batch(1, 100, 0)?;
    let deadline = Instant::now() + within;
    let mut meta = Connection::connect(bootstrap, timeout).await?;
    let mut connections: BTreeMap<String, Connection> = BTreeMap::new();
    let mut pending: Vec<i32> = (0..count).collect();
    let mut last = String::new();
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            bail!(
                "{topic}: {} partitions took no write within {} s ({last})",
                pending.len(),
                within.as_secs()
            );
        }
        let leaders = kafka::leaders(&mut meta, metadata_version, topic).await?;
        let mut left = Vec::new();
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for &p in &pending {
            match leaders.addr_of(p, bootstrap) {
                Some(addr) => by_leader.entry(addr).or_default().push(p),
                None => {
                    last = format!("partition {p} has no leader");
                    left.push(p);
                }
            }
        }
        for addr in by_leader.keys() {
            if !connections.contains_key(addr) {
                connections.insert(addr.clone(), Connection::connect(addr, timeout).await?);
            }
        }
        let writes = connections
            .iter_mut()
            .filter_map(|(addr, c)| Some((addr.clone(), c, by_leader.remove(addr)?)))
            .map(|(addr, c, partitions)| {
                let batch = batch.clone();
                async move {
                    let mut answers = Vec::new();
                    for (i, chunk) in partitions.chunks(PRODUCE_PARTITIONS_MAX).enumerate() {
                        let asked = kafka::produce_each(
                            c,
                            produce_version,
                            topic,
                            chunk,
                            -1,
                            batch.clone(),
                        );
                        match asked.await {
                            Ok(a) => answers.extend(a.into_iter().map(|(p, r)| {
                                (p, r.map_err(|code| kafka::error_name(code).to_string()))
                            })),
                            Err(e) => {
                                // The connection is broken: this chunk and the rest go again.
                                let rest = &partitions[i * PRODUCE_PARTITIONS_MAX..];
                                answers.extend(rest.iter().map(|&p| (p, Err(format!("{e:#}")))));
                                return (addr, answers, true);
                            }
                        }
                    }
                    (addr, answers, false)
                }
            });
        for (addr, answers, broken) in futures::future::join_all(writes).await {
            for (p, answer) in answers {
                if let Err(e) = answer {
                    last = format!("partition {p}: {e}");
                    left.push(p);
                }
            }
            if broken {
                connections.remove(&addr);
            }
        }
        pending = left;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

/// Partitions in one Produce request of [`write_everywhere`] at most.
const PRODUCE_PARTITIONS_MAX: usize = 1000;

/// A busy host for as long as it lives: a spinning thread per core, and one writing 1 MiB and
/// syncing it in a loop to a file in the cluster's folder (removed at the end).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    file: PathBuf,
}

impl Load {
    fn start(dir: &Path) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..stats::cpu_count() {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut x: u64 = 1;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            }));
        }
        let file = dir.join("bench-partitions-disk-load");
        {
            let (stop, file) = (stop.clone(), file.clone());
            threads.push(std::thread::spawn(move || {
                use std::io::{Seek, Write};
                let Ok(mut f) = std::fs::File::create(&file) else {
                    return;
                };
                let chunk = vec![0x5a_u8; 1 << 20];
                let mut written = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Within 256 MiB, overwritten round and round.
                    if written >= 256 << 20 {
                        let _ = f.rewind();
                        written = 0;
                    }
                    if f.write_all(&chunk).is_err() || f.sync_data().is_err() {
                        return;
                    }
                    written += chunk.len() as u64;
                }
            }));
        }
        Load {
            stop,
            threads,
            file,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}
