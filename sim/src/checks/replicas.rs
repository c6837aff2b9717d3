//! The checks of a cluster run, pure functions over what the run recorded (as `checker`'s):
//! every replica holds the same batches below the high watermark (read from each node's disk
//! after the run), the high watermark consumers are told never goes back, and Metadata never
//! names two leaders of a partition in one epoch.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::findings::Finding;
use crate::history::Watermark;
use crate::workload::client::routing::Leadership;

/// A replica's log of one partition: its batches `(base offset, bytes)` in order.
pub type ReplicaLog = Vec<(i64, Bytes)>;

/// Below `high_watermark[p]` (a Kafka offset), every two replicas of partition `p` hold the
/// same batches where both hold any (a replica may lag, or start later after a reset, but
/// never differ). On a `compacted` topic each replica cleans its own log when it will, and
/// below its Raft entries merges emptied batches, so batch boundaries may differ: two
/// replicas then hold, at every offset both still hold a record, the same record, and a batch
/// with records that both hold at one base offset is the same batch (offsets, epoch,
/// producer).
pub fn replicas_agree(
    logs: &BTreeMap<String, BTreeMap<i32, ReplicaLog>>,
    high_watermark: &BTreeMap<i32, i64>,
    compacted: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (&partition, &kafka_hw) in high_watermark {
        let replicas = replicas_of(logs, partition);
        let hw = log_offset_of(&replicas, kafka_hw);
        for (i, (a_node, a)) in replicas.iter().enumerate() {
            for (b_node, b) in &replicas[i + 1..] {
                let from = first(a).max(first(b));
                let to = end(a).min(end(b)).min(hw);
                let within = |l: &ReplicaLog| -> Vec<(i64, Bytes)> {
                    l.iter()
                        .filter(|(base, _)| *base >= from && *base < to)
                        .cloned()
                        .collect()
                };
                let (wa, wb) = (within(a), within(b));
                let differs = if compacted {
                    cleaned_differ(&wa, &wb)
                } else if wa.len() != wb.len() || wa != wb {
                    Some(
                        wa.iter()
                            .zip(&wb)
                            .find(|(x, y)| x != y)
                            .map_or(from, |(x, y)| x.0.min(y.0)),
                    )
                } else {
                    None
                };
                if let Some(offset) = differs {
                    out.push(Finding::ReplicaDivergence {
                        partition,
                        offset,
                        nodes: vec![(*a_node).clone(), (*b_node).clone()],
                    });
                }
            }
        }
    }
    out
}

/// Every replica of every partition holds the log up to what was read back (`read_to[p]`, a
/// Kafka offset): after the run has settled, no follower is left behind — one a leader could
/// not bring up to date (its catch-up reads failing for good, their budgets leaked) would
/// otherwise pass, since a replica may lag without differing. Replicas that hold no log of the
/// partition at all (not among its replicas) are not asked.
pub fn replicas_caught_up(
    logs: &BTreeMap<String, BTreeMap<i32, ReplicaLog>>,
    read_to: &BTreeMap<i32, i64>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (&partition, &kafka_end) in read_to {
        let replicas = replicas_of(logs, partition);
        let wanted = log_offset_of(&replicas, kafka_end);
        for (node, log) in &replicas {
            let at = end(log).max(0);
            if at < wanted {
                out.push(Finding::ReplicaBehind {
                    partition,
                    node: (*node).clone(),
                    end: at,
                    wanted,
                });
            }
        }
    }
    out
}

/// Every node's log of `partition`, for the nodes that hold one.
fn replicas_of(
    logs: &BTreeMap<String, BTreeMap<i32, ReplicaLog>>,
    partition: i32,
) -> Vec<(&String, &ReplicaLog)> {
    logs.iter()
        .filter_map(|(node, parts)| parts.get(&partition).map(|l| (node, l)))
        .collect()
}

