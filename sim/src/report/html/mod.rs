//! The explorable page of one run (`sim run … --html FILE`, `sim real … --html FILE`): one
//! self-contained HTML file — no network, no build step for the reader — with the run's record
//! as JSON inside it and a small viewer (`page.js`) that draws it: a lane per node on a time
//! axis (partitions it leads as Raft leader, its fault bands, its warnings), a row per
//! partition (its Raft leader over time, and the leaders the clients were told of), a row per
//! client (its operations, coloured by outcome), the checker's first finding highlighted with
//! the operations and log lines about it; zoom, filters by node, partition, client and kind,
//! client requests drawn to their broker on demand, and every event linked to its log lines.
//!
//! Invariant: the page is bounded whatever the run's length ([`MAX_OPS`] operations and
//! [`MAX_LOGS`] log lines at most): what lies around the finding is kept whole first, the
//! rest is sampled evenly and counted, and a density row shows every operation's time.

use serde::Serialize;

use super::explain;
use super::{FaultWindow, Report};
use crate::history::{LogLine, Logged, Op, PollResult, SendOutcome};
use crate::outcome::RunReport;

mod select;

/// The most operations a page holds.
pub const MAX_OPS: usize = 15_000;
/// The most log lines a page holds.
pub const MAX_LOGS: usize = 20_000;
/// The most frames of messages between nodes a page holds.
pub const MAX_MESSAGES: usize = 20_000;
/// Seconds around the finding kept whole.
const AROUND_S: f64 = 20.0;
/// How long before a finding a fault that was still on may have begun to be its cause.
const CAUSE_BEFORE_S: f64 = 120.0;
/// A log line's text is cut at this many characters.
const MAX_TEXT: usize = 400;

const TEMPLATE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// One client operation as the page draws it.
#[derive(Debug, Clone, Serialize)]
pub struct OpView {
    pub id: usize,
    pub kind: &'static str,
    pub t0: f64,
    pub t1: f64,
    pub client: String,
    /// The broker it went to, when known.
    pub node: Option<String>,
    pub partition: Option<i32>,
    /// `ok`, `refused`, `unknown` or `info`.
    pub outcome: &'static str,
    /// Its line in the run's trace.
    pub text: String,
}

/// A span of time a node led a partition (from its `leading` / `no longer leading` lines).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Role {
    pub node: String,
    pub partition: String,
    pub term: String,
    pub from_s: f64,
    pub until_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    pub id: usize,
    pub t: f64,
    pub node: String,
    pub level: String,
    pub target: String,
    pub text: String,
    /// The partition it is about (`topic/index`), when its fields name one.
    pub partition: Option<String>,
}

/// A frame of Raft messages one node sent another.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub t: f64,
    pub from: String,
    pub to: String,
    /// Raft messages in the frame.
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingView {
    pub text: String,
    pub kind: String,
    pub from_s: f64,
    pub until_s: f64,
    pub at_s: Option<f64>,
    pub node: Option<String>,
    pub partition: Option<i32>,
    /// The chain `sim explain` prints.
    pub chain: Vec<String>,
    /// The page's ids of the operations about it.
    pub ops: Vec<usize>,
    /// The page's ids of the log lines about it.
    pub logs: Vec<usize>,
}

/// What was left out to keep the page bounded.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Bounds {
    pub ops_total: usize,
    pub ops_kept: usize,
    pub logs_total: usize,
    pub logs_kept: usize,
    pub messages_total: usize,
    pub messages_kept: usize,
    /// Lines not even captured (past the capture's own bound).
    pub logs_not_captured: u64,
    /// The span kept whole.
    pub whole_from_s: f64,
    pub whole_until_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Page<'a> {
    pub scenario: &'a str,
    pub description: &'a str,
    pub seed: u64,
    pub world: &'a str,
    pub outcome: &'a str,
    pub expected: &'a str,
    pub as_expected: bool,
    pub replay: &'a str,
    pub trace_hash: &'a str,
    pub duration_s: f64,
    pub nodes: Vec<String>,
    pub findings: &'a [String],
    pub finding: Option<FindingView>,
    pub faults: &'a [FaultWindow],
    pub roles: Vec<Role>,
    /// `(seconds, partition, leader)`: each time Metadata told the clients of a new leader.
    pub told: Vec<(f64, i32, Option<String>)>,
    pub ops: Vec<OpView>,
    /// Every operation's count per time bucket: `(bucket start, count)`.
    pub density: Vec<(f64, usize)>,
    pub logs: Vec<LogView>,
    /// Frames of Raft messages between nodes (captured in simulation).
    pub messages: Vec<MessageView>,
    pub bounds: Bounds,
}

