//! A sweep's machine-readable summary: per scenario the seeds run and their outcomes, the
//! unexpected seeds with their replay commands, how many seeds reached each coverage event, and
//! the performance figures beside their bounds. `sweep --summary-out` writes one; `merge`
//! combines the summaries of a sweep's shards (run on as many machines) into one table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::checks::perf::FigureRange;

/// One seed's outcome, as the child process that ran it reports it (one JSON line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedSummary {
    pub as_expected: bool,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub trace_hash: String,
    pub first_finding: String,
    /// The kinds of the seed's findings, the first finding's kind first.
    #[serde(default)]
    pub finding_kinds: Vec<String>,
    /// How often the seed passed each rare path, by event name.
    pub coverage: BTreeMap<String, u64>,
    /// The seed's performance figures against their bounds.
    pub figures: BTreeMap<String, FigureRange>,
}

/// Add `from`'s figure ranges into `into`.
pub fn merge_figures(
    into: &mut BTreeMap<String, FigureRange>,
    from: impl IntoIterator<Item = (String, FigureRange)>,
) {
    for (name, f) in from {
        match into.get_mut(&name) {
            Some(range) => range.merge(&f),
            None => {
                into.insert(name, f);
            }
        }
    }
}

impl ScenarioSummary {
    /// Count one seed that ran to its end: its simulated time, the events it reached, its
    /// figures, and whether it ended as expected.
    pub fn add(&mut self, seed: &SeedSummary) {
        self.simulated_s += seed.simulated_s;
        for (event, n) in &seed.coverage {
            if *n > 0 {
                *self.coverage.entry(event.clone()).or_default() += 1;
            }
        }
        merge_figures(&mut self.figures, seed.figures.clone());
        if seed.as_expected {
            self.ok += 1;
        }
    }
}

/// What one sweep (or one shard of it) found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SweepSummary {
    /// The seed range, as given (`A..B`).
    pub seeds: String,
    /// The shards this summary covers (`i/n`, or several merged: `1,2,3/3`).
    pub shards: Vec<String>,
    pub scenarios: Vec<ScenarioSummary>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub file: String,
    pub seeds: usize,
    /// Seeds that ended as the scenario expects.
    pub ok: usize,
    pub simulated_s: f64,
    /// Machine time: the shards' wall times add up.
    pub wall_s: f64,
    pub unexpected: Vec<Unexpected>,
    /// Seeds that reached each coverage event (every declared event is listed, 0 included).
    pub coverage: BTreeMap<String, u64>,
    /// Each performance figure over the seeds: its range and its bound.
    #[serde(default)]
    pub figures: BTreeMap<String, FigureRange>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unexpected {
    pub seed: u64,
    pub why: String,
    pub replay: String,
}

