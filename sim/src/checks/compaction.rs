//! The compaction checker: a compacted partition read from its log start gives, for every key,
//! its latest acknowledged record or a later one of the key — never an older value, and never a
//! value from before a tombstone once the tombstone is gone (Kafka's guarantee for compacted
//! topics). Records removed by the cleaner are not lost: this check stands in for the checks
//! that every acknowledged record stays (`lost-write`, `offset-gap`, `unseen`).
//!
//! Keys and tombstones come from the records' names ([`crate::workload::keyed`]).

use std::collections::{BTreeMap, HashMap};

use crate::findings::{Finding, NotLatest};
use crate::history::{value_name, FinalRead, ReadGaps, Send, SendOutcome};
use crate::workload::keyed;

/// A key's record: its offset, name, and whether it is a tombstone.
type Latest = (i64, String, bool);

/// Every key whose latest acknowledged record the final read does not give (nor a later one).
pub fn latest_per_key(sends: &[&Send], log: &FinalRead, gaps: &ReadGaps) -> Vec<Finding> {
    let mut acked: BTreeMap<(i32, String), Latest> = BTreeMap::new();
    // Tombstones that may be in the log, at their offset when it is known.
    let mut tombstones: HashMap<(i32, String), Vec<Option<i64>>> = HashMap::new();
    for s in sends {
        let name = value_name(&s.value);
        let Some((key, tombstone)) = keyed::parse(&name) else {
            continue;
        };
        let k = (s.partition, key.to_string());
        let at = match s.outcome {
            SendOutcome::Ok(o) => Some(o),
            ref other if other.definitely_failed() => continue,
            _ => None,
        };
        if tombstone {
            tombstones.entry(k.clone()).or_default().push(at);
        }
        if let Some(o) = at {
            if acked.get(&k).is_none_or(|(a, _, _)| o > *a) {
                acked.insert(k, (o, name.clone(), tombstone));
            }
        }
    }
    let mut read: HashMap<(i32, String), (i64, String)> = HashMap::new();
    for (&p, records) in log {
        for (o, v) in records {
            let name = value_name(v);
            if let Some((key, _)) = keyed::parse(&name) {
                read.insert((p, key.to_string()), (*o, name.clone()));
            }
        }
    }
    let mut out = Vec::new();
    for ((partition, key), (a, name, tombstone)) in acked {
        // Retention (a `compact,delete` topic) or damage the final read stepped over may hold
        // the latest record: nothing to say of the key.
        let hidden = gaps.below_log_start(partition, a)
            || gaps
                .unreadable
                .iter()
                .any(|u| u.partition == partition && u.to > a);
        if hidden {
            continue;
        }
        let found = read.get(&(partition, key.clone()));
        let how = match found {
            Some((r, _)) if *r >= a => continue,
            // Whatever came later, an older value must be gone by the time the latest is.
            Some(_) if tombstone => NotLatest::Resurrected,
            Some(_) => NotLatest::Stale,
            None => {
                // A tombstone at or after the latest acknowledged record may have been removed
                // once its delete retention passed, and with it every record of the key.
                let deleted = tombstone
                    || tombstones
                        .get(&(partition, key.clone()))
                        .is_some_and(|t| t.iter().any(|at| at.is_none_or(|o| o > a)));
                if deleted {
                    continue;
                }
                NotLatest::Lost
            }
        };
        out.push(Finding::NotLatest {
            how,
            partition,
            key,
            acked: (a, name),
            read: found.cloned(),
        });
    }
    out
}

/// Records of the final read a consumer may have been served without, and so missed nothing it
/// is owed: each replica cleans on its own, so the replica a consumer read from may have
/// removed what the replica read back last still holds.
#[derive(Debug, Default)]
pub struct Removable {
    /// A later record of the key follows in the final read: any cleaning may remove these.
    superseded: std::collections::HashSet<(i32, i64)>,
    /// Tombstones that are their key's latest record, each with the earliest time (seconds of
    /// the run) a cleaner may have removed it: `delete.retention.ms` after it was sent. Before
    /// then, a consumer is owed the tombstone.
    tombstones: HashMap<(i32, i64), f64>,
}

impl Removable {
    /// `sends` give when each tombstone was written at the earliest; a tombstone of the final
    /// read no send names is owed to every consumer.
    pub fn new(log: &FinalRead, sends: &[&Send], tombstone_retention_s: f64) -> Self {
        let mut sent_s: HashMap<String, f64> = HashMap::new();
        for s in sends {
            let at = sent_s.entry(value_name(&s.value)).or_insert(s.invoked_s);
            *at = at.min(s.invoked_s);
        }
        let mut out = Removable::default();
        for (&p, records) in log {
            let mut latest: std::collections::HashSet<String> = Default::default();
            for (o, v) in records.iter().rev() {
                let name = value_name(v);
                let Some((key, tombstone)) = keyed::parse(&name) else {
                    continue;
                };
                if !latest.insert(key.to_string()) {
                    out.superseded.insert((p, *o));
                } else if let Some(sent) = sent_s.get(&name).filter(|_| tombstone) {
                    out.tombstones.insert((p, *o), sent + tombstone_retention_s);
                }
            }
        }
        out
    }