/// The page of run `r` (its report `report`, what its brokers logged `logged`).
pub fn page(report: &Report, r: &RunReport, logged: &Logged) -> String {
    let model = model(report, r, logged);
    render(&model)
}

/// The page's model: everything it shows, bounded.
pub fn model<'a>(report: &'a Report, r: &RunReport, logged: &Logged) -> Page<'a> {
    let nodes: Vec<String> = report.nodes.iter().map(|n| n.node.clone()).collect();
    let all_ops: Vec<OpView> = r
        .history
        .iter()
        .enumerate()
        .map(|(i, op)| op_view(i, op, r))
        .collect();
    let focus = r.findings.first().map(|f| {
        let mut fo = explain::focus(r, f);
        // The span begins with the fault that was already on the broker it is about (or on
        // the network), when one was: a stall before a silence is the start of the story.
        let target = fo.target.clone().or(fo.subject.broker.clone());
        let cause = report
            .faults
            .iter()
            .filter(|w| w.node.is_none() || w.node == target)
            .filter(|w| {
                (w.from_s as f64) <= fo.until_s
                    && (w.until_s as f64) >= fo.from_s
                    && (w.from_s as f64) >= fo.from_s - CAUSE_BEFORE_S
            })
            .map(|w| w.from_s as f64)
            .fold(f64::INFINITY, f64::min);
        fo.from_s = fo.from_s.min(cause);
        (f, fo)
    });
    let (whole_from, whole_until) = match &focus {
        Some((_, f)) => (
            (f.from_s - AROUND_S).max(0.0),
            f.until_s.max(f.from_s) + AROUND_S,
        ),
        None => (0.0, r.simulated_s),
    };
    let density = select::density(&all_ops, r.simulated_s);
    let must: Vec<usize> = focus
        .as_ref()
        .map(|(_, f)| f.picked.clone())
        .unwrap_or_default();
    let ops = select::ops(all_ops, whole_from, whole_until, MAX_OPS, &must);
    let (frames, lines): (Vec<&LogLine>, Vec<&LogLine>) = logged
        .lines
        .iter()
        .partition(|l| l.target == crate::history::FRAMES_TARGET);
    let roles = roles(lines.iter().copied(), &report.faults, r.simulated_s);
    let logs = select::logs(&lines, whole_from, whole_until, MAX_LOGS);
    let messages = select::messages(&frames, whole_from, whole_until, MAX_MESSAGES);
    let finding = focus.map(|(f, fo)| {
        let window = (fo.from_s - 2.0, fo.until_s + 2.0);
        let about_value = |text: &str| {
            fo.subject
                .value
                .as_ref()
                .is_some_and(|v| text.contains(&format!("{v:?}")))
        };
        let op_ids: Vec<usize> = ops
            .iter()
            .filter(|o| {
                fo.picked.contains(&o.id) || (about_value(&o.text) && o.t0 >= window.0 - AROUND_S)
            })
            .map(|o| o.id)
            .collect();
        let log_ids: Vec<usize> = logs
            .iter()
            .filter(|l| {
                l.t >= window.0
                    && l.t <= window.1
                    && (fo.target.as_deref() == Some(l.node.as_str()) || fo.target.is_none())
                    && (l.level == "WARN"
                        || l.level == "ERROR"
                        || match (fo.subject.partition, &l.partition) {
                            (Some(p), Some(lp)) => lp.ends_with(&format!("/{p}")),
                            _ => false,
                        })
            })
            .take(200)
            .map(|l| l.id)
            .collect();
        FindingView {
            text: f.to_string(),
            kind: f.kind().to_string(),
            from_s: fo.from_s,
            until_s: fo.until_s,
            at_s: fo.subject.at_s,
            node: fo.target.clone().or(fo.subject.broker.clone()),
            partition: fo.subject.partition,
            chain: explain::explain(r),
            ops: op_ids,
            logs: log_ids,
        }
    });
    let bounds = Bounds {
        ops_total: r.history.len(),
        ops_kept: ops.len(),
        logs_total: lines.len(),
        logs_kept: logs.len(),
        messages_total: frames.len(),
        messages_kept: messages.len(),
        logs_not_captured: logged.dropped,
        whole_from_s: whole_from,
        whole_until_s: whole_until,
    };
    Page {
        scenario: &report.scenario,
        description: &report.description,
        seed: report.seed,
        world: &report.world,
        outcome: &report.outcome,
        expected: &report.expected,
        as_expected: report.as_expected,
        replay: &report.replay,
        trace_hash: &report.trace_hash,
        duration_s: r.simulated_s,
        nodes,
        findings: &report.findings,
        finding,
        faults: &report.faults,
        roles,
        told: r
            .leader_changes
            .iter()
            .map(|&(t, p, leader)| (t, p, (leader >= 0).then(|| format!("broker-{leader}"))))
            .collect(),
        ops,
        density,
        logs,
        messages,
        bounds,
    }
}

