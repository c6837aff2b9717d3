//! Answering producers: `acks=1` once the leader's own write is durable, `acks=all` once
//! committed and held durably by `min.insync.replicas` replicas.
//!
//! Invariant: nothing is answered success before it is durable on as many replicas as its
//! acks ask for; an answer is sent once, in the order of the log.

use super::*;

/// A majority of `voters`.
pub(super) fn majority(voters: &[NodeId]) -> usize {
    voters.len() / 2 + 1
}

/// Replicas of the group in sync for `min.insync.replicas`: this one, the leader, and every
/// other voter it is connected to (a broker that crashed or was cut off drops out at once; one
/// paused keeps its connection until the transport's silence timeout, and what waits for it
/// waits until then or its request's timeout).
pub(super) fn in_sync(g: &Group, me: NodeId, links: &HashMap<NodeId, bool>) -> usize {
    g.view
        .members()
        .all_voters()
        .into_iter()
        .filter(|&v| v == me || links.get(&v).copied().unwrap_or(false))
        .count()
}

/// `acks=-1` proposals that asked for more durable copies than a majority: answered once
/// committed and held durably by `min_insync` replicas (the leader's progress counts its own
/// persisted entries), refused with NOT_ENOUGH_REPLICAS_AFTER_APPEND once fewer replicas than
/// that are in sync.
pub(super) fn answer_copies(g: &mut Group, me: NodeId, links: &HashMap<NodeId, bool>) {
    let waiters = std::mem::take(&mut g.waiters);
    let raft = &g.raw.raft;
    let commit = raft.raft_log.committed;
    let in_sync = in_sync(g, me, links);
    let voters = g.view.members().all_voters();
    let copies = |index: u64| {
        raft.prs()
            .iter()
            .filter(|(id, p)| voters.contains(id) && p.matched >= index)
            .count()
    };
    let storage = g.raw.store();
    let log_start = g.view.partition.log_start_offset();
    let mut kept = VecDeque::with_capacity(waiters.len());
    let mut awaited = false;
    for w in waiters {
        if w.min_insync == 0 {
            kept.push_back(w);
            continue;
        }
        if w.last_index <= commit && copies(w.last_index) >= w.min_insync {
            let a = answer(storage, &w, log_start);
            let _ = w.reply.send(a);
        } else if in_sync < w.min_insync {
            let _ = w
                .reply
                .send(Err(ReplicaError::NotEnoughReplicasAfterAppend {
                    in_sync,
                    required: w.min_insync,
                }));
        } else {
            awaited = true;
            kept.push_back(w);
        }
    }
    g.waiters = kept;
    g.copies_awaited = awaited;
}

/// Entries below `next_index` are durable here: `acks=1` proposals among them are answered.
pub(super) fn answer_durable(g: &mut Group, next_index: u64) {
    let storage = g.raw.store();
    let log_start = g.view.partition.log_start_offset();
    let mut kept = VecDeque::with_capacity(g.waiters.len());
    for w in g.waiters.drain(..) {
        if w.acks == 1 && w.duplicate.is_none() && w.refusal.is_none() && w.last_index < next_index
        {
            let a = answer(storage, &w, log_start);
            let _ = w.reply.send(a);
        } else {
            kept.push_back(w);
        }
    }
    g.waiters = kept;
}

pub(super) fn answer(
    storage: &PartitionStorage,
    w: &Waiter,
    log_start_offset: i64,
) -> Result<Appended, ReplicaError> {
    // The entries answered for must still be the proposal's (of its term).
    match (
        raft::Storage::term(storage, w.last_index),
        storage.base_offset(w.first_index),
    ) {
        (Ok(term), Some(base_offset)) if term == w.term => Ok(Appended {
            base_offset,
            log_start_offset,
            log_append_time_ms: -1,
        }),
        _ => Err(ReplicaError::NotLeader {
            leader: None,
            term: w.term,
        }),
    }
}
