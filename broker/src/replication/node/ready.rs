//! Readies: what raft-rs asks of a group after its inputs — messages to send, entries and
//! hard state to write, committed entries to apply — and the writes through the commit
//! pipeline, one per group at a time (what later Readies bring goes as the next one).
//!
//! Invariant: no task waits on the disk inside the loop (a write is a future the loop polls);
//! entries are applied only once committed and in order; a failed write is retried or the
//! group steps down, never skipped.

use super::*;

impl Node {
    pub(super) async fn handle_readies(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        self.work += dirty.len() as u64;
        for group in dirty {
            self.handle_ready(group).await;
            self.start_fetches(group);
        }
    }

    pub(super) async fn handle_ready(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.copies_awaited {
            answer_copies(g, self.id, &self.link_state);
        }
        if note_caught_up(g, self.id, group)
            && group == wire::CONTROLLER_GROUP
            && self.metadata_caught_up_at.is_none()
        {
            let commit = g.recovery.leader_commit.max(g.raw.raft.raft_log.committed);
            self.metadata_caught_up_at = g.raw.store().end_offset(commit);
        }
        keep_for_connected_followers(g, self.id, &self.link_state);
        if !g.confirms.is_empty() {
            // raft-rs forgets its read indexes when it stops leading: so do they.
            let (leading, term) = (g.raw.raft.state == StateRole::Leader, g.raw.raft.term);
            g.confirms
                .retain(|(_, asked_in, _)| leading && *asked_in == term);
        }
        if !g.raw.has_ready() {
            update_status(g, &self.changed, &self.metrics);
            return;
        }
        let mut rd = g.raw.ready();
        let number = rd.number();
        if let Some(ss) = rd.ss() {
            on_soft_state(g, ss, &self.metrics);
            if g.raw.raft.state == StateRole::Leader && g.receiving.is_some() {
                // The prefix it was being sent is its own log's by now or never will be: the
                // files of the reception go at once, not at the next start.
                tracing::info!(
                    group,
                    "leading now: a cleaned prefix being received is given up"
                );
                let dir = g.view.partition.dir.clone();
                let old = g.receiving.take();
                prefix::remove_received(&mut self.prefix_io, self.store.io(), dir, old);
            }
        }
        if !rd.read_states().is_empty() {
            answer_read_states(g, rd.read_states());
            answer_commit_asks(g);
        }
        // A first term led without an election sends nothing before its first write
        // (`Group::first_term_unwritten`): what it would send waits with the persisted ones.
        let mut unwritten_leaders = Vec::new();
        for m in rd.take_messages() {
            if self.stepped_down || withheld(g, &m) {
                continue;
            }
            if g.first_term_unwritten {
                unwritten_leaders.push(m);
                continue;
            }
            let m = if m.get_msg_type() == MessageType::MsgSnapshot {
                // One that names a cleaned prefix waits until the follower holds it.
                match prefix::hold_snapshot(g, m) {
                    Some(m) => m,
                    None => {
                        self.prefix_groups.insert(group);
                        continue;
                    }
                }
            } else {
                m
            };
            send(&self.transport, group, &m);
        }
        if !rd.snapshot().is_empty() {
            queue_snapshot(g, rd.snapshot());
        }
        let entries = rd.take_entries();
        if !entries.is_empty() {
            queue_entries(g, group, &entries, self.env.clock.wall_ms());
        }
        if let Some(hs) = rd.hs() {
            queue_hard_state(g, hs);
        }
        let mut persisted_messages = rd.take_persisted_messages();
        if !self.stepped_down {
            send_what_needs_no_write(g, group, &self.transport, &mut persisted_messages);
        }
        if !unwritten_leaders.is_empty() {
            unwritten_leaders.append(&mut persisted_messages);
            persisted_messages = unwritten_leaders;
        }
        let committed = rd.take_committed_entries();
        let new_work = !entries.is_empty() || !rd.snapshot().is_empty() || rd.must_sync();
        if new_work {
            g.next.number = number;
        }
        g.held.push_back((number, persisted_messages));
        g.raw.advance_append_async(rd);
        if g.next.is_empty() && g.in_flight.is_none() && !self.stepped_down {
            // Nothing of this Ready (nor before it) waits for the disk.
            persist_held(g, group, &self.transport);
        }
        if let Some(last) = committed.last() {
            let last = last.index;
            crate::fault_point!("raft.before_apply");
            let Some(g) = self.groups.get_mut(&group) else {
                return;
            };
            membership::apply_changes(g, group, self.id, &committed);
            commit::apply(g, last, &self.store);
            g.raw.advance_apply_to(last);
            answer_commit_asks(g);
            if g.copies_awaited {
                answer_copies(g, self.id, &self.link_state);
            }
        }
        if let Some(g) = self.groups.get_mut(&group) {
            update_status(g, &self.changed, &self.metrics);
        }
        self.release_gate(group);
        if self
            .groups
            .get(&group)
            .is_some_and(|g| g.in_flight.is_none() && !g.next.is_empty())
        {
            crate::fault_point!("raft.before_persist");
        }
        self.start_write(group);
        // What advancing produced (messages, commits) is handled at the next pass.
        if self.groups.get(&group).is_some_and(|g| g.raw.has_ready()) {
            self.dirty.insert(group);
        }
    }

