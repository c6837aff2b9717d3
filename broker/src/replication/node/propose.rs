//! Proposals: a produce's batches checked against the idempotent producers' state, given
//! their offsets and handed to Raft; and the gate ([`super::super::gate`]) that holds a leader's
//! next round until its previous one committed.
//!
//! Invariant: a proposal is refused before it is written when it cannot succeed (not the
//! leader, not serving, too few replicas in sync, out of sequence); a duplicate is answered
//! with its original offsets and never written twice; once handed to Raft every proposal has a
//! waiter that is answered exactly once.

use super::*;

impl Node {
    pub(super) fn propose(
        &mut self,
        group: GroupId,
        proposal: Proposal,
    ) -> Result<Acknowledgement, ReplicaError> {
        let (tx, rx) = oneshot::channel();
        let mut answer = Some(tx);
        self.propose_into(group, proposal, &mut answer)?;
        Ok(answer.is_none().then_some(rx))
    }

    /// Propose, answering through `answer` (taken when the proposal will be answered there;
    /// left when nothing will be: acks=0, a forwarded proposal).
    pub(super) fn propose_into(
        &mut self,
        group: GroupId,
        proposal: Proposal,
        answer: &mut Option<Answer>,
    ) -> Result<(), ReplicaError> {
        let Proposal {
            batches,
            acks,
            min_insync,
            forward,
            txn_guard,
        } = proposal;
        let id = self.id;
        if self.stepped_down {
            return Err(ReplicaError::NotLeader {
                leader: None,
                term: 0,
            });
        }
        let g = self.groups.get_mut(&group).ok_or(ReplicaError::Unknown)?;
        wake(g, &mut self.active, group);
        let raft = &g.raw.raft;
        if forward && raft.state == StateRole::Follower && raft.leader_id != 0 {
            let stepped = g.raw.step(raft_proposal(id, batches));
            g.timer.settle(&mut g.raw);
            self.dirty.insert(group);
            return stepped.map_err(|_| ReplicaError::NotLeader {
                leader: None,
                term: g.raw.raft.term,
            });
        }
        if raft.state != StateRole::Leader {
            let leader = (raft.leader_id != 0).then_some(raft.leader_id);
            return Err(ReplicaError::NotLeader {
                leader,
                term: raft.term,
            });
        }
        let term = raft.term;
        let min_insync = copies_required(g, id, &self.link_state, acks, min_insync)?;
        let count = batches.len() as u64;
        let now_ms = self.env.clock.wall_ms();
        let headers: Vec<crate::batch::BatchHeader> = batches
            .iter()
            .filter_map(|b| crate::batch::parse_header(b).ok())
            .collect();
        if headers.len() != batches.len() {
            return Err(ReplicaError::Storage(AppendError::Storage(
                crate::storage::StorageError::Corrupt {
                    path: g.view.partition.dir.clone(),
                    reason: "a proposed batch does not parse".into(),
                },
            )));
        }
        // Offsets as they will be written: after everything raft-rs holds. A leader's log only
        // grows within its term, so what its last proposal ended at still holds while the
        // log ends where that proposal left it.
        let last_before = g.raw.raft.raft_log.last_index();
        let first_offset = match g.next_offset_at {
            Some((t, last, next)) if t == term && last == last_before => next,
            _ => next_offset(g),
        };
        let partition = g.view.partition.clone();
        let may_open = |producer_id: i64| {
            txn_guard.is_some_and(|t| partition.state().txn_verified.get(&producer_id) == Some(&t))
        };
        match g
            .producers
            .check(&headers, &batches, first_offset, now_ms, may_open)
        {
            Err(e) => return self.hold_refusal(group, e, acks, answer),
            Ok(Checked::Duplicate(b)) => {
                crate::coverage::reached(crate::coverage::Event::DuplicateBatchAnswered);
                if acks != 0 {
                    if let Some(reply) = answer.take() {
                        answer_duplicate(g, Waiter::new(term, acks, reply), &b);
                    }
                }
                return Ok(());
            }
            Ok(Checked::Append) => {}
        }
        let proposed = batches.clone();
        let stepped = g.raw.step(raft_proposal(id, batches));
        g.timer.settle(&mut g.raw);
        if stepped.is_err() || g.raw.raft.state != StateRole::Leader || g.raw.raft.term != term {
            return Err(ReplicaError::NotLeader {
                leader: None,
                term: g.raw.raft.term,
            });
        }
        let last_index = g.raw.raft.raft_log.last_index();
        let mut offset = first_offset;
        for (i, (h, b)) in headers.iter().zip(&proposed).enumerate() {
            let index = last_index + 1 - count + i as u64;
            g.producers.record(index, h, b, offset, now_ms);
            offset += h.last_offset_delta as i64 + 1;
            if crate::txn_marker::Marker::decode(h, b).is_some() {
                // A marker ends the producer's confirmation here: a batch late from the
                // transaction it ends must not open another.
                partition.state_mut().txn_verified.remove(&h.producer_id);
            }
        }
        g.next_offset_at = Some((term, last_index, offset));
        g.idle_ticks = 0;
        self.dirty.insert(group);
        if acks == 0 || count == 0 {
            return Ok(());
        }
        let Some(reply) = answer.take() else {
            return Ok(());
        };
        let mut waiter = Waiter::new(term, acks, reply);
        (waiter.first_index, waiter.last_index) = (last_index + 1 - count, last_index);
        waiter.min_insync = min_insync;
        g.waiters.push_back(waiter);
        Ok(())
    }