/// The log offset where Kafka offset `kafka` lies in these replicas' logs: the end of the
/// batch holding `kafka - 1`, counted in a log that holds its partition from the start (Raft's
/// own entries take a log offset but no Kafka offset). Without such a log, `kafka` itself: no
/// larger than the log offset (a log offset is never below its Kafka offset), so the check
/// covers less, never more than was committed.
fn log_offset_of(replicas: &[(&String, &ReplicaLog)], kafka: i64) -> i64 {
    if kafka <= 0 {
        return 0;
    }
    for (_, log) in replicas.iter().filter(|(_, l)| first(l) == 0) {
        let mut seen = 0i64;
        for (_, bytes) in log.iter() {
            let Ok(h) = broker::batch::parse_header(bytes) else {
                break;
            };
            if h.takes_no_offset() {
                continue;
            }
            seen += i64::from(h.last_offset_delta) + 1;
            if seen >= kafka {
                return h.next_offset();
            }
        }
    }
    kafka
}

/// Records by offset: (key, value).
type Records = BTreeMap<i64, (Option<Bytes>, Option<Bytes>)>;

/// What identifies a batch besides its records: its offsets, leader epoch and producer.
type Identity = (i64, i32, i32, i64, i16, i32);

/// A replica's cleaned batches: every record by offset, and the identity of each batch that
/// holds records, by base offset (`None`: a batch does not decode).
fn cleaned_view(batches: &[(i64, Bytes)]) -> Option<(Records, BTreeMap<i64, Identity>)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut records = Records::new();
    let mut identities = BTreeMap::new();
    for (base, bytes) in batches {
        let h = broker::batch::parse_header(bytes).ok()?;
        if h.record_count == 0 {
            continue;
        }
        identities.insert(
            *base,
            (
                h.base_offset,
                h.last_offset_delta,
                h.partition_leader_epoch,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
            ),
        );
        let mut data = bytes.clone();
        let set = RecordBatchDecoder::decode(&mut data).ok()?;
        records.extend(
            set.records
                .into_iter()
                .map(|r| (r.offset, (r.key, r.value))),
        );
    }
    Some((records, identities))
}

/// Where two replicas' cleaned batches first disagree: a record at an offset both hold, or a
/// batch with records at a base offset both hold.
fn cleaned_differ(a: &[(i64, Bytes)], b: &[(i64, Bytes)]) -> Option<i64> {
    let first = |x: &[(i64, Bytes)]| x.first().map_or(0, |(base, _)| *base);
    let (Some((ra, ia)), Some((rb, ib))) = (cleaned_view(a), cleaned_view(b)) else {
        return Some(first(a).min(first(b)));
    };
    let record = ra
        .iter()
        .find(|(o, r)| rb.get(o).is_some_and(|other| other != *r))
        .map(|(o, _)| *o);
    let batch = ia
        .iter()
        .find(|(base, id)| ib.get(base).is_some_and(|other| other != *id))
        .map(|(base, _)| *base);
    record.into_iter().chain(batch).min()
}

fn first(l: &ReplicaLog) -> i64 {
    l.first().map_or(i64::MAX, |(base, _)| *base)
}

fn end(l: &ReplicaLog) -> i64 {
    l.last().map_or(i64::MIN, |(base, bytes)| {
        broker::batch::parse_header(bytes).map_or(*base, |h| h.next_offset())
    })
}

/// A high watermark told to a consumer is never below one told (to anyone) before the consumer
/// asked.
pub fn watermarks_monotonic(seen: &[Watermark]) -> Vec<Finding> {
    let mut out = Vec::new();
    let partitions: BTreeSet<i32> = seen.iter().map(|w| w.partition).collect();
    for p in partitions {
        let mut by_completed: Vec<&Watermark> = seen.iter().filter(|w| w.partition == p).collect();
        let mut by_invoked = by_completed.clone();
        by_completed.sort_by(|a, b| a.completed_s.total_cmp(&b.completed_s));
        by_invoked.sort_by(|a, b| a.invoked_s.total_cmp(&b.invoked_s));
        let mut highest = i64::MIN;
        let mut next = 0;
        for w in by_invoked {
            while next < by_completed.len() && by_completed[next].completed_s < w.invoked_s {
                highest = highest.max(by_completed[next].value);
                next += 1;
            }
            if w.value < highest {
                out.push(Finding::WatermarkBackwards {
                    partition: p,
                    before: highest,
                    after: w.value,
                    at_s: w.completed_s,
                });
                break;
            }
        }
    }
    out
}

