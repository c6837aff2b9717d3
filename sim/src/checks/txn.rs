//! The transactional checker: what the transactional workload's producers did
//! ([`TxnOp`]) against what its `read_committed` readers saw ([`TxnRead`]), for the anomaly
//! classes the analyses of Kafka-compatible systems found:
//!
//! - **aborted read**: a reader got a write of a transaction that aborted;
//! - **dirty read**: a reader got a write of a transaction before its producer asked to commit
//!   it (the last stable offset let it out early);
//! - **lost write**: a reader that drained every partition misses a write of a committed
//!   transaction;
//! - **torn transaction**: such a reader saw some writes of a transaction whose commit had no
//!   definite answer, and not the others (all or none);
//! - **duplicate**: a reader got one write twice (at two offsets);
//! - **non-monotonic read**: a reader's reads of a partition went back (an offset at or below
//!   one it had read);
//! - **phantom**: a reader got a value no transaction wrote.
//!
//! Invariant: a pure function of the history; one finding per anomaly class and reader is
//! enough to fail a run, so each names its first example.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::findings::{Finding, TxnAnomaly};
use crate::history::{Op, TxnOp, TxnOutcome};

/// The transactional findings of a run's history.
pub fn check(history: &[Op]) -> Vec<Finding> {
    let mut by_value: HashMap<&str, &TxnOp> = HashMap::new();
    for op in history {
        if let Op::Txn(t) = op {
            for (_, name) in &t.writes {
                by_value.insert(name.as_str(), t);
            }
        }
    }
    let mut found: BTreeMap<(usize, TxnAnomaly), String> = BTreeMap::new();
    let mut note = |reader: usize, anomaly: TxnAnomaly, detail: String| {
        found.entry((reader, anomaly)).or_insert(detail);
    };
    // Per reader: what it read of each partition (offset → value), and where it had got to.
    let mut seen: BTreeMap<usize, BTreeMap<i32, BTreeMap<i64, String>>> = BTreeMap::new();
    let mut reached: BTreeMap<(usize, i32), i64> = BTreeMap::new();
    let mut drained: BTreeSet<usize> = BTreeSet::new();
    for op in history {
        match op {
            Op::TxnDrained(d) if d.complete => {
                drained.insert(d.reader);
            }
            Op::TxnRead(r) => {
                let at = reached.entry((r.reader, r.partition)).or_insert(-1);
                for (offset, name) in &r.records {
                    if *offset <= *at {
                        note(
                            r.reader,
                            TxnAnomaly::NonMonotonic,
                            format!(
                                "partition {}: {name:?} at offset {offset} after offset {at} was read (read at {:.3} s)",
                                r.partition, r.completed_s
                            ),
                        );
                    }
                    *at = (*at).max(*offset);
                    let values = seen
                        .entry(r.reader)
                        .or_default()
                        .entry(r.partition)
                        .or_default();
                    if let Some((other, _)) = values.iter().find(|(_, v)| *v == name) {
                        if other != offset {
                            note(
                                r.reader,
                                TxnAnomaly::Duplicate,
                                format!(
                                    "partition {}: {name:?} at offsets {other} and {offset}",
                                    r.partition
                                ),
                            );
                        }
                    }
                    values.insert(*offset, name.clone());
                    let Some(t) = by_value.get(name.as_str()) else {
                        note(
                            r.reader,
                            TxnAnomaly::Phantom,
                            format!("partition {}: {name:?} at offset {offset}, written by no transaction", r.partition),
                        );
                        continue;
                    };
                    if t.outcome == TxnOutcome::Aborted {
                        note(
                            r.reader,
                            TxnAnomaly::AbortedRead,
                            format!(
                                "partition {}: {name:?} at offset {offset} (read at {:.3} s) of producer {}'s transaction {}, which aborted",
                                r.partition, r.completed_s, t.producer, t.n
                            ),
                        );
                    }
                    let asked = t.end_invoked_s.unwrap_or(f64::INFINITY);
                    if r.completed_s < asked {
                        note(
                            r.reader,
                            TxnAnomaly::DirtyRead,
                            format!(
                                "partition {}: {name:?} at offset {offset} read at {:.3} s, before producer {}'s transaction {} asked to commit ({})",
                                r.partition,
                                r.completed_s,
                                t.producer,
                                t.n,
                                t.end_invoked_s.map_or("never".to_string(), |s| format!("{s:.3} s"))
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    // A drained reader holds everything committed.
    for &reader in &drained {
        let read: BTreeSet<&str> = seen
            .get(&reader)
            .into_iter()
            .flat_map(|ps| ps.values())
            .flat_map(|vs| vs.values())
            .map(String::as_str)
            .collect();
        for op in history {
            let Op::Txn(t) = op else { continue };
            let present: Vec<&(i32, String)> = t
                .writes
                .iter()
                .filter(|(_, name)| read.contains(name.as_str()))
                .collect();
            match t.outcome {
                TxnOutcome::Committed if present.len() < t.writes.len() => {
                    let missing = t
                        .writes
                        .iter()
                        .find(|(_, name)| !read.contains(name.as_str()))
                        .expect("one is missing");
                    note(
                        reader,
                        TxnAnomaly::LostWrite,
                        format!(
                            "partition {}: {:?} of producer {}'s transaction {}, committed at {:.3} s, never read",
                            missing.0, missing.1, t.producer, t.n, t.completed_s
                        ),
                    );
                }
                TxnOutcome::Unknown if !present.is_empty() && present.len() < t.writes.len() => {
                    note(
                        reader,
                        TxnAnomaly::Torn,
                        format!(
                            "producer {}'s transaction {} (commit asked at {}, no definite answer): read {:?} of {:?}",
                            t.producer,
                            t.n,
                            t.end_invoked_s.map_or("never".to_string(), |s| format!("{s:.3} s")),
                            present.iter().map(|(_, n)| n).collect::<Vec<_>>(),
                            t.writes.iter().map(|(_, n)| n).collect::<Vec<_>>()
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    findings(found)
}

/// The first example of each anomaly class per reader, as findings.
pub(super) fn findings(found: BTreeMap<(usize, TxnAnomaly), String>) -> Vec<Finding> {
    found
        .into_iter()
        .map(|((reader, anomaly), detail)| Finding::Txn {
            anomaly,
            reader,
            detail,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{TxnDrained, TxnRead};

    fn txn(producer: usize, n: u64, writes: &[(i32, &str)], outcome: TxnOutcome, end: f64) -> Op {
        Op::Txn(TxnOp {
            producer,
            n,
            writes: writes.iter().map(|(p, v)| (*p, v.to_string())).collect(),
            reads: Vec::new(),
            invoked_s: end - 1.0,
            end_invoked_s: Some(end),
            completed_s: end + 0.1,
            outcome,
        })
    }

    fn read(partition: i32, at: f64, records: &[(i64, &str)]) -> Op {
        Op::TxnRead(TxnRead {
            reader: 0,
            partition,
            from: records.first().map_or(0, |r| r.0),
            records: records.iter().map(|(o, v)| (*o, v.to_string())).collect(),
            last_stable: records.last().map_or(0, |r| r.0 + 1),
            invoked_s: at - 0.01,
            completed_s: at,
        })
    }

    fn drained() -> Op {
        Op::TxnDrained(TxnDrained {
            reader: 0,
            at_s: 100.0,
            complete: true,
        })
    }

    fn kinds(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(Finding::kind).collect()
    }

    #[test]
    fn a_clean_history_has_no_finding() {
        let h = vec![
            txn(0, 1, &[(0, "a"), (1, "b")], TxnOutcome::Committed, 1.0),
            txn(0, 2, &[(0, "c"), (1, "d")], TxnOutcome::Aborted, 2.0),
            txn(0, 3, &[(0, "e"), (1, "f")], TxnOutcome::Unknown, 3.0),
            read(0, 2.5, &[(0, "a")]),
            read(1, 2.5, &[(0, "b")]),
            drained(),
        ];
        assert!(check(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn each_anomaly_is_named() {
        let h = vec![
            txn(0, 1, &[(0, "a"), (1, "b")], TxnOutcome::Committed, 1.0),
            txn(0, 2, &[(0, "c")], TxnOutcome::Aborted, 2.0),
            txn(0, 3, &[(0, "e"), (1, "f")], TxnOutcome::Unknown, 3.0),
            txn(0, 4, &[(2, "g")], TxnOutcome::Committed, 9.0),
            txn(0, 5, &[(1, "h")], TxnOutcome::Committed, 1.0),
            // a, c (aborted), e (torn: f never read).
            read(0, 4.0, &[(0, "a"), (2, "c"), (3, "e")]),
            // g before its commit was asked for, a value nobody wrote.
            read(2, 5.0, &[(0, "g"), (1, "zz")]),
            // b read twice, at two offsets; then an offset read again (h is never read: lost).
            read(1, 6.0, &[(0, "b"), (1, "b")]),
            read(1, 7.0, &[(1, "b")]),
            drained(),
        ];
        let mut k = kinds(&check(&h));
        k.sort();
        assert_eq!(
            k,
            [
                "txn-aborted-read",
                "txn-dirty-read",
                "txn-duplicate",
                "txn-lost-write",
                "txn-non-monotonic",
                "txn-phantom",
                "txn-torn"
            ]
        );
    }

    #[test]
    fn without_a_drained_reader_nothing_counts_as_lost() {
        let h = vec![txn(0, 1, &[(0, "a")], TxnOutcome::Committed, 1.0)];
        assert!(check(&h).is_empty());
    }
}
