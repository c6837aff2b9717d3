//! Reports of one run: machine-readable JSON and a human page (Markdown) with a timeline picture
//! (plain SVG, written here): per node, throughput and latency on a time axis with ticks, fault
//! windows shaded and labelled with their kind, performance bounds as dashed lines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::history::{Op, PollResult, SendOutcome};
use crate::outcome::RunReport;
use crate::scenario::{Scenario, BROKER_NODE};

pub mod explain;
pub mod fidelity;
pub mod html;
pub mod junit;
pub mod summary;
mod svg;
pub mod text;

use svg::{bound_line, fault_colour, label_rows, milliseconds, number, ticks, xml};

/// One time bucket of the client-visible series.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultWindow {
    pub kind: String,
    pub what: String,
    pub from_s: u64,
    pub until_s: u64,
    /// The broker it strikes; `None` for faults of the network between several nodes (shaded
    /// on every lane).
    pub node: Option<String>,
}

impl FaultWindow {
    /// Its label on the timeline: the kind, and the node when there are several.
    fn label(&self, several: bool) -> String {
        match (&self.node, several) {
            (Some(n), true) => format!("{} {n}", self.kind),
            _ => self.kind.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub scenario_file: String,
    pub seed: u64,
    pub outcome: String,
    pub expected: String,
    pub as_expected: bool,
    pub findings: Vec<String>,
    /// The kinds of the findings, each once, sorted (what the fidelity table compares).
    #[serde(default)]
    pub finding_kinds: Vec<String>,
    /// The settings this seed drew (`[random_config]`), `section.key` → value.
    pub configuration_drawn: Vec<(String, String)>,
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
    /// The command that runs it again: a replay in simulation, a new run on real processes.
    pub replay: String,
    /// Where it ran: `simulation` or `real` (a twin run on real broker processes).
    #[serde(default)]
    pub world: String,
    /// Per broker: the series its clients saw (requests sent to it).
    pub nodes: Vec<NodeSeries>,
    /// The performance figures beside the scenario's bounds (none without bounds).
    pub figures: Vec<FigureLine>,
    /// What the brokers' locks did: every order taken (held → acquired), the inversions, and
    /// per lock the acquisitions that waited and the `try_*` that failed. In a twin run, from
    /// each broker's lock audit on real threads.
    #[serde(default)]
    pub locks: broker::sync::LockUse,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FigureLine {
    pub name: String,
    pub value: f64,
    pub bound: f64,
    pub holds: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSeries {
    pub node: String,
    pub buckets: Vec<Bucket>,
    /// In a cluster: how many of the workload's partitions Metadata named this node the leader
    /// of, from each change on (`(seconds, count)`, a step function); empty on one node.
    pub partitions_led: Vec<(f64, usize)>,
}

/// The client-visible series of the requests sent to broker `broker` (its index), in `n`
/// buckets of `width` seconds.
fn buckets(history: &[Op], width: f64, n: usize, broker: usize) -> Vec<Bucket> {
    let mut acked = vec![0usize; n];
    let mut refused = vec![0usize; n];
    let mut polled = vec![0usize; n];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n];
    let bucket = |t: f64| ((t / width) as usize).min(n - 1);
    for op in history {
        match op {
            Op::Send(s) if s.broker == broker => {
                let b = bucket(s.completed_s);
                match s.outcome {
                    SendOutcome::Ok(_) => acked[b] += 1,
                    // acks=0 has no outcome; it is neither acknowledged nor refused.
                    SendOutcome::Unknown if s.acks == 0 => continue,
                    _ => refused[b] += 1,
                }
                latencies[b].push((s.completed_s - s.invoked_s) * 1e3);
            }
            Op::Poll(p) if p.broker == broker => {
                if let PollResult::Records(records) = &p.result {
                    polled[bucket(p.completed_s)] += records.len();
                }
            }
            _ => {}
        }
    }
    (0..n)
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
        .collect()
}

/// How many partitions node `node_id` led after each change of leadership: a step per change
/// that alters its count, starting at 0.
fn partitions_led(changes: &[(f64, i32, i32)], node_id: i32) -> Vec<(f64, usize)> {
    if changes.is_empty() {
        return Vec::new();
    }
    let mut leader: std::collections::BTreeMap<i32, i32> = Default::default();
    let mut out = vec![(0.0, 0)];
    for &(t, partition, l) in changes {
        leader.insert(partition, l);
        let count = leader.values().filter(|&&x| x == node_id).count();
        let n = out.len();
        if n > 1 && out[n - 1].0 == t {
            // Changes heard in one answer make one step (none if they cancel out).
            out[n - 1].1 = count;
            if out[n - 2].1 == count {
                out.pop();
            }
        } else if out[n - 1].1 != count {
            out.push((t, count));
        }
    }
    out
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
        let names: Vec<String> = if r.brokers.is_empty() {
            vec![BROKER_NODE.to_string()]
        } else {
            r.brokers.clone()
        };
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| NodeSeries {
                node: name.clone(),
                buckets: buckets(&r.history, width, n, i),
                partitions_led: partitions_led(&r.leader_changes, i as i32 + 1),
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
                node: f.named_node().map(str::to_string),
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
            finding_kinds: {
                let kinds: std::collections::BTreeSet<String> =
                    r.findings.iter().map(|f| f.kind().to_string()).collect();
                kinds.into_iter().collect()
            },
            configuration_drawn: r.config.clone(),
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
            replay: if r.real {
                text::rerun(path, r.seed)
            } else {
                text::replay(path, r.seed)
            },
            world: if r.real { "real" } else { "simulation" }.into(),
            nodes,
            figures: r
                .figures
                .iter()
                .map(|f| FigureLine {
                    name: f.name.into(),
                    value: f.value,
                    bound: f.bound,
                    holds: f.holds(),
                })
                .collect(),
            locks: r.locks.clone(),
        }
    }

    /// Write `<dir>/<scenario>-seed<N>.{json,md,svg}`; returns the JSON path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let stem = if self.world == "real" {
            format!("{}-real-seed{}", self.scenario, self.seed)
        } else {
            format!("{}-seed{}", self.scenario, self.seed)
        };
        let json = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json, text + "\n")?;
        std::fs::write(dir.join(format!("{stem}.svg")), self.svg())?;
        std::fs::write(dir.join(format!("{stem}.md")), self.markdown(&stem))?;
        Ok(json)
    }

    fn markdown(&self, stem: &str) -> String {
        let mut md = String::new();
        let real = self.world == "real";
        let _ = writeln!(
            md,
            "# {} — seed {}{}\n",
            self.scenario,
            self.seed,
            if real {
                " — twin run on real processes"
            } else {
                ""
            }
        );
        if !self.description.is_empty() {
            let _ = writeln!(md, "{}\n", self.description.replace('\n', " "));
        }
        let _ = writeln!(
            md,
            "**Outcome:** {} ({}; expected {}). {} acknowledged, {} refused, {} unknown (may have been written); \
             {} records read back, {} polled, {} duplicate(s) explained by retries. \
             {}\n",
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
            if real {
                format!("{:.0} s on real broker processes.", self.wall_s)
            } else {
                format!(
                    "{:.0} s simulated in {:.2} s of wall time. Trace hash `{}`.",
                    self.simulated_s, self.wall_s, self.trace_hash
                )
            }
        );
        let _ = writeln!(
            md,
            "{}: `{}`\n",
            if real { "Run again" } else { "Replay" },
            self.replay
        );
        let _ = writeln!(md, "## Findings\n");
        if self.findings.is_empty() {
            let _ = writeln!(md, "None.\n");
        }
        for f in &self.findings {
            let _ = writeln!(md, "- {f}");
        }
        if !self.configuration_drawn.is_empty() {
            let _ = writeln!(md, "\n## Configuration drawn from the seed\n");
            for (key, value) in &self.configuration_drawn {
                let _ = writeln!(md, "- `{key}` = `{value}`");
            }
        }
        let _ = writeln!(md, "\n## Faults\n");
        if self.faults.is_empty() {
            let _ = writeln!(md, "None.\n");
        }
        for f in &self.faults {
            // On several nodes, say which one a disk, clock or process fault struck (a
            // network fault's description names its nodes).
            let on = match &f.node {
                Some(n) if self.nodes.len() > 1 && !f.what.contains(n.as_str()) => {
                    format!(" on {n}")
                }
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "- {}{on} from t={} s until t={} s",
                f.what, f.from_s, f.until_s
            );
        }
        if self.nodes.len() > 1 {
            let _ = writeln!(
                md,
                "\n## Nodes\n\n| node | produces acknowledged by it | records polled from it | partitions it led at the end |\n|---|---|---|---|"
            );
            for n in &self.nodes {
                let width = n.buckets.get(1).map_or(1.0, |b| b.start_s);
                let total = |f: fn(&Bucket) -> f64| -> f64 {
                    n.buckets.iter().map(|b| f(b) * width).sum::<f64>().round()
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    n.node,
                    total(|b| b.acked_per_s),
                    total(|b| b.polled_per_s),
                    n.partitions_led.last().map_or(0, |(_, c)| *c)
                );
            }
        }
        if !self.figures.is_empty() {
            let _ = writeln!(md, "\n## Expectations (outside fault windows)\n");
            for f in &self.figures {
                let _ = writeln!(
                    md,
                    "- {}: {:.2}, bound {:.2} — {}",
                    f.name,
                    f.value,
                    f.bound,
                    if f.holds { "holds" } else { "BROKEN" }
                );
            }
        }
        let lanes = if self.nodes.len() > 1 {
            "One lane per broker: throughput (produces acknowledged and not acknowledged, polled \
             records, per second) and produce latency (p50, p99) of the requests the clients sent \
             to it, and the partitions it led as Metadata named the leaders; fault windows \
             labelled with their kind and node and shaded on the lane of the node they strike \
             (every lane for the network's)"
        } else {
            "Throughput (produces acknowledged and not acknowledged, polled records, per second) and \
             produce latency (p50, p99) as the clients saw them; fault windows shaded and labelled \
             with their kind"
        };
        let _ = writeln!(
            md,
            "\n## Timeline\n\n{lanes}; the scenario's bounds dashed.\n\n![timeline]({stem}.svg)"
        );
        md
    }

    /// The timeline: per node a lane of two panels, throughput and produce latency (log
    /// scale), on one time axis with ticks; fault windows shaded across every panel and labelled
    /// with their kind above them; the scenario's performance bounds drawn as dashed lines.
    pub fn svg(&self) -> String {
        let (w, left, right, panel_h, gap) = (960.0, 78.0, 150.0, 150.0, 46.0);
        let plot_w = w - left - right;
        let t_max = self.simulated_s.max(1.0);
        let x = |t: f64| left + plot_w * (t / t_max).clamp(0.0, 1.0);
        // Fault labels go in rows above the panels, a row per overlap.
        let several = self.nodes.len() > 1;
        let label_rows = label_rows(&self.faults, several, &x);
        let rows = label_rows.iter().copied().max().map_or(0, |r| r + 1);
        let top = 24.0 + rows as f64 * 13.0;
        // A cluster's lanes have a third panel: the partitions each node led.
        let panels = if self.nodes.iter().any(|n| !n.partitions_led.is_empty()) {
            3.0
        } else {
            2.0
        };
        let lane_h = panels * (panel_h + gap);
        let h = top + lane_h * self.nodes.len().max(1) as f64 + 10.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h:.0}" viewBox="0 0 {w} {h:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h:.0}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="13" font-size="12" font-weight="bold">{} — seed {} — {}</text>"#,
            xml(&self.scenario),
            self.seed,
            xml(&self.outcome)
        );
        // Fault windows: labelled with their kind (and node, in a cluster) above the lanes,
        // shaded over the lane of the node they strike (every lane for the network's).
        for (f, row) in self.faults.iter().zip(&label_rows) {
            let x1 = x(f.from_s as f64);
            let ly = 24.0 + *row as f64 * 13.0;
            let label = f.label(several);
            let _ = writeln!(
                s,
                r##"<g class="fault"><title>{} from t={} s to t={} s</title><line x1="{x1:.1}" y1="{:.1}" x2="{x1:.1}" y2="{top:.1}" stroke="{}" stroke-width="0.8"/><text x="{:.1}" y="{ly:.1}" fill="{}">{}</text></g>"##,
                xml(&f.what),
                f.from_s,
                f.until_s,
                ly + 2.0,
                fault_colour(&f.kind),
                x1 + 1.0,
                fault_colour(&f.kind),
                xml(&label)
            );
        }
        for (lane, node) in self.nodes.iter().enumerate() {
            let y0 = top + lane as f64 * lane_h;
            for f in &self.faults {
                if f.node.as_ref().is_some_and(|n| *n != node.node) && several {
                    continue;
                }
                let (x1, x2) = (x(f.from_s as f64), x((f.until_s as f64).min(t_max)));
                let _ = writeln!(
                    s,
                    r##"<rect class="shade" x="{x1:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.22"><title>{}</title></rect>"##,
                    (x2 - x1).max(1.5),
                    lane_h - gap + 14.0,
                    fault_colour(&f.kind),
                    xml(&f.what)
                );
            }
            self.lane(
                &mut s,
                node,
                y0 + 14.0,
                (left, plot_w, panel_h, gap),
                &x,
                t_max,
            );
        }
        let _ = writeln!(s, "</svg>");
        s
    }

    /// One node's two panels, from `y0` down.
    fn lane(
        &self,
        s: &mut String,
        node: &NodeSeries,
        y0: f64,
        (left, plot_w, panel_h, gap): (f64, f64, f64, f64),
        x: &dyn Fn(f64) -> f64,
        t_max: f64,
    ) {
        let buckets = &node.buckets;
        let right_edge = left + plot_w;
        let time_axis = if self.world == "real" {
            "wall-clock time"
        } else {
            "simulated time"
        };
        // Ticks in one unit for the whole axis: seconds, minutes or hours as the run's length
        // asks.
        let (unit_s, unit) = if t_max >= 3.0 * 3600.0 {
            (3600.0, "h")
        } else if t_max >= 20.0 * 60.0 {
            (60.0, "min")
        } else {
            (1.0, "s")
        };
        let time_ticks: Vec<(f64, String)> = ticks(0.0, t_max / unit_s, 10)
            .into_iter()
            .filter(|t| *t * unit_s <= t_max + 1e-9)
            .map(|t| (t * unit_s, format!("{} {unit}", number(t))))
            .collect();
        let frame = |s: &mut String, y: f64, title: &str| {
            let _ = writeln!(
                s,
                r##"<text x="{left}" y="{:.1}" font-weight="bold">node {} · {title}</text>"##,
                y - 5.0,
                xml(&node.node)
            );
            for (t, label) in &time_ticks {
                let tx = x(*t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{tx:.1}" y1="{y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#e4e4e4"/><line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#444"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                    y + panel_h,
                    y + panel_h,
                    y + panel_h + 4.0,
                    y + panel_h + 15.0,
                );
            }
            let _ = writeln!(
                s,
                r##"<rect x="{left}" y="{y:.1}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#444"/><text x="{right_edge:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                y + panel_h + 28.0,
                time_axis
            );
        };
        let y_axis = |s: &mut String, ticks: &[(f64, String)], y_of: &dyn Fn(f64) -> f64| {
            for (v, label) in ticks {
                let ty = y_of(*v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" y1="{ty:.1}" x2="{right_edge:.1}" y2="{ty:.1}" stroke="#eeeeee"/><line x1="{:.1}" y1="{ty:.1}" x2="{left}" y2="{ty:.1}" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                    left - 4.0,
                    left - 6.0,
                    ty + 3.5
                );
            }
        };
        // Throughput.
        let acked_bound = self.bound("acknowledged per s");
        let max_rate = buckets
            .iter()
            .map(|b| b.acked_per_s.max(b.refused_per_s).max(b.polled_per_s))
            .fold(acked_bound.unwrap_or(1.0), f64::max)
            .max(1.0);
        let rate_ticks = ticks(0.0, max_rate, 4);
        let rate_top = rate_ticks.last().copied().unwrap_or(max_rate).max(max_rate);
        let y_rate = |v: f64| y0 + panel_h - panel_h * (v / rate_top);
        frame(s, y0, "produces and polled records per second");
        let labels: Vec<(f64, String)> = rate_ticks
            .iter()
            .map(|&v| (v, format!("{}/s", number(v))))
            .collect();
        y_axis(s, &labels, &y_rate);
        let polls = buckets.iter().any(|b| b.polled_per_s > 0.0);
        let mut legend: Vec<(&str, String)> = Vec::new();
        for (colour, pick, name) in [
            ("#2b7bb9", 0, "acknowledged"),
            ("#d95f02", 1, "not acknowledged"),
            ("#999999", 2, "polled"),
        ] {
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
                r##"<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{}"/>"##,
                pts.join(" ")
            );
            legend.push((colour, name.to_string()));
        }
        if let Some(b) = acked_bound {
            let label = format!("≥ {}/s", number(b));
            bound_line(s, (left, right_edge), y_rate(b), "#2b7bb9", &label, true);
            legend.push(("#2b7bb9", "- - bound (clean time)".into()));
        }
        self.legend(s, right_edge + 8.0, y0 + 10.0, &legend);
        // Latency, log scale.
        let y1 = y0 + panel_h + gap;
        let bounds: Vec<(f64, &str, &str)> = [
            ("produce p50 ms", "#1b9e77", "p50"),
            ("produce p99 ms", "#7570b3", "p99"),
        ]
        .into_iter()
        .filter_map(|(name, colour, short)| Some((self.bound(name)?, colour, short)))
        .collect();
        let max_lat = buckets
            .iter()
            .filter_map(|b| b.latency_ms_p99)
            .chain(bounds.iter().map(|b| b.0))
            .fold(1.0, f64::max);
        let min_lat = buckets
            .iter()
            .filter_map(|b| b.latency_ms_p50)
            .fold(max_lat, f64::min)
            .max(0.01);
        let (lo_dec, hi_dec) = (
            min_lat.log10().floor(),
            max_lat.log10().ceil().max(min_lat.log10().floor() + 1.0),
        );
        let (lo, hi) = (
            lo_dec * std::f64::consts::LN_10,
            hi_dec * std::f64::consts::LN_10,
        );
        let y_lat = |v: f64| y1 + panel_h - panel_h * ((v.max(1e-3).ln() - lo) / (hi - lo));
        frame(s, y1, "produce latency (log scale)");
        let labels: Vec<(f64, String)> = (lo_dec as i32..=hi_dec as i32)
            .map(|d| {
                let v = 10f64.powi(d);
                (v, milliseconds(v))
            })
            .collect();
        y_axis(s, &labels, &y_lat);
        let mut legend: Vec<(&str, String)> = Vec::new();
        for (colour, p99) in [("#1b9e77", false), ("#7570b3", true)] {
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
                r##"<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{}"/>"##,
                pts.join(" ")
            );
            legend.push((colour, if p99 { "p99" } else { "p50" }.into()));
        }
        for (b, colour, short) in &bounds {
            let label = format!("{short} ≤ {}", milliseconds(*b));
            // p99 above its line, p50 below its own: they are often close.
            bound_line(
                s,
                (left, right_edge),
                y_lat(*b),
                colour,
                &label,
                *short == "p99",
            );
        }
        if !bounds.is_empty() {
            legend.push(("#555555", "- - bounds (clean time)".into()));
        }
        self.legend(s, right_edge + 8.0, y1 + 10.0, &legend);
        // A cluster: the partitions this node led, as Metadata named the leaders.
        if self.nodes.iter().all(|n| n.partitions_led.is_empty()) {
            return;
        }
        let y2 = y1 + panel_h + gap;
        let most = self
            .nodes
            .iter()
            .flat_map(|n| n.partitions_led.iter().map(|(_, c)| *c))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let led_ticks = ticks(0.0, most, 4.min(most as usize));
        let led_top = led_ticks.last().copied().unwrap_or(most).max(most);
        let y_led = |v: f64| y2 + panel_h - panel_h * (v / led_top);
        frame(s, y2, "partitions led (as Metadata named the leaders)");
        let labels: Vec<(f64, String)> = led_ticks.iter().map(|&v| (v, number(v))).collect();
        y_axis(s, &labels, &y_led);
        let mut pts: Vec<String> = Vec::new();
        let mut last = 0usize;
        for &(t, count) in &node.partitions_led {
            pts.push(format!("{:.1},{:.1}", x(t), y_led(last as f64)));
            pts.push(format!("{:.1},{:.1}", x(t), y_led(count as f64)));
            last = count;
        }
        pts.push(format!("{:.1},{:.1}", x(t_max), y_led(last as f64)));
        let _ = writeln!(
            s,
            r##"<polyline class="led" fill="none" stroke="#1a9850" stroke-width="1.6" points="{}"/>"##,
            pts.join(" ")
        );
        self.legend(
            s,
            right_edge + 8.0,
            y2 + 10.0,
            &[("#1a9850", "partitions led".into())],
        );
    }

    fn legend(&self, s: &mut String, x: f64, y: f64, items: &[(&str, String)]) {
        for (i, (colour, name)) in items.iter().enumerate() {
            let _ = writeln!(
                s,
                r##"<text x="{x:.1}" y="{:.1}" fill="{colour}">{}</text>"##,
                y + i as f64 * 13.0,
                xml(name)
            );
        }
    }

    /// The bound of the performance figure `name`, if the scenario sets one.
    fn bound(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bound)
    }
}

#[cfg(test)]
mod tests;
