//! Messages from peers: stepped into their groups, held when their group does not exist yet
//! (early messages, bounded and aged out), and the messages sent to peers, some withheld
//! (a replica that may have lost acknowledged entries withholds its vote grants, see
//! [`Recovery`]).
//!
//! Invariant: a message that depends on persistence leaves only once every Ready up to its own
//! is durable; nothing is sent or stepped while the directory is failed.

use super::*;

impl Node {
    pub(super) fn deliver(&mut self, from: NodeId, messages: Vec<Bytes>) {
        if self.stepped_down {
            return;
        }
        self.heard.insert(from, self.ticks);
        self.work += messages.len() as u64;
        // (A node that started with the cluster and has followed its metadata since holds
        // everything it acknowledged: a peer that restarts with data later changes nothing.)
        if self.fresh
            && !self.joined
            && self.metadata_caught_up_at.is_none()
            && self.transport.peer_holds_data(from)
        {
            // Also what a node that starts with a cluster being formed sees, when a peer was
            // elected first: only the metadata tells a replaced disk apart (the controller
            // warns when it finds an earlier registration of this node).
            self.joined = true;
            tracing::info!(
                node = self.id,
                peer = from,
                "this node's data directory is new and node {from} holds Raft data: in each group this node votes in no election until it has caught up with the group's leader (were its disk replaced, its vote must not count what it forgot)"
            );
            for g in self.groups.values_mut() {
                if !g.recovery.caught_up {
                    g.recovery.withholding = true;
                }
            }
        }
        for bytes in messages {
            match wire::decode_inbound(&bytes) {
                Ok(Inbound::Raft(group, m)) => {
                    // raft-rs forwards a proposal, a leadership transfer or a read index
                    // to the leader keeping its origin as the sender (a transfer's is the
                    // replica to take over): such a message may come through another voter.
                    let forwarded = matches!(
                        m.get_msg_type(),
                        MessageType::MsgPropose
                            | MessageType::MsgTransferLeader
                            | MessageType::MsgReadIndex
                    ) && self
                        .groups
                        .get(&group)
                        .is_some_and(|g| g.view.members().is_replica(m.from));
                    if m.from != from && !forwarded {
                        tracing::warn!(
                            group,
                            peer = from,
                            claimed = m.from,
                            "dropping a Raft message whose sender is not its peer"
                        );
                        continue;
                    }
                    if self.groups.contains_key(&group) {
                        self.step(group, m);
                    } else {
                        self.hold_early(group, m);
                    }
                }
                Ok(Inbound::Quiesce { group, term }) => {
                    let Some(g) = self.groups.get_mut(&group) else {
                        continue;
                    };
                    let raft = &g.raw.raft;
                    if raft.term == term
                        && raft.leader_id == from
                        && raft.state == StateRole::Follower
                        && raft.raft_log.committed == raft.raft_log.last_index()
                        && g.in_flight.is_none()
                        && g.next.is_empty()
                    {
                        g.quiet = true;
                        self.active.remove(&group);
                        self.dirty.insert(group);
                    }
                }
                Ok(Inbound::Prefix(group, msg)) => self.prefix_message(from, group, msg),
                Ok(Inbound::Call(call)) => self.calls.delivered(from, call),
                Err(e) => {
                    tracing::warn!(peer = from, error = %e, "dropping an undecodable Raft message");
                }
            }
        }
    }