    /// Hand a group's gathered write to the commit pipeline, if none is in flight.
    pub(super) fn start_write(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.in_flight.is_some() || g.next.is_empty() {
            return;
        }
        if g.first_term_unwritten && !g.next.entries.is_empty() {
            // A first term led without an election: its hard state goes first, alone. It is a
            // frame of the directory's file, written with every other group's in one round
            // (a thousand new partitions' terms in one sync), and once it is durable what the
            // leader sends may leave; its first entry follows in a write of its own, at the
            // disk's pace. Written together, the leaders of a topic of 1,000 partitions on a
            // disk of 30 syncs a second sent nothing for half a minute, and their groups went
            // to elections.
            let first_term = RaftWrite {
                partition: g.view.partition.clone(),
                reset: None,
                truncate_from: None,
                producers_at_cut: None,
                entries: Vec::new(),
                hard_state: Some(g.next.hard_state.take().unwrap_or_else(|| {
                    // The term is its own from the start (`first_term`), never written yet.
                    let hs = g.raw.raft.hard_state();
                    crate::storage::log::replica::HardStateRecord {
                        term: hs.term,
                        vote: hs.vote,
                        commit: hs.commit,
                    }
                })),
                conf: None,
            };
            g.in_flight = Some(FIRST_TERM_WRITE);
            let store = self.store.clone();
            self.writes.push(Box::pin(async move {
                (
                    group,
                    FIRST_TERM_WRITE,
                    raft_write(&store, first_term).await,
                )
            }));
            return;
        }
        let next = std::mem::take(&mut g.next);
        let number = next.number;
        g.in_flight = Some(number);
        let write = RaftWrite {
            partition: g.view.partition.clone(),
            reset: next.reset,
            truncate_from: next.truncate_from,
            producers_at_cut: next.producers_at_cut,
            entries: next.entries,
            hard_state: next.hard_state,
            conf: next.conf,
        };
        let store = self.store.clone();
        let (clock, stretch) = (self.env.clock.clone(), self.stretch.clone());
        let started = clock.now();
        self.writes.push(Box::pin(async move {
            let result = raft_write(&store, write).await;
            if result.is_ok() {
                // The disk's pace, queueing behind other groups' writes included: what an
                // election waits for on this node (`ElectionStretch`).
                stretch.observe(clock.now().saturating_duration_since(started));
            }
            (group, number, result)
        }));
    }

