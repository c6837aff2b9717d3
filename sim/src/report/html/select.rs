//! What of a long run the page keeps: everything within the span around the finding, and an
//! even sample of the rest, up to a bound.

use super::{log_view, LogView, MessageView, OpView};
use crate::history::LogLine;

/// Buckets of the density row.
const DENSITY_BUCKETS: usize = 300;

/// Every operation's count per bucket of the run: `(bucket start, count)`.
pub fn density(ops: &[OpView], end_s: f64) -> Vec<(f64, usize)> {
    let width = (end_s / DENSITY_BUCKETS as f64).max(0.001);
    let mut counts = vec![0usize; DENSITY_BUCKETS + 1];
    for o in ops {
        let i = ((o.t0 / width) as usize).min(DENSITY_BUCKETS);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| (i as f64 * width, n))
        .collect()
}

/// At most `max` of `items` (in order), those `keep` says first, then an even sample of the
/// rest; the indexes kept, in order.
fn bounded(n: usize, keep: impl Fn(usize) -> bool, max: usize) -> Vec<usize> {
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| keep(i));
    let mut kept: Vec<usize> = if first.len() > max {
        // Even the span around the finding is too long: its middle is sampled too.
        sample(&first, max)
    } else {
        first
    };
    let room = max - kept.len();
    kept.extend(sample(&rest, room));
    kept.sort_unstable();
    kept
}

/// `room` of `items`, evenly spaced (all of them when they fit).
fn sample(items: &[usize], room: usize) -> Vec<usize> {
    if items.len() <= room {
        return items.to_vec();
    }
    if room == 0 {
        return Vec::new();
    }
    (0..room).map(|k| items[k * items.len() / room]).collect()
}

/// The operations kept: those overlapping `[from, until]` first; those of `must` always (a
/// few: the finding's own).
pub fn ops(all: Vec<OpView>, from: f64, until: f64, max: usize, must: &[usize]) -> Vec<OpView> {
    let must: Vec<usize> = must
        .iter()
        .copied()
        .filter(|&i| i < all.len())
        .take(100)
        .collect();
    let kept = bounded(
        all.len(),
        |i| all[i].t1 >= from && all[i].t0 <= until,
        max - must.len().min(max),
    );
    let mut keep = vec![false; all.len()];
    for i in kept.into_iter().chain(must) {
        keep[i] = true;
    }
    all.into_iter()
        .zip(keep)
        .filter_map(|(o, k)| k.then_some(o))
        .collect()
}

/// The log lines kept, numbered in order: a node's changes of role and every warning or
/// error first, then those within `[from, until]`, then a sample of the rest.
pub fn logs(lines: &[&LogLine], from: f64, until: f64, max: usize) -> Vec<LogView> {
    let important = |l: &&LogLine| {
        l.message == "leading"
            || l.message == "no longer leading"
            || l.level == "WARN"
            || l.level == "ERROR"
    };
    let important: Vec<usize> = (0..lines.len()).filter(|&i| important(&lines[i])).collect();
    let first = sample(&important, max);
    let room = max - first.len().min(max);
    let taken: std::collections::HashSet<usize> = first.iter().copied().collect();
    let others: Vec<usize> = (0..lines.len()).filter(|i| !taken.contains(i)).collect();
    let around: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&i| lines[i].at_s >= from && lines[i].at_s <= until)
        .collect();
    let mut kept = first;
    if around.len() >= room {
        kept.extend(sample(&around, room));
    } else {
        let rest: Vec<usize> = others
            .into_iter()
            .filter(|&i| !(lines[i].at_s >= from && lines[i].at_s <= until))
            .collect();
        kept.extend(around.iter().copied());
        kept.extend(sample(&rest, room - around.len()));
    }
    kept.sort_unstable();
    kept.dedup();
    kept.into_iter()
        .enumerate()
        .map(|(id, i)| log_view(id, lines[i]))
        .collect()
}

/// The frames kept of those nodes sent each other: those within `[from, until]` first.
pub fn messages(frames: &[&LogLine], from: f64, until: f64, max: usize) -> Vec<MessageView> {
    let kept = bounded(
        frames.len(),
        |i| frames[i].at_s >= from && frames[i].at_s <= until,
        max,
    );
    let number = |l: &LogLine, name: &str| {
        l.field(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    kept.into_iter()
        .map(|i| {
            let l = frames[i];
            MessageView {
                t: l.at_s,
                from: l.node.clone(),
                to: format!("broker-{}", l.field("peer").unwrap_or("?")),
                messages: number(l, "messages"),
                bytes: number(l, "bytes"),
            }
        })
        .collect()
}
