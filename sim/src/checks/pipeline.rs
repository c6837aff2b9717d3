//! The exactly-once check of the consume-transform-produce pipeline
//! ([`crate::workload::pipeline`]): what a `read_committed` reader that drained every partition
//! saw of the input and of the pipeline's output, held against the offsets each worker's group
//! had committed at the end ([`PipelineOffsets`]).
//!
//! - **duplicate**: one input value's output appears twice in the committed output (two
//!   transactions — a zombie's and its successor's, or one retried after a lost answer — both
//!   committed);
//! - **skipped**: the committed offsets passed an input value whose output is not in the
//!   committed output (offsets committed without their transaction's writes);
//! - **inconsistent offsets**: an output is committed while the committed offsets stop at or
//!   before its input (writes committed without their transaction's offsets);
//! - **uncommitted input**: an output was made from a value the reader never saw committed (the
//!   pipeline read an aborted or undecided value);
//! - **G1c** (circular information flow): transactions that each read a write of the next, in a
//!   cycle — at `read_committed` each must have committed before the next read it, so no cycle
//!   can form. (Cycles through write order alone, G0, are not anomalies in Kafka's model: each
//!   partition orders the writes of concurrent transactions on its own.)
//!
//! Invariant: a pure function of the history; the first example of each class per reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::findings::{Finding, TxnAnomaly};
use crate::history::{Op, TxnOp, TxnOutcome};

/// The pipeline's findings in a run's history.
pub fn check(history: &[Op]) -> Vec<Finding> {
    let drained: BTreeSet<usize> = history
        .iter()
        .filter_map(|op| match op {
            Op::TxnDrained(d) if d.complete => Some(d.reader),
            _ => None,
        })
        .collect();
    let finals: Vec<_> = history
        .iter()
        .filter_map(|op| match op {
            Op::PipelineOffsets(o) => Some(o),
            _ => None,
        })
        .collect();
    // What each output was made from.
    let mut source: HashMap<&str, &str> = HashMap::new();
    for op in history {
        if let Op::Txn(t) = op {
            for ((_, out), input) in t.writes.iter().zip(&t.reads) {
                source.insert(out.as_str(), input.as_str());
            }
        }
    }
    let mut found: BTreeMap<(usize, TxnAnomaly), String> = BTreeMap::new();
    if let Some(cycle) = information_cycle(history) {
        found.insert((0, TxnAnomaly::G1c), cycle);
    }
    for &reader in &drained {
        // What the reader saw, once per position: (partition, offset) → name.
        let mut seen: BTreeMap<(i32, i64), &str> = BTreeMap::new();
        for op in history {
            if let Op::TxnRead(r) = op {
                if r.reader == reader {
                    for (offset, name) in &r.records {
                        seen.insert((r.partition, *offset), name);
                    }
                }
            }
        }
        let mut inputs: HashMap<&str, (i32, i64)> = HashMap::new();
        let mut outputs: BTreeMap<&str, Vec<(i32, i64, &str)>> = BTreeMap::new();
        for (&(partition, offset), &name) in &seen {
            // Every value may be an input (with feedback, outputs are read again).
            inputs.insert(name, (partition, offset));
            if let Some(input) = source.get(name) {
                outputs
                    .entry(input)
                    .or_default()
                    .push((partition, offset, name));
            }
        }
        let mut note = |anomaly: TxnAnomaly, detail: String| {
            found.entry((reader, anomaly)).or_insert(detail);
        };
        for (input, outs) in &outputs {
            if outs.len() > 1 {
                note(
                    TxnAnomaly::PipelineDuplicate,
                    format!("input {input:?} moved twice: {outs:?} (partition, offset, output)"),
                );
            }
            if !inputs.contains_key(input) {
                note(
                    TxnAnomaly::PipelineUncommittedInput,
                    format!("{outs:?} (partition, offset, output) made from {input:?}, which the reader never saw committed"),
                );
            }
        }
        for f in &finals {
            for &(partition, committed) in &f.offsets {
                let committed = committed.max(0);
                for (input, &(p, offset)) in &inputs {
                    if p != partition {
                        continue;
                    }
                    let moved = outputs.get(input);
                    if offset < committed && moved.is_none() {
                        note(
                            TxnAnomaly::PipelineSkipped,
                            format!("worker {}: input {input:?} at {partition}/{offset} is below the committed offset {committed}, and no committed output holds it", f.worker),
                        );
                    }
                    if let Some(outs) = moved.filter(|_| offset >= committed) {
                        note(
                            TxnAnomaly::PipelineOffsets,
                            format!("worker {}: input {input:?} at {partition}/{offset} was moved ({outs:?}), but the committed offset is {committed}", f.worker),
                        );
                    }
                }
            }
        }
    }
    super::txn::findings(found)
}

