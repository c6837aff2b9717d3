//! What a move costs in availability (`[expect] writes_during_moves_s`): while a partition is
//! listed as moving, it keeps taking acknowledged writes, within the bound of the move's start
//! and of each write before. Joint consensus keeps a move safe whenever its new replicas are
//! made voters, but a new voter that has not caught up can leave the partition without a
//! majority that can commit — of the old replicas and of the new — until it has: the broker
//! adds new replicas as learners and makes them voters only once they have caught up. A gap
//! that overlaps a fault (from its start until the bound after it healed) is the fault's.

use crate::findings::Finding;
use crate::history::Op;
use crate::scenario::Fault;

/// For each partition's stretch of time listed as moving, its longest time without an
/// acknowledged write — from the stretch's start and to its end — that no fault explains;
/// longer than `bound_s` is a finding. Partitions that took no write before are not judged.
pub fn writes_flow_during_moves(history: &[Op], faults: &[Fault], bound_s: f64) -> Vec<Finding> {
    let acks = super::stops::acks_by_partition(history);
    let explained: Vec<(f64, f64)> = faults
        .iter()
        .map(|f| (f.at_s() as f64, f.healed_at_s() as f64 + bound_s))
        .collect();
    let mut out = Vec::new();
    for op in history {
        let Op::Moving(m) = op else { continue };
        let Some(times) = acks.get(&m.partition) else {
            continue;
        };
        if times.first().is_none_or(|&t| t >= m.from_s) {
            continue;
        }
        let worst = super::stops::longest_gap(times, (m.from_s, m.to_s), |gap, since| {
            !explained
                .iter()
                .any(|&(from, to)| since < to && since + gap > from)
        });
        if let Some((gap_s, since_s)) = worst.filter(|(gap, _)| *gap > bound_s) {
            out.push(Finding::MoveStalled {
                partition: m.partition,
                moving: (m.from_s, m.to_s),
                gap_s,
                since_s,
                bound_s,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::stops::tests::ack;
    use crate::history::Moving;

    fn moving(partition: i32, from_s: f64, to_s: f64) -> Op {
        Op::Moving(Moving {
            partition,
            from_s,
            to_s,
            ended: true,
        })
    }

    #[test]
    fn a_move_that_stops_writes_is_found_unless_a_fault_explains_it() {
        // Partition 0 takes a write every 100 ms but none from 30 s to 40 s; partition 1
        // takes one throughout.
        let mut h: Vec<Op> = (0..800)
            .map(|i| i as f64 * 0.1)
            .filter(|t| !(30.0..40.0).contains(t))
            .map(|t| ack(0, t))
            .collect();
        h.extend((0..800).map(|i| ack(1, i as f64 * 0.1)));
        h.push(moving(0, 28.0, 45.0));
        h.push(moving(1, 28.0, 45.0));
        let f = writes_flow_during_moves(&h, &[], 5.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind(), "move-stalled");
        assert!(f[0].to_string().contains("partition 0"), "{}", f[0]);
        // Outside the move, the same gap says nothing.
        let mut outside = h.clone();
        outside.retain(|op| !matches!(op, Op::Moving(_)));
        outside.push(moving(0, 41.0, 60.0));
        assert!(writes_flow_during_moves(&outside, &[], 5.0).is_empty());
        // A broker killed at 31 s explains it.
        let crash = Fault::Crash {
            at_s: 31,
            torn: false,
            wipe: false,
            in_joint: false,
            while_cleaning: false,
            at_point: None,
            hold_ms: None,
            down_s: 3,
            node: None,
        };
        assert!(writes_flow_during_moves(&h, &[crash], 5.0).is_empty());
    }
}
