//! Reports of one run: machine-readable JSON and a human page (Markdown) with a timeline picture
//! (SVG) of throughput and latency, fault windows shaded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::history::{Op, PollResult, SendOutcome};
use crate::run::RunReport;
use crate::scenario::{Scenario, BROKER_NODE};

/// One time bucket of the client-visible series.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start_s: f64,
    pub acked_per_s: f64,
    /// Produce attempts that failed or whose outcome is unknown.
    pub refused_per_s: f64,
    /// Records the consumers polled.
    pub polled_per_s: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultWindow {
    pub kind: String,
    pub what: String,
    pub from_s: u64,
    pub until_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub scenario_file: String,
    pub seed: u64,
    pub outcome: String,
    pub expected: String,
    pub as_expected: bool,
    pub findings: Vec<String>,
    pub faults: Vec<FaultWindow>,
    pub acknowledged: usize,
    /// Produce attempts the broker refused (not written).
    pub refused: usize,
    /// Produce attempts without an answer or answered REQUEST_TIMED_OUT (may have been written).
    pub unknown: usize,
    /// Values stored twice because a producer retried (allowed by its settings).
    pub retry_duplicates: usize,
    pub records_read_back: usize,
    pub records_polled: usize,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub trace_hash: String,
    pub replay: String,
    /// Per node: the series its clients saw (one broker node so far).
    pub nodes: Vec<NodeSeries>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeSeries {
    pub node: String,
    pub buckets: Vec<Bucket>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

impl Report {
    pub fn new(path: &Path, scenario: &Scenario, r: &RunReport) -> Report {
        let buckets_wanted = 200.0;
        let width = (r.simulated_s / buckets_wanted).max(1.0);
        let n = (r.simulated_s / width).ceil() as usize + 1;
        let mut acked = vec![0usize; n];
        let mut refused = vec![0usize; n];
        let mut polled = vec![0usize; n];
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n];
        let bucket = |t: f64| ((t / width) as usize).min(n - 1);
        for op in &r.history {
            match op {
                Op::Send(s) => {
                    let b = bucket(s.completed_s);
                    match s.outcome {
                        SendOutcome::Ok(_) => acked[b] += 1,
                        // acks=0 has no outcome; it is neither acknowledged nor refused.
                        SendOutcome::Unknown if s.acks == 0 => continue,
                        _ => refused[b] += 1,
                    }
                    latencies[b].push((s.completed_s - s.invoked_s) * 1e3);
                }
                Op::Poll(p) => {
                    if let PollResult::Records(records) = &p.result {
                        polled[bucket(p.completed_s)] += records.len();
                    }
                }
                Op::Admin(_)
                | Op::Commit(_)
                | Op::Assigned(_)
                | Op::CommittedRead(_)
                | Op::Member(_) => {}
            }
        }
        let buckets = (0..n)
            .map(|i| {
                let mut l = std::mem::take(&mut latencies[i]);
                l.sort_by(|a, b| a.total_cmp(b));
                Bucket {
                    start_s: i as f64 * width,
                    acked_per_s: acked[i] as f64 / width,
                    refused_per_s: refused[i] as f64 / width,
                    polled_per_s: polled[i] as f64 / width,
                    latency_ms_p50: percentile(&l, 0.5),
                    latency_ms_p99: percentile(&l, 0.99),
                }
            })
            .collect();
        let faults = r
            .faults
            .iter()
            .map(|f| FaultWindow {
                kind: f.kind().into(),
                what: f.describe(),
                from_s: f.at_s(),
                until_s: f.healed_at_s().max(f.at_s() + 1),
            })
            .collect();
        Report {
            scenario: r.scenario.clone(),
            description: scenario.description.trim().to_string(),
            scenario_file: path.display().to_string(),
            seed: r.seed,
            outcome: if r.findings.is_empty() {
                "pass"
            } else {
                "failure"
            }
            .into(),
            expected: r.expected.to_string(),
            as_expected: r.as_expected(),
            findings: r.finding_lines(20),
            faults,
            acknowledged: r.acked,
            refused: r.refused,
            unknown: r.unknown,
            retry_duplicates: r.stats.retry_duplicates,
            records_read_back: r.stats.records,
            records_polled: r.stats.polled,
            simulated_s: r.simulated_s,
            wall_s: r.wall_s,
            trace_hash: format!("{:016x}", r.trace_hash()),
            replay: format!("cargo xtask sim run {} --seed {}", path.display(), r.seed),
            nodes: vec![NodeSeries {
                node: BROKER_NODE.into(),
                buckets,
            }],
        }
    }

    /// Write `<dir>/<scenario>-seed<N>.{json,md,svg}`; returns the JSON path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let stem = format!("{}-seed{}", self.scenario, self.seed);
        let json = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json, text + "\n")?;
        std::fs::write(dir.join(format!("{stem}.svg")), self.svg())?;
        std::fs::write(dir.join(format!("{stem}.md")), self.markdown(&stem))?;
        Ok(json)
    }

    fn markdown(&self, stem: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} — seed {}\n", self.scenario, self.seed);
        if !self.description.is_empty() {
            let _ = writeln!(md, "{}\n", self.description.replace('\n', " "));
        }
        let _ = writeln!(
            md,
            "**Outcome:** {} ({}; expected {}). {} acknowledged, {} refused, {} unknown (may have been written); \
             {} records read back, {} polled, {} duplicate(s) explained by retries. \
             {:.0} s simulated in {:.2} s of wall time. Trace hash `{}`.\n",
            self.outcome,
            if self.as_expected {
                "as expected"
            } else {
                "UNEXPECTED"
            },
            self.expected,
            self.acknowledged,
            self.refused,
            self.unknown,
            self.records_read_back,
            self.records_polled,
            self.retry_duplicates,
            self.simulated_s,
            self.wall_s,
            self.trace_hash
        );
        let _ = writeln!(md, "Replay: `{}`\n", self.replay);
        let _ = writeln!(md, "## Findings\n");
        if self.findings.is_empty() {
            let _ = writeln!(md, "None.\n");
        }
        for f in &self.findings {
            let _ = writeln!(md, "- {f}");
        }
        let _ = writeln!(md, "\n## Faults\n");
        if self.faults.is_empty() {
            let _ = writeln!(md, "None.\n");
        }
        for f in &self.faults {
            let _ = writeln!(
                md,
                "- {} from t={} s until t={} s",
                f.what, f.from_s, f.until_s
            );
        }
        let _ = writeln!(
            md,
            "\n## Timeline\n\nThroughput (produces acknowledged and not acknowledged, polled records, per second) and \
             produce latency (p50, p99) as the clients of node {BROKER_NODE} saw them; fault windows \
             shaded.\n\n![timeline]({stem}.svg)"
        );
        md
    }

    /// Two stacked panels: throughput and latency (log scale), fault windows shaded.
    pub fn svg(&self) -> String {
        let (w, h, left, top, panel_h, gap) = (900.0, 420.0, 72.0, 20.0, 160.0, 40.0);
        let plot_w = w - left - 20.0;
        let buckets = &self.nodes[0].buckets;
        let t_max = self.simulated_s.max(1.0);
        let x = |t: f64| left + plot_w * (t / t_max);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        for (panel, title) in [
            (0.0, "produces per second"),
            (1.0, "produce latency, ms (log)"),
        ] {
            let y0 = top + panel * (panel_h + gap);
            for f in &self.faults {
                let (x1, x2) = (x(f.from_s as f64), x((f.until_s as f64).min(t_max)));
                let _ = writeln!(
                    s,
                    r##"<rect x="{x1:.1}" y="{y0:.1}" width="{:.1}" height="{panel_h}" fill="#f4a3a3" fill-opacity="0.35"><title>{}</title></rect>"##,
                    (x2 - x1).max(1.0),
                    f.kind
                );
            }
            let _ = writeln!(
                s,
                r##"<rect x="{left}" y="{y0:.1}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#888"/><text x="{left}" y="{:.1}">{title}</text>"##,
                y0 - 5.0
            );
        }
        // Throughput panel.
        let max_rate = buckets
            .iter()
            .map(|b| b.acked_per_s.max(b.refused_per_s).max(b.polled_per_s))
            .fold(1.0, f64::max);
        let y_rate = |v: f64| top + panel_h - panel_h * (v / max_rate);
        let polls = buckets.iter().any(|b| b.polled_per_s > 0.0);
        for (color, pick) in [("#2b7bb9", 0), ("#d95f02", 1), ("#999999", 2)] {
            if pick == 2 && !polls {
                continue;
            }
            let pts: Vec<String> = buckets
                .iter()
                .map(|b| {
                    let v = match pick {
                        0 => b.acked_per_s,
                        1 => b.refused_per_s,
                        _ => b.polled_per_s,
                    };
                    format!("{:.1},{:.1}", x(b.start_s), y_rate(v))
                })
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##,
                pts.join(" ")
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{max_rate:.0}/s</text><text x="{:.1}" y="{:.1}" fill="#2b7bb9">acknowledged</text><text x="{:.1}" y="{:.1}" fill="#d95f02">not acknowledged</text>"##,
            left - 4.0,
            top + 10.0,
            left + plot_w - 200.0,
            top + 14.0,
            left + plot_w - 110.0,
            top + 14.0
        );
        if polls {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="#999999">polled</text>"##,
                left + plot_w - 250.0,
                top + 14.0
            );
        }
        // Latency panel (log scale, 0.1 ms .. max).
        let y1 = top + panel_h + gap;
        let max_lat = buckets
            .iter()
            .filter_map(|b| b.latency_ms_p99)
            .fold(1.0, f64::max);
        let (lo, hi) = (0.1f64.ln(), max_lat.max(1.0).ln());
        let y_lat =
            |v: f64| y1 + panel_h - panel_h * ((v.max(0.1).ln() - lo) / (hi - lo).max(1e-9));
        for (color, p99) in [("#1b9e77", false), ("#7570b3", true)] {
            let pts: Vec<String> = buckets
                .iter()
                .filter_map(|b| {
                    let v = if p99 {
                        b.latency_ms_p99
                    } else {
                        b.latency_ms_p50
                    }?;
                    Some(format!("{:.1},{:.1}", x(b.start_s), y_lat(v)))
                })
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##,
                pts.join(" ")
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{max_lat:.0} ms</text><text x="{:.1}" y="{:.1}" text-anchor="end">0.1 ms</text><text x="{:.1}" y="{:.1}" fill="#1b9e77">p50</text><text x="{:.1}" y="{:.1}" fill="#7570b3">p99</text>"##,
            left - 4.0,
            y1 + 10.0,
            left - 4.0,
            y1 + panel_h,
            left + plot_w - 90.0,
            y1 + 14.0,
            left + plot_w - 60.0,
            y1 + 14.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{:.1}">t = 0</text><text x="{:.1}" y="{:.1}" text-anchor="end">t = {:.0} s (simulated)</text>"#,
            y1 + panel_h + 16.0,
            left + plot_w,
            y1 + panel_h + 16.0,
            t_max
        );
        let _ = writeln!(s, "</svg>");
        s
    }
}