    pub(super) async fn write_done(&mut self, (group, number, result): WriteDone) {
        if !self.groups.contains_key(&group) {
            return;
        }
        if result.is_ok() {
            // Durable, and nothing that depends on it sent yet.
            crate::fault_point!("raft.after_persist");
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        g.in_flight = None;
        if number == FIRST_TERM_WRITE {
            self.first_term_written(group, result);
            return;
        }
        if result.as_ref().is_ok_and(|w| w.next_index > 1) && !self.holds_data {
            // Entries written: peers are told before anything else this node sends them.
            self.holds_data = true;
            self.transport.set_holds_data(true);
        }
        match result {
            Ok(written) if std::mem::take(&mut g.retry_piece) => {
                // A piece of a retry is durable: the next one goes (the Readies it covers are
                // durable only with the last).
                crate::coverage::reached(crate::coverage::Event::RetryWrittenInPieces);
                g.raw
                    .store()
                    .written(written.next_index, written.next_offset);
                self.retry_write(group, number);
            }
            Ok(written) => {
                g.first_term_unwritten = false;
                g.raw
                    .store()
                    .written(written.next_index, written.next_offset);
                g.raw.on_persist_ready(number);
                g.persisted = number;
                if self.stepped_down {
                    // Nothing leaves while stepped down; what was held goes once healed.
                } else if g.next.is_empty() {
                    // The Readies after it had nothing to write: durable too.
                    persist_held(g, group, &self.transport);
                } else {
                    release_held(g, group, &self.transport);
                }
                answer_durable(g, written.next_index);
                self.dirty.insert(group);
                self.start_write(group);
            }
            Err(AppendError::PartitionGone { .. }) => {
                // The partition was deleted or moved off this broker: no write of it will ever
                // succeed, and its group goes when the metadata's change is applied. (Retried,
                // it failed again at once for ever: a spinning core, and a simulation whose time
                // never advanced — `metadata-under-load` seed 105.)
                tracing::debug!(
                    node = self.id,
                    group,
                    "a Raft write of a partition gone is dropped"
                );
            }
            Err(e) => {
                // Not durable: nothing that depends on it leaves, and the same Ready is
                // written again once the directory is healthy again.
                tracing::warn!(node = self.id, group, error = %e, "a Raft write failed; it is retried once the data directory heals");
                // The entries are in the storage's cache; rebuild the write from raft-rs's
                // view: everything from the durable end on.
                self.retry_write(group, number);
            }
        }
    }

    /// The hard state of a first term led without an election is durable (or failed to be).
    fn first_term_written(&mut self, group: GroupId, result: Result<RaftWritten, AppendError>) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        match result {
            Ok(_) => {
                g.first_term_unwritten = false;
                // Still leading term 1, everything held is a leader's (raft-rs holds none of a
                // leader's messages for its own writes): it leaves now, in order. A leader
                // that stepped down meanwhile may hold answers that wait for their Ready's
                // write: those go as usual.
                let raft = &g.raw.raft;
                if raft.state == StateRole::Leader && raft.term == 1 && !self.stepped_down {
                    let held: Vec<Message> = g
                        .held
                        .iter_mut()
                        .flat_map(|(_, messages)| std::mem::take(messages))
                        .collect();
                    for m in held.iter().filter(|m| !withheld(g, m)) {
                        send(&self.transport, group, m);
                    }
                }
                self.start_write(group);
            }
            Err(AppendError::PartitionGone { .. }) => {}
            Err(e) => {
                tracing::warn!(node = self.id, group, error = %e, "a Raft write failed; it is retried once the data directory heals");
                let number = g.next.number;
                self.retry_write(group, number);
            }
        }
    }

