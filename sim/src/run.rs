//! One seed of one scenario: a broker node on the simulated disk, producers recording a history,
//! the fault schedule, and the checkers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::config::{Config, Sources};
use bytes::Bytes;
use io_backend::{Env, EnvRng, TcpNet};
use madsim::runtime::{Handle, Runtime};
use tokio::time::Instant;

use crate::client::{Client, ClientError};
use crate::clock::SimClock;
use crate::disk::{Crash, Faults, SimDisk};
use crate::scenario::{Expected, Fault, Scenario};

/// Simulated addresses inside madsim; nothing leaves the process.
const BROKER: &str = "10.77.0.1:9092";
/// Kafka's retriable error for a failed data directory.
const KAFKA_STORAGE_ERROR: i16 = 56;

/// One produce, as the client saw it.
#[derive(Debug, Clone)]
pub struct Op {
    pub value: Bytes,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub outcome: OpOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    Ok(i64),
    /// The broker answered with this error: the write definitely did not happen... or, for a
    /// timeout, may have (Kafka's REQUEST_TIMED_OUT is indefinite).
    Failed(i16),
    /// The connection broke: the write may or may not have happened.
    Unknown,
}

/// What the checkers found.
#[derive(Debug, Clone)]
pub enum Finding {
    LostWrite {
        value: Bytes,
        offset: i64,
    },
    InconsistentOffset {
        offset: i64,
        acked: Bytes,
        found: Option<Bytes>,
    },
    /// A request waited longer than the response deadline for any answer.
    Hung {
        at_s: f64,
        waited_s: u64,
        stalled_syncs: Vec<String>,
        requests_waiting: usize,
    },
    /// No write succeeded within the liveness deadline after the faults healed.
    NoProgressAfterHeal {
        healed_s: u64,
        deadline_s: u64,
    },
    /// Produce requests were refused where the scenario allows none.
    Refused {
        count: usize,
        first_code: i16,
    },
}

impl Finding {
    pub fn is_liveness(&self) -> bool {
        matches!(
            self,
            Finding::Hung { .. } | Finding::NoProgressAfterHeal { .. }
        )
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::LostWrite { value, offset } => {
                write!(f, "lost write: {value:?} acknowledged at offset {offset} is not there")
            }
            Finding::InconsistentOffset { offset, acked, found } => write!(
                f,
                "inconsistent offset {offset}: acknowledged {acked:?}, read {found:?}"
            ),
            Finding::Hung {
                at_s,
                waited_s,
                stalled_syncs,
                requests_waiting,
            } => write!(
                f,
                "liveness: node broker-1 did not answer a produce for {waited_s} s (at t={at_s:.1} s); \
                 pending disk operations: {}; {requests_waiting} produce request(s) waiting",
                if stalled_syncs.is_empty() {
                    "none".to_string()
                } else {
                    stalled_syncs.join(", ")
                }
            ),
            Finding::Refused { count, first_code } => write!(
                f,
                "{count} produce request(s) refused (first error code {first_code}) although the append queue never filled"
            ),
            Finding::NoProgressAfterHeal { healed_s, deadline_s } => write!(
                f,
                "liveness: no write succeeded within {deadline_s} s after the faults healed at t={healed_s} s"
            ),
        }
    }
}

/// The result of one seed.
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    pub findings: Vec<Finding>,
    pub acked: usize,
    pub failed: usize,
    pub unknown: usize,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub expected: Expected,
    /// The client's operations, for reports.
    pub history: Vec<Op>,
    /// Every client-visible event in order (operations with their simulated times and outcomes,
    /// findings): what two runs of the same seed must agree on.
    pub trace: Vec<String>,
}

