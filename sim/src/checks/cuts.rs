//! Network cuts that leave a majority the clients can reach: writes resume on that side within
//! the scenario's bound (`[expect] writes_resume_s`) and go on while the cut lasts. A leader cut
//! off from its peers steps down and the others elect one among themselves within an election
//! timeout or two; the clients must follow. Found from outside: they did not, for the whole
//! cut, while the cut-off broker answered their Metadata requests faster than anyone and knew
//! no leaders.

use crate::findings::Finding;
use crate::history::Op;
use crate::scenario::Fault;

/// For each stretch of time some link is cut (overlapping cuts joined), each partition's
/// longest time without an acknowledged write in it — counted from the cut's start and to its
/// end — where the partition took writes before the cut. Longer than `bound_s` is a finding.
pub fn writes_resume_during_cuts(history: &[Op], faults: &[Fault], bound_s: f64) -> Vec<Finding> {
    let acks = super::stops::acks_by_partition(history);
    let mut out = Vec::new();
    for (from, to, cut) in cut_windows(faults) {
        for (&partition, times) in &acks {
            if times.first().is_none_or(|&t| t >= from) {
                continue;
            }
            let Some((gap, since)) = super::stops::longest_gap(times, (from, to), |_, _| true)
            else {
                continue;
            };
            if gap > bound_s {
                out.push(Finding::CutStalled {
                    cut: cut.clone(),
                    partition,
                    gap_s: gap,
                    since_s: since,
                    bound_s,
                });
            }
        }
    }
    out
}

/// The stretches of time some link is cut: `(from, to, what)`, overlapping cuts joined.
fn cut_windows(faults: &[Fault]) -> Vec<(f64, f64, String)> {
    let mut cuts: Vec<(f64, f64, String)> = faults
        .iter()
        .filter(|f| matches!(f, Fault::Partition { .. }))
        .map(|f| (f.at_s() as f64, f.healed_at_s() as f64, f.describe()))
        .collect();
    cuts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut joined: Vec<(f64, f64, String)> = Vec::new();
    for (from, to, what) in cuts {
        match joined.last_mut() {
            Some(last) if from <= last.1 => {
                last.1 = last.1.max(to);
                if !last.2.contains(&what) {
                    last.2 = format!("{}, {what}", last.2);
                }
            }
            _ => joined.push((from, to, what)),
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::stops::tests::ack;

    fn cut(at_s: u64, a: &str, b: &str) -> Fault {
        Fault::Partition {
            at_s,
            for_s: 30,
            node: None,
            link: Some([a.into(), b.into()]),
            one_way: false,
        }
    }

    #[test]
    fn a_partition_that_waits_out_the_cut_is_found_and_one_that_resumes_is_not() {
        // Partition 0 resumes 3 s into the cut at 20 s; partition 1 takes nothing until 50 s.
        let mut h: Vec<Op> = (0..800)
            .map(|i| i as f64 * 0.1)
            .filter(|t| !(20.0..23.0).contains(t))
            .map(|t| ack(0, t))
            .collect();
        h.extend(
            (0..800)
                .map(|i| i as f64 * 0.1)
                .filter(|t| !(20.0..50.0).contains(t))
                .map(|t| ack(1, t)),
        );
        // One broker cut off: two links, one window.
        let faults = [
            cut(20, "broker-1", "broker-2"),
            cut(20, "broker-1", "broker-3"),
        ];
        let f = writes_resume_during_cuts(&h, &faults, 5.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind(), "cut-stalled");
        assert!(f[0].to_string().contains("partition 1"), "{}", f[0]);
        // A tighter bound finds partition 0's three seconds too.
        assert_eq!(writes_resume_during_cuts(&h, &faults, 2.0).len(), 2);
        // A partition never written before the cut is not judged.
        let late: Vec<Op> = (600..800).map(|i| ack(2, i as f64 * 0.1)).collect();
        assert!(writes_resume_during_cuts(&late, &faults, 5.0).is_empty());
    }
}
