//! What a reader that fell far behind on a compacted topic is owed (Kafka's guarantee, and the
//! reason for `delete.retention.ms`): reading a partition from its start, it sees every key's
//! latest record — its latest value always, its tombstone unless the tombstone's horizon (its
//! write plus `delete.retention.ms`, at the earliest) had passed when the read went by it.
//!
//! For each read from the start that reached its end ([`Scan`]), and each key of its partition:
//! the key's latest record below where the read stopped (an acknowledged acks=all write, or a
//! record some read found at that offset) must have been read, or a later one of the key.
//! A key with a record the read might not know of is left alone: a write whose outcome is
//! unknown and no read found (it may lie anywhere), or a record of the key above where the read
//! stopped (it may have replaced the latest before the read went by).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::findings::Finding;
use crate::history::{value_name, FinalRead, Op, Scan, SendOutcome};
use crate::workload::keyed;

/// One record of a key, at a known offset.
#[derive(Debug, Clone)]
struct Known {
    offset: i64,
    name: String,
    tombstone: bool,
}

/// A partition's keys: their records at known offsets, and the keys with a record that may be
/// in the log at an unknown offset.
#[derive(Debug, Default)]
struct Keys {
    known: BTreeMap<String, BTreeMap<i64, Known>>,
    uncertain: BTreeSet<String>,
}

