//! One seed of one scenario: a broker node on the simulated disk, network and clock; client
//! nodes for the producers, consumers and admin client recording a history; the fault schedule
//! (and this seed's random draw); then the checkers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use broker::config::{Config, Sources};
use io_backend::{Env, EnvRng, TcpNet};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use tokio::time::Instant;

use crate::checker::{self, Finding, Stats};
use crate::clock::SimClock;
use crate::disk::{Crash, Faults, SimDisk};
use crate::history::{Op, SendOutcome};
use crate::scenario::{last_heal_s, Expected, Fault, Scenario, BROKER_NODE, CLIENT_NODES};
use crate::workload::{self, World};
use crate::{group, group_check, perf};

/// Simulated addresses inside madsim; nothing leaves the process.
const BROKER: &str = "10.77.0.1:9092";
/// The client nodes' addresses, in the order of [`CLIENT_NODES`], then the checker's.
const CLIENT_IPS: [&str; 4] = ["10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.5"];
/// Simulated time the broker gets to settle after the workload, before the final read.
const SETTLE: Duration = Duration::from_secs(5);
/// Where a cluster's brokers live: broker `i` (from 1) at 10.77.1.i, clients on 9092, the
/// other brokers on 9093.
fn cluster_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 1, i as u8))
}
const INTER_BROKER_PORT: u16 = 9093;
/// The data directory on every node's disk.
const DATA_DIR: &str = "/data";

/// The result of one seed.
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    pub findings: Vec<Finding>,
    pub stats: Stats,
    pub acked: usize,
    /// Produce attempts answered with an error that says the write did not happen.
    pub refused: usize,
    /// Produce attempts without an answer, or answered REQUEST_TIMED_OUT: they may have happened.
    pub unknown: usize,
    pub polls: usize,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub expected: Expected,
    /// The faults of this run (scheduled and drawn), in time order.
    pub faults: Vec<Fault>,
    /// Every client operation, in completion order.
    pub history: Vec<Op>,
    /// Every client-visible event in order (operations with their simulated times and outcomes,
    /// faults, findings): what two runs of the same seed must agree on.
    pub trace: Vec<String>,
    /// How often the run passed each rare path ([`broker::coverage::Event`]).
    pub coverage: Vec<(broker::coverage::Event, u64)>,
    /// Performance figures beside the scenario's bounds (empty without bounds).
    pub figures: Vec<perf::Figure>,
    /// The settings this seed drew (`section.key`, value), with a `[random_config]`.
    pub config: Vec<(String, String)>,
    /// The brokers' names, in order (`broker-1` first); an op's `broker` indexes this.
    pub brokers: Vec<String>,
    /// In a cluster: each time Metadata named a new leader of a workload partition,
    /// `(seconds into the run, partition, leader's node id or -1)`.
    pub leader_changes: Vec<(f64, i32, i32)>,
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
        match &self.expected {
            Expected::Pass => self.findings.is_empty(),
            Expected::LivenessFailure => {
                !self.findings.is_empty() && self.findings.iter().all(Finding::is_liveness)
            }
            Expected::Finding(kind) => {
                !self.findings.is_empty() && self.findings.iter().all(|f| f.kind() == kind)
            }
        }
    }

    /// The findings for people: at most `per_kind` lines of each kind, then a count of the rest.
    pub fn finding_lines(&self, per_kind: usize) -> Vec<String> {
        let mut by_kind: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in &self.findings {
            by_kind.entry(f.kind()).or_default().push(f);
        }
        let mut out = Vec::new();
        for (kind, fs) in by_kind {
            out.extend(fs.iter().take(per_kind).map(|f| f.to_string()));
            if fs.len() > per_kind {
                out.push(format!(
                    "… and {} more {kind} finding(s)",
                    fs.len() - per_kind
                ));
            }
        }
        out
    }
}

/// The address clients use for broker `i` (from 1).
fn broker_addr(scenario: &Scenario, i: usize) -> SocketAddr {
    if scenario.clustered() {
        SocketAddr::new(cluster_ip(i), 9092)
    } else {
        BROKER.parse().expect("address")
    }
}

