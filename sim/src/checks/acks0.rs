//! acks=0 producers once the cluster is healthy: a produce without acknowledgement has no
//! outcome to judge one by one, but once every fault has healed and the liveness deadline has
//! passed, a producer's acks=0 sends to a partition must reach its log — some of them at least.
//! A broker that drops every acks=0 produce it refuses (a former leader's NOT_LEADER) and keeps
//! the connection open, instead of closing it as Kafka does so that the client asks for the
//! leader again, black-holes that producer's writes to the partition for good.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;

use crate::findings::Finding;
use crate::history::{FinalRead, Op};

/// Sends a (producer, partition) needs after `from_s` before none of them read back counts.
pub const ACKS0_MIN_SENDS: usize = 10;

/// Each acks=0 producer's sends to each partition invoked from `from_s` on (the last heal plus
/// the liveness deadline) against the final read: at least one must be there.
pub fn acks0_reach_the_log(history: &[Op], read: &FinalRead, from_s: f64) -> Vec<Finding> {
    let stored: HashSet<&Bytes> = read.values().flatten().map(|(_, v)| v).collect();
    // (producer, partition) → (sends, read back, the broker the first went to).
    let mut seen: BTreeMap<(usize, i32), (usize, usize, usize)> = BTreeMap::new();
    for op in history {
        let Op::Send(s) = op else { continue };
        if s.acks != 0 || s.invoked_s < from_s {
            continue;
        }
        let e = seen
            .entry((s.producer, s.partition))
            .or_insert((0, 0, s.broker));
        e.0 += 1;
        e.1 += usize::from(stored.contains(&s.value));
    }
    seen.into_iter()
        .filter(|(_, (sent, found, _))| *sent >= ACKS0_MIN_SENDS && *found == 0)
        .map(
            |((producer, partition), (sent, _, broker))| Finding::Acks0Blackholed {
                producer,
                partition,
                sent,
                broker: format!("broker-{}", broker + 1),
                since_s: from_s,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Send, SendOutcome};

    fn send(producer: usize, partition: i32, n: u32, at: f64) -> Op {
        Op::Send(Send {
            producer,
            partition,
            value: Bytes::from(format!("p{producer}-{n}")),
            idempotence: None,
            attempt: 1,
            acks: 0,
            broker: 1,
            invoked_s: at,
            completed_s: at,
            outcome: SendOutcome::Unknown,
        })
    }

    #[test]
    fn a_producer_none_of_whose_late_sends_is_stored_is_found() {
        let history: Vec<Op> = (0..40)
            .flat_map(|n| [send(0, 0, n, n as f64), send(1, 1, n, n as f64)])
            .collect();
        // Producer 0's last value is stored; none of producer 1's after 20 s (only early ones).
        let mut read = FinalRead::new();
        read.insert(0, vec![(0, Bytes::from("p0-39"))]);
        read.insert(1, vec![(0, Bytes::from("p1-3"))]);
        let f = acks0_reach_the_log(&history, &read, 20.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind(), "acks0-blackholed");
        assert!(f[0].to_string().contains("producer 1"), "{}", f[0]);
        // Too few sends after the deadline to judge.
        assert!(acks0_reach_the_log(&history, &read, 35.0).is_empty());
    }
}
