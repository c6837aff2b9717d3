//! What a run observed, the checkers' verdict over it, and the run's report: the same in both
//! worlds, so that a scenario's run in simulation and its twin on real processes are judged
//! alike.
//!
//! Invariant: nothing here knows which world observed the run; what a world cannot observe
//! (a simulated disk's syncs in flight, a real broker's in-process hooks) is left empty and
//! the checkers that need it find nothing.

use std::collections::BTreeMap;

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
    /// A twin run on real broker processes (`simulated_s` is then wall-clock seconds, and the
    /// run is not replayable bit for bit).
    pub real: bool,
    /// What the brokers' locks did (orders, inversions, contention).
    pub locks: broker::sync::LockUse,
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

/// What one run left to judge (a seed's simulation, or a twin run on real processes).
#[derive(Default)]
pub struct Observed {
    pub history: Vec<Op>,
    /// A client that hung (the workload's own finding).
    pub hang: Option<Finding>,
    pub simulated_s: f64,
    pub final_read: FinalRead,
    pub gaps: ReadGaps,
    pub final_committed: FinalCommitted,
    pub fault_log: Vec<String>,
    /// What the brokers were stuck on when the liveness deadline after the last heal passed.
    pub stuck_at_deadline: Option<Stuck>,
    /// When the first broker synced a segment (seconds from the start).
    pub segment_syncs: Vec<f64>,
    /// A cluster: every replica's log as its disk holds it, what Metadata named, and the high
    /// watermarks consumers were told.
    pub replica_logs: BTreeMap<String, BTreeMap<i32, ReplicaLog>>,
    pub leaderships: Vec<Leadership>,
    pub named: Vec<NamedItself>,
    pub watermarks: Vec<Watermark>,
    pub brokers: Vec<String>,
    pub leader_changes: Vec<(f64, i32, i32)>,
    pub node_bounds: Vec<NodeBounds>,
    /// A finding that stopped the run part way (a broker's reads past its memory budget).
    pub stopped: Option<Finding>,
    /// The brokers' Raft counters, every second (a cluster; none in a twin run yet).
    pub raft_samples: Vec<crate::checks::elections::RaftSample>,
    /// Each security metadata a broker published, in order.
    pub publications: Vec<Publication>,
    /// The membership changes and move records the brokers applied.
    pub moves: crate::checks::moves::Observed,
    /// Which of the admin's topics each broker lists after the run.
    pub final_topics: Vec<Option<BTreeMap<String, bool>>>,
    /// How each broker describes the configured topic after the run (`[workload.configs]`).
    pub final_configs: Vec<Option<BTreeMap<String, String>>>,
    /// What the brokers' locks did: the orders taken, the inversions among them, contention
    /// (`broker::sync`; a twin run reads it from each broker's lock audit).
    pub locks: broker::sync::LockUse,
    /// A twin run: the p99 of a sync on this machine's disk through the fault filesystem (ms),
    /// which the performance bounds' commit round takes when it is slower than the model's.
    pub disk_sync_p99_ms: Option<f64>,
    /// A twin run: the wall-clock time of its start (its brokers' log lines are placed on the
    /// run's time axis from it).
    pub started_at: Option<std::time::SystemTime>,
}

/// What Metadata told the workload's clients of its topic, timed from the run's start: each
/// time a broker named itself a partition's leader, and each change of leader `(seconds,
/// partition, leader's node id or -1)`.
pub fn metadata_named(world: &crate::workload::World) -> (Vec<NamedItself>, Vec<(f64, i32, i32)>) {
    let (start, topic) = (world.start, &world.scenario.workload.topic);
    let named = world
        .directory
        .self_named()
        .into_iter()
        .filter(|n| &n.topic == topic)
        .map(|n| NamedItself {
            at_s: (n.at - start).as_secs_f64(),
            broker: n.broker,
            partition: n.partition,
            epoch: n.epoch,
        })
        .collect();
    let leader_changes = world
        .directory
        .leader_changes()
        .into_iter()
        .filter(|c| &c.topic == topic)
        .map(|c| ((c.at - start).as_secs_f64(), c.partition, c.leader))
        .collect();
    (named, leader_changes)
}

