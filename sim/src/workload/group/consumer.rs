//! A member on KIP-848's consumer group protocol (`protocol = "consumer"`), as the Java client's
//! `group.protocol=consumer` behaves: it names itself, joins with a heartbeat at epoch 0 (its
//! subscription and the broker's assignor), and from then on heartbeats at its member epoch,
//! saying which partitions it owns. The broker assigns. When an answer takes partitions away,
//! the member commits their progress, gives them up, and says so at once in its next heartbeat
//! (only then may another member get them); partitions it is given start from the group's
//! committed offsets. Its commits carry its member epoch (OffsetCommit v9). Fenced (its epoch
//! stale, or no longer a member after its session ended), it gives up everything and joins
//! again at epoch 0 under the same id; it leaves with a heartbeat at epoch -1.

use super::*;
use crate::workload::client::group::{commit_version, Join};

/// The broker's answer to a heartbeat at an epoch it no longer has for the member.
const FENCED_MEMBER_EPOCH: i16 = 110;
/// The member epoch of a heartbeat that leaves the group.
const LEAVE_EPOCH: i32 = -1;

impl Member<'_> {
    pub(super) fn consumer_protocol(&self) -> bool {
        self.g().protocol == crate::scenario::CONSUMER
    }

    /// The OffsetCommit version of this member's commits.
    pub(super) fn commit_version(&self) -> i16 {
        commit_version(self.consumer_protocol())
    }

    /// One heartbeat: a join (epoch 0) when the member is not in the group, otherwise at its
    /// epoch with what it owns; then what the answer assigns is taken. False when the answer
    /// did not let it in.
    pub(super) async fn beat(&mut self) -> bool {
        let g = self.g().clone();
        let t_out = self.world.client_timeout();
        if self.member_id.is_empty() {
            self.member_id = format!(
                "sim-{:016x}{:016x}",
                self.rng.next_u64(),
                self.rng.next_u64()
            );
        }
        if !self.joined {
            // A member joins owning nothing.
            self.release(&BTreeSet::new());
        }
        let epoch = if self.joined { self.generation } else { 0 };
        let topics = [self.world.scenario.workload.topic.clone()];
        let join = (epoch == 0).then(|| Join {
            topics: &topics,
            assignor: &g.assignor,
            rebalance_timeout_ms: i32::try_from(g.rebalance_timeout_ms).unwrap_or(i32::MAX),
        });
        let owned = match self.topic_id.filter(|_| epoch != 0) {
            Some(id) => vec![(id, self.positions.keys().copied().collect())],
            None => Vec::new(),
        };
        let member_id = self.member_id.clone();
        let Some(c) = self.client().await else {
            return false;
        };
        let answer = tokio::time::timeout(
            t_out,
            c.consumer_heartbeat(&g.group_id, &member_id, epoch, join, Some(owned)),
        )
        .await;
        let beat = match answer {
            Ok(Ok(b)) => b,
            Ok(Err(ClientError::Kafka(code))) => {
                self.refused(code);
                return false;
            }
            _ => {
                self.conn = None;
                return false;
            }
        };
        if epoch == 0 {
            self.world.record(Op::Joined(Joined {
                member: self.id,
                member_id: member_id.clone(),
                generation: beat.member_epoch,
                owned: Vec::new(),
                at_s: self.world.now_s(),
            }));
        }
        self.generation = beat.member_epoch;
        self.joined = true;
        let Some(assignment) = beat.assignment else {
            return true;
        };
        // One topic is subscribed to: every id assigned is its.
        let mut mine = BTreeSet::new();
        for (id, partitions) in assignment {
            self.topic_id = Some(id);
            mine.extend(partitions);
        }
        // What the assignment leaves out is given up, its progress committed first.
        if self.positions.keys().any(|p| !mine.contains(p)) {
            self.commit_sync(t_out, |p| !mine.contains(p)).await;
            if !self.joined {
                return false; // The commit's answer said it is no longer a member.
            }
            self.release(&mine);
        }
        self.world.record(Op::Assigned(Assigned {
            member: self.id,
            member_id: member_id.clone(),
            generation: beat.member_epoch,
            partitions: mine.iter().copied().collect(),
            at_s: self.world.now_s(),
        }));
        let added: Vec<i32> = mine
            .iter()
            .copied()
            .filter(|p| !self.positions.contains_key(p))
            .collect();
        if !added.is_empty() {
            let Some(committed) = self.read_committed_offsets(added).await else {
                // The new partitions cannot start without the group's offsets: the member
                // gives everything up and joins again, to be given them again.
                self.release(&BTreeSet::new());
                self.joined = false;
                return false;
            };
            self.start_from(committed);
        }
        // The broker learns what the member owns now from its next heartbeat: at once.
        self.beat_soon = true;
        true
    }

    /// A heartbeat refused with `code`.
    fn refused(&mut self, code: i16) {
        match code {
            FENCED_MEMBER_EPOCH | UNKNOWN_MEMBER_ID => {
                self.event(format!(
                    "fenced (error {code}): drops its partitions and joins again"
                ));
                self.release(&BTreeSet::new());
                self.joined = false;
            }
            code if coordinator_moved(code) => self.conn = None,
            code => self.event(format!("heartbeat refused (error {code})")),
        }
    }

    /// Leave the group: a heartbeat at epoch -1.
    pub(super) async fn leave_by_heartbeat(&mut self) {
        let t_out = self.world.client_timeout();
        let g = self.g().clone();
        let member_id = self.member_id.clone();
        if let Some(c) = self.client().await {
            let _ = tokio::time::timeout(
                t_out,
                c.consumer_heartbeat(&g.group_id, &member_id, LEAVE_EPOCH, None, None),
            )
            .await;
        }
    }
}
