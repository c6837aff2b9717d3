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

use broker::config::Config;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use tokio::time::Instant;

use futures::future::BoxFuture;

use crate::checks::bounds::NodeBounds;
use crate::outcome::Observed;
pub use crate::outcome::RunReport;
use crate::scenario::{Fault, Scenario};
use crate::workload::{self, World};
use crate::world::cluster::{broker_addr, broker_config, Cluster, DATA_DIR};
use crate::world::faults::{install_fault_points, schedule};

pub use crate::world::cluster::{test_node, NodeStarts};

/// Run one seed on a fresh thread (std's HashMap seeds are per thread; see docs/design.md, "Pitfalls").
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

fn run_here(scenario: &Scenario, seed: u64) -> anyhow::Result<RunReport> {
    // First, before anything on this thread makes a HashMap: the runtime seeds std's per-thread
    // hash keys from the seed only if none were drawn yet (else iteration order, and with it
    // the run, would differ between two runs of the same seed).
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    let configs = (1..=scenario.cluster.nodes.max(1))
        .map(|i| broker_config(scenario, i))
        .collect::<anyhow::Result<Vec<Config>>>()?;
    install_fault_points(scenario, seed);
    crate::world::cpu::install(scenario.cpu.clone());
    let faults = scenario.faults_for(seed);
    let wall = std::time::Instant::now();
    let observed = rt.block_on(simulate(scenario.clone(), seed, configs, faults.clone()));
    let coverage = broker::coverage::take();
    let wall_s = wall.elapsed().as_secs_f64();
    Ok(crate::outcome::report(
        scenario, seed, faults, observed, wall_s, coverage, false,
    ))
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
    let client_nodes = SimNodes(client_nodes);
    let addrs: Vec<SocketAddr> = (1..=cluster.brokers.len())
        .map(|i| broker_addr(&sc, i))
        .collect();
    let disks: Vec<_> = cluster
        .brokers
        .iter()
        .map(|b| (b.name.clone(), b.disk.clone()))
        .collect();
    let syncs_in_flight: workload::SyncsInFlight = Box::new(move || {
        disks
            .iter()
            .flat_map(|(node, disk)| {
                disk.syncs_in_flight()
                    .into_iter()
                    .map(move |s| (node.clone(), s.path, s.since))
            })
            .collect()
    });
    let cluster = Arc::new(cluster);
    let retire = {
        let cluster = cluster.clone();
        Box::new(move |node: usize| cluster.retire(node))
    };
    let inter_broker = if sc.clustered() {
        (1..=sc.cluster.nodes)
            .map(|i| {
                std::net::SocketAddr::new(
                    crate::world::cluster::cluster_ip(i),
                    crate::world::cluster::INTER_BROKER_PORT,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let world = World::new(
        sc.clone(),
        seed,
        addrs,
        inter_broker,
        faults.clone(),
        syncs_in_flight,
        retire,
    );
    let start = world.start;
    crate::world::logs::mark_start(start);
    let fault_log = schedule(faults, cluster.clone(), start, seed);
    // What the node is stuck on when the after-heal liveness deadline passes.
    let stuck_at_deadline = world.watch_stuck();
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
    let raft_samples = sample_raft(cluster.clone(), start);
    let ((final_read, gaps), final_committed, stopped) = tokio::select! {
        biased;
        (read, committed) = workload::drive(&sc, &world, &client_nodes, Vec::new()) => (read, committed, None),
        finding = overrun => {
            for b in &cluster.brokers {
                cluster.handle.kill(b.id);
            }
            (Default::default(), Default::default(), Some(finding))
        }
    };
    let simulated_s = (Instant::now() - start).as_secs_f64();
    let raft_samples = std::mem::take(&mut *raft_samples.lock().unwrap_or_else(|p| p.into_inner()));
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
    let (named, leader_changes) = crate::outcome::metadata_named(&world);
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
    let stuck_at_deadline = workload::stuck_seen(stuck_at_deadline).await;
    let fault_log = std::mem::take(&mut *fault_log.lock().unwrap_or_else(|p| p.into_inner()));
    let watermarks =
        std::mem::take(&mut *world.watermarks.lock().unwrap_or_else(|p| p.into_inner()));
    let publications = crate::world::observed::take(start);
    let moves = crate::world::observed::take_moves();
    let mut locks = broker::sync::order::take();
    locks.inversions = crate::world::observed::take_inversions();
    let final_topics = std::mem::take(&mut *workload::lock(&world.final_topics));
    let final_configs = std::mem::take(&mut *workload::lock(&world.final_configs));
    Observed {
        locks,
        // The model's disk is the scenario's own.
        disk_sync_p99_ms: None,
        started_at: None,
        final_topics,
        final_configs,
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
        raft_samples,
    }
}

/// Every second, each broker's Raft counters (elections over all its starts, the groups its
/// running start leads and has seen leaderless), for the election checkers; a retired broker
/// is left out. Ends with the run (the runtime drops the task).
fn sample_raft(
    cluster: Arc<Cluster>,
    start: Instant,
) -> Arc<std::sync::Mutex<Vec<crate::checks::elections::RaftSample>>> {
    use crate::checks::elections::{BrokerRaft, RaftSample};
    let samples: Arc<std::sync::Mutex<Vec<RaftSample>>> = Arc::default();
    let out = samples.clone();
    tokio::spawn(async move {
        loop {
            let brokers = cluster
                .brokers
                .iter()
                .filter(|b| !b.is_retired())
                .map(|b| {
                    let starts = b.metrics.lock().unwrap_or_else(|p| p.into_inner());
                    let last = starts.last();
                    BrokerRaft {
                        node: b.name.clone(),
                        elections: starts.iter().map(|m| m.raft_elections.get()).sum(),
                        leaders: last.map_or(0, |m| m.raft_leaders.get()),
                        leaderless: last.map_or(0, |m| m.raft_groups_leaderless.get()),
                    }
                })
                .collect();
            let at_s = (Instant::now() - start).as_secs_f64();
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(RaftSample { at_s, brokers });
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    out
}

/// The client nodes of a simulated run, in the order of [`crate::scenario::CLIENT_NODES`], then
/// the checker's.
struct SimNodes(Vec<NodeHandle>);

impl workload::ClientNodes for SimNodes {
    fn spawn<F>(&self, role: workload::Role, f: F) -> BoxFuture<'static, Option<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.0[role as usize].spawn(f);
        Box::pin(async move { task.await.ok() })
    }
}