impl SweepSummary {
    /// Combine shards: scenarios are matched by file, and their counts added up.
    pub fn merge(parts: Vec<SweepSummary>) -> Result<SweepSummary, String> {
        let mut out = SweepSummary::default();
        for part in parts {
            if out.seeds.is_empty() {
                out.seeds = part.seeds.clone();
            } else if out.seeds != part.seeds {
                return Err(format!(
                    "the shards swept different seed ranges ({} and {})",
                    out.seeds, part.seeds
                ));
            }
            if let Some(dup) = part.shards.iter().find(|s| out.shards.contains(s)) {
                return Err(format!("shard {dup} is given twice"));
            }
            out.shards.extend(part.shards);
            for s in part.scenarios {
                match out.scenarios.iter_mut().find(|o| o.file == s.file) {
                    None => out.scenarios.push(s),
                    Some(o) => {
                        o.seeds += s.seeds;
                        o.ok += s.ok;
                        o.simulated_s += s.simulated_s;
                        o.wall_s += s.wall_s;
                        o.unexpected.extend(s.unexpected);
                        o.unexpected.sort_by_key(|u| u.seed);
                        for (k, n) in s.coverage {
                            *o.coverage.entry(k).or_default() += n;
                        }
                        merge_figures(&mut o.figures, s.figures);
                    }
                }
            }
        }
        out.shards.sort();
        Ok(out)
    }

    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.unexpected.is_empty())
    }

    /// Events that no seed of any scenario reached.
    pub fn unreached(&self) -> Vec<String> {
        let mut all: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &self.scenarios {
            for (k, n) in &s.coverage {
                *all.entry(k).or_default() += n;
            }
        }
        all.into_iter()
            .filter(|(_, n)| *n == 0)
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// The tables people read: outcomes, figures, coverage, and the unexpected seeds.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>6} {:>6} {:>12} {:>9} {:>10}",
            "scenario", "seeds", "ok", "bad", "simulated s", "wall s", "speed-up"
        );
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "{:<24} {:>6} {:>6} {:>6} {:>12.0} {:>9.1} {:>9.0}×",
                s.name,
                s.seeds,
                s.ok,
                s.seeds - s.ok,
                s.simulated_s,
                s.wall_s,
                s.simulated_s / s.wall_s.max(1e-9)
            );
        }
        let with_figures: Vec<&ScenarioSummary> = self
            .scenarios
            .iter()
            .filter(|s| !s.figures.is_empty())
            .collect();
        if !with_figures.is_empty() {
            let _ = writeln!(
                out,
                "\nexpectations (range over the seeds, against the scenario's bound):"
            );
            for s in with_figures {
                for (name, f) in &s.figures {
                    let _ = writeln!(
                        out,
                        "  {:<24} {:<26} {:>10.2} .. {:<10.2} {} {:<10.2} {}",
                        s.name,
                        name,
                        f.min,
                        f.max,
                        f.kind,
                        f.bound,
                        if f.broken == 0 {
                            "held on every seed".to_string()
                        } else {
                            format!("BROKEN on {} seed(s)", f.broken)
                        }
                    );
                }
            }
        }
        let total: usize = self.scenarios.iter().map(|s| s.seeds).sum();
        let mut events: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
        for s in &self.scenarios {
            for (k, n) in &s.coverage {
                let e = events.entry(k).or_default();
                e.0 += n;
                if *n > 0 {
                    e.1.push(&s.name);
                }
            }
        }
        if !events.is_empty() {
            let _ = writeln!(
                out,
                "\ncoverage (seeds that reached each event, of {total} runs):"
            );
            for (k, (n, scenarios)) in &events {
                let flag = if *n == 0 { "  NOT REACHED" } else { "" };
                let mut names = scenarios.join(", ");
                if names.len() > 60 {
                    names.truncate(57);
                    names.push_str("...");
                }
                let _ = writeln!(out, "  {k:<32} {n:>7}  {names}{flag}");
            }
        }
        for s in &self.scenarios {
            for u in &s.unexpected {
                let _ = writeln!(
                    out,
                    "UNEXPECTED {} seed {}: {}\n  replay: {}",
                    s.file, u.seed, u.why, u.replay
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(i: u64, seeds: usize, bad: &[u64], reached: u64) -> SweepSummary {
        SweepSummary {
            seeds: "1..101".into(),
            shards: vec![format!("{i}/2")],
            scenarios: vec![ScenarioSummary {
                name: "swarm".into(),
                file: "scenarios/swarm.toml".into(),
                seeds,
                ok: seeds - bad.len(),
                simulated_s: 100.0,
                wall_s: 1.0,
                unexpected: bad
                    .iter()
                    .map(|&seed| Unexpected {
                        seed,
                        why: "lost write".into(),
                        replay: format!("cargo xtask sim run scenarios/swarm.toml --seed {seed}"),
                    })
                    .collect(),
                coverage: [("segment-rolled".to_string(), reached), ("x".into(), 0)]
                    .into_iter()
                    .collect(),
                figures: [(
                    "produce p99 ms".to_string(),
                    FigureRange {
                        seeds,
                        min: i as f64,
                        max: 10.0 * i as f64,
                        bound: 50.0,
                        kind: "<=".into(),
                        broken: 0,
                    },
                )]
                .into_iter()
                .collect(),
            }],
        }
    }

    #[test]
    fn shards_merge_into_one_table() {
        let m = SweepSummary::merge(vec![shard(2, 50, &[7], 3), shard(1, 50, &[], 0)]).unwrap();
        assert_eq!(m.shards, ["1/2", "2/2"]);
        let s = &m.scenarios[0];
        assert_eq!((s.seeds, s.ok, s.coverage["segment-rolled"]), (100, 99, 3));
        assert_eq!(
            (
                s.figures["produce p99 ms"].min,
                s.figures["produce p99 ms"].max
            ),
            (1.0, 20.0)
        );
        assert!(!m.passed());
        assert_eq!(m.unreached(), ["x"]);
        let text = m.render();
        assert!(
            text.contains("UNEXPECTED scenarios/swarm.toml seed 7"),
            "{text}"
        );
        assert!(text.contains("NOT REACHED"), "{text}");
        // The same shard twice, or another seed range, is refused.
        assert!(SweepSummary::merge(vec![shard(1, 50, &[], 0), shard(1, 50, &[], 0)]).is_err());
        let mut other = shard(2, 50, &[], 0);
        other.seeds = "1..51".into();
        assert!(SweepSummary::merge(vec![shard(1, 50, &[], 0), other]).is_err());
    }
}
