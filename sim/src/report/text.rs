//! A run's outcome as text, for people: the line `sim run` and `sim real` print, with the
//! faults, figures and findings under it.

use std::path::Path;

use crate::outcome::RunReport;

/// The command that replays a seed of a scenario in simulation, bit for bit.
pub fn replay(path: &Path, seed: u64) -> String {
    format!("cargo xtask sim run {} --seed {seed}", path.display())
}

/// The command that runs a scenario again on real processes, with a seed's faults (not a
/// replay: real time and real scheduling differ from run to run).
pub fn rerun(path: &Path, seed: u64) -> String {
    format!("cargo xtask sim real {} --seed {seed}", path.display())
}

/// The run's outcome, its faults, figures and findings, for people.
pub fn print(path: &Path, r: &RunReport) {
    let verdict = if r.as_expected() {
        "as expected"
    } else {
        "UNEXPECTED"
    };
    let outcome = if r.findings.is_empty() {
        "pass"
    } else {
        "failure"
    };
    println!(
        "{} seed {}: {outcome} ({verdict}, expected {}) — {} acknowledged, {} refused, {} unknown (may have been written), \
         {} records read back, {} polled; {}",
        r.scenario,
        r.seed,
        r.expected,
        r.acked,
        r.refused,
        r.unknown,
        r.stats.records,
        r.stats.polled,
        if r.real {
            format!("{:.0} s on real processes", r.wall_s)
        } else {
            format!(
                "{:.0} s simulated in {:.2} s ({:.0}× real time)",
                r.simulated_s,
                r.wall_s,
                r.simulated_s / r.wall_s.max(1e-9)
            )
        }
    );
    if !r.config.is_empty() {
        let drawn: Vec<String> = r.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  configuration drawn: {}", drawn.join(" "));
    }
    if !r.faults.is_empty() {
        println!("  faults:");
        for f in &r.faults {
            match f.named_node() {
                Some(node) if r.brokers.len() > 1 => {
                    println!("    t={:>6} s  {} on {node}", f.at_s(), f.describe())
                }
                _ => println!("    t={:>6} s  {}", f.at_s(), f.describe()),
            }
        }
    }
    for op in &r.history {
        if let crate::history::Op::Flood(f) = op {
            println!(
                "  flood of broker-{}'s {:?} port ({:?}) at {:.0} s: {} connection(s) made, {} closed \
                 within a second, at most {} held at once, the longest {:.1} s",
                f.broker + 1,
                f.port,
                f.send,
                f.at_s,
                f.opened,
                f.closed_at_once,
                f.held_max,
                f.longest_held_s
            );
        }
    }
    probes_line(&r.history);
    scans_line(&r.history);
    if r.stats.retry_duplicates > 0 {
        println!(
            "  {} value(s) stored twice by producer retries (allowed: retries are not idempotent)",
            r.stats.retry_duplicates
        );
    }
    let reached: Vec<String> = r
        .coverage
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(e, n)| format!("{} ×{n}", e.name()))
        .collect();
    if !reached.is_empty() {
        println!("  coverage: {}", reached.join(", "));
    }
    if !r.figures.is_empty() {
        println!("  expectations (outside fault windows):");
        for f in &r.figures {
            let verdict = if f.holds() { "ok" } else { "BROKEN" };
            println!("    {f}  {verdict}");
        }
    }
    for line in r.finding_lines(5) {
        println!("  {line}");
    }
    if r.real {
        if !r.as_expected() {
            println!("  run again: {}", rerun(path, r.seed));
        }
    } else {
        println!("  trace hash {:016x}", r.trace_hash());
        if !r.as_expected() {
            println!("  replay: {}", replay(path, r.seed));
        }
    }
}

/// The security probes' requests of a run, if it had any: how many were answered each way, and
/// how many kinds of request were seen both allowed and refused.
fn probes_line(history: &[crate::history::Op]) {
    use crate::history::{AccessKind, AccessOutcome, Op, Probe};
    use std::collections::BTreeMap;
    let mut by: BTreeMap<Probe, [u64; 3]> = BTreeMap::new();
    for op in history {
        let Op::Access(a) = op else { continue };
        let AccessKind::Request { probe, .. } = a.kind else {
            continue;
        };
        let i = match a.outcome {
            AccessOutcome::Allowed => 0,
            AccessOutcome::Refused(_) => 1,
            AccessOutcome::Unknown => 2,
        };
        by.entry(probe).or_default()[i] += 1;
    }
    if by.is_empty() {
        return;
    }
    let sum = |i: usize| by.values().map(|n| n[i]).sum::<u64>();
    let both = by.values().filter(|n| n[0] > 0 && n[1] > 0).count();
    let listings = Probe::ALL.iter().filter(|p| p.is_listing()).count();
    println!(
        "  access probes: {} requests ({} allowed, {} refused, {} unknown); {both} of {} kinds \
         of request seen both allowed and refused (listings are only ever seen allowed)",
        sum(0) + sum(1) + sum(2),
        sum(0),
        sum(1),
        sum(2),
        Probe::ALL.len() - listings
    );
}

/// The far-behind readers' reads from the start, if the run had any.
fn scans_line(history: &[crate::history::Op]) {
    let scans: Vec<&crate::history::Scan> = history
        .iter()
        .filter_map(|op| match op {
            crate::history::Op::Scan(s) => Some(s),
            _ => None,
        })
        .collect();
    if scans.is_empty() {
        return;
    }
    let completed = scans.iter().filter(|s| s.completed).count();
    let records: usize = scans.iter().map(|s| s.records.len()).sum();
    let ends: i64 = scans.iter().map(|s| s.end.max(0)).sum();
    println!(
        "  far-behind reads from the start: {} ({completed} reached their end), {records} records \
         read over {ends} offsets",
        scans.len()
    );
}