/// Every key a far-behind reader's read from the start missed.
pub fn check(history: &[Op], log: &FinalRead, retention_s: f64) -> Vec<Finding> {
    let scans: Vec<&Scan> = history
        .iter()
        .filter_map(|op| match op {
            Op::Scan(s) if s.completed => Some(s),
            _ => None,
        })
        .collect();
    if scans.is_empty() {
        return Vec::new();
    }
    // Where each name was read, by any read: those records are in the log at that offset.
    let mut found: HashMap<(i32, String), i64> = HashMap::new();
    for (&p, records) in log {
        for (o, v) in records {
            found.insert((p, value_name(v)), *o);
        }
    }
    for s in &scans {
        for (o, name) in &s.records {
            found.insert((s.partition, name.clone()), *o);
        }
    }
    let mut partitions: BTreeMap<i32, Keys> = BTreeMap::new();
    let mut sent_s: HashMap<String, f64> = HashMap::new();
    for op in history {
        let Op::Send(s) = op else { continue };
        let name = value_name(&s.value);
        let Some((key, tombstone)) = keyed::parse(&name) else {
            continue;
        };
        let at = sent_s.entry(name.clone()).or_insert(s.invoked_s);
        *at = at.min(s.invoked_s);
        let keys = partitions.entry(s.partition).or_default();
        let offset = match s.outcome {
            SendOutcome::Ok(o) if s.acks == -1 => Some(o),
            ref other if other.definitely_failed() => continue,
            _ => found.get(&(s.partition, name.clone())).copied(),
        };
        match offset {
            Some(offset) => {
                keys.known.entry(key.to_string()).or_default().insert(
                    offset,
                    Known {
                        offset,
                        name: name.clone(),
                        tombstone,
                    },
                );
            }
            None => {
                keys.uncertain.insert(key.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for s in scans {
        let Some(keys) = partitions.get(&s.partition) else {
            continue;
        };
        let stop = s.spans.last().map_or(0, |(_, to, _)| *to);
        let mut seen: HashMap<&str, i64> = HashMap::new();
        for (o, name) in &s.records {
            if let Some((key, _)) = keyed::parse(name) {
                let at = seen.entry(key).or_insert(*o);
                *at = (*at).max(*o);
            }
        }
        for (key, records) in &keys.known {
            if keys.uncertain.contains(key) || records.range(stop..).next().is_some() {
                continue;
            }
            let Some((_, latest)) = records.range(..stop).next_back() else {
                continue;
            };
            if seen.get(key.as_str()).is_some_and(|o| *o >= latest.offset) {
                continue;
            }
            let read_at_s = s.read_at(latest.offset).unwrap_or(s.started_s);
            let horizon_s = latest
                .tombstone
                .then(|| sent_s.get(&latest.name).copied().unwrap_or(0.0) + retention_s);
            if horizon_s.is_some_and(|h| read_at_s >= h) {
                continue;
            }
            out.push(Finding::ScanMissed {
                reader: s.reader,
                partition: s.partition,
                started_s: s.started_s,
                key: key.clone(),
                latest: (latest.offset, latest.name.clone()),
                read_at_s,
                horizon_s,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::history::Send;

    fn send(name: &str, at_s: f64, outcome: SendOutcome) -> Op {
        Op::Send(Send {
            producer: 0,
            partition: 0,
            value: Bytes::from(name.to_string()),
            idempotence: None,
            attempt: 1,
            acks: -1,
            broker: 0,
            invoked_s: at_s,
            completed_s: at_s,
            outcome,
        })
    }

    /// A completed read of partition 0 up to `end`, passing everything at `at_s`.
    fn scan(at_s: f64, end: i64, records: &[(i64, &str)]) -> Op {
        Op::Scan(Scan {
            reader: 0,
            partition: 0,
            started_s: at_s,
            end,
            spans: vec![(0, end, at_s)],
            records: records.iter().map(|(o, n)| (*o, n.to_string())).collect(),
            completed: true,
        })
    }

    fn kinds(history: &[Op]) -> Vec<String> {
        check(history, &FinalRead::new(), 10.0)
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn a_read_with_every_latest_record_passes() {
        let mut h = vec![
            send("p0-0@k1", 0.0, SendOutcome::Ok(0)),
            send("p0-1@k1", 1.0, SendOutcome::Ok(1)),
            send("p0-2@k2!", 2.0, SendOutcome::Ok(2)),
        ];
        h.push(scan(5.0, 3, &[(1, "p0-1@k1"), (2, "p0-2@k2!")]));
        assert!(kinds(&h).is_empty());
    }

    #[test]
    fn a_latest_value_missed_is_found_and_a_tombstone_only_before_its_horizon() {
        let h = vec![
            send("p0-0@k1", 0.0, SendOutcome::Ok(0)),
            send("p0-1@k2!", 2.0, SendOutcome::Ok(1)),
            scan(5.0, 2, &[(1, "p0-1@k2!")]),
        ];
        let f = kinds(&h);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("\"p0-0@k1\""), "{f:?}");
        // The tombstone, missed 5 s after it was written: 10 s of retention had not passed.
        let early = vec![send("p0-0@k1!", 0.0, SendOutcome::Ok(0)), scan(5.0, 1, &[])];
        assert_eq!(kinds(&early).len(), 1);
        // Missed 12 s after: it may have expired.
        let late = vec![
            send("p0-0@k1!", 0.0, SendOutcome::Ok(0)),
            scan(12.0, 1, &[]),
        ];
        assert!(kinds(&late).is_empty());
    }

    #[test]
    fn what_the_read_cannot_know_of_leaves_a_key_alone() {
        // A later record of the key above where the read stopped may have replaced the latest.
        let h = vec![
            send("p0-0@k1", 0.0, SendOutcome::Ok(0)),
            send("p0-5@k1", 6.0, SendOutcome::Ok(5)),
            scan(5.0, 2, &[]),
        ];
        assert!(kinds(&h).is_empty());
        // A write of the key whose outcome is unknown may lie anywhere.
        let h = vec![
            send("p0-0@k1", 0.0, SendOutcome::Ok(0)),
            send("p0-1@k1!", 1.0, SendOutcome::Unknown),
            scan(5.0, 2, &[]),
        ];
        assert!(kinds(&h).is_empty());
        // An older value read, the latest (a later value) missed: found.
        let h = vec![
            send("p0-0@k1", 0.0, SendOutcome::Ok(0)),
            send("p0-1@k1", 1.0, SendOutcome::Ok(1)),
            scan(5.0, 2, &[(0, "p0-0@k1")]),
        ];
        assert_eq!(kinds(&h).len(), 1);
        // A read cut short is not judged.
        let mut cut = scan(5.0, 2, &[]);
        if let Op::Scan(s) = &mut cut {
            s.completed = false;
        }
        let h = vec![send("p0-0@k1", 0.0, SendOutcome::Ok(0)), cut];
        assert!(kinds(&h).is_empty());
    }
}