/// A cycle of transactions (committed, or of unknown outcome) each reading a write of the
/// next, if there is one: named transaction by transaction.
fn information_cycle(history: &[Op]) -> Option<String> {
    let txns: Vec<&TxnOp> = history
        .iter()
        .filter_map(|op| match op {
            Op::Txn(t) if t.outcome != TxnOutcome::Aborted => Some(t),
            _ => None,
        })
        .collect();
    let mut writer: HashMap<&str, usize> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for (_, name) in &t.writes {
            writer.insert(name.as_str(), i);
        }
    }
    // Edges: the transaction that wrote a value → the one that read it.
    let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); txns.len()];
    for (i, t) in txns.iter().enumerate() {
        for read in &t.reads {
            if let Some(&w) = writer.get(read.as_str()) {
                next[w].insert(i);
            }
        }
    }
    // Depth-first, without recursion: 0 unseen, 1 on the path, 2 done.
    let mut state = vec![0u8; txns.len()];
    for start in 0..txns.len() {
        if state[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, Vec<usize>)> =
            vec![(start, next[start].iter().copied().collect())];
        state[start] = 1;
        while let Some((node, pending)) = path.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(to) if state[to] == 1 => {
                    let at = path
                        .iter()
                        .position(|(n, _)| *n == to)
                        .expect("on the path");
                    let names: Vec<String> = path[at..]
                        .iter()
                        .map(|(n, _)| {
                            format!(
                                "producer {}'s transaction {}",
                                txns[*n].producer, txns[*n].n
                            )
                        })
                        .collect();
                    return Some(format!(
                        "{} (each read a write of the next, the last of the first)",
                        names.join(" → ")
                    ));
                }
                Some(to) if state[to] == 0 => {
                    state[to] = 1;
                    path.push((to, next[to].iter().copied().collect()));
                }
                Some(_) => {}
                None => {
                    state[node] = 2;
                    path.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{PipelineOffsets, TxnDrained, TxnRead};

    fn read(partition: i32, records: &[(i64, &str)]) -> Op {
        Op::TxnRead(TxnRead {
            reader: 0,
            partition,
            from: 0,
            records: records.iter().map(|(o, v)| (*o, v.to_string())).collect(),
            last_stable: 100,
            invoked_s: 1.0,
            completed_s: 1.1,
        })
    }

    /// A committed transaction of `producer` moving `moves` (input, output).
    fn moved(producer: usize, n: u64, moves: &[(&str, &str)]) -> Op {
        Op::Txn(TxnOp {
            producer,
            n,
            writes: moves.iter().map(|(_, o)| (1, o.to_string())).collect(),
            reads: moves.iter().map(|(i, _)| i.to_string()).collect(),
            invoked_s: 1.0,
            end_invoked_s: Some(1.5),
            completed_s: 2.0,
            outcome: TxnOutcome::Committed,
        })
    }

    fn ends(offsets: &[(i32, i64)]) -> Vec<Op> {
        vec![
            Op::PipelineOffsets(PipelineOffsets {
                worker: 0,
                offsets: offsets.to_vec(),
                at_s: 99.0,
            }),
            Op::TxnDrained(TxnDrained {
                reader: 0,
                at_s: 100.0,
                complete: true,
            }),
        ]
    }

    fn kinds(h: &[Op]) -> Vec<&'static str> {
        let mut k: Vec<_> = check(h).iter().map(Finding::kind).collect();
        k.sort();
        k
    }

    #[test]
    fn every_input_below_the_committed_offset_moved_once_is_clean() {
        let mut h = vec![
            moved(9, 1, &[("a", "y1"), ("b", "y2")]),
            read(0, &[(0, "a"), (1, "b"), (2, "c")]),
            read(1, &[(0, "y1"), (1, "y2")]),
        ];
        h.extend(ends(&[(0, 2)]));
        assert!(check(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn each_anomaly_is_named() {
        let mut h = vec![
            // a twice (a zombie's and its successor's), b never, d past the committed
            // offset, e never committed.
            moved(9, 1, &[("a", "y1")]),
            moved(10, 1, &[("a", "y2")]),
            moved(9, 2, &[("c", "y3")]),
            moved(9, 3, &[("d", "y4"), ("e", "y5")]),
            read(0, &[(0, "a"), (1, "b"), (2, "c"), (3, "d")]),
            read(1, &[(0, "y1"), (1, "y2"), (2, "y3"), (3, "y4"), (4, "y5")]),
        ];
        h.extend(ends(&[(0, 3)]));
        assert_eq!(
            kinds(&h),
            [
                "pipeline-duplicate",
                "pipeline-inconsistent-offsets",
                "pipeline-skipped",
                "pipeline-uncommitted-input"
            ]
        );
    }

    #[test]
    fn transactions_reading_each_others_writes_in_a_cycle_are_g1c() {
        // 9#1 read 11#1's write, 11#1 read 10#1's, 10#1 read 9#1's.
        let h = vec![
            moved(9, 1, &[("z", "u")]),
            moved(10, 1, &[("u", "v")]),
            moved(11, 1, &[("v", "z")]),
            moved(12, 1, &[("v", "w")]),
        ];
        let found = check(&h);
        assert_eq!(kinds(&h), ["txn-g1c"]);
        let Finding::Txn { detail, .. } = &found[0] else {
            panic!("{found:?}")
        };
        for t in ["producer 9's", "producer 10's", "producer 11's"] {
            assert!(detail.contains(t), "{detail}");
        }
        assert!(!detail.contains("producer 12's"), "{detail}");
        // A chain is no cycle.
        assert!(check(&h[..2]).is_empty());
    }

    #[test]
    fn without_a_drained_reader_nothing_is_judged() {
        let h = vec![
            moved(9, 1, &[("a", "y1")]),
            moved(10, 1, &[("a", "y2")]),
            read(1, &[(0, "y1"), (1, "y2")]),
        ];
        assert!(check(&h).is_empty());
    }
}