    /// Step a message from a peer into `group`, a replica here.
    pub(super) fn step(&mut self, group: GroupId, mut m: Message) {
        let kind = m.get_msg_type();
        if kind == MessageType::MsgSnapshot && !self.admit_snapshot(group, &m) {
            return;
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if matches!(kind, MessageType::MsgAppend | MessageType::MsgHeartbeat)
            && m.term >= g.raw.raft.term
        {
            let r = &mut g.recovery;
            r.leader = Some(m.from);
            // What this replica must hold: what was committed when it first heard a leader's
            // append, and what a leader's heartbeat says it acknowledged (the leader's view of
            // it; after a loss, stale until the leader probes it again). Not the commits of
            // later appends: under load a follower is always a little short of those, and
            // what it acknowledges from then on it keeps.
            if kind == MessageType::MsgHeartbeat || !r.heard_append {
                r.leader_commit = r.leader_commit.max(m.commit);
            }
            if m.commit > 0 && !self.holds_data {
                // A leader has committed entries: this cluster holds data, whether or not this
                // node has written any yet. Peers that connect from now on are told so.
                self.holds_data = true;
                self.transport.set_holds_data(true);
            }
            r.heard_append |= kind == MessageType::MsgAppend;
            let last = g.raw.raft.raft_log.last_index();
            if kind == MessageType::MsgHeartbeat && m.commit > last {
                if !r.withholding {
                    tracing::warn!(
                        node = self.id,
                        group,
                        commit = m.commit,
                        last,
                        "the leader's commit is past this replica's log: it lost entries it had acknowledged (its data directory emptied, or restored from an older copy); it votes in no election of this group until it has caught up"
                    );
                }
                r.withholding = true;
                r.lost = true;
                r.caught_up = false;
                m.commit = last;
                // Tell the leader where this log ends (an append refused there): it believes
                // this replica holds what it acknowledged and would send it nothing more.
                let mut refusal = Message::default();
                refusal.set_msg_type(MessageType::MsgAppendResponse);
                refusal.to = m.from;
                refusal.from = self.id;
                refusal.term = m.term;
                refusal.reject = true;
                refusal.index = last;
                refusal.reject_hint = last;
                send(&self.transport, group, &refusal);
            }
        }
        if kind == MessageType::MsgAppendResponse
            && m.reject
            && g.raw.raft.state == StateRole::Leader
            && m.term == g.raw.raft.term
        {
            // A follower that refuses an append because its log ends below what it had
            // acknowledged lost entries (see `Recovery`): raft-rs takes such a refusal for a
            // stale one and would go on sending from past its log's end for ever. Probe it
            // again from where its log ends. (A refusal that was only stale costs a probe.)
            if let Some(pr) = g.raw.raft.mut_prs().get_mut(m.from) {
                if m.reject_hint < pr.matched {
                    tracing::info!(node = self.id, group, follower = m.from, acknowledged = pr.matched, log_end = m.reject_hint, "a follower's log ends below what it acknowledged: probing it again from its end");
                    pr.matched = m.reject_hint;
                    pr.become_probe();
                }
            }
        }
        // Heartbeats of a quiet group's own leader, and their answers, change nothing that
        // needs a tick: everything else wakes it.
        let routine = match kind {
            MessageType::MsgHeartbeatResponse => true,
            MessageType::MsgHeartbeat => {
                m.term == g.raw.raft.term && m.from == g.raw.raft.leader_id
            }
            _ => false,
        };
        if !routine {
            wake(g, &mut self.active, group);
        }
        let _ = g.raw.step(m);
        g.timer.settle(&mut g.raw);
        self.dirty.insert(group);
    }

    /// The age past which a held early message is dropped.
    pub(super) fn early_max_age(&self) -> Duration {
        self.settings.tick * self.settings.election_ticks as u32
    }

    /// Keep a message for a group not started here, within the bounds.
    pub(super) fn hold_early(&mut self, group: GroupId, m: Message) {
        let now = self.env.clock.now();
        let max_age = self.early_max_age();
        if !self.early.contains_key(&group) && self.early.len() >= EARLY_GROUPS_MAX {
            self.early.retain(|_, held| {
                held.retain(|(at, _)| now.saturating_duration_since(*at) < max_age);
                !held.is_empty()
            });
            if self.early.len() >= EARLY_GROUPS_MAX {
                return;
            }
        }
        let held = self.early.entry(group).or_default();
        held.retain(|(at, _)| now.saturating_duration_since(*at) < max_age);
        if held.len() < EARLY_PER_GROUP_MAX {
            held.push((now, m));
        }
    }

    /// A group just started: step what its peers sent before it was, if still recent.
    pub(super) fn deliver_early(&mut self, group: GroupId) {
        let Some(held) = self.early.remove(&group) else {
            return;
        };
        let now = self.env.clock.now();
        let max_age = self.early_max_age();
        for (at, m) in held {
            if now.saturating_duration_since(at) < max_age {
                self.step(group, m);
            }
        }
    }
}

pub(super) fn send(transport: &Transport, group: GroupId, m: &Message) {
    match wire::encode(group, m) {
        Ok(bytes) => {
            transport.send(m.to, bytes);
        }
        Err(e) => tracing::warn!(group, error = %e, "cannot encode a Raft message; dropped"),
    }
}

/// A vote granted by a replica that withholds its votes ([`Recovery`]).
pub(super) fn withheld(g: &Group, m: &Message) -> bool {
    let withheld = g.recovery.withholding
        && !m.reject
        && g.recovery.leader != Some(m.to)
        && matches!(
            m.get_msg_type(),
            MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse
        );
    if withheld {
        crate::coverage::reached(crate::coverage::Event::VoteWithheld);
    }
    withheld
}

/// Every Ready gathered so far is durable (nothing of them waits for a write).
pub(super) fn persist_held(g: &mut Group, group: GroupId, transport: &Transport) {
    if let Some(&(last, _)) = g.held.back() {
        if last > g.persisted {
            g.raw.on_persist_ready(last);
            g.persisted = last;
        }
    }
    release_held(g, group, transport);
}

/// Send the messages of every Ready up to the persisted one.
pub(super) fn release_held(g: &mut Group, group: GroupId, transport: &Transport) {
    while g.held.front().is_some_and(|(n, _)| *n <= g.persisted) {
        let (_, messages) = g.held.pop_front().expect("checked");
        for m in messages.iter().filter(|m| !withheld(g, m)) {
            send(transport, group, m);
        }
    }
}