/// The HTML: the template with its style, script and the model (as JSON, made safe inside a
/// `<script>` element) put in.
pub fn render(model: &Page<'_>) -> String {
    let json = serde_json::to_string(model)
        .unwrap_or_else(|_| "{}".into())
        // Inside <script>, `</` could end the element and `<!--` open a comment.
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--");
    let title = format!("{} seed {} ({})", model.scenario, model.seed, model.world);
    TEMPLATE
        .replace("{{TITLE}}", &escape(&title))
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", &json)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn broker(r: &RunReport, index: usize) -> Option<String> {
    r.brokers.get(index).cloned()
}

/// One operation as the page draws it.
pub fn op_view(id: usize, op: &Op, r: &RunReport) -> OpView {
    use crate::history::{AccessOutcome, CommitOutcome, TxnOutcome};
    let (kind, t0, t1, client, node, partition, outcome): (
        &'static str,
        f64,
        f64,
        String,
        Option<String>,
        Option<i32>,
        &'static str,
    ) = match op {
        Op::Send(s) => (
            "send",
            s.invoked_s,
            s.completed_s,
            format!("producer {}", s.producer),
            broker(r, s.broker),
            Some(s.partition),
            match &s.outcome {
                SendOutcome::Ok(_) => "ok",
                SendOutcome::Failed { definite: true, .. } => "refused",
                _ => "unknown",
            },
        ),
        Op::Poll(p) => (
            "poll",
            p.invoked_s,
            p.completed_s,
            format!("consumer {}", p.consumer),
            broker(r, p.broker),
            Some(p.partition),
            match &p.result {
                PollResult::Records(_) => "ok",
                PollResult::Failed(_) => "refused",
                PollResult::Unknown => "unknown",
            },
        ),
        Op::Admin(a) => (
            "admin",
            a.invoked_s,
            a.completed_s,
            "admin".into(),
            None,
            None,
            if a.error.is_none() { "ok" } else { "refused" },
        ),
        Op::Commit(c) => (
            "commit",
            c.invoked_s,
            c.completed_s,
            format!("member {}", c.member),
            None,
            None,
            match c.outcome {
                CommitOutcome::Ok => "ok",
                CommitOutcome::Failed(_) => "refused",
                CommitOutcome::Unknown => "unknown",
            },
        ),
        Op::Assigned(a) => (
            "group",
            a.at_s,
            a.at_s,
            format!("member {}", a.member),
            None,
            None,
            "info",
        ),
        Op::Joined(j) => (
            "group",
            j.at_s,
            j.at_s,
            format!("member {}", j.member),
            None,
            None,
            "info",
        ),
        Op::Owns(o) => (
            "group",
            o.at_s,
            o.at_s,
            format!("member {}", o.member),
            None,
            None,
            "info",
        ),
        Op::CommittedRead(c) => (
            "group",
            c.invoked_s,
            c.completed_s,
            format!("member {}", c.member),
            None,
            None,
            "ok",
        ),
        Op::Member(m) => (
            "group",
            m.at_s,
            m.at_s,
            format!("member {}", m.member),
            None,
            None,
            "info",
        ),
        Op::Flood(f) => (
            "flood",
            f.at_s,
            f.until_s,
            "flood".into(),
            broker(r, f.broker),
            None,
            "info",
        ),
        Op::Scan(s) => (
            "scan",
            s.started_s,
            s.spans.last().map_or(s.started_s, |sp| sp.2),
            format!("reader {}", s.reader),
            None,
            Some(s.partition),
            if s.completed { "ok" } else { "unknown" },
        ),
        Op::Moving(m) => (
            "admin",
            m.from_s,
            m.to_s,
            "admin".into(),
            None,
            Some(m.partition),
            "info",
        ),
        Op::Txn(t) => (
            "txn",
            t.invoked_s,
            t.completed_s,
            format!("transactional producer {}", t.producer),
            None,
            None,
            match t.outcome {
                TxnOutcome::Committed => "ok",
                TxnOutcome::Aborted => "refused",
                TxnOutcome::Unknown => "unknown",
            },
        ),
        Op::TxnRead(t) => (
            "txn",
            t.invoked_s,
            t.completed_s,
            format!("committed reader {}", t.reader),
            None,
            Some(t.partition),
            "ok",
        ),
        Op::TxnDrained(d) => (
            "txn",
            d.at_s,
            d.at_s,
            format!("committed reader {}", d.reader),
            None,
            None,
            "info",
        ),
        Op::PipelineOffsets(o) => (
            "txn",
            o.at_s,
            o.at_s,
            format!("pipeline worker {}", o.worker),
            None,
            None,
            "info",
        ),
        Op::Access(a) => (
            "access",
            a.invoked_s,
            a.completed_s,
            format!("user {}", a.user),
            broker(r, a.broker),
            None,
            match a.outcome {
                AccessOutcome::Allowed => "ok",
                AccessOutcome::Refused(_) => "refused",
                AccessOutcome::Unknown => "unknown",
            },
        ),
    };
    OpView {
        id,
        kind,
        t0,
        t1: t1.max(t0),
        client,
        node,
        partition,
        outcome,
        text: op.trace_line(),
    }
}

