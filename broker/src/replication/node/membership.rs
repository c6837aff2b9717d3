//! A group's membership: changes applied as they commit, taken from a leader's snapshot, and
//! what the rest of the broker sees of it ([`Members`], in the group's view).
//!
//! Invariant: a change is applied once, in log order, when committed — never one the
//! membership already includes (a restart hands the changes above the recorded membership
//! over again; a snapshot's membership may include changes the log is still to bring); the
//! membership that results is recorded with the next write; the view always shows raft-rs's
//! membership after the last change applied.

use super::*;
use crate::replication::conf;

/// Who a group's replicas are, as the node last applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// The voters (of the configuration being entered, in a joint one).
    pub voters: Vec<NodeId>,
    /// The voters of the configuration being left (empty unless joint).
    pub outgoing: Vec<NodeId>,
    /// Replicas that receive the log and do not vote.
    pub learners: Vec<NodeId>,
    /// Outgoing voters that stay as learners once the joint configuration is left.
    pub learners_next: Vec<NodeId>,
}

impl Members {
    /// raft-rs's membership, each list in id order (raft-rs keeps sets, whose order is not
    /// the same on every replica).
    pub fn of(cs: &raft::eraftpb::ConfState) -> Members {
        let sorted = |ids: &[NodeId]| {
            let mut v = ids.to_vec();
            v.sort_unstable();
            v
        };
        Members {
            voters: sorted(&cs.voters),
            outgoing: sorted(&cs.voters_outgoing),
            learners: sorted(&cs.learners),
            learners_next: sorted(&cs.learners_next),
        }
    }

    /// Every voter, of both configurations while joint.
    pub fn all_voters(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.outgoing).copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Every replica: voters and learners.
    pub fn replicas(&self) -> Vec<NodeId> {
        let mut all = self.all_voters();
        all.extend(self.learners.iter().chain(&self.learners_next));
        all.sort_unstable();
        all.dedup();
        all
    }

    pub fn is_replica(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
            || self.outgoing.contains(&id)
            || self.learners.contains(&id)
            || self.learners_next.contains(&id)
    }

    /// Whether the voters `up` says are reachable (with `me`) are a majority of each
    /// configuration: enough to elect and commit.
    pub fn quorum_reachable(&self, me: NodeId, up: impl Fn(NodeId) -> bool) -> bool {
        let majority = |voters: &[NodeId]| {
            let reached = voters.iter().filter(|&&v| v == me || up(v)).count();
            voters.is_empty() || reached * 2 > voters.len()
        };
        majority(&self.voters) && majority(&self.outgoing)
    }

    /// Copies a commit guarantees: a majority of each configuration holds it.
    pub fn committed_copies(&self) -> usize {
        majority(&self.voters).max(if self.outgoing.is_empty() {
            0
        } else {
            majority(&self.outgoing)
        })
    }

    pub fn joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

/// What a replica tells the simulator each time it applies a membership change
/// ([`crate::observe`]): every replica must apply the same change at the same index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipApplied {
    pub node: NodeId,
    pub group: GroupId,
    pub index: u64,
    pub members: Members,
}

/// How far a group's replicas are, as its leader sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The leader's commit.
    pub committed: u64,
    /// Each other replica's last entry known to match the leader's log, and whether it is
    /// connected.
    pub matched: Vec<(NodeId, u64, bool)>,
}

impl Progress {
    /// Whether `id` holds everything committed and is connected.
    pub fn caught_up(&self, id: NodeId) -> bool {
        self.matched
            .iter()
            .any(|&(r, m, connected)| r == id && connected && m >= self.committed)
    }
}

impl Node {
    /// `group`'s replicas' progress, if this replica leads it.
    pub(super) fn progress(&self, group: GroupId) -> Option<Progress> {
        let g = self.groups.get(&group)?;
        let raft = &g.raw.raft;
        if raft.state != StateRole::Leader {
            return None;
        }
        Some(Progress {
            committed: raft.raft_log.committed,
            matched: raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(&id, p)| {
                    let connected = self.link_state.get(&id).copied().unwrap_or(false);
                    (id, p.matched, connected)
                })
                .collect(),
        })
    }

    /// Propose a membership change of `group`, which this replica must lead.
    pub(super) fn change_members(
        &mut self,
        group: GroupId,
        change: raft::eraftpb::ConfChangeV2,
    ) -> Result<(), ReplicaError> {
        let Some(g) = self.groups.get_mut(&group) else {
            return Err(ReplicaError::Unknown);
        };
        let raft = &g.raw.raft;
        if self.stepped_down || raft.state != StateRole::Leader {
            let leader = (raft.leader_id != 0).then_some(raft.leader_id);
            return Err(ReplicaError::NotLeader {
                leader,
                term: raft.term,
            });
        }
        let joint = g.view.members().joint();
        let refused = if raft.has_pending_conf() {
            Some("a membership change is still being applied")
        } else if change.leave_joint() && !joint {
            Some("leaving a joint configuration, but the membership is not joint")
        } else if !change.leave_joint() && joint {
            Some("the membership is joint: it must be left first")
        } else {
            None
        };
        if let Some(why) = refused {
            return Err(ReplicaError::MembershipChange(why.into()));
        }
        wake(g, &mut self.active, group);
        let term = g.raw.raft.term;
        let proposed = g.raw.propose_conf_change(Vec::new(), change);
        g.timer.settle(&mut g.raw);
        self.dirty.insert(group);
        proposed.map_err(|e| {
            tracing::debug!(node = self.id, group, error = %e, "a membership change was not proposed");
            ReplicaError::NotLeader { leader: None, term }
        })
    }
}