    /// Whether a fetch answered at `answered_s` may lack the record at `offset` of `partition`.
    pub fn may_lack(&self, partition: i32, offset: i64, answered_s: f64) -> bool {
        self.superseded.contains(&(partition, offset))
            || self
                .tombstones
                .get(&(partition, offset))
                .is_some_and(|&from| answered_s >= from)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn send(partition: i32, name: &str, outcome: SendOutcome) -> Send {
        Send {
            producer: 0,
            partition,
            value: Bytes::from(name.to_string()),
            idempotence: None,
            attempt: 1,
            acks: -1,
            broker: 0,
            invoked_s: 0.0,
            completed_s: 0.0,
            outcome,
        }
    }

    fn check(sends: &[Send], read: &[(i64, &str)]) -> Vec<&'static str> {
        let refs: Vec<&Send> = sends.iter().collect();
        let log: FinalRead = [(
            0,
            read.iter()
                .map(|(o, n)| (*o, Bytes::from(n.to_string())))
                .collect(),
        )]
        .into();
        latest_per_key(&refs, &log, &ReadGaps::default())
            .iter()
            .map(Finding::kind)
            .collect()
    }

    #[test]
    fn the_latest_value_or_a_later_one_passes_and_cleaned_older_ones_are_no_loss() {
        let sends = [
            send(0, "p0-0@k1", SendOutcome::Ok(0)),
            send(0, "p0-1@k1", SendOutcome::Ok(1)),
            send(0, "p0-2@k2", SendOutcome::Ok(2)),
            send(0, "p0-3@k1", SendOutcome::Unknown),
        ];
        assert!(check(&sends, &[(1, "p0-1@k1"), (2, "p0-2@k2")]).is_empty());
        // A later record of unknown outcome is as good.
        assert!(check(&sends, &[(2, "p0-2@k2"), (3, "p0-3@k1")]).is_empty());
    }

    #[test]
    fn a_superseded_record_may_be_missed_and_a_tombstone_once_its_retention_passed() {
        let log: FinalRead = [(
            0,
            vec![
                (3, Bytes::from("p0-3@k1")),
                (4, Bytes::from("p0-4@k2!")),
                (5, Bytes::from("p0-5@k1")),
                (6, Bytes::from("p0-6@k3!")),
            ],
        )]
        .into();
        let mut tombstone = send(0, "p0-4@k2!", SendOutcome::Ok(4));
        tombstone.invoked_s = 10.0;
        let removable = Removable::new(&log, &[&tombstone], 3.0);
        assert!(removable.may_lack(0, 3, 0.0), "k1 has a later record");
        assert!(
            !removable.may_lack(0, 5, 100.0),
            "k1's latest value is owed"
        );
        assert!(
            !removable.may_lack(0, 4, 12.9),
            "within delete.retention.ms"
        );
        assert!(removable.may_lack(0, 4, 13.0), "past delete.retention.ms");
        assert!(
            !removable.may_lack(0, 6, 100.0),
            "a tombstone never sent is owed"
        );
    }

    #[test]
    fn an_older_value_or_none_is_found() {
        let sends = [
            send(0, "p0-0@k1", SendOutcome::Ok(0)),
            send(0, "p0-1@k1", SendOutcome::Ok(1)),
        ];
        assert_eq!(check(&sends, &[(0, "p0-0@k1")]), ["stale-value"]);
        assert_eq!(check(&sends, &[]), ["latest-lost"]);
    }

    #[test]
    fn a_key_deleted_may_vanish_but_never_come_back() {
        let sends = [
            send(0, "p0-0@k1", SendOutcome::Ok(0)),
            send(0, "p0-1@k1!", SendOutcome::Ok(1)),
        ];
        assert!(check(&sends, &[(1, "p0-1@k1!")]).is_empty());
        assert!(check(&sends, &[]).is_empty(), "the tombstone expired");
        assert_eq!(check(&sends, &[(0, "p0-0@k1")]), ["resurrected"]);
        // A tombstone of unknown outcome after the latest value may have deleted the key…
        let sends = [
            send(0, "p0-0@k1", SendOutcome::Ok(0)),
            send(0, "p0-1@k1!", SendOutcome::Unknown),
        ];
        assert!(check(&sends, &[]).is_empty());
        // …but one that definitely failed may not.
        let sends = [
            send(0, "p0-0@k1", SendOutcome::Ok(0)),
            send(0, "p0-1@k1!", SendOutcome::failed(87)),
        ];
        assert_eq!(check(&sends, &[]), ["latest-lost"]);
    }
}
