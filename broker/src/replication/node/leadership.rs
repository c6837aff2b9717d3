//! Leadership moved on purpose: a transfer asked for, the hand-over of every group at
//! shutdown, a leader confirming it still leads (read index), and Kafka's preferred leader
//! election (leadership handed back to the preferred replica once it is caught up).
//!
//! Invariant: a transfer goes only to a replica that is caught up and connected; proposals
//! meanwhile are refused NOT_LEADER_OR_FOLLOWER (never lost).

use super::*;

impl Node {
    /// Ask the group's leader — this replica, or the one it follows (raft-rs forwards the
    /// request over the long-lived connection) — to hand its leadership to `to`.
    pub(super) fn transfer(&mut self, group: GroupId, to: NodeId) {
        if self.stepped_down {
            return;
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        wake(g, &mut self.active, group);
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgTransferLeader);
        m.from = to;
        m.to = self.id;
        let _ = g.raw.step(m);
        g.timer.settle(&mut g.raw);
        self.dirty.insert(group);
    }

    /// Before a graceful stop (Kafka's controlled shutdown): ask every group this node leads
    /// to hand its leadership to the follower furthest along (raft-rs brings it up to date
    /// first, refusing proposals meanwhile), so clients move at once instead of after an
    /// election timeout.
    pub(super) fn hand_over(&mut self) {
        if self.stepped_down {
            return;
        }
        let me = self.id;
        let mut asked = 0;
        for (&group, g) in self.groups.iter_mut() {
            let raft = &g.raw.raft;
            if raft.state != StateRole::Leader {
                continue;
            }
            let heir = raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != me && self.link_state.get(id).copied().unwrap_or(false))
                .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id);
            if let Some(heir) = heir {
                wake(g, &mut self.active, group);
                g.raw.transfer_leader(heir);
                g.timer.settle(&mut g.raw);
                self.dirty.insert(group);
                asked += 1;
            }
        }
        tracing::info!(
            node = self.id,
            leaderships = asked,
            "handing leaderships over before stopping"
        );
    }

    pub(super) fn confirm(&mut self, group: GroupId, reply: oneshot::Sender<bool>) {
        let Some(g) = self.groups.get_mut(&group) else {
            let _ = reply.send(false);
            return;
        };
        let raft = &g.raw.raft;
        // raft-rs drops read indexes until an entry of the leader's term commits.
        if self.stepped_down
            || raft.state != StateRole::Leader
            || !raft.commit_to_current_term()
            || g.confirms.len() >= CONFIRMS_MAX
        {
            let _ = reply.send(false);
            return;
        }
        let term = raft.term;
        wake(g, &mut self.active, group);
        self.reads += 1;
        let ctx = self.reads;
        g.raw.read_index(ctx.to_be_bytes().to_vec());
        g.confirms.push((ctx, term, reply));
        self.dirty.insert(group);
    }

    /// Ask the group's leader for its commit (a Raft read index: this replica's own if it
    /// leads, else forwarded to the leader it follows); answered with this replica's high
    /// watermark once it has applied that far, or `None` at once when no leader is known, the
    /// node is silent or too many ask. An ask the leader never answers (it lost its
    /// leadership) is dropped when its asker gives up.
    pub(super) fn ask_commit(&mut self, group: GroupId, reply: oneshot::Sender<Option<i64>>) {
        let Some(g) = self.groups.get_mut(&group) else {
            let _ = reply.send(None);
            return;
        };
        g.commit_asks.retain(|a| !a.reply.is_closed());
        let raft = &g.raw.raft;
        // raft-rs drops read indexes until an entry of the leader's term commits.
        let leader_ready = raft.state != StateRole::Leader || raft.commit_to_current_term();
        if self.stepped_down
            || raft.leader_id == raft::INVALID_ID
            || !leader_ready
            || g.commit_asks.len() >= COMMIT_ASKS_MAX
        {
            let _ = reply.send(None);
            return;
        }
        wake(g, &mut self.active, group);
        self.reads += 1;
        let ctx = self.reads;
        g.raw.read_index(ctx.to_be_bytes().to_vec());
        g.commit_asks.push(CommitAsk {
            ctx,
            index: None,
            reply,
        });
        self.dirty.insert(group);
    }
}

/// Answer the asks for the commit whose index this replica has applied: with its high
/// watermark, which covers that index.
pub(super) fn answer_commit_asks(g: &mut Group) {
    if g.commit_asks.is_empty() {
        return;
    }
    let applied = g.raw.raft.raft_log.applied;
    let hw = g.view.partition.high_watermark();
    let done: Vec<CommitAsk> = g
        .commit_asks
        .extract_if(.., |a| a.index.is_some_and(|index| index <= applied))
        .collect();
    for a in done {
        let _ = a.reply.send(Some(hw));
    }
}

/// Kafka's preferred leader election (`auto.leader.rebalance.enable`): a leader that is not
/// its group's preferred replica (the first of the list the controller placed, which takes
/// turns across the brokers) hands the leadership back once that replica has been connected
/// and has had everything committed for `rebalance_ticks` ticks in a row, and has been heard
/// from within an election timeout (a broker whose disk failed stays connected, silent) — so
/// a broker restarted after a crash gets its share of leaderships back.
/// raft-rs's transfer sends the replica `MsgTimeoutNow` and refuses proposals meanwhile (the
/// producers are told NOT_LEADER_OR_FOLLOWER and follow the new leader). Whether the hand-back
/// is due: the caller starts it ([`hand_back`]) while fewer than [`HAND_BACKS_MAX`] of its
/// transfers are in flight; one not started stays due at the next tick.
pub(super) fn rebalance(g: &mut Group, me: NodeId, live: &BTreeSet<NodeId>, ticks: usize) -> bool {
    // Live: connected and heard from within an election timeout (raft-rs's `recent_active` is
    // cleared at every quorum check, which would restart the count each election timeout).
    let raft = &g.raw.raft;
    let Some(preferred) = g.view.preferred() else {
        return false;
    };
    // In sync: it has everything committed (under load it is always a few entries short of
    // the leader's last; raft-rs's transfer sends those before it hands over).
    let committed = raft.raft_log.committed;
    let ready = ticks > 0
        && raft.state == StateRole::Leader
        && preferred != me
        && raft.lead_transferee.is_none()
        && live.contains(&preferred)
        && g.view.members().voters.contains(&preferred)
        && raft
            .prs()
            .get(preferred)
            .is_some_and(|p| p.matched >= committed);
    if !ready {
        g.preferred_ready = 0;
        return false;
    }
    g.preferred_ready = (g.preferred_ready + 1).min(ticks);
    g.preferred_ready >= ticks
}

/// Leaderships handed back to their preferred replicas at once, at most, per node. Each
/// refuses produces until the replica wins its election, and a replica that a restart made
/// preferred for hundreds of groups, asked for all of them in one tick, took seconds to get
/// its vote requests out: every one of those partitions refused its producers meanwhile.
pub(super) const HAND_BACKS_MAX: usize = 32;

/// Start the hand-back [`rebalance`] found due.
pub(super) fn hand_back(g: &mut Group) {
    let Some(preferred) = g.view.preferred() else {
        return;
    };
    g.preferred_ready = 0;
    g.handing_back = true;
    crate::coverage::reached(crate::coverage::Event::LeadershipReturnedToPreferred);
    g.raw.transfer_leader(preferred);
    g.timer.settle(&mut g.raw);
}