    /// Write again what a failed write carried (after the directory heals, as the pipeline
    /// refuses writes until then), in pieces of at most a catch-up read's bytes.
    ///
    /// What is not durable can be far more than one Ready's entries (a learner's catch-up
    /// gathered while the directory was failed), and written and synced at once it can take
    /// longer than the I/O deadline on a slow disk: the directory failed again, healed, and the
    /// same megabytes were written again, for ever (a learner on a 3 MB/s disk that never
    /// caught up after a stalled read, and a move that never ended). A piece moves at most
    /// `read_bytes_max`, and each durable piece moves the durable end on.
    pub(super) fn retry_write(&mut self, group: GroupId, number: u64) {
        let piece_bytes = self.settings.catch_up.read_bytes_max.max(1);
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let partition = g.view.partition.clone();
        // Rebuild from the log's durable end: the entries raft-rs holds past it, all of them
        // (the cache has every entry not yet durable), and the hard state as it is now. A
        // snapshot's reset that is not durable yet goes again first: the entries after it
        // follow its index (without it, the log stayed where it was while raft-rs went on
        // from the snapshot — seen: a learner's reset lost to an fsync stall, which then led
        // the group with a log that existed only in memory).
        let reset = g.raw.store().unwritten_reset();
        let durable_next = match &reset {
            Some(r) => r.index + 1,
            None => {
                // The state's guard goes before the storage's lock is taken: the storage takes
                // them the other way round (lock-order inversion found by `broker::sync`).
                let written = partition
                    .state()
                    .replica
                    .as_ref()
                    .map_or(1, |r| r.next_index);
                written.min(g.raw.store().durable_next())
            }
        };
        let last = g.raw.raft.raft_log.last_index();
        let mut entries = g
            .raw
            .store()
            .cached_from(durable_next, last)
            .unwrap_or_default();
        let piece = first_piece(&entries, piece_bytes);
        if piece < entries.len() {
            // Not the last piece: no hard state (its commit may be past the entries written
            // so far), and the Readies gathered since wait for the last one.
            entries.truncate(piece);
            g.retry_piece = true;
            g.in_flight = Some(number);
            let write = RaftWrite {
                partition,
                truncate_from: reset.is_none().then_some(durable_next),
                reset,
                producers_at_cut: Some(g.producers.state().clone()),
                entries,
                hard_state: None,
                conf: g.raw.store().conf_record(),
            };
            self.push_retry(group, number, write);
            return;
        }
        g.retry_piece = false;
        let hs = g.raw.raft.hard_state();
        g.vote_written = (hs.term, hs.vote);
        let hard_state = Some(crate::storage::log::replica::HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        });
        let mut merged = std::mem::take(&mut g.next);
        // The retry covers everything up to the newest Ready gathered since.
        let covered = number.max(merged.number);
        merged.entries = entries;
        merged.truncate_from = reset.is_none().then_some(durable_next);
        merged.reset = reset;
        merged.hard_state = hard_state;
        merged.conf = g.raw.store().conf_record();
        merged.number = covered;
        g.in_flight = Some(covered);
        let write = RaftWrite {
            partition,
            reset: merged.reset,
            truncate_from: merged.truncate_from,
            producers_at_cut: Some(g.producers.state().clone()),
            entries: merged.entries,
            hard_state: merged.hard_state,
            conf: merged.conf,
        };
        self.push_retry(group, covered, write);
    }

    /// Queue a retry's write, made once the directory is healthy (bounded: the pipeline
    /// answers within the I/O deadline, and a failed directory heals or stays failed).
    fn push_retry(&mut self, group: GroupId, number: u64, write: RaftWrite) {
        let clock = self.env.clock.clone();
        let store = self.store.clone();
        self.writes.push(Box::pin(async move {
            while store.io().health.check().is_err() {
                clock.sleep(Duration::from_millis(100)).await;
            }
            (group, number, raft_write(&store, write).await)
        }));
    }
}

/// How many of `entries`, from the first, make a piece of at most `bytes` (one at least).
fn first_piece(entries: &[crate::storage::RaftEntry], bytes: u64) -> usize {
    let mut total = 0u64;
    let mut count = 0;
    for e in entries {
        total += e.data.len() as u64;
        if count > 0 && total > bytes {
            break;
        }
        count += 1;
    }
    count
}

/// The number a write of a first term's hard state alone carries in place of a Ready's
/// (`Node::start_write`): no Ready is made durable by it.
const FIRST_TERM_WRITE: u64 = u64::MAX;

/// A write through the commit pipeline, to its answer.
/// raft-rs holds every message of a replica that does not lead until the Ready it came with
/// is durable. Two kinds depend on nothing a write makes durable, and leave at once instead
/// of queueing behind the group's writes (on a busy disk, behind a thousand other groups'):
/// - a heartbeat's answer says "alive, and following you in your term"; no election rests on
///   it (votes are always written first), and a leader that counted it to confirm its
///   leadership is rightly confirmed, as a replica that had voted in a later term, even
///   without writing it yet, would have refused the heartbeat;
/// - a pre-vote's answer changes no term and no vote.
///
/// Held back, they made leaders on a busy disk miss their quorum's heartbeats and step down,
/// and pre-elections take a write's time before the election proper began.
fn send_what_needs_no_write(
    g: &Group,
    group: GroupId,
    transport: &Transport,
    messages: &mut Vec<Message>,
) {
    messages.retain(|m| {
        let now = matches!(
            m.get_msg_type(),
            MessageType::MsgHeartbeatResponse | MessageType::MsgRequestPreVoteResponse
        );
        if now && !withheld(g, m) {
            send(transport, group, m);
        }
        !now
    });
}

async fn raft_write(store: &Store, write: RaftWrite) -> Result<RaftWritten, AppendError> {
    match store.raft_write(write).await {
        Ok(rx) => rx.await.unwrap_or_else(|_| {
            Err(AppendError::Storage(
                crate::storage::StorageError::DirFailed("the commit pipeline has stopped".into()),
            ))
        }),
        Err(e) => Err(AppendError::Storage(e)),
    }
}

