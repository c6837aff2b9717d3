//! Performance expectations: produce latency percentiles, acknowledged throughput and commit
//! batching, measured on every seed outside the fault windows and checked against bounds the
//! scenario states in units of its own disk and network model — so a broker that waits without
//! need, or whose throughput falls, fails a scenario as surely as one that loses a write.
//!
//! The unit is one *commit round* of the model: a request and its answer crossing the network
//! at the slowest, plus a write and a sync at the disk's slowest,
//! `2 × net_max + 2 × disk_max`. An acknowledgement takes at most the round in progress when the
//! request arrives and its own: p50 and p99 are bounded by multiples of it.

use serde::{Deserialize, Serialize};

use crate::history::{Op, SendOutcome};
use crate::scenario::{Fault, Scenario};

/// The simulated network's one-way latency when no fault changes it (madsim's default range).
pub const NET_LATENCY_MS: (f64, f64) = (1.0, 10.0);
/// Seconds after a fault heals during which clients reconnect and retry: not measured.
pub const SETTLE_AFTER_FAULT_S: f64 = 5.0;
/// Seconds at the start (topic creation, first connections): not measured.
pub const WARM_UP_S: f64 = 5.0;

/// One figure (a latency percentile, a throughput, …) over the seeds of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FigureRange {
    /// Seeds that measured it.
    pub seeds: usize,
    pub min: f64,
    pub max: f64,
    /// The scenario's bound, and whether it is a maximum ("<=") or a minimum (">=").
    pub bound: f64,
    pub kind: String,
    /// Seeds whose figure broke the bound.
    pub broken: usize,
}

impl FigureRange {
    pub fn merge(&mut self, other: &FigureRange) {
        self.seeds += other.seeds;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.broken += other.broken;
    }
}

/// One figure of one seed beside its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub bound: f64,
    /// `true`: the value must not exceed the bound; `false`: it must not fall below it.
    pub is_max: bool,
}

impl Figure {
    pub fn holds(&self) -> bool {
        if self.is_max {
            self.value <= self.bound
        } else {
            self.value >= self.bound
        }
    }

    pub fn kind(&self) -> &'static str {
        if self.is_max {
            "<="
        } else {
            ">="
        }
    }

    /// This seed's figure as a sweep's range of one.
    pub fn as_range(&self) -> FigureRange {
        FigureRange {
            seeds: 1,
            min: self.value,
            max: self.value,
            bound: self.bound,
            kind: self.kind().into(),
            broken: usize::from(!self.holds()),
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:.2} (bound {} {:.2})",
            self.name,
            self.value,
            self.kind(),
            self.bound
        )
    }
}

/// What was measured, before any bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Acknowledgement latencies (ms) of produces invoked and answered in clean time, sorted.
    pub latencies_ms: Vec<f64>,
    /// Seconds of clean time while producing lasted.
    pub clean_s: f64,
    /// Produces acknowledged in clean time.
    pub acked: usize,
    /// Produces with acks 0 sent in clean time (appended, never answered).
    pub unanswered: usize,
    /// Segment syncs that ended in clean time.
    pub segment_syncs: usize,
}

impl Measured {
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies_ms.len() as f64).ceil() as usize;
        Some(self.latencies_ms[rank.clamp(1, self.latencies_ms.len()) - 1])
    }
}

