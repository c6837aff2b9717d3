//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98 and KIP-447): checked like a
//! commit (the member and generation, when the producer gives them), written to the group's
//! partition of the offsets topic as the producer's transactional batch, then *pending* — not
//! what OffsetFetch answers, and an error for a fetch that requires stable offsets — until the
//! transaction's marker on that partition commits them or drops them. A load replays the same:
//! a transactional batch's offsets are pending, a marker decides them.
//!
//! Invariant: a transaction's offsets become the group's committed offsets only through its
//! commit marker on the group's partition, never by their own write.

use tokio::sync::oneshot;

use super::offsets::Taken;
use super::records::{Entry, OffsetValue};
use super::state::Group;
use super::{partition_for, Actor, Pending, TxnCommitRequest};
use crate::protocol::error;
use crate::schema::WrittenFor;

impl Actor {
    pub(super) async fn txn_commit(
        &mut self,
        req: TxnCommitRequest,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
    ) {
        let c = &req.commit;
        if c.group_id.is_empty() {
            let _ = reply.send(Err(error::INVALID_GROUP_ID));
            return;
        }
        // KIP-447: a producer that names the consumer's member and generation is checked as
        // its commits would be — a zombie of an older generation is refused; one that names
        // none (older clients) is not checked.
        let named = c.generation >= 0 || !c.member_id.is_empty() || c.group_instance_id.is_some();
        // What a consumer-protocol member's commit is checked against (topic ids).
        let topics = if self
            .groups
            .get(&c.group_id)
            .is_some_and(|g| g.consumer.is_some())
        {
            self.topics_now()
        } else {
            Default::default()
        };
        match self.groups.get(&c.group_id) {
            None if named => {
                let _ = reply.send(Err(c.unknown_group));
                return;
            }
            None => {
                self.groups
                    .insert(c.group_id.clone(), Group::new(&c.group_id));
            }
            Some(g) if named && g.consumer.is_some() => {
                if let Err(code) = g.consumer_commit(c, true, &topics) {
                    let _ = reply.send(Err(code));
                    return;
                }
            }
            Some(g) if named => {
                let fenced = c
                    .group_instance_id
                    .as_ref()
                    .and_then(|i| g.statics.get(i))
                    .is_some_and(|m| *m != c.member_id);
                let refused = if fenced {
                    Some(error::FENCED_INSTANCE_ID)
                } else if !g.members.contains_key(&c.member_id) {
                    Some(error::UNKNOWN_MEMBER_ID)
                } else if c.generation != g.generation {
                    Some(error::ILLEGAL_GENERATION)
                } else {
                    None
                };
                if let Some(code) = refused {
                    let _ = reply.send(Err(code));
                    return;
                }
            }
            Some(_) => {}
        }
        let group = c.group_id.clone();
        let Taken {
            codes,
            accepted,
            entries,
        } = self.take_offsets(&group, req.commit.offsets);
        if accepted.is_empty() {
            let _ = reply.send(Ok(codes));
            return;
        }
        let producer = WrittenFor {
            producer_id: req.producer_id,
            producer_epoch: req.producer_epoch,
        };
        let pending = Pending::TxnOffsets {
            group: group.clone(),
            producer_id: req.producer_id,
            offsets: accepted,
            reply,
            codes,
        };
        self.write_for(&group, entries, pending, Some(producer))
            .await;
    }

    /// A transaction's offsets are durable (or not): pending until its marker.
    pub(super) fn txn_offsets_written(
        &mut self,
        group_id: &str,
        producer_id: i64,
        offsets: Vec<(String, i32, OffsetValue)>,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
        codes: Vec<i16>,
        result: Result<(), i16>,
    ) {
        let codes = match result {
            Ok(()) => {
                let g = self
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id));
                let pending = g.pending_txn.entry(producer_id).or_default();
                for (topic, partition, value) in offsets {
                    pending.insert((topic, partition), value);
                }
                codes
            }
            Err(code) => codes
                .iter()
                .map(|c| if *c == error::NONE { code } else { *c })
                .collect(),
        };
        let _ = reply.send(Ok(codes));
    }

    /// A marker of `producer_id`'s transaction on partition `index` of the offsets topic: its
    /// pending offsets of the groups there are committed, or dropped.
    pub(super) fn txn_completed(&mut self, index: i32, producer_id: i64, commit: bool) {
        let partitions = self.config.offsets_partitions;
        for (id, g) in self.groups.iter_mut() {
            if partition_for(id, partitions) != index {
                continue;
            }
            let Some(pending) = g.pending_txn.remove(&producer_id) else {
                continue;
            };
            if commit {
                g.offsets.extend(pending);
            }
        }
    }

    /// A transactional batch's record, read at load: pending for its producer.
    pub(super) fn apply_txn(&mut self, producer_id: i64, entry: Entry) {
        if let Entry::Offset {
            group,
            topic,
            partition,
            value: Some(value),
        } = entry
        {
            let g = self
                .groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group));
            g.pending_txn
                .entry(producer_id)
                .or_default()
                .insert((topic, partition), value);
        }
    }
}