impl RunReport {
    /// FNV-1a over the trace: stable across processes and platforms (unlike std's hasher).
    pub fn trace_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for event in &self.trace {
            for b in event.bytes().chain(std::iter::once(b'\n')) {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    /// Whether the outcome is the one the scenario expects.
    pub fn as_expected(&self) -> bool {
        let safety = self.findings.iter().any(|f| !f.is_liveness());
        let liveness = self.findings.iter().any(Finding::is_liveness);
        match self.expected {
            Expected::Pass => self.findings.is_empty(),
            Expected::LivenessFailure => liveness && !safety,
        }
    }
}

fn broker_config(scenario: &Scenario) -> anyhow::Result<Config> {
    let mut flags = vec![
        ("listen".to_string(), BROKER.to_string()),
        ("metrics_listen".to_string(), String::new()),
        ("data_dir".to_string(), "/data".to_string()),
        ("seed".to_string(), "1".to_string()),
    ];
    for (k, v) in &scenario.broker {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        flags.push((k.clone(), text));
    }
    Ok(Config::load(&Sources {
        file: None,
        env: Vec::new(),
        flags,
    })?)
}

/// Run one seed on a fresh thread (std's HashMap seeds are per thread; see DESIGN.md).
pub fn run(scenario: &Scenario, seed: u64) -> anyhow::Result<RunReport> {
    let scenario = scenario.clone();
    std::thread::spawn(move || run_here(&scenario, seed))
        .join()
        .map_err(|_| anyhow::anyhow!("the simulation thread panicked"))?
}

fn run_here(scenario: &Scenario, seed: u64) -> anyhow::Result<RunReport> {
    let config = broker_config(scenario)?;
    match &scenario.fault_points {
        Some(fp) => {
            let (chance, max) = (fp.chance_percent as u64, fp.max_delay_ms);
            let rng = EnvRng::seeded(seed ^ 0xfa17);
            broker::fault::set_hook(move |_point| {
                (rng.range_u64(0, 100) < chance)
                    .then(|| Duration::from_millis(rng.range_u64(0, max + 1)))
            });
        }
        None => broker::fault::clear_hook(),
    }
    let wall = std::time::Instant::now();
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let sc = scenario.clone();
    let (history, hangs, simulated_s, final_read) = rt.block_on(async move {
        let handle = Handle::current();
        let start = Instant::now();
        let disk = SimDisk::new(seed);
        let addr: SocketAddr = BROKER.parse().expect("address");
        let node_disk = disk.clone();
        let node = handle
            .create_node()
            .name("broker-1")
            .ip(addr.ip())
            .init(move || {
                let disk = node_disk.clone();
                let config = config.clone();
                async move {
                    let env = Env {
                        disk: Arc::new(disk),
                        net: Arc::new(TcpNet),
                        clock: Arc::new(SimClock::new()),
                        rng: EnvRng::seeded(seed),
                    };
                    match broker::server::start(env, config).await {
                        Ok(mut running) => {
                            let _ = running.stopped().await;
                        }
                        Err(e) => tracing::error!("broker failed to start: {e:#}"),
                    }
                }
            })
            .build();
        // The fault schedule.
        let mut faults = sc.faults.clone();
        faults.sort_by_key(Fault::at_s);
        let fault_disk = disk.clone();
        let fault_handle = handle.clone();
        let node_id = node.id();
        tokio::spawn(async move {
            for fault in faults {
                tokio::time::sleep_until(start + Duration::from_secs(fault.at_s())).await;
                apply(&fault, &fault_disk, &fault_handle, node_id, start).await;
            }
        });
        // The producers, on a client node.
        let client = handle
            .create_node()
            .name("clients")
            .ip("10.77.0.2".parse().expect("address"))
            .build();
        let history: Arc<Mutex<Vec<Op>>> = Arc::default();
        let hangs: Arc<Mutex<Vec<Finding>>> = Arc::default();
        let waiting = Arc::new(AtomicUsize::new(0));
        let end = start + Duration::from_secs(sc.duration_s);
        let mut producers = Vec::new();
        for p in 0..sc.workload.producers {
            let (history, hangs, waiting, disk) = (
                history.clone(),
                hangs.clone(),
                waiting.clone(),
                disk.clone(),
            );
            let sc = sc.clone();
            producers.push(client.spawn(async move {
                produce_loop(p, &sc, addr, start, end, &history, &hangs, &waiting, &disk).await
            }));
        }
        for p in producers {
            let _ = p.await;
        }
        // Let the node settle, then read everything back.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let topic = sc.workload.topic.clone();
        let final_read = client
            .spawn(async move { read_all(addr, &topic).await })
            .await
            .unwrap_or_default();
        let simulated_s = (Instant::now() - start).as_secs_f64();
        let history = std::mem::take(&mut *history.lock().unwrap_or_else(|p| p.into_inner()));
        let hangs = std::mem::take(&mut *hangs.lock().unwrap_or_else(|p| p.into_inner()));
        (history, hangs, simulated_s, final_read)
    });
    let mut findings = hangs;
    findings.extend(check_safety(&history, &final_read));
    if let Some(f) = check_progress_after_heal(scenario, &history) {
        findings.push(f);
    }
    if scenario.expect.no_refusals {
        let refused: Vec<i16> = history
            .iter()
            .filter_map(|op| match op.outcome {
                OpOutcome::Failed(code) => Some(code),
                _ => None,
            })
            .collect();
        if let Some(&first_code) = refused.first() {
            findings.push(Finding::Refused {
                count: refused.len(),
                first_code,
            });
        }
    }
    let count = |pred: fn(&OpOutcome) -> bool| history.iter().filter(|o| pred(&o.outcome)).count();
    let mut trace: Vec<String> = history
        .iter()
        .map(|op| {
            format!(
                "{:.6} {:.6} {:?} {:?}",
                op.invoked_s, op.completed_s, op.value, op.outcome
            )
        })
        .collect();
    trace.push(format!("read {} records", final_read.len()));
    trace.extend(findings.iter().map(|f| f.to_string()));
    Ok(RunReport {
        trace,
        scenario: scenario.name.clone(),
        seed,
        acked: count(|o| matches!(o, OpOutcome::Ok(_))),
        failed: count(|o| matches!(o, OpOutcome::Failed(_))),
        unknown: count(|o| matches!(o, OpOutcome::Unknown)),
        findings,
        simulated_s,
        wall_s: wall.elapsed().as_secs_f64(),
        expected: scenario.expect.outcome,
        history,
    })
}

async fn apply(
    fault: &Fault,
    disk: &SimDisk,
    handle: &Handle,
    node: madsim::task::NodeId,
    start: Instant,
) {
    let now = Instant::now();
    tracing::info!(t = (now - start).as_secs_f64(), ?fault, "fault");
    match fault {
        Fault::FsyncStall { for_s, .. } => {
            let mut f = disk.faults();
            f.sync_stall_until = Some(now + Duration::from_secs(*for_s));
            disk.set_faults(f);
        }
        Fault::FsyncEio { count, .. } => {
            let mut f = disk.faults();
            f.sync_eio_next += count;
            disk.set_faults(f);
        }
        Fault::Crash { torn, down_s, .. } => {
            handle.kill(node);
            disk.crash(if *torn {
                Crash::Torn
            } else {
                Crash::DropUnsynced
            });
            tokio::time::sleep(Duration::from_secs(*down_s)).await;
            handle.restart(node);
        }
        Fault::SlowDisk {
            for_s,
            min_ms,
            max_ms,
            ..
        } => {
            let latency = (
                Duration::from_millis(*min_ms),
                Duration::from_millis(*max_ms),
            );
            for_a_while(
                disk,
                *for_s,
                move |f| f.latency = Some(latency),
                |f| f.latency = None,
            );
        }
        Fault::DiskFull { for_s, .. } => {
            let full = disk.used_bytes();
            for_a_while(
                disk,
                *for_s,
                move |f| f.capacity_bytes = Some(full),
                |f| f.capacity_bytes = None,
            );
        }
    }
}

/// Change the disk's faults now and change them back after `for_s` simulated seconds.
fn for_a_while(
    disk: &SimDisk,
    for_s: u64,
    set: impl FnOnce(&mut Faults),
    reset: impl FnOnce(&mut Faults) + Send + 'static,
) {
    let mut f = disk.faults();
    set(&mut f);
    disk.set_faults(f);
    let disk = disk.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(for_s)).await;
        let mut f = disk.faults();
        reset(&mut f);
        disk.set_faults(f);
    });
}

