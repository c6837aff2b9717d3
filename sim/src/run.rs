//! One seed of one scenario: the world (broker nodes on the simulated disk, network and clock,
//! client nodes), the workload's clients recording a history, the fault schedule (and this
//! seed's random draw), the final read; then the checkers, and the trace two runs of the seed
//! must agree on.
//!
//! Invariant: a run is a function of the scenario and the seed; it runs on a thread of its own
//! (std's hash keys are per thread) inside madsim's seeded runtime.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::config::Config;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use tokio::time::Instant;

use crate::checks::bounds::NodeBounds;
use crate::checks::replicas::{self, NamedItself, ReplicaLog};
use crate::checks::safety::{self, Stats};
use crate::checks::{access, groups, perf};
use crate::findings::{Finding, Stuck};
use crate::history::{
    FinalCommitted, FinalRead, Op, Publication, ReadGaps, SendOutcome, Watermark,
};
use crate::scenario::{last_heal_s, Expected, Fault, Scenario};
use crate::workload::client::routing::Leadership;
use crate::workload::group;
use crate::workload::{self, World};
use crate::world::cluster::{broker_addr, broker_config, Cluster, DATA_DIR};
use crate::world::disk::SimDisk;
use crate::world::faults::{install_fault_points, schedule};

pub use crate::world::cluster::NodeStarts;

/// Simulated time the broker gets to settle after the workload, before the final read.
const SETTLE: Duration = Duration::from_secs(5);
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

/// What one seed's simulation left to judge.
struct Observed {
    history: Vec<Op>,
    /// A client that hung (the workload's own finding).
    hang: Option<Finding>,
    simulated_s: f64,
    final_read: FinalRead,
    gaps: ReadGaps,
    final_committed: FinalCommitted,
    fault_log: Vec<String>,
    /// What the brokers were stuck on when the liveness deadline after the last heal passed.
    stuck_at_deadline: Option<Stuck>,
    /// When the first broker synced a segment (seconds from the start).
    segment_syncs: Vec<f64>,
    /// A cluster: every replica's log as its disk holds it, what Metadata named, and the high
    /// watermarks consumers were told.
    replica_logs: BTreeMap<String, BTreeMap<i32, ReplicaLog>>,
    leaderships: Vec<Leadership>,
    named: Vec<NamedItself>,
    watermarks: Vec<Watermark>,
    brokers: Vec<String>,
    leader_changes: Vec<(f64, i32, i32)>,
    node_bounds: Vec<NodeBounds>,
    /// A finding that stopped the run part way (a broker's reads past its memory budget).
    stopped: Option<Finding>,
    /// Each security metadata a broker published, in order.
    publications: Vec<Publication>,
    /// The membership changes and move records the brokers applied.
    moves: crate::checks::moves::Observed,
    /// Which of the admin's topics each broker lists after the run.
    final_topics: Vec<Option<BTreeMap<String, bool>>>,
}

fn run_here(scenario: &Scenario, seed: u64) -> anyhow::Result<RunReport> {
    // First, before anything on this thread makes a HashMap: the runtime seeds std's per-thread
    // hash keys from the seed only if none were drawn yet (else iteration order, and with it
    // the run, would differ between two runs of the same seed).
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let configs = (1..=scenario.cluster.nodes.max(1))
        .map(|i| broker_config(scenario, i))
        .collect::<anyhow::Result<Vec<Config>>>()?;
    install_fault_points(scenario, seed);
    let faults = scenario.faults_for(seed);
    let wall = std::time::Instant::now();
    let observed = rt.block_on(simulate(scenario.clone(), seed, configs, faults.clone()));
    let coverage = broker::coverage::take();
    let judged = judge(scenario, &faults, &observed);
    let trace = trace(&observed, &judged);
    let Observed {
        history,
        simulated_s,
        brokers,
        leader_changes,
        ..
    } = observed;
    let count = |pred: fn(&SendOutcome) -> bool| {
        history
            .iter()
            .filter(|op| matches!(op, Op::Send(s) if pred(&s.outcome)))
            .count()
    };
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
        findings: judged.findings,
        stats: judged.stats,
        simulated_s,
        wall_s: wall.elapsed().as_secs_f64(),
        expected: scenario.expect.outcome.clone(),
        faults,
        history,
        coverage,
        figures: judged.figures,
        config: Vec::new(),
        brokers,
        leader_changes,
    })
}

