//! Moving a partition's replicas: the leader of each partition's Raft group steps its
//! membership toward the replicas the metadata wants ([`super::moves`]), one membership change
//! at a time, and tells the metadata once it is there.
//!
//! Only a leader can propose a membership change, so the leader drives; every step is derived
//! from the membership applied now, the wanted replicas and the replicas' progress alone, so a
//! new leader (after a crash, a partition, a transfer) resumes where the last one stopped. The
//! steps, Raft's joint consensus as raft-rs makes it:
//! 1. a wanted replica that is not in the group is added as a learner (one per change): it
//!    receives the log — or the leader's snapshot, when the log no longer starts at the
//!    group's first entry — and does not vote;
//! 2. once every wanted replica is a learner or voter and every learner is caught up
//!    (connected, holding everything committed), one change enters the joint configuration
//!    `wanted & current` (explicitly: raft-rs loses an automatic leave when the leader changes);
//! 3. the joint configuration is left; a leader that is not among the wanted voters steps down
//!    once it applies that, handing over to the most caught-up new voter (Raft's way: the
//!    leader of `old & new` may be outside `new`, and leads until `new` is committed;
//!    `replication::node::membership`);
//! 4. learners that are not wanted (a cancelled move's) are removed, one per change;
//! 5. the group is exactly the wanted replicas: the move is done
//!    ([`MetadataRecord::ReassignmentDone`]), named by its epoch.
//!
//! Invariant: a change is proposed only by the group's leader, only when none is being applied
//! (raft-rs refuses otherwise), and a voter is added only once caught up; nothing here waits
//! on a replica that is away: the next pass looks again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};

use super::moves::done_record;
use super::Controller;
use crate::replication::node::{Members, Progress};
use crate::replication::transport::NodeId;
use crate::replication::wire::GroupId;

/// How often the leader looks at its groups' moves.
const PASS_EVERY: Duration = Duration::from_millis(100);
/// How long a completion is waited for before it is proposed again.
const DONE_AGAIN: Duration = Duration::from_secs(1);

/// The next step of a group toward `wanted` (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Change(ConfChangeV2),
    /// Wait: learners catching up.
    Wait,
    /// The group is the wanted replicas.
    Done,
}

/// The step from membership `m`, led by `me`, with its replicas' `progress`, toward `wanted`.
pub fn next_step(me: NodeId, m: &Members, progress: &Progress, wanted: &[NodeId]) -> Step {
    use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
    if m.joint() {
        return Step::Change(ConfChangeV2::default());
    }
    if let Some(&missing) = wanted.iter().find(|&&id| !m.is_replica(id)) {
        return Step::Change(change(
            ConfChangeTransition::Auto,
            &[(AddLearnerNode, missing)],
        ));
    }
    let mut steps = Vec::new();
    for &id in wanted.iter().filter(|id| !m.voters.contains(id)) {
        if id != me && !progress.caught_up(id) {
            return Step::Wait;
        }
        steps.push((AddNode, id));
    }
    for &id in m.voters.iter().filter(|id| !wanted.contains(id)) {
        steps.push((RemoveNode, id));
    }
    if !steps.is_empty() {
        return Step::Change(change(ConfChangeTransition::Explicit, &steps));
    }
    if let Some(&extra) = m.learners.iter().find(|id| !wanted.contains(id)) {
        return Step::Change(change(ConfChangeTransition::Auto, &[(RemoveNode, extra)]));
    }
    Step::Done
}

pub(super) fn change(
    transition: ConfChangeTransition,
    steps: &[(ConfChangeType, NodeId)],
) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    cc.set_transition(transition);
    for &(ty, id) in steps {
        let mut s = ConfChangeSingle::default();
        s.set_change_type(ty);
        s.node_id = id;
        cc.changes.push(s);
    }
    cc
}