/// A replica that withheld its vote (a new or emptied data directory) votes again once it holds
/// what the cluster committed: as a leader whose term has committed an entry (Raft's leader
/// completeness), as a follower once it holds what a leader's append named. True when it has
/// just caught up.
fn note_caught_up(g: &mut Group, node: NodeId, group: GroupId) -> bool {
    if g.recovery.caught_up {
        return false;
    }
    let leads = g.raw.raft.state == StateRole::Leader && g.raw.raft.commit_to_current_term();
    let r = &mut g.recovery;
    let holds = r.heard_append && g.raw.raft.raft_log.persisted >= r.leader_commit;
    if !(leads || holds) {
        return false;
    }
    r.caught_up = true;
    if r.withholding {
        r.withholding = false;
        if std::mem::take(&mut r.lost) {
            crate::coverage::reached(crate::coverage::Event::LostReplicaCaughtUp);
        }
        tracing::info!(
            node,
            group,
            commit = r.leader_commit,
            "caught up with the leader: this replica votes again"
        );
    }
    true
}

/// What the connected followers have not acknowledged stays in memory (within bounds).
/// (Not raft-rs's `recent_active`: check_quorum clears it every election timeout, and until
/// each follower's next answer the cache was cut back to its floor.)
fn keep_for_connected_followers(g: &mut Group, me: NodeId, links: &HashMap<NodeId, bool>) {
    let needed_from = if g.raw.raft.state == StateRole::Leader {
        g.raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me && links.get(id).copied().unwrap_or(false))
            .map(|(_, p)| p.matched + 1)
            .min()
            .unwrap_or(u64::MAX)
    } else {
        u64::MAX
    };
    if g.kept_from != needed_from {
        g.kept_from = needed_from;
        g.raw.store().keep_for_followers(needed_from);
    }
}

/// A new role: an election counted; a replica that no longer leads answers the proposals
/// waiting on it NOT_LEADER_OR_FOLLOWER (they may still commit under the next leader).
fn on_soft_state(g: &mut Group, ss: &raft::SoftState, metrics: &Metrics) {
    if matches!(
        ss.raft_state,
        StateRole::Candidate | StateRole::PreCandidate
    ) {
        Metrics::inc(&metrics.raft_elections, 1);
    }
    let raft = &g.raw.raft;
    if raft.state != StateRole::Leader && !g.waiters.is_empty() {
        let leader = (raft.leader_id != 0).then_some(raft.leader_id);
        let term = raft.term;
        for w in g.waiters.drain(..) {
            let _ = w.reply.send(Err(ReplicaError::NotLeader { leader, term }));
        }
    }
}

/// Read indexes answered: a leadership confirmation, or a held refusal of an idempotent batch,
/// each told whether this node still led in the term it was asked in.
fn answer_read_states(g: &mut Group, read_states: &[raft::ReadState]) {
    let raft = &g.raw.raft;
    let leading = raft.state == StateRole::Leader;
    let term = raft.term;
    for rs in read_states {
        let Ok(ctx) = <[u8; 8]>::try_from(&rs.request_ctx[..]).map(u64::from_be_bytes) else {
            continue;
        };
        if let Some(at) = g.confirms.iter().position(|(c, _, _)| *c == ctx) {
            let (_, asked_in, reply) = g.confirms.swap_remove(at);
            let _ = reply.send(leading && term == asked_in);
            continue;
        }
        if let Some(ask) = g.commit_asks.iter_mut().find(|a| a.ctx == ctx) {
            ask.index = Some(rs.index);
            continue;
        }
        let Some(at) = g
            .waiters
            .iter()
            .position(|w| w.refusal.as_ref().is_some_and(|(c, _)| *c == ctx))
        else {
            continue;
        };
        let w = g.waiters.remove(at).expect("found just now");
        let (_, e) = w.refusal.expect("a refusal");
        let _ = w.reply.send(if leading && term == w.term {
            Err(ReplicaError::Storage(AppendError::Producer(e)))
        } else {
            Err(ReplicaError::NotLeader { leader: None, term })
        });
    }
}