fn broker_config(scenario: &Scenario, node: usize) -> anyhow::Result<Config> {
    let mut flags = vec![
        (
            "listen".to_string(),
            broker_addr(scenario, node).to_string(),
        ),
        ("metrics_listen".to_string(), String::new()),
        ("data_dir".to_string(), DATA_DIR.to_string()),
        ("seed".to_string(), "1".to_string()),
        // The workload creates its topic (with its partitions) through CreateTopics.
        ("auto_create_topics".to_string(), "false".to_string()),
    ];
    if scenario.clustered() {
        let peers = (1..=scenario.cluster.nodes)
            .map(|i| format!("{i}@{}:{INTER_BROKER_PORT}", cluster_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        flags.push(("node_id".to_string(), node.to_string()));
        flags.push(("cluster_peers".to_string(), peers));
    }
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

/// The environment of each start of one broker node. Every start is a new incarnation with a
/// generator of its own (the run's seed mixed with the start count): seeded alike every time,
/// a restarted node would draw the same ids (topic ids, …) and choices as before its crash.
pub struct NodeStarts {
    seed: u64,
    starts: std::sync::atomic::AtomicU64,
}

impl NodeStarts {
    pub fn new(seed: u64) -> NodeStarts {
        NodeStarts {
            seed,
            starts: Default::default(),
        }
    }

    /// The environment of the next start: the node's disk and clock (which outlive it), TCP,
    /// and this incarnation's generator (the first start's is seeded with the run's seed).
    pub fn next_env(&self, disk: &SimDisk, clock: Arc<SimClock>) -> Env {
        let incarnation = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Env {
            disk: Arc::new(disk.clone()),
            net: Arc::new(TcpNet),
            clock: Arc::new(clock.incarnation()),
            rng: EnvRng::seeded(self.seed ^ incarnation.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }
}

/// Run one seed on a fresh thread (std's HashMap seeds are per thread; see DESIGN.md).
pub fn run(scenario: &Scenario, seed: u64) -> anyhow::Result<RunReport> {
    let (scenario, drawn) = scenario.for_seed(seed)?;
    let mut report = std::thread::spawn(move || run_here(&scenario, seed))
        .join()
        .map_err(|_| anyhow::anyhow!("the simulation thread panicked"))??;
    // The configuration is part of what two runs of a seed must agree on.
    let mut trace: Vec<String> = drawn
        .iter()
        .map(|(k, v)| format!("config {k} = {v}"))
        .collect();
    trace.append(&mut report.trace);
    report.trace = trace;
    report.config = drawn;
    Ok(report)
}

/// One broker of a run: its madsim node, and the disk and clock that outlive its crashes.
struct BrokerNode {
    name: String,
    id: NodeId,
    disk: SimDisk,
    clock: Arc<SimClock>,
    /// Each start's metrics (its bounds' high-water marks outlive it).
    metrics: Metered,
}

/// The metrics of each start of a broker node.
type Metered = Arc<std::sync::Mutex<Vec<Arc<broker::metrics::Metrics>>>>;

/// The simulated machines of a run.
struct Cluster {
    handle: Handle,
    brokers: Vec<BrokerNode>,
    nodes: BTreeMap<String, NodeId>,
}

impl Cluster {
    fn id(&self, name: &str) -> Option<NodeId> {
        self.nodes.get(name).copied()
    }

    /// The broker a node-scoped fault strikes (`broker-1` when it names none).
    fn broker(&self, fault: &Fault) -> &BrokerNode {
        let name = fault.node().unwrap_or(BROKER_NODE);
        self.brokers
            .iter()
            .find(|b| b.name == name)
            .unwrap_or(&self.brokers[0])
    }
}

fn run_here(scenario: &Scenario, seed: u64) -> anyhow::Result<RunReport> {
    // First, before anything on this thread makes a HashMap: the runtime seeds std's per-thread
    // hash keys from the seed only if none were drawn yet (else iteration order, and with it
    // the run, would differ between two runs of the same seed).
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let configs = (1..=scenario.cluster.nodes.max(1))
        .map(|i| broker_config(scenario, i))
        .collect::<anyhow::Result<Vec<Config>>>()?;
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
    let budgets: Vec<u64> = configs
        .iter()
        .map(|c| c.memory_budget_bytes as u64)
        .collect();
    let faults = scenario.faults_for(seed);
    let wall = std::time::Instant::now();
    let sc = scenario.clone();
    let run_faults = faults.clone();
    let (history, hang, simulated_s, final_read, fault_log, stuck_at_deadline) =
        rt.block_on(async move {
            let handle = Handle::current();
            let mut brokers = Vec::new();
            for (i, config) in configs.into_iter().enumerate() {
                let node = i + 1;
                // The first broker's disk and generator are seeded as a single node's always
                // were; the others' from the seed and their number.
                let mix = (node as u64 - 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
                let disk = SimDisk::new(seed ^ mix);
                let mut f = disk.faults();
                f.latency = sc.disk.latency();
                f.bandwidth_bytes_per_s = sc.disk.bandwidth_mb_s.map(|mb| mb << 20);
                disk.set_faults(f);
                let clock = Arc::new(SimClock::new());
                let addr = broker_addr(&sc, node);
                let name = crate::scenario::broker_name(node);
                let metrics = Metered::default();
                let id = {
                    let (disk, clock, metered) = (disk.clone(), clock.clone(), metrics.clone());
                    let starts = NodeStarts::new(seed ^ mix);
                    handle
                        .create_node()
                        .name(name.clone())
                        .ip(addr.ip())
                        .init(move || {
                            let env = starts.next_env(&disk, clock.clone());
                            let config = config.clone();
                            let metered = metered.clone();
                            async move {
                                match broker::server::start(env, config).await {
                                    Ok(mut running) => {
                                        metered
                                            .lock()
                                            .unwrap_or_else(|p| p.into_inner())
                                            .push(running.broker.metrics.clone());
                                        let _ = running.stopped().await;
                                    }
                                    Err(e) => tracing::error!("broker failed to start: {e:#}"),
                                }
                            }
                        })
                        .build()
                        .id()
                };
                brokers.push(BrokerNode {
                    name,
                    id,
                    disk,
                    clock,
                    metrics,
                });
            }
            let mut nodes = BTreeMap::new();
            for b in &brokers {
                nodes.insert(b.name.clone(), b.id);
            }
            let mut client_nodes = Vec::new();
            for (name, ip) in CLIENT_NODES.iter().chain(&["checker"]).zip(CLIENT_IPS) {
                let ip: IpAddr = ip.parse().expect("address");
                let node = handle.create_node().name(*name).ip(ip).build();
                nodes.insert(name.to_string(), node.id());
                client_nodes.push(node);
            }
            let addrs: Vec<SocketAddr> = (1..=brokers.len()).map(|i| broker_addr(&sc, i)).collect();
            let disks: Vec<(String, SimDisk)> = brokers
                .iter()
                .map(|b| (b.name.clone(), b.disk.clone()))
                .collect();
            let cluster = Arc::new(Cluster {
                handle: handle.clone(),
                brokers,
                nodes,
            });
            let world = World::new(sc.clone(), seed, addrs, run_faults.clone(), disks);
            let start = world.start;

            // The fault schedule.
            let fault_log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
            {
                let (cluster, fault_log) = (cluster.clone(), fault_log.clone());
                tokio::spawn(async move {
                    for fault in run_faults {
                        tokio::time::sleep_until(start + Duration::from_secs(fault.at_s())).await;
                        let line = format!(
                            "{:.6} fault {}",
                            (Instant::now() - start).as_secs_f64(),
                            fault.describe()
                        );
                        fault_log
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(line);
                        let cluster = cluster.clone();
                        tokio::spawn(async move { apply(&fault, &cluster).await });
                    }
                });
            }

            // What the node is stuck on when the after-heal liveness deadline passes.
            let stuck_at_deadline = {
                let world = world.clone();
                let at = last_heal_s(&world.faults) + sc.expect.liveness_deadline_s;
                tokio::spawn(async move {
                    tokio::time::sleep_until(start + Duration::from_secs(at)).await;
                    world.stuck()
                })
            };
            let [producers_node, consumers_node, admin_node, checker_node] = &client_nodes[..]
            else {
                unreachable!("four client nodes");
            };
            let workload = async {
                admin_node.spawn(workload::admin(world.clone()));
                let producers: Vec<_> = (0..sc.workload.producers)
                    .map(|p| producers_node.spawn(workload::produce(world.clone(), p)))
                    .collect();
                let mut consumers: Vec<_> = (0..sc.workload.consumers)
                    .map(|c| consumers_node.spawn(workload::consume(world.clone(), c)))
                    .collect();
                if let Some(g) = &sc.workload.group {
                    consumers.extend(
                        (0..g.members)
                            .map(|m| consumers_node.spawn(group::member(world.clone(), m))),
                    );
                }
                for p in producers {
                    let _ = p.await;
                }
                // Produces without acknowledgement (acks=0) may still wait in the broker's append
                // queue when their producers are done: the end is where the log stops growing.
                let (topic, partitions) = (sc.workload.topic.clone(), sc.workload.partitions);
                checker_node
                    .spawn(workload::quiesce(
                        world.directory.clone(),
                        topic,
                        partitions,
                    ))
                    .await
                    .ok();
                world.producing_over();
                for c in consumers {
                    let _ = c.await;
                }
                // Let the node settle, then read everything back.
                tokio::time::sleep(SETTLE).await;
                let (topic, partitions) = (sc.workload.topic.clone(), sc.workload.partitions);
                let group_id = sc.workload.group.as_ref().map(|g| g.group_id.clone());
                let directory = world.directory.clone();
                let reader = world.clone();
                checker_node
                    .spawn(async move {
                        let read = workload::read_back(directory, &topic, partitions).await;
                        let committed = match group_id {
                            Some(g) => group::read_committed(&reader, &g, &topic, partitions).await,
                            None => Default::default(),
                        };
                        (read, committed)
                    })
                    .await
                    .unwrap_or_default()
            };
            // A broker whose reads take more memory than its budget stops the run there:
            // found so, not by the machine running out of memory.
            let overrun = crate::bounds::first_read_overrun(
                cluster
                    .brokers
                    .iter()
                    .zip(&budgets)
                    .map(|(b, budget)| (b.name.clone(), b.disk.clone(), *budget))
                    .collect(),
            );
            let (final_read, final_committed, stopped) = tokio::select! {
                biased;
                (read, committed) = workload => (read, committed, None),
                finding = overrun => {
                    for b in &cluster.brokers {
                        cluster.handle.kill(b.id);
                    }
                    (Default::default(), Default::default(), Some(finding))
                }
            };
            let simulated_s = (Instant::now() - start).as_secs_f64();
            let segment_syncs: Vec<f64> = cluster.brokers[0]
                .disk
                .segment_syncs()
                .into_iter()
                .map(|t| t.saturating_duration_since(start).as_secs_f64())
                .collect();
            let (history, hang) = world.take();
            // Before the checker reads the logs through the disks itself.
            let disk_reads_peaks: Vec<u64> = cluster
                .brokers
                .iter()
                .map(|b| b.disk.read_bytes_in_flight_peak())
                .collect();
            // A cluster: every replica's log as its disk holds it, what Metadata named, and
            // the high watermarks consumers were told.
            let mut replica_logs = BTreeMap::new();
            if sc.clustered() && stopped.is_none() {
                for b in &cluster.brokers {
                    let logs = crate::replicas::read_logs(
                        &b.disk,
                        std::path::Path::new(DATA_DIR),
                        &sc.workload.topic,
                        sc.workload.partitions,
                    )
                    .await;
                    replica_logs.insert(b.name.clone(), logs);
                }
            }
            let leaderships = world.directory.leaderships();
            let named: Vec<crate::replicas::NamedItself> = world
                .directory
                .self_named()
                .into_iter()
                .filter(|n| n.topic == sc.workload.topic)
                .map(|n| crate::replicas::NamedItself {
                    at_s: (n.at - start).as_secs_f64(),
                    broker: n.broker,
                    partition: n.partition,
                    epoch: n.epoch,
                })
                .collect();
            let leader_changes: Vec<(f64, i32, i32)> = world
                .directory
                .leader_changes()
                .into_iter()
                .filter(|c| c.topic == sc.workload.topic)
                .map(|c| ((c.at - start).as_secs_f64(), c.partition, c.leader))
                .collect();
            let broker_names: Vec<String> =
                cluster.brokers.iter().map(|b| b.name.clone()).collect();
            let node_bounds: Vec<crate::bounds::NodeBounds> = cluster
                .brokers
                .iter()
                .zip(budgets.iter().zip(&disk_reads_peaks))
                .map(|(b, (budget, disk_reads_peak))| crate::bounds::NodeBounds {
                    node: b.name.clone(),
                    starts: b
                        .metrics
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .map(|m| {
                            let failures = m.log_dir_failures.get();
                            (m.bounds(), failures)
                        })
                        .collect(),
                    disk_reads_peak: *disk_reads_peak,
                    memory_budget: *budget,
                })
                .collect();
            let watermarks =
                std::mem::take(&mut *world.watermarks.lock().unwrap_or_else(|p| p.into_inner()));
            let fault_log =
                std::mem::take(&mut *fault_log.lock().unwrap_or_else(|p| p.into_inner()));
            let stuck_at_deadline = if stuck_at_deadline.is_finished() {
                stuck_at_deadline.await.ok()
            } else {
                stuck_at_deadline.abort();
                None
            };
            (
                history,
                hang,
                simulated_s,
                (final_read, final_committed),
                fault_log,
                (
                    stuck_at_deadline,
                    segment_syncs,
                    (replica_logs, (leaderships, named), watermarks),
                    (broker_names, leader_changes, node_bounds, stopped),
                ),
            )
        });
    let (
        stuck_at_deadline,
        segment_syncs,
        (replica_logs, (leaderships, named), watermarks),
        (brokers, leader_changes, node_bounds, stopped),
    ) = stuck_at_deadline;
    let ((final_read, gaps), final_committed) = final_read;
    let log_end = gaps.log_end.clone();
    let coverage = broker::coverage::take();

    let opts = checker::Options {
        consumers_drained: scenario.workload.consumers > 0,
        gaps,
        leader_acks_weak: scenario.clustered(),
    };
    let (mut findings, stats) = checker::safety(&history, &final_read, &opts);
    findings.extend(hang);
    if scenario.workload.group.is_some() {
        findings.extend(group_check::check(
            &history,
            &final_read,
            &log_end,
            &final_committed,
            scenario.workload.partitions,
            scenario.workload.consumers,
        ));
    }
    if !faults.is_empty() {
        findings.extend(checker::progress_after_heal(
            &history,
            scenario.workload.partitions,
            (last_heal_s(&faults), scenario.expect.liveness_deadline_s),
            scenario.duration_s,
            scenario.workload.consumers > 0,
            &stuck_at_deadline.unwrap_or_default(),
        ));
    }
    if scenario.expect.no_refusals {
        findings.extend(checker::refusals(&history));
    }
    if scenario.clustered() {
        // Below what was read back (all of it committed), every replica holds the same.
        let read_to: BTreeMap<i32, i64> = final_read
            .iter()
            .map(|(p, r)| (*p, r.last().map_or(0, |(o, _)| o + 1)))
            .collect();
        findings.extend(crate::replicas::replicas_agree(&replica_logs, &read_to));
        findings.extend(crate::replicas::watermarks_monotonic(&watermarks));
        findings.extend(crate::replicas::one_leader_per_epoch(&leaderships));
        findings.extend(crate::replicas::leader_refuses(&named, &history));
    }
    findings.extend(crate::bounds::check(
        &node_bounds,
        scenario.disk_can_fail(&faults),
    ));
    let measured = perf::measure(&history, &faults, scenario.duration_s, &segment_syncs);
    let figures = perf::figures(scenario, &measured);
    findings.extend(
        figures
            .iter()
            .filter(|f| !f.holds())
            .map(|f| Finding::Slow {
                figure: f.name.to_string(),
                value: f.value,
                bound: format!("{} {:.2}", f.kind(), f.bound),
            }),
    );
    if let Some(f) = stopped {
        // The run stopped part way: what the other checkers would say of it means nothing.
        findings = vec![f];
    }
    let count = |pred: fn(&SendOutcome) -> bool| {
        history
            .iter()
            .filter(|op| matches!(op, Op::Send(s) if pred(&s.outcome)))
            .count()
    };
    let mut trace: Vec<String> = fault_log;
    trace.extend(history.iter().map(Op::trace_line));
    if !final_committed.is_empty() {
        trace.push(format!("group committed {final_committed:?}"));
    }
    for u in &opts.gaps.unreadable {
        trace.push(format!(
            "read back: partition {} offsets {}..{} unreadable (error {})",
            u.partition, u.from, u.to, u.code
        ));
    }
    trace.push(format!(
        "read back {} records: {:?}",
        stats.records,
        final_read
            .iter()
            .map(|(p, r)| (*p, r.len()))
            .collect::<Vec<_>>()
    ));
    trace.extend(findings.iter().map(|f| f.to_string()));
    Ok(RunReport {
        trace,
        scenario: scenario.name.clone(),
        seed,
        acked: count(|o| matches!(o, SendOutcome::Ok(_))),
        refused: count(SendOutcome::definitely_failed),
        unknown: count(|o| {
            matches!(
                o,
                SendOutcome::Unknown
                    | SendOutcome::Failed {
                        definite: false,
                        ..
                    }
            )
        }),
        polls: history
            .iter()
            .filter(|op| matches!(op, Op::Poll(_)))
            .count(),
        findings,
        stats,
        simulated_s,
        wall_s: wall.elapsed().as_secs_f64(),
        expected: scenario.expect.outcome.clone(),
        faults,
        history,
        coverage,
        figures,
        config: Vec::new(),
        brokers,
        leader_changes,
    })
}

/// Apply one fault now and, for a window, undo it when the window ends.
async fn apply(fault: &Fault, c: &Cluster) {
    let net = NetSim::current();
    match fault {
        Fault::FsyncStall { for_s, .. } => {
            let until = Instant::now() + Duration::from_secs(*for_s);
            for_a_while(
                &c.broker(fault).disk,
                *for_s,
                move |f| f.sync_stall_until = Some(until),
                |_| {},
            )
            .await
        }
        Fault::FsyncEio { count, .. } => {
            let disk = &c.broker(fault).disk;
            let mut f = disk.faults();
            f.sync_eio_next += count;
            disk.set_faults(f);
        }
        Fault::Crash {
            torn, down_s, wipe, ..
        } => {
            let b = c.broker(fault);
            if !b.disk.syncs_in_flight().is_empty() {
                broker::coverage::reached(broker::coverage::Event::CrashWithSyncInFlight);
            }
            c.handle.kill(b.id);
            b.disk.crash(if *wipe {
                Crash::Lost
            } else if *torn {
                Crash::Torn
            } else {
                Crash::DropUnsynced
            });
            tokio::time::sleep(Duration::from_secs(*down_s)).await;
            c.handle.restart(b.id);
        }
        Fault::SlowDisk {
            for_s,
            min_ms,
            max_ms,
            spike_ms,
            spike_per_million,
            ..
        } => {
            let latency = (
                Duration::from_millis(*min_ms),
                Duration::from_millis(*max_ms),
            );
            let spike = (*spike_per_million > 0)
                .then(|| (*spike_per_million, Duration::from_millis(*spike_ms)));
            // Overlapping slow-disk faults: the latency before this one comes back after it.
            let disk = &c.broker(fault).disk;
            let before = {
                let f = disk.faults();
                (f.latency, f.latency_spike)
            };
            for_a_while(
                disk,
                *for_s,
                move |f| {
                    f.latency = Some(latency);
                    f.latency_spike = spike;
                },
                move |f| {
                    (f.latency, f.latency_spike) = before;
                },
            )
            .await
        }
        Fault::DiskFull { for_s, .. } => {
            let disk = &c.broker(fault).disk;
            let full = disk.used_bytes();
            for_a_while(
                disk,
                *for_s,
                move |f| f.capacity_bytes = Some(full),
                |f| f.capacity_bytes = None,
            )
            .await
        }
        Fault::Bitflip {
            for_s, per_million, ..
        } => {
            let rate = *per_million;
            for_a_while(
                &c.broker(fault).disk,
                *for_s,
                move |f| f.read_bitflip_per_million = rate,
                |f| f.read_bitflip_per_million = 0,
            )
            .await
        }
        Fault::Partition {
            for_s,
            node,
            link,
            one_way,
            ..
        } => {
            let both = !*one_way;
            match (node.as_deref().and_then(|n| c.id(n)), link) {
                (Some(id), _) => {
                    if both {
                        net.clog_node(id)
                    } else {
                        net.clog_node_out(id)
                    }
                    sleep_s(*for_s).await;
                    net.unclog_node(id);
                }
                (None, Some([a, b])) => {
                    let (Some(a), Some(b)) = (c.id(a), c.id(b)) else {
                        return;
                    };
                    net.clog_link(a, b);
                    if both {
                        net.clog_link(b, a);
                    }
                    sleep_s(*for_s).await;
                    net.unclog_link(a, b);
                    net.unclog_link(b, a);
                }
                (None, None) => {}
            }
        }
        Fault::PacketLoss { for_s, rate, .. } => {
            net.update_config(|cfg| cfg.packet_loss_rate = *rate);
            sleep_s(*for_s).await;
            net.update_config(|cfg| cfg.packet_loss_rate = 0.0);
        }
        Fault::NetLatency {
            for_s,
            min_ms,
            max_ms,
            ..
        } => {
            let before = madsim::net::Config::default().send_latency;
            let (lo, hi) = (
                Duration::from_millis(*min_ms),
                Duration::from_millis(*max_ms),
            );
            net.update_config(|cfg| cfg.send_latency = lo..hi.max(lo + Duration::from_micros(1)));
            sleep_s(*for_s).await;
            net.update_config(|cfg| cfg.send_latency = before);
        }
        Fault::ClockSkew {
            for_s, offset_ms, ..
        } => {
            let clock = &c.broker(fault).clock;
            clock.set_offset_ms(*offset_ms);
            sleep_s(*for_s).await;
            clock.set_offset_ms(0);
        }
        Fault::ClockDrift { for_s, ppm, .. } => {
            let clock = &c.broker(fault).clock;
            clock.set_drift_ppm(*ppm);
            sleep_s(*for_s).await;
            clock.set_drift_ppm(0);
        }
        Fault::Pause { for_s, .. } => {
            let id = c.broker(fault).id;
            c.handle.pause(id);
            sleep_s(*for_s).await;
            c.handle.resume(id);
        }
    }
}

async fn sleep_s(s: u64) {
    tokio::time::sleep(Duration::from_secs(s)).await
}

/// Change the disk's faults now and change them back after `for_s` simulated seconds.
async fn for_a_while(
    disk: &SimDisk,
    for_s: u64,
    set: impl FnOnce(&mut Faults),
    reset: impl FnOnce(&mut Faults),
) {
    let mut f = disk.faults();
    set(&mut f);
    disk.set_faults(f);
    sleep_s(for_s).await;
    let mut f = disk.faults();
    reset(&mut f);
    disk.set_faults(f);
}