    /// An idempotent batch out of sequence (or of a producer this log does not know) is
    /// refused only once a read index confirms that this node still leads: a leader cut off,
    /// or just back from a pause, holds a stale producer state (at most [`REFUSALS_MAX`] held
    /// per group; past it, and for acks=0, refused at once).
    fn hold_refusal(
        &mut self,
        group: GroupId,
        e: crate::producer_state::ProducerError,
        acks: i16,
        answer: &mut Option<Answer>,
    ) -> Result<(), ReplicaError> {
        let g = self.groups.get_mut(&group).ok_or(ReplicaError::Unknown)?;
        let term = g.raw.raft.term;
        let waiting = g.waiters.iter().filter(|w| w.refusal.is_some()).count();
        if acks == 0 || waiting >= REFUSALS_MAX {
            return Err(ReplicaError::Storage(AppendError::Producer(e)));
        }
        if !g.raw.raft.commit_to_current_term() {
            // Not yet a leader that can confirm itself (raft-rs drops read indexes until an
            // entry of its term commits): the producer asks again.
            return Err(ReplicaError::NotLeader { leader: None, term });
        }
        let Some(reply) = answer.take() else {
            return Err(ReplicaError::Storage(AppendError::Producer(e)));
        };
        self.reads += 1;
        let ctx = self.reads;
        g.raw.read_index(ctx.to_be_bytes().to_vec());
        self.dirty.insert(group);
        g.waiters
            .push_back(Waiter::new(term, acks, reply).refused(ctx, e));
        Ok(())
    }

    /// This turn's proposals took the group's log this far: one round for the gate.
    pub(super) fn note_round(&mut self, group: GroupId) {
        let turn = self.turn;
        if let Some(g) = self.groups.get_mut(&group) {
            let log = &g.raw.raft.raft_log;
            let (last, committed) = (log.last_index(), log.committed);
            g.gate.proposed(turn, last, committed);
        }
    }

    /// Let through what the group's gate may release now (a round committed, or this replica
    /// no longer leads: then they are refused as any proposal to a follower is).
    pub(super) fn release_gate(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.gate.is_empty() {
            return;
        }
        let leader = g.raw.raft.state == StateRole::Leader && !self.stepped_down;
        let held = g.gate.release(g.raw.raft.raft_log.committed, leader);
        if !held.is_empty() && !leader {
            crate::coverage::reached(crate::coverage::Event::HeldProposalsRefused);
        } else if held.len() > 1 {
            crate::coverage::reached(crate::coverage::Event::ProposalsReleasedTogether);
        }
        self.propose_held(group, held);
    }

    /// Propose held proposals, in order, as one round.
    pub(super) fn propose_held(&mut self, group: GroupId, held: VecDeque<HeldProposal>) {
        if held.is_empty() {
            return;
        }
        for p in held {
            let mut answer = p.answer;
            if let Err(e) = self.propose_into(group, p.proposal, &mut answer) {
                if let Some(a) = answer {
                    let _ = a.send(Err(e));
                }
            }
        }
        self.note_round(group);
    }
}

/// A proposal of these batches, one entry each, as raft-rs takes it (from this node, or
/// forwarded to the leader).
fn raft_proposal(from: NodeId, batches: Vec<Bytes>) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgPropose);
    m.from = from;
    m.entries = batches
        .into_iter()
        .map(|data| Entry {
            data,
            ..Default::default()
        })
        .collect::<Vec<_>>()
        .into();
    m
}

/// The copies an `acks=-1` proposal waits for beyond the commit (`min.insync.replicas` above a
/// majority; 0 when the commit's majority is enough): refused before it is written when fewer
/// replicas are in sync (NOT_ENOUGH_REPLICAS), as Kafka does. A `min.insync.replicas` above
/// the partition's replicas asks for all of them, as Kafka's effective minimum does.
fn copies_required(
    g: &mut Group,
    me: NodeId,
    links: &HashMap<NodeId, bool>,
    acks: i16,
    min_insync: usize,
) -> Result<usize, ReplicaError> {
    if acks != -1 || min_insync <= g.view.members().committed_copies() {
        return Ok(0);
    }
    let min_insync = min_insync.min(g.view.members().replicas().len());
    let in_sync = in_sync(g, me, links);
    if in_sync < min_insync {
        return Err(ReplicaError::NotEnoughReplicas {
            in_sync,
            required: min_insync,
        });
    }
    g.copies_awaited = true;
    Ok(min_insync)
}

/// A retry of batches already in the log is answered with their original offsets: at once for
/// acks=1 or when they are committed, else once the high watermark passes them.
fn answer_duplicate(g: &mut Group, mut waiter: Waiter, b: &crate::producer_state::BatchMeta) {
    waiter.duplicate = Some((b.first_offset, b.last_offset + 1));
    if waiter.acks == 1 || g.view.partition.high_watermark() > b.last_offset {
        let _ = waiter.reply.send(Ok(Appended {
            base_offset: b.first_offset,
            log_start_offset: g.view.partition.log_start_offset(),
            log_append_time_ms: -1,
        }));
    } else {
        g.waiters.push_back(waiter);
    }
}

/// The Kafka offset after every entry raft-rs holds for the group (its storage's and those
/// not yet handed to it): where the next proposal's batches will be written.
pub(super) fn next_offset(g: &Group) -> i64 {
    let storage = g.raw.store();
    let last_stored = raft::Storage::last_index(storage).unwrap_or(0);
    let stored_end = storage
        .end_offset(last_stored)
        .unwrap_or_else(|| g.view.partition.state().log_end_offset());
    let unstable: i64 = g
        .raw
        .raft
        .raft_log
        .unstable_entries()
        .iter()
        .map(|e| {
            if e.data.is_empty() || crate::replication::conf::is_change(e) {
                1
            } else {
                crate::batch::parse_header(&e.data).map_or(1, |h| h.last_offset_delta as i64 + 1)
            }
        })
        .sum();
    stored_end + unstable
}
