//! The fidelity table: each scenario's simulated seeds held against its twin runs on real
//! processes (`cargo xtask sim fidelity`) — the verdicts in each world, the finding classes,
//! and key figures side by side with their ratio; a divergence (a finding class in one world
//! only, a verdict that differs, a figure off by more than the scenario's tolerance) is listed
//! with the seed and the real run's report.
//!
//! Invariant: the table is computed from the runs' JSON reports alone, the same fields in
//! both worlds; a figure one world cannot measure is shown as `–` and never diverges.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::report::Report;

/// One scenario's runs in both worlds.
pub struct Twins {
    pub scenario: String,
    pub tolerance: f64,
    pub sim: Vec<(PathBuf, Report)>,
    pub real: Vec<(PathBuf, Report)>,
    /// Why it has no real runs, when it cannot have them.
    pub skipped: Option<String>,
}

/// Every `*.json` report in `dir`, in name order.
pub fn load_reports(dir: &Path) -> std::io::Result<Vec<(PathBuf, Report)>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)?;
            let r: Report = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", p.display())))?;
            Ok((p, r))
        })
        .collect()
}

/// The figures compared across worlds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Acknowledged produces per second over the run.
    pub throughput: f64,
    /// The median of the per-second produce p99 latencies (ms), every broker's.
    pub p99_ms: Option<f64>,
    /// The mean time (s) from each fault's start until the acknowledged rate is back to half
    /// its rate in the 10 s before the fault.
    pub resume_s: Option<f64>,
    /// The workload partitions with a leader at the end (a cluster only).
    pub led_at_end: Option<f64>,
}

pub const FIGURES: [&str; 4] = [
    "throughput (acks/s)",
    "produce p99 (ms)",
    "time to resume after a fault (s)",
    "partitions led at the end",
];