impl Controller {
    /// Drive the moves of the groups this broker leads (see the module doc).
    pub(super) async fn reassign_loop(self: Arc<Self>) {
        let clock = self.env.clock.clone();
        // Completions proposed and when: (group, epoch) → proposed at.
        let mut done_sent: BTreeMap<(GroupId, i64), tokio::time::Instant> = BTreeMap::new();
        let mut changes = self.changes();
        loop {
            let md = self.metadata();
            let now = clock.now();
            done_sent.retain(|_, at| now.saturating_duration_since(*at) < DONE_AGAIN);
            // Only a move changes a group's membership: a group whose partition has none is
            // its replicas already (made so, or a move's completion said so).
            let moving = md
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.moving.is_some());
            for p in moving {
                let Some(view) = self.replication.group(p.group) else {
                    continue;
                };
                if !view.status().serving {
                    continue;
                }
                let members = view.members();
                let wanted = p.desired();
                let Some(progress) = self.replication.progress(p.group).await else {
                    continue;
                };
                match next_step(self.node_id, &members, &progress, wanted) {
                    Step::Change(cc) => {
                        tracing::info!(group = p.group, change = ?cc, "moving the group's replicas");
                        if let Err(e) = self.replication.change_members(p.group, cc).await {
                            tracing::debug!(group = p.group, error = %e, "membership change not proposed; tried again");
                        }
                    }
                    Step::Wait => {}
                    Step::Done => {
                        let Some(m) = &p.moving else {
                            continue;
                        };
                        if done_sent.contains_key(&(p.group, m.epoch)) {
                            continue;
                        }
                        done_sent.insert((p.group, m.epoch), now);
                        tracing::info!(group = p.group, replicas = ?wanted, cancelled = m.cancelled, "the group's replicas moved");
                        self.propose_once(&done_record(p.group, m.epoch)).await;
                    }
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = clock.sleep(PASS_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::controller) fn members(
        voters: &[u64],
        outgoing: &[u64],
        learners: &[u64],
    ) -> Members {
        Members {
            voters: voters.to_vec(),
            outgoing: outgoing.to_vec(),
            learners: learners.to_vec(),
            learners_next: Vec::new(),
        }
    }

    pub(in crate::controller) fn progress(caught_up: &[u64], behind: &[u64]) -> Progress {
        Progress {
            committed: 100,
            matched: caught_up
                .iter()
                .map(|&id| (id, 100, true))
                .chain(behind.iter().map(|&id| (id, 50, true)))
                .collect(),
        }
    }

    fn kinds(step: &Step) -> Vec<(ConfChangeType, u64)> {
        match step {
            Step::Change(cc) => cc
                .changes
                .iter()
                .map(|c| (c.get_change_type(), c.node_id))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_move_adds_learners_then_switches_through_a_joint_configuration_then_is_done() {
        use ConfChangeType::*;
        let wanted = [2, 3, 4];
        // Learner first.
        let m = members(&[1, 2, 3], &[], &[]);
        assert_eq!(
            kinds(&next_step(1, &m, &progress(&[2, 3], &[]), &wanted)),
            vec![(AddLearnerNode, 4)]
        );
        // Not caught up: wait; caught up: the joint switch, explicitly.
        let m = members(&[1, 2, 3], &[], &[4]);
        assert_eq!(
            next_step(1, &m, &progress(&[2, 3], &[4]), &wanted),
            Step::Wait
        );
        let s = next_step(1, &m, &progress(&[2, 3, 4], &[]), &wanted);
        assert_eq!(kinds(&s), vec![(AddNode, 4), (RemoveNode, 1)]);
        let Step::Change(cc) = &s else { unreachable!() };
        assert_eq!(cc.get_transition(), ConfChangeTransition::Explicit);
        // Joint: leave it (a leaving leader steps down once it applies that).
        let joint = members(&[2, 3, 4], &[1, 2, 3], &[]);
        for leader in [1, 2] {
            let s = next_step(leader, &joint, &progress(&[3], &[2, 4]), &wanted);
            assert!(matches!(&s, Step::Change(cc) if cc.leave_joint()));
        }
        assert_eq!(
            next_step(
                2,
                &members(&[2, 3, 4], &[], &[]),
                &progress(&[3, 4], &[]),
                &wanted
            ),
            Step::Done
        );
    }

    #[test]
    fn a_cancelled_move_removes_its_learners_and_a_shrink_needs_no_learner() {
        use ConfChangeType::*;
        let m = members(&[1, 2, 3], &[], &[4, 5]);
        assert_eq!(
            kinds(&next_step(1, &m, &progress(&[2, 3], &[]), &[1, 2, 3])),
            vec![(RemoveNode, 4)]
        );
        let m = members(&[1, 2, 3], &[], &[]);
        assert_eq!(
            kinds(&next_step(1, &m, &progress(&[2, 3], &[]), &[1, 2])),
            vec![(RemoveNode, 3)]
        );
    }
}
