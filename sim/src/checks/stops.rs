//! Planned stops (`stop`, SIGTERM): a broker shut down gracefully hands its leaderships over
//! first (Kafka's controlled shutdown), so while it stops and stays down every partition takes
//! acknowledged writes again within [`STOP_STALL_MAX_S`] — well below an election timeout. A
//! broker that stops still leading its partitions leaves their writes waiting for an election
//! (1–2 s at the default Raft tick) and a metadata refresh. A stop's window is not excused as a
//! fault's is: it is planned, and the cluster is healthy throughout.

use std::collections::BTreeMap;

use crate::findings::Finding;
use crate::history::{Op, SendOutcome};
use crate::scenario::Fault;

/// The longest a partition may go without an acknowledged write while a broker stops.
pub const STOP_STALL_MAX_S: f64 = 1.0;

/// The longest stretch of time without an acknowledgement from `from` to `to` — between
/// `from`, the acknowledgements at `times` inside, and `to` — among those `counts(gap, since)`
/// keeps: `(its length, its start)`.
pub(crate) fn longest_gap(
    times: &[f64],
    (from, to): (f64, f64),
    counts: impl Fn(f64, f64) -> bool,
) -> Option<(f64, f64)> {
    let inside = times.iter().copied().filter(|&t| t > from && t < to);
    let edges: Vec<f64> = std::iter::once(from)
        .chain(inside)
        .chain(std::iter::once(to))
        .collect();
    edges
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .filter(|&(gap, since)| counts(gap, since))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// When each partition's writes were acknowledged, in time order.
pub(crate) fn acks_by_partition(history: &[Op]) -> BTreeMap<i32, Vec<f64>> {
    let mut acks: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
    for op in history {
        if let Op::Send(s) = op {
            if matches!(s.outcome, SendOutcome::Ok(_)) {
                acks.entry(s.partition).or_default().push(s.completed_s);
            }
        }
    }
    for times in acks.values_mut() {
        times.sort_by(f64::total_cmp);
    }
    acks
}

/// For each planned stop that no other fault overlaps, each partition's longest time without an
/// acknowledged write across the stop's window (from the stop until the broker is started
/// again), where writes were acknowledged both before and after it.
pub fn writes_flow_through_stops(history: &[Op], faults: &[Fault]) -> Vec<Finding> {
    let acks = acks_by_partition(history);
    let mut out = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let Fault::Stop { at_s, down_s, .. } = f else {
            continue;
        };
        let (from, to) = (*at_s as f64, (*at_s + *down_s) as f64);
        let overlapped = faults.iter().enumerate().any(|(j, g)| {
            j != i && (g.at_s() as f64) <= to + 5.0 && g.healed_at_s() as f64 + 5.0 >= from
        });
        if overlapped {
            continue;
        }
        for (&partition, times) in &acks {
            // The acknowledgements around the window: the last before it, every one in it, the
            // first after it.
            let first = times.partition_point(|&t| t < from);
            let last = times.partition_point(|&t| t <= to);
            if first == 0 || last >= times.len() {
                continue;
            }
            let around = &times[first - 1..=last];
            let Some((gap, since)) = around
                .windows(2)
                .map(|w| (w[1] - w[0], w[0]))
                .max_by(|a, b| a.0.total_cmp(&b.0))
            else {
                continue;
            };
            if gap > STOP_STALL_MAX_S {
                out.push(Finding::StopStalled {
                    stop: f.describe(),
                    node: f.node().unwrap_or_default().to_string(),
                    partition,
                    gap_s: gap,
                    since_s: since,
                    bound_s: STOP_STALL_MAX_S,
                });
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::Send;

    /// A write to `partition` acknowledged at `at`.
    pub(crate) fn ack(partition: i32, at: f64) -> Op {
        Op::Send(Send {
            producer: 0,
            partition,
            value: bytes::Bytes::from_static(b"v"),
            idempotence: None,
            attempt: 1,
            acks: -1,
            broker: 0,
            invoked_s: at - 0.005,
            completed_s: at,
            outcome: SendOutcome::Ok(0),
        })
    }

    fn stop(at_s: u64) -> Fault {
        Fault::Stop {
            at_s,
            down_s: 10,
            node: Some("broker-2".into()),
        }
    }

    #[test]
    fn a_partition_silent_for_an_election_across_a_stop_is_found() {
        let mut h: Vec<Op> = (0..400).map(|i| ack(0, i as f64 * 0.1)).collect();
        // Partition 1 waits 1.8 s just after the stop at 20 s.
        h.extend((0..400).filter_map(|i| {
            let t = i as f64 * 0.1;
            (!(20.1..21.9).contains(&t)).then(|| ack(1, t))
        }));
        let f = writes_flow_through_stops(&h, &[stop(20)]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind(), "stop-stalled");
        assert!(f[0].to_string().contains("partition 1"), "{}", f[0]);
        // Not when another fault overlaps the stop, nor for a stop after the last write.
        let crash = Fault::Crash {
            at_s: 25,
            torn: false,
            wipe: false,
            in_joint: false,
            while_cleaning: false,
            at_point: None,
            hold_ms: None,
            down_s: 1,
            node: None,
        };
        assert!(writes_flow_through_stops(&h, &[stop(20), crash]).is_empty());
        assert!(writes_flow_through_stops(&h, &[stop(45)]).is_empty());
    }
}