impl Figures {
    fn get(&self, i: usize) -> Option<f64> {
        match i {
            0 => Some(self.throughput),
            1 => self.p99_ms,
            2 => self.resume_s,
            _ => self.led_at_end,
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// A run's figures, from its report.
pub fn figures(r: &Report) -> Figures {
    let width = r
        .nodes
        .first()
        .and_then(|n| {
            let b = &n.buckets;
            (b.len() > 1).then(|| b[1].start_s - b[0].start_s)
        })
        .unwrap_or(1.0);
    let buckets = r.nodes.first().map_or(0, |n| n.buckets.len());
    // The acknowledged rate of the whole cluster, per bucket.
    let rate: Vec<f64> = (0..buckets)
        .map(|i| r.nodes.iter().map(|n| n.buckets[i].acked_per_s).sum())
        .collect();
    let p99 = median(
        r.nodes
            .iter()
            .flat_map(|n| n.buckets.iter().filter_map(|b| b.latency_ms_p99))
            .collect(),
    );
    let resumes: Vec<f64> = r
        .faults
        .iter()
        .filter_map(|f| {
            let at = (f.from_s as f64 / width) as usize;
            let before = (at.saturating_sub((10.0 / width).ceil() as usize)..at)
                .filter_map(|i| rate.get(i).copied())
                .collect::<Vec<_>>();
            let normal = mean(&before)?;
            if normal <= 0.0 {
                return None;
            }
            let back = (at..rate.len())
                .find(|&i| rate[i] >= normal / 2.0 && i as f64 * width >= f.from_s as f64)?;
            Some(back as f64 * width - f.from_s as f64)
        })
        .collect();
    let led: Vec<f64> = r
        .nodes
        .iter()
        .filter_map(|n| n.partitions_led.last().map(|(_, c)| *c as f64))
        .collect();
    Figures {
        throughput: r.acknowledged as f64 / r.simulated_s.max(1e-9),
        p99_ms: p99,
        resume_s: mean(&resumes),
        led_at_end: (!led.is_empty()).then(|| led.iter().sum()),
    }
}

fn verdicts(runs: &[(PathBuf, Report)]) -> String {
    if runs.is_empty() {
        return "–".into();
    }
    let expected = runs.iter().filter(|(_, r)| r.as_expected).count();
    let outcomes: BTreeSet<&str> = runs.iter().map(|(_, r)| r.outcome.as_str()).collect();
    format!(
        "{expected}/{} as expected ({})",
        runs.len(),
        outcomes.into_iter().collect::<Vec<_>>().join(", ")
    )
}

fn kinds(runs: &[(PathBuf, Report)]) -> BTreeSet<String> {
    runs.iter()
        .flat_map(|(_, r)| r.finding_kinds.iter().cloned())
        .collect()
}

fn show(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// The divergences of one scenario: what differs between its worlds, each line naming the
/// seed and the real run's report.
pub fn divergences(t: &Twins) -> Vec<String> {
    let mut out = Vec::new();
    if t.real.is_empty() || t.sim.is_empty() {
        return out;
    }
    let (sim_kinds, real_kinds) = (kinds(&t.sim), kinds(&t.real));
    for k in sim_kinds.symmetric_difference(&real_kinds) {
        let (world, runs) = if real_kinds.contains(k) {
            ("real runs only", &t.real)
        } else {
            ("simulation only", &t.sim)
        };
        if let Some((path, r)) = runs.iter().find(|(_, r)| r.finding_kinds.contains(k)) {
            out.push(format!(
                "finding `{k}` in {world}: seed {} ({})",
                r.seed,
                path.display()
            ));
        }
    }
    for (path, r) in &t.real {
        if !r.as_expected {
            out.push(format!(
                "real run of seed {} not as expected ({}, expected {}): {}",
                r.seed,
                r.outcome,
                r.expected,
                path.display()
            ));
        }
    }
    for (path, r) in &t.sim {
        if !r.as_expected {
            out.push(format!(
                "simulated seed {} not as expected ({}, expected {}): {}",
                r.seed,
                r.outcome,
                r.expected,
                path.display()
            ));
        }
    }
    out.extend(lock_divergences(t));
    let sim: Vec<Figures> = t.sim.iter().map(|(_, r)| figures(r)).collect();
    for (path, r) in &t.real {
        let real = figures(r);
        // Against the simulated seed of the same number, else the mean of them all.
        let twin = t
            .sim
            .iter()
            .position(|(_, s)| s.seed == r.seed)
            .map(|i| sim[i]);
        for (i, name) in FIGURES.iter().enumerate().take(3) {
            let s = match twin {
                Some(f) => f.get(i),
                None => mean(&sim.iter().filter_map(|f| f.get(i)).collect::<Vec<_>>()),
            };
            let (Some(s), Some(x)) = (s, real.get(i)) else {
                continue;
            };
            // Times under a second are within the simulator's and the runner's resolution.
            if i == 2 && s.max(x) < 1.0 {
                continue;
            }
            let ratio = x / s.max(1e-9);
            if s > 0.0 && (ratio > t.tolerance || ratio < 1.0 / t.tolerance) {
                out.push(format!(
                    "{name}: real {} against simulated {} (×{ratio:.2}, tolerance ×{}) in the run of seed {}: {}",
                    show(Some(x)),
                    show(Some(s)),
                    t.tolerance,
                    r.seed,
                    path.display()
                ));
            }
        }
    }
    out
}

/// Every world's lock use merged, per world.
fn locks(runs: &[(PathBuf, Report)]) -> broker::sync::LockUse {
    let mut all = broker::sync::LockUse::default();
    for (_, r) in runs {
        all.merge(r.locks.clone());
    }
    all
}

/// The lock model held against real threads (a twin run's lock audit): an order of
/// acquisition taken on real threads that no simulated seed took (an inversion through it is
/// invisible to the simulation), and a lock whose `try_*` failed on real threads but never in
/// simulation (the model kinder than reality there).
fn lock_divergences(t: &Twins) -> Vec<String> {
    let (sim, real) = (locks(&t.sim), locks(&t.real));
    let mut out = Vec::new();
    let first_real = |pred: &dyn Fn(&Report) -> bool| {
        t.real
            .iter()
            .find(|(_, r)| pred(r))
            .map(|(p, r)| format!("seed {} ({})", r.seed, p.display()))
            .unwrap_or_default()
    };
    for o in &real.orders {
        if !sim
            .orders
            .iter()
            .any(|s| s.first == o.first && s.second == o.second)
        {
            let seen = first_real(&|r| {
                r.locks
                    .orders
                    .iter()
                    .any(|x| x.first == o.first && x.second == o.second)
            });
            out.push(format!(
                "lock order {} → {} taken on real threads ({} then {}), never in simulation: {seen}",
                o.first, o.second, o.first_at, o.second_at
            ));
        }
    }
    for (name, n) in &real.try_failed {
        if !sim.try_failed.contains_key(name) {
            let seen = first_real(&|r| r.locks.try_failed.contains_key(name));
            out.push(format!(
                "a try of lock {name} failed {n} time(s) on real threads, never in simulation: {seen}"
            ));
        }
    }
    out
}

/// Per scenario, what the locks did in each world: the orders taken, and the locks waited
/// for most on real threads.
fn locks_section(all: &[Twins]) -> String {
    let mut md = String::new();
    for t in all.iter().filter(|t| !t.real.is_empty()) {
        let (sim, real) = (locks(&t.sim), locks(&t.real));
        if real.orders.is_empty() && real.contended.is_empty() {
            continue;
        }
        let both = real
            .orders
            .iter()
            .filter(|o| {
                sim.orders
                    .iter()
                    .any(|s| s.first == o.first && s.second == o.second)
            })
            .count();
        let mut waits: Vec<(&String, &u64)> = real.contended.iter().collect();
        waits.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let waits = waits
            .iter()
            .take(4)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sim_waits: u64 = sim.contended.values().sum();
        let _ = writeln!(
            md,
            "- {}: orders of acquisition: {} in simulation, {} on real threads, {both} of them in both; \
             waits on real threads: {}; waits in simulation: {sim_waits}; failed tries: {} simulated, {} real",
            t.scenario,
            sim.orders.len(),
            real.orders.len(),
            if waits.is_empty() { "none".into() } else { waits },
            sim.try_failed.values().sum::<u64>(),
            real.try_failed.values().sum::<u64>(),
        );
    }
    if md.is_empty() {
        md
    } else {
        format!("\nLocks (the real runs' lock audit beside the simulation's record):\n\n{md}")
    }
}

/// The whole table, as Markdown.
pub fn table(all: &[Twins]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| scenario | simulation | real | finding classes (sim / real) | {} |",
        FIGURES
            .iter()
            .map(|f| format!("{f}: sim / real (ratio)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for t in all {
        let sim: Vec<Figures> = t.sim.iter().map(|(_, r)| figures(r)).collect();
        let real: Vec<Figures> = t.real.iter().map(|(_, r)| figures(r)).collect();
        let cell = |i: usize| {
            let s = mean(&sim.iter().filter_map(|f| f.get(i)).collect::<Vec<_>>());
            let x = mean(&real.iter().filter_map(|f| f.get(i)).collect::<Vec<_>>());
            match (s, x) {
                (Some(s), Some(x)) if s > 0.0 => {
                    format!("{} / {} (×{:.2})", show(Some(s)), show(Some(x)), x / s)
                }
                _ => format!("{} / {}", show(s), show(x)),
            }
        };
        let join = |k: BTreeSet<String>| {
            if k.is_empty() {
                "none".to_string()
            } else {
                k.into_iter().collect::<Vec<_>>().join(", ")
            }
        };
        let real_verdicts = match &t.skipped {
            Some(why) => format!("not run: {why}"),
            None => verdicts(&t.real),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} | {} | {} | {} |",
            t.scenario,
            verdicts(&t.sim),
            real_verdicts,
            join(kinds(&t.sim)),
            join(kinds(&t.real)),
            cell(0),
            cell(1),
            cell(2),
            cell(3)
        );
    }
    md.push_str(&locks_section(all));
    let mut any = false;
    for t in all {
        let d = divergences(t);
        if d.is_empty() {
            continue;
        }
        if !any {
            let _ = writeln!(md, "\nDivergences:\n");
            any = true;
        }
        for line in d {
            let _ = writeln!(md, "- {}: {line}", t.scenario);
        }
    }
    if !any {
        let _ = writeln!(md, "\nNo divergence.");
    }
    md
}