/// The report of one run: the checkers' verdict over what it observed, with its trace.
#[allow(clippy::too_many_arguments)]
pub fn report(
    scenario: &Scenario,
    seed: u64,
    faults: Vec<Fault>,
    observed: Observed,
    wall_s: f64,
    coverage: Vec<(broker::coverage::Event, u64)>,
    real: bool,
) -> RunReport {
    let judged = judge(scenario, &faults, &observed);
    let trace = trace(&observed, &judged);
    let Observed {
        history,
        simulated_s,
        brokers,
        leader_changes,
        locks,
        ..
    } = observed;
    let count = |pred: fn(&SendOutcome) -> bool| {
        history
            .iter()
            .filter(|op| matches!(op, Op::Send(s) if pred(&s.outcome)))
            .count()
    };
    RunReport {
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
        wall_s,
        expected: scenario.expect.outcome.clone(),
        faults,
        history,
        coverage,
        figures: judged.figures,
        config: Vec::new(),
        brokers,
        leader_changes,
        real,
        locks,
    }
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
    if scenario.workload.compacted.is_none() {
        // Once every fault healed and the liveness deadline passed (10 s in, with none).
        let settled_s = if faults.is_empty() {
            10
        } else {
            last_heal_s(faults) + scenario.expect.liveness_deadline_s
        };
        findings.extend(crate::checks::acks0::acks0_reach_the_log(
            &o.history,
            &o.final_read,
            settled_s as f64,
        ));
    }
    if scenario.workload.transactions.is_some() {
        findings.extend(crate::checks::txn::check(&o.history));
        findings.extend(crate::checks::pipeline::check(&o.history));
    }
    if let Some(c) = &scenario.workload.compacted {
        findings.extend(crate::checks::scans::check(
            &o.history,
            &o.final_read,
            c.delete_retention_ms as f64 / 1000.0,
        ));
    }
    if scenario.expect.no_refusals {
        findings.extend(safety::refusals(&o.history));
    }
    let floor = scenario.expect.min_acknowledged;
    let acknowledged = o
        .history
        .iter()
        .filter(|op| matches!(op, Op::Send(s) if matches!(s.outcome, SendOutcome::Ok(_))))
        .count();
    if acknowledged < floor {
        findings.push(Finding::TooFewAcknowledged {
            acknowledged,
            floor,
        });
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
        if scenario.expect.caught_up {
            findings.extend(replicas::replicas_caught_up(&o.replica_logs, &read_to));
        }
        findings.extend(replicas::watermarks_monotonic(&o.watermarks));
        findings.extend(replicas::one_leader_per_epoch(&o.leaderships));
        findings.extend(replicas::leader_refuses(&o.named, &o.history));
        findings.extend(crate::checks::metadata::topics_as_acknowledged(
            &o.history,
            &o.final_topics,
        ));
        findings.extend(election_checks(scenario, faults, o));
    }
    findings.extend(crate::checks::stops::writes_flow_through_stops(
        &o.history, faults,
    ));
    if faults
        .iter()
        .any(|f| matches!(f, crate::scenario::Fault::Flood { .. }))
    {
        let per_address = scenario
            .broker
            .get("max_connections_per_ip")
            .and_then(|v| v.as_integer())
            .map_or(
                broker::config::Config::default().max_connections_per_ip,
                |v| v as usize,
            );
        findings.extend(crate::checks::floods::check(
            &o.history,
            crate::checks::floods::Bounds::of_broker(per_address as u32),
        ));
    }
    findings.extend(crate::checks::quota::check(&o.history, scenario, faults));
    if let Some(bound_s) = scenario.expect.writes_during_moves_s {
        findings.extend(crate::checks::move_stalls::writes_flow_during_moves(
            &o.history, faults, bound_s,
        ));
    }
    if let Some(bound_s) = scenario.expect.writes_resume_s {
        findings.extend(crate::checks::cuts::writes_resume_during_cuts(
            &o.history, faults, bound_s,
        ));
    }
    if scenario.workload.configs.is_some() {
        findings.extend(crate::checks::configs::configs_as_acknowledged(
            &o.history,
            crate::workload::configs::CONFIG_TOPIC,
            &o.final_configs,
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
    findings.extend(
        o.locks
            .inversions
            .iter()
            .map(|i| Finding::LockOrderInversion {
                first: i.first.clone(),
                second: i.second.clone(),
                first_at: i.first_at.clone(),
                second_at: i.second_at.clone(),
            }),
    );
    findings.extend(crate::checks::bounds::check(
        &o.node_bounds,
        scenario.disk_can_fail(faults),
    ));
    let measured = perf::measure(&o.history, faults, scenario.duration_s, &o.segment_syncs);
    let figures = perf::figures(scenario, &measured, o.disk_sync_p99_ms);
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

/// The election checkers ([`crate::checks::elections`]) over a cluster's samples: faults
/// settle within the liveness deadline; leaderships go back within the brokers' rebalance
/// time after that (not judged where the workload moves partitions or retires brokers).
fn election_checks(scenario: &Scenario, faults: &[Fault], o: &Observed) -> Vec<Finding> {
    use crate::checks::elections;
    let settle_s = scenario.expect.liveness_deadline_s as f64;
    // Every group of the workload's topic and the metadata's; the admin's topics at most as
    // many as were ever led at once.
    let led_most = o
        .raft_samples
        .iter()
        .map(|s| {
            s.brokers
                .iter()
                .map(|b| b.leaders.max(0) as u64)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let groups = (scenario.workload.partitions as u64 + 1).max(led_most);
    let mut out = elections::storms(&o.raft_samples, faults, groups, settle_s);
    out.extend(elections::leaderless(&o.raft_samples, faults, settle_s));
    let moves_partitions =
        scenario.workload.moves.is_some() || !scenario.workload.retire.is_empty();
    if !moves_partitions {
        let rebalance_ms = scenario
            .broker
            .get("leader_rebalance_ms")
            .and_then(toml::Value::as_integer)
            .unwrap_or(10_000);
        if rebalance_ms > 0 {
            // Twice the time a preferred replica must be back, and an election timeout or two.
            let rebalance_s = 2.0 * rebalance_ms as f64 / 1000.0 + 10.0;
            out.extend(elections::balance(
                &o.raft_samples,
                faults,
                settle_s,
                rebalance_s,
            ));
        }
    }
    out
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
