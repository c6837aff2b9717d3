//! The membership changes a replicated log holds, kept where Raft can be told of them without
//! reading the log.
//!
//! A Raft group's membership changes (raft-rs's `ConfChangeV2`: learners added, voters switched
//! through a joint configuration, replicas removed) are entries of its log like any other, each
//! stored as one of the broker's own control batches ([`crate::batch::conf_change_batch`]),
//! which take no Kafka offset. raft-rs must see them whole, at once, when it looks at entries it
//! has not applied (it refuses to campaign while a change is committed and unapplied) and when
//! it hands committed entries over; the replication layer applies them and records the
//! membership that results. So a replicated log's record ([`super::replica::ReplicaMeta`])
//! keeps:
//! - every change its log holds that the recorded membership does not include yet, with its
//!   bytes (changes are few and small), and
//! - the membership after the changes applied through some index ([`ConfRecord`]), written
//!   with the next Raft write after they are applied.
//!
//! Invariant: a change is dropped from the record only once the recorded membership includes
//! it (a change the log's retention removed before the membership was recorded is still here),
//! so a start always rebuilds the membership: the recorded one, then every change above it.
//! A cut forgets the changes it removed (they were never committed, so never applied); a reset
//! to a leader's snapshot starts from the leader's membership.
//!
//! The storage layer keeps the changes as bytes; only the replication layer decodes them.

use serde::{Deserialize, Serialize};

/// A membership change in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfEntry {
    /// Its Raft index.
    pub index: u64,
    /// Its log offset.
    pub offset: i64,
    /// The change as the replication layer encoded it.
    pub change: Vec<u8>,
}

/// A group's membership after every change through `index` was applied (raft-rs's
/// `ConfState`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfRecord {
    pub index: u64,
    pub voters: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<u64>,
    /// The voters of the configuration being left (a joint configuration; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters_outgoing: Vec<u64>,
    /// Voters of the outgoing configuration that become learners when it is left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners_next: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_leave: bool,
}

/// What a log keeps of its membership (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confs {
    /// Changes in the log, in index order, not all included in `applied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<ConfEntry>,
    /// The membership last recorded; `None`: the group's first membership (what it was made
    /// with), before any change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<ConfRecord>,
}

impl Confs {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.applied.is_none()
    }

    /// A change written at entry `index`, log offset `offset`.
    pub fn push(&mut self, index: u64, offset: i64, change: &[u8]) {
        debug_assert!(self.entries.last().is_none_or(|e| e.index < index));
        self.entries.push(ConfEntry {
            index,
            offset,
            change: change.to_vec(),
        });
    }

    /// The membership after the changes through `record.index` (ignored when an equal or later
    /// one is recorded). Returns whether the record changed.
    pub fn record_applied(&mut self, record: &ConfRecord) -> bool {
        if self
            .applied
            .as_ref()
            .is_some_and(|a| a.index >= record.index)
        {
            return false;
        }
        self.applied = Some(record.clone());
        true
    }

    /// The index through which the recorded membership includes every change (0: none).
    pub fn applied_index(&self) -> u64 {
        self.applied.as_ref().map_or(0, |a| a.index)
    }

    /// The changes the recorded membership does not include yet.
    pub fn unapplied(&self) -> impl Iterator<Item = &ConfEntry> {
        let applied = self.applied_index();
        self.entries.iter().filter(move |e| e.index > applied)
    }

    /// Forget the changes from entry `index` on (the log was cut there).
    pub fn truncate(&mut self, index: u64) {
        self.entries.retain(|e| e.index < index);
    }

    /// The log holds nothing before `first_base`: changes below it go once the recorded
    /// membership includes them.
    pub fn prune(&mut self, first_base: i64) {
        let applied = self.applied_index();
        self.entries
            .retain(|e| e.offset >= first_base || e.index > applied);
    }

    /// The changes of the log from `offset` on are those in `found` (recovery's scan of the
    /// active segment, which the record may lag).
    pub fn replace_from(&mut self, offset: i64, found: impl IntoIterator<Item = ConfEntry>) {
        self.entries.retain(|e| e.offset < offset);
        for e in found {
            if self.entries.last().is_none_or(|l| l.index < e.index) {
                self.entries.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, voters: &[u64]) -> ConfRecord {
        ConfRecord {
            index,
            voters: voters.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_change_stays_until_the_recorded_membership_includes_it_whatever_retention_removed() {
        let mut c = Confs::default();
        c.push(5, 40, b"add 4");
        c.push(9, 80, b"joint");
        c.push(11, 95, b"");
        // Retention removed everything below offset 90 before any membership was recorded:
        // the changes stay (a start must apply them again).
        c.prune(90);
        assert_eq!(c.entries.len(), 3);
        assert_eq!(c.unapplied().count(), 3);
        assert!(c.record_applied(&record(9, &[1, 2, 3, 4])));
        assert!(
            !c.record_applied(&record(5, &[1, 2, 3])),
            "an older membership"
        );
        assert_eq!(c.unapplied().map(|e| e.index).collect::<Vec<_>>(), vec![11]);
        c.prune(90);
        assert_eq!(
            c.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![11]
        );
        // A cut forgets what it removed; a recovery scan replaces the active segment's part.
        c.truncate(11);
        assert!(c.entries.is_empty());
        c.replace_from(
            90,
            [ConfEntry {
                index: 12,
                offset: 96,
                change: b"x".to_vec(),
            }],
        );
        assert_eq!(c.unapplied().map(|e| e.index).collect::<Vec<_>>(), vec![12]);
    }

    #[test]
    fn a_record_without_changes_is_not_written_and_an_old_one_reads_as_none() {
        let c = Confs::default();
        assert!(c.is_empty());
        let json = serde_json::to_string(&Confs {
            entries: Vec::new(),
            applied: Some(record(3, &[1, 2])),
        })
        .unwrap();
        let back: Confs = serde_json::from_str(&json).unwrap();
        assert_eq!(back.applied, Some(record(3, &[1, 2])));
        assert_eq!(
            serde_json::from_str::<Confs>("{}").unwrap(),
            Confs::default()
        );
    }
}