/// Apply the membership changes among `committed` that the membership does not include yet.
/// A change raft-rs refuses (it never should: the leader proposes only changes that follow
/// the membership) is logged and not applied, as raft-rs lets an application reject one.
pub(super) fn apply_changes(g: &mut Group, group: GroupId, node: NodeId, committed: &[Entry]) {
    let mut applied = None;
    let mut conf_index = g.raw.store().conf_index();
    for e in committed.iter().filter(|e| conf::is_change(e)) {
        if e.index <= conf_index {
            continue;
        }
        let change = match conf::change_of(e) {
            Ok(c) => c,
            Err(why) => {
                tracing::error!(node, group, index = e.index, %why, "a membership change does not decode: not applied");
                continue;
            }
        };
        let entering = !change.leave_joint() && change.enter_joint().is_some();
        let leaving = change.leave_joint();
        match g.raw.apply_conf_change(&change) {
            Ok(cs) => {
                crate::coverage::reached(crate::coverage::Event::MembershipChangeApplied);
                crate::observe::emit(|| MembershipApplied {
                    node,
                    group,
                    index: e.index,
                    members: Members::of(&cs),
                });
                if entering {
                    g.joint_entered_in = Some(e.term);
                } else if leaving {
                    if g.joint_entered_in.is_some_and(|t| t != e.term) {
                        crate::coverage::reached(crate::coverage::Event::JointLeftUnderNewLeader);
                    }
                    g.joint_entered_in = None;
                }
                tracing::info!(node, group, index = e.index, voters = ?cs.voters, outgoing = ?cs.voters_outgoing, learners = ?cs.learners, "membership change applied");
                conf_index = e.index;
                applied = Some(cs);
            }
            Err(err) => {
                tracing::error!(node, group, index = e.index, error = %err, "raft-rs refused a committed membership change: not applied");
            }
        }
    }
    if let Some(cs) = applied {
        g.raw.store().set_conf(conf_index, &cs);
        g.next.conf = Some(conf::record(conf_index, &cs));
        g.view.set_members(Members::of(&cs));
        step_down_if_removed(g, group, node, &cs);
        g.timer.settle(&mut g.raw);
    }
}

/// A leader that a change took out of every configuration stops leading at once, handing
/// over to the most caught-up voter first. raft-rs keeps such a leader leading (its own
/// progress gone, it panics at its next persisted write); the move's driver hands over
/// before it leaves the joint configuration, but a leader elected meanwhile may commit a
/// leave proposed before it led.
fn step_down_if_removed(
    g: &mut Group,
    group: GroupId,
    node: NodeId,
    cs: &raft::eraftpb::ConfState,
) {
    let raft = &g.raw.raft;
    if raft.state != StateRole::Leader
        || cs.voters.contains(&node)
        || cs.voters_outgoing.contains(&node)
    {
        return;
    }
    let heir = raft
        .prs()
        .iter()
        .filter(|(id, _)| cs.voters.contains(id))
        .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
        .map(|(id, _)| *id);
    tracing::info!(
        node,
        group,
        ?heir,
        "this leader is no longer a voter of the group: it steps down"
    );
    crate::coverage::reached(crate::coverage::Event::RemovedLeaderSteppedDown);
    if let Some(heir) = heir {
        g.raw.transfer_leader(heir);
    }
    let term = g.raw.raft.term;
    g.raw.raft.become_follower(term, raft::INVALID_ID);
}

/// A leader's snapshot: its membership becomes this replica's (recorded with the reset).
pub(super) fn take_snapshot_conf(g: &mut Group, record: &crate::storage::log::conf::ConfRecord) {
    let members = Members::of(&conf::state(record));
    if members.learners.contains(&g.raw.raft.id) {
        crate::coverage::reached(crate::coverage::Event::LearnerFromSnapshot);
    }
    g.view.set_members(members);
}