/// Metadata never named two leaders of a partition in one epoch.
pub fn one_leader_per_epoch(seen: &[Leadership]) -> Vec<Finding> {
    let mut by_epoch: BTreeMap<(&str, i32, i32), BTreeSet<i32>> = BTreeMap::new();
    for l in seen {
        by_epoch
            .entry((l.topic.as_str(), l.partition, l.epoch))
            .or_default()
            .insert(l.leader);
    }
    by_epoch
        .into_iter()
        .filter(|(_, leaders)| leaders.len() > 1)
        .map(|((_, partition, epoch), leaders)| Finding::TwoLeaders {
            partition,
            epoch,
            leaders: leaders.into_iter().collect(),
        })
        .collect()
}

/// A broker's Metadata named the broker itself leader of `partition` in `epoch` at `at_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamedItself {
    pub at_s: f64,
    pub broker: i32,
    pub partition: i32,
    pub epoch: i32,
}

/// A refusal must be this old when the broker names itself again: a leader's claim and its
/// refusal can cross (a Metadata answer given just before the leader stepped down).
pub const REFUSING_LEADER_GRACE_S: f64 = 5.0;

/// No broker names itself a partition's leader in Metadata while it refuses produces to that
/// partition as not its leader (NOT_LEADER_OR_FOLLOWER): a client that can reach only that
/// broker would loop — metadata, produce, refusal — until its messages expire (found
/// black-box: an isolated leader, and a broker restarted with an emptied data directory).
/// Found when a broker named itself leader in an epoch, then refused a produce to the
/// partition (sent after that naming), and named itself leader in the same epoch again more
/// than [`REFUSING_LEADER_GRACE_S`] after the refusal, having acknowledged no produce there in
/// between, and the first produce sent to it there after that naming was refused too: the
/// same leadership claimed on both sides of a refusal (a new leadership is a new epoch), and
/// a client following the claim refused again. (Without that last refusal a broker whose
/// refusal was a moment's — a leadership handed over to a replica that crashed — and whose
/// next produce came only after it led again would be blamed: a partition of thousands is
/// written once every few seconds.) Sends record the broker by its index (0 for broker id 1).
pub fn leader_refuses(named: &[NamedItself], history: &[crate::history::Op]) -> Vec<Finding> {
    use crate::history::{Op, SendOutcome};
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    // Per (broker, partition): (invoked_s, completed_s, refused) of each answer.
    type Answer = (f64, f64, bool);
    let mut answers: BTreeMap<(i32, i32), Vec<Answer>> = BTreeMap::new();
    for op in history {
        let Op::Send(s) = op else { continue };
        let refused = match s.outcome {
            SendOutcome::Ok(_) => false,
            SendOutcome::Failed { code, .. } if code == NOT_LEADER_OR_FOLLOWER => true,
            _ => continue,
        };
        answers
            .entry((s.broker as i32 + 1, s.partition))
            .or_default()
            .push((s.invoked_s, s.completed_s, refused));
    }
    for a in answers.values_mut() {
        a.sort_by(|x, y| x.1.total_cmp(&y.1));
    }
    // Each broker's namings of each partition, in time order.
    let mut namings: BTreeMap<(i32, i32), Vec<&NamedItself>> = BTreeMap::new();
    for n in named {
        namings.entry((n.broker, n.partition)).or_default().push(n);
    }
    for v in namings.values_mut() {
        v.sort_by(|x, y| x.at_s.total_cmp(&y.at_s));
    }
    let mut found: BTreeMap<(i32, i32, i32), Finding> = BTreeMap::new();
    for n in named {
        let Some(a) = answers.get(&(n.broker, n.partition)) else {
            continue;
        };
        // The refusals since the last acknowledgement before this naming, earliest first.
        let before: Vec<&Answer> = a.iter().take_while(|x| x.1 < n.at_s).collect();
        let run: Vec<&&Answer> = before
            .iter()
            .rev()
            .take_while(|x| x.2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let these = &namings[&(n.broker, n.partition)];
        let claimed_before = |sent: f64| {
            these
                .iter()
                .take_while(|m| m.at_s < sent)
                .any(|m| m.epoch == n.epoch)
        };
        let looped = run
            .iter()
            .find(|r| n.at_s - r.1 > REFUSING_LEADER_GRACE_S && claimed_before(r.0));
        let Some(r) = looped else { continue };
        // The next produce after the naming, before the broker claims another epoch. (Looked
        // for only here: a run names leaders hundreds of thousands of times.)
        let other_epoch_at = these
            .iter()
            .find(|m| m.epoch != n.epoch && m.at_s > n.at_s)
            .map_or(f64::INFINITY, |m| m.at_s);
        let refused_again = a
            .iter()
            .filter(|x| x.0 >= n.at_s)
            .min_by(|x, y| x.0.total_cmp(&y.0))
            .is_some_and(|x| x.2 && x.0 < other_epoch_at);
        if refused_again {
            found
                .entry((n.broker, n.partition, n.epoch))
                .or_insert(Finding::LeaderRefuses {
                    broker: n.broker,
                    partition: n.partition,
                    epoch: n.epoch,
                    refused_at_s: r.1,
                    named_at_s: n.at_s,
                });
        }
    }
    found.into_values().collect()
}

/// The batches of each partition of `topic` in a node's data directory, read from its disk:
/// every segment file in order, each up to its first batch that is not whole and valid.
pub async fn read_logs(
    disk: &dyn io_backend::Disk,
    data_dir: &std::path::Path,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, ReplicaLog> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let dir = data_dir.join(format!("{topic}-{p}"));
        let Ok(names) = disk.list(&dir).await else {
            continue;
        };
        let mut segments: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log")?.parse().ok())
            .collect();
        segments.sort_unstable();
        let mut log = ReplicaLog::new();
        for base in segments {
            let path = dir.join(format!("{base:020}.log"));
            let Ok(file) = disk.open(&path, io_backend::OpenMode::Existing).await else {
                continue;
            };
            let Ok(len) = file.len().await else {
                continue;
            };
            let Ok(data) = file.read_at(len as usize, 0).await else {
                continue;
            };
            let mut pos = 0usize;
            // As stored: a cleaned batch may hold fewer records than it spans, or none.
            while let Ok(h) = broker::batch::validate_stored(&data[pos..]) {
                log.push((h.base_offset, data.slice(pos..pos + h.size)));
                pos += h.size;
            }
        }
        out.insert(p, log);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, tag: u8) -> (i64, Bytes) {
        let mut b = broker::batch::leader_change_batch().to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        b[12] = tag; // the leader epoch: outside the CRC
        (base, Bytes::from(b))
    }

    fn send(
        broker: usize,
        partition: i32,
        completed_s: f64,
        code: Option<i16>,
    ) -> crate::history::Op {
        use crate::history::{Op, Send, SendOutcome};
        Op::Send(Send {
            producer: 0,
            partition,
            value: Bytes::from_static(b"v"),
            idempotence: None,
            attempt: 1,
            acks: -1,
            broker,
            invoked_s: completed_s - 0.01,
            completed_s,
            outcome: match code {
                None => SendOutcome::Ok(1),
                Some(code) => SendOutcome::Failed {
                    code,
                    definite: false,
                },
            },
        })
    }

    fn named(at_s: f64, broker: i32, partition: i32, epoch: i32) -> NamedItself {
        NamedItself {
            at_s,
            broker,
            partition,
            epoch,
        }
    }

    #[test]
    fn a_replica_left_behind_is_found_and_one_that_caught_up_is_not() {
        let log = |n: i64| -> ReplicaLog { (0..n).map(|b| batch(b, 1)).collect() };
        let logs: BTreeMap<String, BTreeMap<i32, ReplicaLog>> = [
            ("broker-1".to_string(), [(0, log(3))].into_iter().collect()),
            ("broker-2".to_string(), [(0, log(3))].into_iter().collect()),
            ("broker-3".to_string(), [(0, log(2))].into_iter().collect()),
        ]
        .into_iter()
        .collect();
        let read_to = [(0, 3)].into_iter().collect();
        let found = replicas_caught_up(&logs, &read_to);
        assert!(
            matches!(&found[..], [Finding::ReplicaBehind { partition: 0, node, end: 2, wanted: 3 }] if node == "broker-3"),
            "{found:?}"
        );
        let mut all = logs.clone();
        all.insert("broker-3".into(), [(0, log(3))].into_iter().collect());
        assert_eq!(replicas_caught_up(&all, &read_to), vec![]);
    }

    #[test]
    fn a_broker_that_names_itself_long_after_refusing_as_not_the_leader_is_found() {
        // Broker 1 (index 0) leads partition 0 in epoch 3, is cut off, steps down at t=12 and
        // refuses from then on, while its Metadata goes on naming itself.
        let mut history = vec![send(0, 0, 10.0, None), send(0, 0, 11.0, None)];
        let mut seen = vec![named(9.0, 1, 0, 3)];
        for i in 0..40 {
            let t = 12.0 + i as f64 * 0.2;
            seen.push(named(t, 1, 0, 3));
            history.push(send(0, 0, t + 0.05, Some(6)));
        }
        let found = leader_refuses(&seen, &history);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(matches!(
            found[0],
            Finding::LeaderRefuses { broker: 1, partition: 0, epoch: 3, refused_at_s, .. } if (refused_at_s - 12.05).abs() < 1e-9
        ));
    }

    #[test]
    fn a_refusal_no_client_met_again_is_no_finding() {
        // Broker 2 (index 1) named itself in epoch 2, refused a produce while it handed the
        // leadership to a replica that crashed, and names itself in epoch 2 again 5.5 s later;
        // the partition's next produce comes only then.
        let mut history = vec![send(1, 0, 40.5, Some(6))];
        let mut seen = vec![named(30.0, 2, 0, 2), named(46.0, 2, 0, 2)];
        assert!(leader_refuses(&seen, &history).is_empty());
        // Acknowledged: it leads.
        history.push(send(1, 0, 47.0, None));
        assert!(leader_refuses(&seen, &history).is_empty());
        // Refused again: a client following its claim loops.
        history.pop();
        history.push(send(1, 0, 47.0, Some(6)));
        assert_eq!(leader_refuses(&seen, &history).len(), 1);
        // Unless it claims a new epoch first (the refusal may be of another leadership).
        seen.push(named(46.5, 2, 0, 3));
        assert!(leader_refuses(&seen, &history).is_empty());
    }

    #[test]
    fn a_refusal_then_a_new_leadership_is_no_finding() {
        // Broker 2 named itself in epoch 5, was refused a produce as it stepped down (the
        // answer crossed), and long after, leads again in epoch 6; another broker's refusals
        // and other codes do not count.
        let history = vec![
            send(1, 0, 20.0, Some(6)),
            send(0, 0, 20.0, Some(6)),
            send(1, 1, 20.0, Some(7)),
        ];
        let seen = vec![
            named(19.9, 2, 0, 5),
            named(30.0, 2, 0, 6),
            named(30.0, 2, 1, 5),
        ];
        assert!(leader_refuses(&seen, &history).is_empty());
        // The same epoch again, but within the grace, or after an acknowledgement.
        assert!(leader_refuses(&[named(19.9, 2, 0, 5), named(21.0, 2, 0, 5)], &history).is_empty());
        let acked = vec![send(1, 0, 20.0, Some(6)), send(1, 0, 20.5, None)];
        assert!(leader_refuses(&[named(19.9, 2, 0, 5), named(30.0, 2, 0, 5)], &acked).is_empty());
        // Not named in that epoch before the refusal: a leadership taken since.
        assert!(leader_refuses(&[named(30.0, 2, 0, 5)], &history).is_empty());
    }

    #[test]
    fn replicas_that_differ_below_the_high_watermark_are_found() {
        let mut logs = BTreeMap::new();
        logs.insert(
            "broker-1".to_string(),
            BTreeMap::from([(0, vec![batch(0, 1), batch(1, 1), batch(2, 1)])]),
        );
        // A lagging replica, and one that differs only above the high watermark: fine.
        logs.insert(
            "broker-2".to_string(),
            BTreeMap::from([(0, vec![batch(0, 1)])]),
        );
        logs.insert(
            "broker-3".to_string(),
            BTreeMap::from([(0, vec![batch(0, 1), batch(1, 1), batch(2, 2)])]),
        );
        assert!(replicas_agree(&logs, &BTreeMap::from([(0, 2)]), false).is_empty());
        let found = replicas_agree(&logs, &BTreeMap::from([(0, 3)]), false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(matches!(
            &found[0],
            Finding::ReplicaDivergence { offset: 2, .. }
        ));
        // On a compacted topic, a record that differs is still found.
        let found = replicas_agree(&logs, &BTreeMap::from([(0, 3)]), true);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    /// A produced batch of one record at log offset `base`, its value `tag`.
    fn record(base: i64, tag: u8) -> (i64, Bytes) {
        let batch = crate::workload::client::one_record_batch(base, 0, Bytes::from(vec![tag]));
        (base, batch)
    }

    #[test]
    fn cleaned_replicas_agree_across_merged_emptied_batches_and_differ_on_a_record() {
        // One replica kept records 0 and 1 apart; the other cleaned them away and merged
        // their emptied batches below its Raft entries into one header.
        let kept = vec![record(0, 1), record(1, 2), record(2, 3)];
        let merged = |last: u8| {
            let span = broker::batch::empty_span(&record(0, 1).1, 1, 0);
            vec![(0, span), record(2, last)]
        };
        let logs = |other| {
            BTreeMap::from([
                ("broker-1".to_string(), BTreeMap::from([(0, kept.clone())])),
                ("broker-2".to_string(), BTreeMap::from([(0, other)])),
            ])
        };
        let hw = BTreeMap::from([(0, 3)]);
        assert!(replicas_agree(&logs(merged(3)), &hw, true).is_empty());
        let found = replicas_agree(&logs(merged(4)), &hw, true);
        assert!(
            matches!(&found[..], [Finding::ReplicaDivergence { offset: 2, .. }]),
            "{found:?}"
        );
    }

    #[test]
    fn the_high_watermark_in_kafka_offsets_is_found_past_rafts_own_entries() {
        // Log offsets: leader entry 0, record 1 (Kafka 0), leader entry 2, record 3 (Kafka 1),
        // record 4 (Kafka 2), which differs between the two replicas.
        let log = |last: u8| {
            vec![
                batch(0, 1),
                record(1, 1),
                batch(2, 2),
                record(3, 2),
                record(4, last),
            ]
        };
        let logs = BTreeMap::from([
            ("broker-1".to_string(), BTreeMap::from([(0, log(1))])),
            ("broker-2".to_string(), BTreeMap::from([(0, log(2))])),
        ]);
        assert!(
            replicas_agree(&logs, &BTreeMap::from([(0, 2)]), false).is_empty(),
            "Kafka offsets 0 and 1 lie below log offset 4"
        );
        let found = replicas_agree(&logs, &BTreeMap::from([(0, 3)]), false);
        assert!(
            matches!(&found[..], [Finding::ReplicaDivergence { offset: 4, .. }]),
            "{found:?}"
        );
    }

    #[test]
    fn a_watermark_told_after_a_higher_one_is_found() {
        let w = |invoked_s, completed_s, value| Watermark {
            partition: 0,
            invoked_s,
            completed_s,
            value,
        };
        // Overlapping asks may be answered in either order; a later ask may not go back.
        assert!(
            watermarks_monotonic(&[w(1.0, 3.0, 10), w(2.0, 2.5, 8), w(4.0, 4.1, 10)]).is_empty()
        );
        let found = watermarks_monotonic(&[w(1.0, 2.0, 10), w(3.0, 3.1, 9)]);
        assert!(matches!(
            found[..],
            [Finding::WatermarkBackwards {
                before: 10,
                after: 9,
                ..
            }]
        ));
    }

    #[test]
    fn two_leaders_in_one_epoch_are_found() {
        let l = |epoch, leader| Leadership {
            topic: "t".into(),
            partition: 0,
            epoch,
            leader,
        };
        assert!(one_leader_per_epoch(&[l(1, 1), l(2, 2), l(2, 2)]).is_empty());
        assert_eq!(one_leader_per_epoch(&[l(3, 1), l(3, 2)]).len(), 1);
    }
}