/// The windows (seconds from the start) where faults act, each widened by the time clients
/// take to settle after it, merged and sorted.
pub fn fault_windows(faults: &[Fault]) -> Vec<(f64, f64)> {
    let mut w: Vec<(f64, f64)> = faults
        .iter()
        .map(|f| {
            (
                f.at_s() as f64,
                f.healed_at_s() as f64 + SETTLE_AFTER_FAULT_S,
            )
        })
        .collect();
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (a, b) in w {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// Whether `[from, to]` is clear of every window and inside `[WARM_UP_S, end]`.
fn clean(windows: &[(f64, f64)], end: f64, from: f64, to: f64) -> bool {
    from >= WARM_UP_S && to <= end && windows.iter().all(|&(a, b)| to < a || from > b)
}

/// Measure a run: `segment_syncs` are the end times (seconds from the start) of the disk's
/// successful segment syncs.
pub fn measure(
    history: &[Op],
    faults: &[Fault],
    duration_s: u64,
    segment_syncs: &[f64],
) -> Measured {
    let windows = fault_windows(faults);
    let end = duration_s as f64;
    let mut m = Measured::default();
    for op in history {
        let Op::Send(s) = op else { continue };
        // A tenant over its quota waits by design ([`super::quota`]).
        if s.producer == crate::workload::tenant::PRODUCER {
            continue;
        }
        if !clean(&windows, end, s.invoked_s, s.completed_s) {
            continue;
        }
        if s.acks == 0 {
            // Never answered, but appended all the same (outside faults): it shares the syncs.
            m.unanswered += 1;
        } else if matches!(s.outcome, SendOutcome::Ok(_)) {
            m.latencies_ms.push((s.completed_s - s.invoked_s) * 1000.0);
            m.acked += 1;
        }
    }
    m.latencies_ms.sort_by(f64::total_cmp);
    m.segment_syncs = segment_syncs
        .iter()
        .filter(|&&t| clean(&windows, end, t, t))
        .count();
    // Clean time: the producing span less the windows inside it.
    let mut clean_s = (end - WARM_UP_S).max(0.0);
    for &(a, b) in &windows {
        clean_s -= (b.min(end) - a.max(WARM_UP_S)).max(0.0);
    }
    m.clean_s = clean_s.max(0.0);
    m
}

/// The model's commit round (ms): a request and its answer at the network's slowest, a write
/// and a sync at the disk's slowest — the scenario's, or, in a twin run, this machine's when
/// its disk is slower (`disk_measured_ms`: the p99 of a sync through the fault filesystem,
/// measured before the brokers start), so a bound describes the world it judges.
pub fn round_ms(scenario: &Scenario, disk_measured_ms: Option<f64>) -> f64 {
    let disk_max = scenario.disk.latency_ms.map_or(0.0, |[_, hi]| hi as f64);
    2.0 * NET_LATENCY_MS.1 + 2.0 * disk_max.max(disk_measured_ms.unwrap_or(0.0))
}

/// The figures of a run beside the scenario's bounds (none without `[expect.performance]`, or
/// with too little clean time to measure).
pub fn figures(scenario: &Scenario, m: &Measured, disk_measured_ms: Option<f64>) -> Vec<Figure> {
    let Some(perf) = &scenario.expect.performance else {
        return Vec::new();
    };
    let (Some(p50), Some(p99)) = (m.percentile(50.0), m.percentile(99.0)) else {
        return Vec::new();
    };
    if m.clean_s < 1.0 {
        return Vec::new();
    }
    let round = round_ms(scenario, disk_measured_ms);
    let w = &scenario.workload;
    let p50_bound = perf.p50_rounds * round;
    // Each producer: one answer (at the p50 bound), then `interval_ms`; pipelined idempotent
    // producers are held to the same closed loop.
    let answered = (0..w.producers)
        .filter(|&p| w.acks.for_producer(p) != 0)
        .count();
    let offered = answered as f64 * 1000.0 / (w.interval_ms as f64 + p50_bound);
    let mut out = vec![
        Figure {
            name: "produce p50 ms",
            value: p50,
            bound: p50_bound,
            is_max: true,
        },
        Figure {
            name: "produce p99 ms",
            value: p99,
            bound: perf.p99_rounds * round,
            is_max: true,
        },
        Figure {
            name: "acknowledged per s",
            value: m.acked as f64 / m.clean_s,
            bound: perf.throughput_share * offered,
            is_max: false,
        },
    ];
    if perf.appends_per_sync > 0.0 && m.segment_syncs > 0 {
        out.push(Figure {
            name: "appends per sync",
            value: (m.acked + m.unanswered) as f64 / m.segment_syncs as f64,
            bound: perf.appends_per_sync,
            is_max: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Send;
    use bytes::Bytes;

    fn send(invoked_s: f64, ms: f64) -> Op {
        Op::Send(Send {
            broker: 0,
            producer: 0,
            partition: 0,
            value: Bytes::from_static(b"v"),
            idempotence: None,
            attempt: 1,
            acks: 1,
            invoked_s,
            completed_s: invoked_s + ms / 1000.0,
            outcome: SendOutcome::Ok(0),
        })
    }

    #[test]
    fn only_clean_time_is_measured_and_percentiles_are_ranks() {
        let faults = vec![Fault::Pause {
            at_s: 20,
            for_s: 5,
            mid_write: false,
            node: None,
        }];
        // In the warm-up, in the fault window (20..30 with settling), and clean.
        let mut h = vec![send(1.0, 900.0), send(21.0, 4000.0), send(29.0, 10.0)];
        for i in 0..100 {
            h.push(send(40.0 + i as f64 * 0.1, 1.0 + i as f64));
        }
        let m = measure(&h, &faults, 60, &[10.0, 22.0, 41.0]);
        assert_eq!(m.acked, 100);
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6);
        assert!(near(m.percentile(50.0), 50.0), "{:?}", m.percentile(50.0));
        assert!(near(m.percentile(99.0), 99.0), "{:?}", m.percentile(99.0));
        assert_eq!(m.segment_syncs, 2);
        assert!((m.clean_s - 45.0).abs() < 1e-9, "{}", m.clean_s);
        assert_eq!(
            fault_windows(&[
                Fault::Pause {
                    at_s: 20,
                    for_s: 5,
                    mid_write: false,
                    node: None,
                },
                Fault::FsyncStall {
                    at_s: 28,
                    for_s: 4,
                    node: None,
                },
            ]),
            [(20.0, 37.0)]
        );
    }

    #[test]
    fn figures_break_their_bounds_when_the_broker_waits() {
        let text = r#"
            name = "t"
            duration_s = 60
            [disk]
            latency_ms = [1, 4]
            [workload]
            producers = 2
            acks = 1
            interval_ms = 50
            [expect]
            outcome = "pass"
            response_deadline_s = 10
            liveness_deadline_s = 30
            [expect.performance]
            p50_rounds = 1.0
            p99_rounds = 2.0
            throughput_share = 0.5
        "#;
        let sc: Scenario = toml::from_str(text).unwrap();
        assert_eq!(round_ms(&sc, None), 28.0);
        // A twin run's disk slower than the model's: its bound is this machine's.
        assert_eq!(round_ms(&sc, Some(9.0)), 38.0);
        assert_eq!(round_ms(&sc, Some(0.5)), 28.0);
        let run = |ms: f64| {
            let h: Vec<Op> = (0..1000).map(|i| send(5.0 + i as f64 * 0.05, ms)).collect();
            figures(&sc, &measure(&h, &[], 60, &[]), None)
        };
        assert!(run(15.0).iter().all(Figure::holds), "{:?}", run(15.0));
        let slow = run(75.0);
        assert_eq!(
            slow.iter()
                .filter(|f| !f.holds())
                .map(|f| f.name)
                .collect::<Vec<_>>(),
            ["produce p50 ms", "produce p99 ms"]
        );
    }
}
