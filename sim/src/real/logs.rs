//! A twin run's broker log lines, read back from their files (`<run dir>/<broker>.log`, the
//! broker's own format: `2026-12-01T04:10:00.123456Z  INFO target: message key=value …`) and
//! placed on the run's time axis, for the explorable page — what the simulated run captures
//! from its tracing events. Lines that are not of that format (a panic's message) go with the
//! line before them; past [`MAX_LINES`] lines are counted, not kept.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::history::{LogLine, Logged};

/// The most lines kept of one run.
pub const MAX_LINES: usize = 400_000;

/// The lines of each broker of `names`, in time order, their times counted from `started_at`.
pub fn read(dir: &Path, names: &[String], started_at: SystemTime) -> Logged {
    let start = started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut logged = Logged::default();
    for name in names {
        let Ok(file) = std::fs::File::open(dir.join(format!("{name}.log"))) else {
            continue;
        };
        // Read a line at a time: a long run's log is not held whole.
        for raw in std::io::BufRead::lines(std::io::BufReader::new(file)) {
            let Ok(raw) = raw else {
                break;
            };
            let raw = raw.as_str();
            match parse(raw, name, start) {
                Some(line) if logged.lines.len() < MAX_LINES => logged.lines.push(line),
                Some(_) => logged.dropped += 1,
                None => {
                    if let Some(last) = logged.lines.last_mut().filter(|l| l.node == *name) {
                        if last.message.len() < 2_000 {
                            last.message.push(' ');
                            last.message.push_str(raw.trim());
                        }
                    }
                }
            }
        }
    }
    logged.lines.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    logged
}

/// One line of the broker's format; `None` for any other.
pub fn parse(raw: &str, node: &str, start_s: f64) -> Option<LogLine> {
    let raw = raw.trim_end();
    let (stamp, rest) = raw.split_once(' ')?;
    let at = epoch_seconds(stamp)?;
    let rest = rest.trim_start();
    let (level, rest) = rest.split_once(' ')?;
    if !matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") {
        return None;
    }
    let rest = rest.trim_start();
    // Spans first (`conn{peer=…}:`), then the target (`broker::server:`).
    let mut rest = rest;
    let target = loop {
        let (head, tail) = rest.split_once(": ")?;
        if head.contains('{') || head.contains(' ') {
            rest = tail;
            continue;
        }
        rest = tail;
        break head.to_string();
    };
    let (message, fields) = split_fields(rest);
    Some(LogLine {
        at_s: at - start_s,
        node: node.to_string(),
        level: level.to_string(),
        target,
        message,
        fields,
    })
}

/// The message, and the `key=value` fields after it (a value runs to the next ` key=`).
fn split_fields(text: &str) -> (String, Vec<(String, String)>) {
    let starts_field = |w: &str| {
        w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
    };
    let words: Vec<&str> = text.split(' ').collect();
    let first = words
        .iter()
        .position(|w| starts_field(w))
        .unwrap_or(words.len());
    let message = words[..first].join(" ");
    let mut fields: Vec<(String, String)> = Vec::new();
    for w in &words[first..] {
        match (starts_field(w), fields.last_mut()) {
            (true, _) | (false, None) => {
                let (k, v) = w.split_once('=').unwrap_or((w, ""));
                fields.push((k.to_string(), v.to_string()));
            }
            (false, Some(last)) => {
                last.1.push(' ');
                last.1.push_str(w);
            }
        }
    }
    (message, fields)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` as seconds since the epoch.
fn epoch_seconds(stamp: &str) -> Option<f64> {
    let s = stamp.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from 1970-01-01 of a proleptic Gregorian date.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brokers_lines_are_read_with_their_fields_and_time() {
        let l = parse(
            "2026-12-01T04:10:02.500000Z  INFO broker::replication::node::ticks: leading topic=workload partition=0 term=2",
            "broker-1",
            epoch_seconds("2026-12-01T04:10:00Z").unwrap(),
        )
        .unwrap();
        assert_eq!(l.at_s, 2.5);
        assert_eq!((l.level.as_str(), l.message.as_str()), ("INFO", "leading"));
        assert_eq!(l.target, "broker::replication::node::ticks");
        assert_eq!(
            (l.field("topic"), l.field("partition"), l.field("term")),
            (Some("workload"), Some("0"), Some("2"))
        );
        let l = parse(
            "2026-12-01T04:10:03Z  WARN conn{peer=127.0.0.1:4}: broker::server: a slow request took long api=Produce why=\"a b\"",
            "broker-2",
            0.0,
        )
        .unwrap();
        assert_eq!(l.message, "a slow request took long");
        assert_eq!(l.field("why"), Some("\"a b\""));
        assert!(parse("thread 'x' panicked at src/a.rs", "b", 0.0).is_none());
        assert_eq!(epoch_seconds("1970-01-02T00:00:01Z"), Some(86_401.0));
        assert_eq!(epoch_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
    }
}