#[allow(clippy::too_many_arguments)]
async fn produce_loop(
    producer: usize,
    sc: &Scenario,
    addr: SocketAddr,
    start: Instant,
    end: Instant,
    history: &Mutex<Vec<Op>>,
    hangs: &Mutex<Vec<Finding>>,
    waiting: &AtomicUsize,
    disk: &SimDisk,
) {
    let deadline = Duration::from_secs(sc.expect.response_deadline_s);
    let mut conn: Option<Client> = None;
    let mut n = 0u64;
    while Instant::now() < end {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Client::connect(addr).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let value = Bytes::from(format!("p{producer}-{n}"));
        n += 1;
        let invoked = Instant::now();
        waiting.fetch_add(1, Ordering::Relaxed);
        let values = [value.clone()];
        let mut call = Box::pin(c.produce(&sc.workload.topic, 0, sc.workload.acks, 0, &values));
        let result = match tokio::time::timeout(deadline, &mut call).await {
            Ok(r) => r,
            Err(_) => {
                // Hung: say what the node is stuck on, then keep waiting for the answer.
                let stalled = disk
                    .syncs_in_flight()
                    .into_iter()
                    .map(|s| {
                        format!(
                            "sync_data {} since t={:.1} s",
                            s.path.display(),
                            (s.since - start).as_secs_f64()
                        )
                    })
                    .collect();
                let finding = Finding::Hung {
                    at_s: (Instant::now() - start).as_secs_f64(),
                    waited_s: deadline.as_secs(),
                    stalled_syncs: stalled,
                    requests_waiting: waiting.load(Ordering::Relaxed),
                };
                {
                    let mut hangs = hangs.lock().unwrap_or_else(|p| p.into_inner());
                    if hangs.is_empty() {
                        hangs.push(finding);
                    }
                }
                (&mut call).await
            }
        };
        drop(call);
        waiting.fetch_sub(1, Ordering::Relaxed);
        let outcome = match result {
            Ok(offset) => OpOutcome::Ok(offset),
            Err(ClientError::Kafka(code)) => OpOutcome::Failed(code),
            Err(_) => {
                conn = None;
                OpOutcome::Unknown
            }
        };
        let retriable_pause = matches!(outcome, OpOutcome::Failed(KAFKA_STORAGE_ERROR));
        history.lock().unwrap_or_else(|p| p.into_inner()).push(Op {
            value,
            invoked_s: (invoked - start).as_secs_f64(),
            completed_s: (Instant::now() - start).as_secs_f64(),
            outcome,
        });
        let pause = if retriable_pause {
            1_000
        } else {
            sc.workload.interval_ms
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Everything in partition 0, by offset.
async fn read_all(addr: SocketAddr, topic: &str) -> Vec<(i64, Bytes)> {
    for _ in 0..50 {
        let Ok(mut c) = Client::connect(addr).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut out = Vec::new();
        let mut next = 0;
        while let Ok((records, hw)) = c.fetch(topic, 0, next, 0).await {
            match records.last() {
                Some((last, _)) => next = last + 1,
                None if next < hw => break, // Nothing where data should be: try again.
                None => {}
            }
            out.extend(records);
            if next >= hw {
                return out;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Vec::new()
}

fn check_safety(history: &[Op], read: &[(i64, Bytes)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let at: std::collections::HashMap<i64, &Bytes> = read.iter().map(|(o, v)| (*o, v)).collect();
    for op in history {
        if let OpOutcome::Ok(offset) = op.outcome {
            match at.get(&offset) {
                Some(v) if **v == op.value => {}
                Some(v) => findings.push(Finding::InconsistentOffset {
                    offset,
                    acked: op.value.clone(),
                    found: Some((*v).clone()),
                }),
                None => findings.push(Finding::LostWrite {
                    value: op.value.clone(),
                    offset,
                }),
            }
        }
    }
    findings
}

fn check_progress_after_heal(sc: &Scenario, history: &[Op]) -> Option<Finding> {
    let healed = sc.last_heal_s();
    if sc.faults.is_empty() || healed + sc.expect.liveness_deadline_s >= sc.duration_s {
        return None;
    }
    let by = (healed + sc.expect.liveness_deadline_s) as f64;
    let progressed = history.iter().any(|op| {
        matches!(op.outcome, OpOutcome::Ok(_))
            && op.completed_s >= healed as f64
            && op.completed_s <= by
    });
    (!progressed).then_some(Finding::NoProgressAfterHeal {
        healed_s: healed,
        deadline_s: sc.expect.liveness_deadline_s,
    })
}