/// The spans each node led each partition, read from its `leading` and `no longer leading`
/// lines; a span still open when the node crashed or stopped ends there, one still open at
/// the end of the run ends with it.
pub fn roles<'a>(
    lines: impl IntoIterator<Item = &'a LogLine>,
    faults: &[FaultWindow],
    end_s: f64,
) -> Vec<Role> {
    use std::collections::BTreeMap;
    let mut open: BTreeMap<(String, String), (f64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut downs: Vec<(f64, &str)> = faults
        .iter()
        .filter(|f| f.kind == "crash" || f.kind == "stop")
        .filter_map(|f| f.node.as_deref().map(|n| (f.from_s as f64, n)))
        .collect();
    downs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut downs = downs.into_iter().peekable();
    let close_node = |open: &mut BTreeMap<(String, String), (f64, String)>,
                      out: &mut Vec<Role>,
                      node: &str,
                      at: f64| {
        let keys: Vec<_> = open.keys().filter(|k| k.0 == node).cloned().collect();
        for k in keys {
            let (from, term) = open.remove(&k).expect("listed");
            out.push(Role {
                node: k.0,
                partition: k.1,
                term,
                from_s: from,
                until_s: at,
            });
        }
    };
    for l in lines {
        while let Some(&(at, node)) = downs.peek() {
            if at > l.at_s {
                break;
            }
            close_node(&mut open, &mut out, node, at);
            downs.next();
        }
        let leading = match l.message.as_str() {
            "leading" => true,
            "no longer leading" => false,
            _ => continue,
        };
        let Some(partition) = partition_of(l) else {
            continue;
        };
        let key = (l.node.clone(), partition);
        let term = l.field("term").unwrap_or("?").to_string();
        if let Some((from, term)) = open.remove(&key) {
            out.push(Role {
                node: key.0.clone(),
                partition: key.1.clone(),
                term,
                from_s: from,
                until_s: l.at_s,
            });
        }
        if leading {
            open.insert(key, (l.at_s, term));
        }
    }
    for (at, node) in downs {
        close_node(&mut open, &mut out, node, at);
    }
    for ((node, partition), (from, term)) in open {
        out.push(Role {
            node,
            partition,
            term,
            from_s: from,
            until_s: end_s.max(from),
        });
    }
    out.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));
    out
}

/// `topic/index` when a line's fields name a partition.
fn partition_of(l: &LogLine) -> Option<String> {
    let topic = l.field("topic")?;
    let index = l.field("partition")?;
    Some(format!("{topic}/{index}"))
}

/// A log line as the page shows it.
fn log_view(id: usize, l: &LogLine) -> LogView {
    let mut text = l.message.clone();
    for (k, v) in &l.fields {
        text.push_str(&format!(" {k}={v}"));
    }
    if text.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    LogView {
        id,
        t: l.at_s,
        node: l.node.clone(),
        level: l.level.clone(),
        target: l.target.clone(),
        text,
        partition: partition_of(l),
    }
}

#[cfg(test)]
mod tests;
