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
//!   pipeline read an aborted or undecided value).
//!
//! Invariant: a pure function of the history; the first example of each class per reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::findings::{Finding, TxnAnomaly};
use crate::history::txn::pipeline_input;
use crate::history::Op;

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
    let mut found: BTreeMap<(usize, TxnAnomaly), String> = BTreeMap::new();
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
            match pipeline_input(name) {
                Some(input) => outputs
                    .entry(input)
                    .or_default()
                    .push((partition, offset, name)),
                None => {
                    inputs.insert(name, (partition, offset));
                }
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
            read(0, &[(0, "a"), (1, "b"), (2, "c")]),
            read(1, &[(0, "y0i0t1/a"), (1, "y0i0t1/b")]),
        ];
        h.extend(ends(&[(0, 2)]));
        assert!(check(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn each_anomaly_is_named() {
        let mut h = vec![
            read(0, &[(0, "a"), (1, "b"), (2, "c"), (3, "d")]),
            // a twice (a zombie's and its successor's), b never, d past the committed
            // offset, e never committed.
            read(
                1,
                &[
                    (0, "y0i0t1/a"),
                    (1, "y0i1t1/a"),
                    (2, "y0i0t2/c"),
                    (3, "y0i0t3/d"),
                    (4, "y0i0t3/e"),
                ],
            ),
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
    fn without_a_drained_reader_nothing_is_judged() {
        let h = vec![read(1, &[(0, "y0i0t1/a"), (1, "y0i1t1/a")])];
        assert!(check(&h).is_empty());
    }
}