/// A leader's snapshot: the log is reset to it by the next write (before anything after it).
fn queue_snapshot(g: &mut Group, snapshot: &raft::eraftpb::Snapshot) {
    let meta = snapshot.get_metadata();
    let (index, term) = (meta.index, meta.term);
    let (offset, gaps_before) = snapshot_offset(snapshot).unwrap_or((0, 0));
    let conf = snapshot_conf(snapshot);
    let carries_state = g.view.partition.snapshots_carry_state();
    if let Some(state) = snapshot_state(snapshot).filter(|_| carries_state) {
        // Written with the reset, before it (`reset_log`); and this replica's to send on.
        g.view.partition.set_state_snapshot(offset, state);
    }
    // A cleaned prefix it names is here whole: the snapshot was not stepped otherwise.
    let prefix = prefix::take_received(g, snapshot);
    if prefix.is_none() && entries::snapshot_prefix(snapshot).is_some() {
        debug_assert!(false, "a snapshot naming a prefix was taken without it");
        tracing::error!(
            group = g.view.group,
            index,
            "a snapshot naming a cleaned prefix was taken without the prefix: the log keeps nothing below the snapshot"
        );
    }
    // The idempotent producers are those of the log from the reset on, as `reset_log` makes
    // the partition's: the prefix's, else none (the batches below are gone, as Kafka's
    // producers below a log start are).
    let state = prefix.as_ref().map(|p| p.producers.clone());
    g.producers = Producers::open(state.unwrap_or_default(), index, Vec::new(), index + 1);
    let reset = RaftReset {
        index,
        term,
        offset,
        gaps_before,
        prefix,
    };
    g.raw.store().take_snapshot(reset.clone(), &conf);
    membership::take_snapshot_conf(g, &conf);
    g.next = NextWrite {
        reset: Some(reset),
        conf: Some(conf),
        ..NextWrite::default()
    };
}

/// A Ready's entries into the storage's cache and the next write; a conflicting suffix cut
/// (from the cache, the queued write and, where it holds them, the log), and the idempotent
/// producers' state taken back to the cut.
fn queue_entries(g: &mut Group, group: GroupId, entries: &[Entry], now_ms: i64) {
    let storage = g.raw.store();
    let (cut, written) = storage.append(entries);
    if let Some(from) = cut {
        if !g.producers.truncate(from) {
            tracing::warn!(group, from, "a cut reaches before the producers' undo records (after a start): idempotent producers' retries of the cut batches may not be recognised");
        }
        g.next.producers_at_cut = Some(g.producers.state().clone());
        // Entries queued and not yet written from `from` on never reach the log; the log
        // itself is cut there only if what it holds (or is writing) goes that far.
        g.next.entries.retain(|e| e.index < from);
        let queued_from = g.next.entries.first().map(|e| e.index);
        if queued_from.is_none_or(|q| from < q) {
            g.next.truncate_from = Some(g.next.truncate_from.map_or(from, |t| t.min(from)));
        }
    }
    for e in &written {
        if e.index <= g.producers.recorded_through() || e.data.is_empty() {
            continue;
        }
        let (Ok(h), Some(base)) = (
            crate::batch::parse_header(&e.data),
            storage.base_offset(e.index),
        ) else {
            continue;
        };
        g.producers.record(e.index, &h, &e.data, base, now_ms);
    }
    g.next.entries.extend(written);
}

/// A new hard state into the next write: written when the term or vote changed (a vote must
/// be durable before it is sent) or when a write already carries one.
fn queue_hard_state(g: &mut Group, hs: &raft::eraftpb::HardState) {
    let record = g.raw.store().set_hard_state(hs);
    if (hs.term, hs.vote) != g.vote_written || g.next.hard_state.is_some() {
        g.vote_written = (hs.term, hs.vote);
        g.next.hard_state = Some(record);
    }
}

#[cfg(test)]
mod tests {
    use super::first_piece;
    use crate::storage::RaftEntry;

    fn entries(sizes: &[usize]) -> Vec<RaftEntry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| RaftEntry {
                index: i as u64 + 1,
                term: 1,
                data: vec![0u8; n].into(),
            })
            .collect()
    }

    #[test]
    fn a_piece_stops_before_the_entry_that_would_pass_its_bytes() {
        assert_eq!(first_piece(&entries(&[400, 400, 400]), 1000), 2);
        assert_eq!(first_piece(&entries(&[400, 600, 1]), 1000), 2);
        assert_eq!(first_piece(&entries(&[100, 100]), 1000), 2);
        assert_eq!(first_piece(&[], 1000), 0);
    }

    #[test]
    fn an_entry_larger_than_a_piece_goes_alone() {
        assert_eq!(first_piece(&entries(&[5000, 10]), 1000), 1);
        assert_eq!(first_piece(&entries(&[10, 5000]), 1000), 1);
    }
}