/// The simulation itself, inside the seeded runtime: the cluster, the workload's clients, the
/// fault schedule, the final read; then everything the checkers need, read off the world.
async fn simulate(sc: Scenario, seed: u64, configs: Vec<Config>, faults: Vec<Fault>) -> Observed {
    crate::workload::client::sasl::log_in_as(sc.auth.as_ref().map(|a| {
        crate::workload::client::sasl::Login {
            mechanism: a.mechanism.clone(),
            user: crate::scenario::SASL_USER.into(),
            password: crate::scenario::SASL_PASSWORD.into(),
            rng: io_backend::EnvRng::seeded(seed ^ 0x5a51_5a51),
        }
    }));
    crate::world::observed::install();
    let tls_ca = sc
        .auth
        .as_ref()
        .filter(|a| a.tls)
        .map(|_| crate::world::cluster::TLS_FILES[0].1);
    // The CA is compiled in (`sim/tls`): a failure here is the simulator's own bug.
    crate::workload::client::sasl::use_tls(tls_ca, &io_backend::EnvRng::seeded(seed ^ 0x715))
        .expect("the simulator's TLS files are usable");
    let budgets: Vec<u64> = configs
        .iter()
        .map(|c| c.memory_budget_bytes as u64)
        .collect();
    let (cluster, client_nodes) = Cluster::start(&Handle::current(), &sc, seed, configs);
    let addrs: Vec<SocketAddr> = (1..=cluster.brokers.len())
        .map(|i| broker_addr(&sc, i))
        .collect();
    let disks: Vec<(String, SimDisk)> = cluster
        .brokers
        .iter()
        .map(|b| (b.name.clone(), b.disk.clone()))
        .collect();
    let cluster = Arc::new(cluster);
    let retire = {
        let cluster = cluster.clone();
        Box::new(move |node: usize| cluster.retire(node))
    };
    let world = World::new(sc.clone(), seed, addrs, faults.clone(), disks, retire);
    let start = world.start;
    let fault_log = schedule(faults, cluster.clone(), start, seed);
    // What the node is stuck on when the after-heal liveness deadline passes.
    let stuck_at_deadline = {
        let world = world.clone();
        let at = last_heal_s(&world.faults) + sc.expect.liveness_deadline_s;
        tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs(at)).await;
            world.stuck()
        })
    };
    // A broker whose reads take more memory than its budget stops the run there: found so,
    // not by the machine running out of memory.
    let overrun = crate::checks::bounds::first_read_overrun(
        cluster
            .brokers
            .iter()
            .zip(&budgets)
            .map(|(b, budget)| (b.name.clone(), b.disk.clone(), *budget))
            .collect(),
    );
    let ((final_read, gaps), final_committed, stopped) = tokio::select! {
        biased;
        (read, committed) = drive(&sc, &world, &client_nodes) => (read, committed, None),
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
    let mut replica_logs = BTreeMap::new();
    if sc.clustered() && stopped.is_none() {
        for b in &cluster.brokers {
            let logs = crate::checks::replicas::read_logs(
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
    let named: Vec<NamedItself> = world
        .directory
        .self_named()
        .into_iter()
        .filter(|n| n.topic == sc.workload.topic)
        .map(|n| NamedItself {
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
    let node_bounds = cluster
        .brokers
        .iter()
        .zip(budgets.iter().zip(&disk_reads_peaks))
        .map(|(b, (budget, disk_reads_peak))| NodeBounds {
            node: b.name.clone(),
            starts: b
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|m| (m.bounds(), m.log_dir_failures.get()))
                .collect(),
            disk_reads_peak: *disk_reads_peak,
            memory_budget: *budget,
        })
        .collect();
    let stuck_at_deadline = if stuck_at_deadline.is_finished() {
        stuck_at_deadline.await.ok()
    } else {
        stuck_at_deadline.abort();
        None
    };
    let fault_log = std::mem::take(&mut *fault_log.lock().unwrap_or_else(|p| p.into_inner()));
    let watermarks =
        std::mem::take(&mut *world.watermarks.lock().unwrap_or_else(|p| p.into_inner()));
    let publications = crate::world::observed::take(start);
    let moves = crate::world::observed::take_moves();
    let final_topics = std::mem::take(&mut *workload::lock(&world.final_topics));
    Observed {
        final_topics,
        publications,
        moves,
        history,
        hang,
        simulated_s,
        final_read,
        gaps,
        final_committed,
        fault_log,
        stuck_at_deadline,
        segment_syncs,
        replica_logs,
        leaderships,
        named,
        watermarks,
        brokers: cluster.brokers.iter().map(|b| b.name.clone()).collect(),
        leader_changes,
        node_bounds,
        stopped,
    }
}

/// The workload on the client nodes: the admin client, the producers, the consumers and the
/// group's members; once the producers are done and the log stops growing, the consumers
/// finish; after the node settles, everything is read back (and the group's committed
/// offsets).
async fn drive(
    sc: &Scenario,
    world: &Arc<World>,
    client_nodes: &[NodeHandle],
) -> ((FinalRead, ReadGaps), FinalCommitted) {
    let [producers_node, consumers_node, admin_node, checker_node] = client_nodes else {
        unreachable!("four client nodes");
    };
    admin_node.spawn(workload::admin(world.clone()));
    if sc.workload.moves.is_some() {
        admin_node.spawn(workload::moves::mover(world.clone()));
    }
    if !sc.workload.retire.is_empty() {
        admin_node.spawn(workload::retire::retirer(world.clone()));
    }
    if sc.auth.as_ref().is_some_and(|a| a.churn.is_some()) {
        use crate::workload::security;
        let passwords = Arc::new(security::Passwords::default());
        admin_node.spawn(security::churn(world.clone(), passwords.clone()));
        for who in 0..security::PROBE_USERS.len() {
            admin_node.spawn(security::probe(world.clone(), who, passwords.clone()));
        }
    }
    let producers: Vec<_> = (0..sc.workload.producers)
        .map(|p| producers_node.spawn(workload::produce(world.clone(), p)))
        .collect();
    let mut consumers: Vec<_> = (0..sc.workload.consumers)
        .map(|c| consumers_node.spawn(workload::consume(world.clone(), c)))
        .collect();
    if let Some(g) = &sc.workload.group {
        consumers
            .extend((0..g.members).map(|m| consumers_node.spawn(group::member(world.clone(), m))));
    }
    for p in producers {
        let _ = p.await;
    }
    // Produces without acknowledgement (acks=0) may still wait in the broker's append queue
    // when their producers are done: the end is where the log stops growing.
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
            let read = workload::read_back(directory.clone(), &topic, partitions).await;
            if reader.scenario.clustered() && reader.scenario.workload.admin_interval_s > 0 {
                let listed = workload::read_topics(directory, reader.admin_topics()).await;
                *workload::lock(&reader.final_topics) = listed;
            }
            let committed = match group_id {
                Some(g) => group::read_committed(&reader, &g, &topic, partitions).await,
                None => Default::default(),
            };
            (read, committed)
        })
        .await
        .unwrap_or_default()
}

/// What the checkers say of one seed.
struct Judged {
    findings: Vec<Finding>,
    stats: Stats,
    figures: Vec<perf::Figure>,
    gaps: ReadGaps,
}

/// Every checker the scenario asks for, over what the simulation observed.
fn judge(scenario: &Scenario, faults: &[Fault], o: &Observed) -> Judged {
    let opts = safety::Options {
        consumers_drained: scenario.workload.consumers > 0,
        gaps: o.gaps.clone(),
        leader_acks_weak: scenario.clustered(),
        compacted: scenario
            .workload
            .compacted
            .as_ref()
            .map(|c| safety::Compacted {
                tombstone_retention_s: c.delete_retention_ms as f64 / 1000.0,
            }),
    };
    let (mut findings, stats) = safety::safety(&o.history, &o.final_read, &opts);
    findings.extend(o.hang.clone());
    if scenario.workload.group.is_some() {
        findings.extend(groups::check(
            &o.history,
            &o.final_read,
            &o.gaps.log_end,
            &o.final_committed,
            scenario.workload.partitions,
            scenario.workload.consumers,
            scenario.workload.compacted.is_some(),
        ));
    }
    if !faults.is_empty() {
        findings.extend(safety::progress_after_heal(
            &o.history,
            scenario.workload.partitions,
            (last_heal_s(faults), scenario.expect.liveness_deadline_s),
            scenario.duration_s,
            scenario.workload.consumers > 0,
            &o.stuck_at_deadline.clone().unwrap_or_default(),
        ));
    }
    if scenario.expect.no_refusals {
        findings.extend(safety::refusals(&o.history));
    }
    if scenario.clustered() {
        // Below what was read back (all of it committed), every replica holds the same.
        let read_to: BTreeMap<i32, i64> = o
            .final_read
            .iter()
            .map(|(p, r)| (*p, r.last().map_or(0, |(o, _)| o + 1)))
            .collect();
        findings.extend(replicas::replicas_agree(
            &o.replica_logs,
            &read_to,
            scenario.workload.compacted.is_some(),
        ));
        findings.extend(replicas::watermarks_monotonic(&o.watermarks));
        findings.extend(replicas::one_leader_per_epoch(&o.leaderships));
        findings.extend(replicas::leader_refuses(&o.named, &o.history));
        findings.extend(crate::checks::metadata::topics_as_acknowledged(
            &o.history,
            &o.final_topics,
        ));
    }
    if scenario.workload.moves.is_some() || !scenario.workload.retire.is_empty() {
        findings.extend(crate::checks::moves::check(&o.moves));
        findings.extend(crate::checks::moves::retirements(&o.history));
    }
    if let Some(auth) = scenario.auth.as_ref().filter(|a| a.churn.is_some()) {
        let settings = access::Settings {
            mechanism: auth.mechanism.clone(),
            super_users: vec![format!("User:{}", crate::scenario::SASL_USER)],
            // After the last fault heals, every broker applies every change within this.
            settled_s: last_heal_s(faults) as f64 + scenario.expect.liveness_deadline_s as f64,
        };
        findings.extend(access::check(&o.history, &o.publications, &settings));
    }
    findings.extend(crate::checks::bounds::check(
        &o.node_bounds,
        scenario.disk_can_fail(faults),
    ));
    let measured = perf::measure(&o.history, faults, scenario.duration_s, &o.segment_syncs);
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
    if let Some(f) = &o.stopped {
        // The run stopped part way: what the other checkers would say of it means nothing.
        findings = vec![f.clone()];
    }
    Judged {
        findings,
        stats,
        figures,
        gaps: opts.gaps,
    }
}

/// The run's trace: what two runs of a seed must agree on, line by line.
fn trace(o: &Observed, j: &Judged) -> Vec<String> {
    let mut trace: Vec<String> = o.fault_log.clone();
    trace.extend(o.history.iter().map(Op::trace_line));
    trace.extend(o.publications.iter().map(Publication::trace_line));
    if !o.final_committed.is_empty() {
        trace.push(format!("group committed {:?}", o.final_committed));
    }
    for u in &j.gaps.unreadable {
        trace.push(format!(
            "read back: partition {} offsets {}..{} unreadable (error {})",
            u.partition, u.from, u.to, u.code
        ));
    }
    trace.push(format!(
        "read back {} records: {:?}",
        j.stats.records,
        o.final_read
            .iter()
            .map(|(p, r)| (*p, r.len()))
            .collect::<Vec<_>>()
    ));
    trace.extend(j.findings.iter().map(|f| f.to_string()));
    trace
}
