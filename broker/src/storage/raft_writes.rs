//! The commit pipeline's Raft writes. A replicated partition's log is its Raft log (docs/design.md,
//! "replication"), and the pipeline stays its only writer: what a Raft `Ready` must make
//! durable — a divergent suffix cut, entries appended, the hard state — arrives here as a
//! [`RaftWrite`] and shares the round's syncs with every other partition's: the hard states of
//! all partitions of a round are one frame of one file ([`super::raft_states`]).
//!
//! A round of Raft writes runs in phases, each under what is left of the round's I/O deadline
//! (as appends do, `Pipeline::within`): logs reset or cut back (rare: a new leader's log
//! disagreeing with this one, a snapshot), segments rolled, then per partition the entries
//! written and synced, the partition's Raft record ([`ReplicaMeta`], when what it tells beyond
//! the active segment's batches changed) and the round's hard states written — all in flight
//! together — and only then the partition's state updated and the write
//! answered. An unsettled partition's entries (a new one's: `log::create`) go as pieces into
//! the frame of hard states instead, and into its segment unsynced once that frame is durable;
//! before a write that would cut, reset or roll its log or take its pieces past their bound,
//! it is settled first (its segment and directory synced, a record that its pieces are done
//! with). Entries keep the bytes the leader validated; each replica sets the batch's base
//! offset (dense, from its log end: every replica computes the same) and its leader epoch (the
//! entry's term), which Kafka's CRC does not cover, so every replica stores the same bytes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use io_backend::DiskFile;

use super::board::Board;
use super::log::index::IndexEntry;
use super::log::replica::{self, HardStateRecord, ReplicaMeta};
use super::log::txn_index::AbortedTxn;
use super::log::{self, Partition};
use super::pipeline::Pipeline;
use super::settle::settle_due;
use super::zeros::zeros_ahead;
use super::{
    raft_states, small_file, AppendError, Io, RaftWrite, RaftWritten, Reply, StorageError,
};
use crate::batch::{self, BatchHeader};
use crate::metrics::Metrics;

type RaftReply = Reply<Result<RaftWritten, AppendError>>;

/// One partition's share of a round of Raft writes.
struct RaftPlan {
    slot: usize,
    partition: Arc<Partition>,
    file: Arc<dyn DiskFile>,
    segment_base: i64,
    position: u64,
    data: Bytes,
    zero_fill: Option<(u64, usize)>,
    allocated: u64,
    next_offset: i64,
    next_index: u64,
    entries: Vec<IndexEntry>,
    max_timestamp: i64,
    records: u64,
    /// The partition's Raft record, when it changed.
    meta: Option<ReplicaMeta>,
    /// Whether its file must be written: it tells more than the file and the active
    /// segment's batches ([`ReplicaMeta::durable_part`]).
    write_meta: bool,
    /// The hard state, when it changed (written to the data directory's file of hard states).
    hard_state: Option<HardStateRecord>,
    /// Producers' batches (data and transaction markers), with their base offsets and bytes,
    /// for the producers' state.
    idempotent: Vec<(BatchHeader, i64, Bytes)>,
    /// The partition is unsettled: its entries go to the file of hard states as a piece, and
    /// to its segment (unsynced) only once that is durable.
    unsettled: bool,
}

impl Pipeline {
    /// Make a round's Raft writes durable. A partition's writes are taken one per round, in
    /// order (its Raft group has one in flight at a time; a second is kept for the next round).
    pub(super) async fn commit_raft(&mut self, mut writes: Vec<(RaftWrite, RaftReply)>) {
        while !writes.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (now, later): (Vec<_>, Vec<_>) = writes
                .into_iter()
                .partition(|(w, _)| seen.insert(Arc::as_ptr(&w.partition) as usize));
            self.raft_round(now).await;
            writes = later;
        }
    }

    async fn raft_round(&mut self, writes: Vec<(RaftWrite, RaftReply)>) {
        let (writes, replies): (Vec<RaftWrite>, Vec<Option<RaftReply>>) =
            writes.into_iter().map(|(w, r)| (w, Some(r))).unzip();
        let board: Board<RaftWritten, AppendError> = Board::new(replies);
        if let Err(e) = self.shared.io.health.check() {
            board.answer_all(&e.into());
            return;
        }
        let deadline = self
            .io()
            .deadline
            .map(|d| (self.shared.env.clock.now() + d, d));
        // What cannot be written is refused on its own: a deleted partition, entries that do
        // not parse as batches.
        let mut live = Vec::with_capacity(writes.len());
        for (slot, w) in writes.into_iter().enumerate() {
            match check_write(&w) {
                Ok(headers) => live.push((slot, w, headers)),
                Err(e) => board.answer(slot, Err(e)),
            }
        }
        let now_ms = self.shared.env.clock.wall_ms();
        let settling: Vec<Arc<Partition>> = live
            .iter()
            .filter(|(_, w, headers)| settle_due(w, headers, now_ms))
            .map(|(_, w, _)| w.partition.clone())
            .collect();
        if !settling.is_empty() && !self.settle(&settling, deadline, &board).await {
            return;
        }
        let cuts = live
            .iter()
            .filter(|(_, w, _)| w.reset.is_some() || w.truncate_from.is_some())
            .map(|(_, w, _)| self.cut_or_reset(w));
        let cut = self.within(deadline, &board, false, join_all(cuts)).await;
        if !self.phase_passed(cut, &board, false) {
            return;
        }
        let rolls = live
            .iter()
            .filter(|(_, w, headers)| !w.entries.is_empty() && roll_due(w, headers, now_ms))
            .map(|(_, w, _)| self.roll(&w.partition));
        let rolled = self.within(deadline, &board, false, join_all(rolls)).await;
        if !self.phase_passed(rolled, &board, false) {
            return;
        }
        let mut plans = Vec::with_capacity(live.len());
        for (slot, w, headers) in live {
            match plan(slot, w, &headers) {
                Ok(p) => plans.push(p),
                // Entries that do not follow the log: refused, the directory is fine.
                Err(e) => board.answer(slot, Err(e)),
            }
        }
        let io = self.io().clone();
        // The round's hard states and unsettled partitions' entries: one frame of the data
        // directory's file, one sync.
        let changes = raft_states::Changes {
            states: plans
                .iter()
                .filter_map(|p| Some((key_of(&p.partition), p.hard_state?)))
                .collect(),
            pieces: plans
                .iter()
                .filter(|p| p.unsettled && !p.data.is_empty())
                .map(|p| {
                    let piece = raft_states::Piece {
                        position: p.position,
                        data: p.data.clone(),
                    };
                    (key_of(&p.partition), piece)
                })
                .collect(),
            settled: Vec::new(),
        };
        let staged = match &self.raft_states {
            Some(states) => states.stage(changes),
            None if changes.states.is_empty() && changes.pieces.is_empty() => None,
            None => {
                let e = StorageError::DirFailed(
                    "Raft hard states to write on a node that keeps none".into(),
                );
                board.answer_all(&e.into());
                return;
            }
        };
        crate::fault_point!("raft_write.before_sync");
        let started = self.shared.env.clock.now();
        let writes = join_all(plans.iter().map(|p| write_plan(&io, p)));
        let states = async {
            match &staged {
                Some(s) => Some(s.write(&io).await),
                None => None,
            }
        };
        let ((mut results, states), late) = self
            .within(deadline, &board, true, async {
                futures::join!(writes, states)
            })
            .await;
        let written = match states {
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => {
                results.push(Err(e));
                None
            }
            None => None,
        };
        if let (Some(states), Some(staged)) = (&mut self.raft_states, staged) {
            states.finish(staged, written);
        }
        let outcome = (results, late);
        self.shared
            .metrics
            .observe_sync(self.shared.env.clock.now() - started);
        crate::fault_point!("raft_write.after_sync");
        if !self.phase_passed(outcome, &board, true) {
            return;
        }
        // The unsettled partitions' entries, durable as pieces now, into their segments.
        let unsettled = plans
            .iter()
            .filter(|p| p.unsettled && !p.data.is_empty())
            .map(|p| io.write_at(&p.file, p.data.clone(), p.position));
        let written = self
            .within(deadline, &board, true, join_all(unsettled))
            .await;
        if !self.phase_passed(written, &board, true) {
            return;
        }
        crate::fault_point!("partition.publish");
        let now_ms = self.shared.env.clock.wall_ms();
        let mut appended = 0u64;
        for mut p in plans {
            publish(&mut p, now_ms);
            Metrics::inc(&self.shared.metrics.produced_records, p.records);
            Metrics::inc(&self.shared.metrics.produced_bytes, p.data.len() as u64);
            appended += 1;
            board.answer(
                p.slot,
                Ok(RaftWritten {
                    next_index: p.next_index,
                    next_offset: p.next_offset,
                }),
            );
        }
        Metrics::inc(&self.shared.metrics.commit_rounds, 1);
        Metrics::inc(&self.shared.metrics.commit_appends, appended);
    }

    /// A phase of the round ended: true when every operation succeeded in time and the round
    /// goes on; on a failure the directory is failed and every write not answered yet is
    /// answered with it (indefinite once anything may have been `written`); a phase past the
    /// deadline was answered by `within` already.
    pub(super) fn phase_passed(
        &self,
        (results, late): (Vec<Result<(), StorageError>>, bool),
        board: &Board<RaftWritten, AppendError>,
        written: bool,
    ) -> bool {
        if let Err(e) = results
            .into_iter()
            .collect::<Result<Vec<()>, StorageError>>()
        {
            self.fail(&e);
            let e = if written {
                StorageError::Unconfirmed(Box::new(e))
            } else {
                e
            };
            board.answer_all(&e.into());
            return false;
        }
        !late
    }
}

/// One partition's share of the round, in flight together: the entries written and synced
/// (with the zeros ahead of them), its Raft record and its hard state.
async fn write_plan(io: &Io, p: &RaftPlan) -> Result<(), StorageError> {
    let data = async {
        if p.data.is_empty() || p.unsettled {
            return Ok(());
        }
        let mut writes = vec![(p.data.clone(), p.position)];
        if let Some((at, len)) = p.zero_fill {
            writes.extend(super::zeros::zero_writes(at, len));
        }
        io.write_all_and_sync(&p.file, writes).await
    };
    // The Raft record, when it tells more than the file and the batches do.
    let meta = async {
        match p.meta.as_ref().filter(|_| p.write_meta) {
            Some(meta) => {
                small_file::write(io, &p.partition.dir, replica::META_FILE, &meta.encode()).await
            }
            None => Ok(()),
        }
    };
    let (data, meta) = futures::join!(data, meta);
    data.and(meta)
}

/// A durable plan becomes the partition's state: its segment, Raft record, hard state, index
/// points and idempotent producers.
fn publish(p: &mut RaftPlan, now_ms: i64) {
    let mut st = p.partition.state_mut();
    let seg = st.active_mut();
    // The pipeline is the only writer: nothing moved since the plan.
    assert_eq!(seg.base_offset, p.segment_base, "active segment changed");
    assert_eq!(seg.size, p.position, "segment size changed");
    seg.size += p.data.len() as u64;
    seg.allocated = seg.allocated.max(p.allocated);
    let first_offset = seg.next_offset;
    seg.next_offset = p.next_offset;
    seg.entries.extend_from_slice(&p.entries);
    seg.max_timestamp = seg.max_timestamp.max(p.max_timestamp);
    if !p.data.is_empty() {
        seg.roll_base_ms.get_or_insert(now_ms);
    }
    let r = st
        .replica
        .as_mut()
        .expect("checked: a replicated partition");
    if let Some(meta) = p.meta.take() {
        if p.write_meta {
            r.meta_is_written(&meta, p.segment_base);
        }
        r.meta = meta;
    }
    if let Some(hs) = p.hard_state {
        r.hard_state = hs;
    }
    if p.unsettled {
        r.unsettled = r.unsettled.map(|b| b + p.data.len() as u64);
    }
    if !p.data.is_empty() {
        r.points
            .note_written(r.next_index, first_offset, p.data.len() as u64);
    }
    r.next_index = p.next_index;
    // Durable now: the state a roll's snapshot and recovery start from. A marker's aborted
    // transaction goes to the segment's list, and until Raft commits the marker its
    // transaction stays unstable (`ReplicaState::unreplicated`): a cut may still take it.
    let committed = r.committed_offset;
    r.unreplicated.retain(|t| t.last_offset >= committed);
    for (h, base, bytes) in &p.idempotent {
        let Some(done) = st.producers.record_batch(h, bytes, *base, now_ms) else {
            continue;
        };
        let aborted = done.aborted.then(|| AbortedTxn::of(&done, &st.producers));
        let r = st
            .replica
            .as_mut()
            .expect("checked: a replicated partition");
        r.unreplicated.push(done);
        if let Some(a) = aborted {
            st.active_mut().aborted.push(a);
        }
    }
}

pub(super) fn replica_of(
    partition: &Partition,
) -> Result<log::replica::ReplicaState, StorageError> {
    partition
        .state()
        .replica
        .clone()
        .ok_or_else(|| not_replicated(partition))
}

fn not_replicated(partition: &Partition) -> StorageError {
    StorageError::Corrupt {
        path: partition.dir.clone(),
        reason: "a Raft write for a partition that is not replicated".into(),
    }
}

/// Remove the files of segment `base` with these extensions (those that exist).
pub(super) async fn remove_segment_files(
    io: &super::Io,
    dir: &std::path::Path,
    base: i64,
    exts: &[&str],
) -> Result<(), StorageError> {
    for ext in exts {
        io.remove_file_if_present(&dir.join(log::segment_name(base, ext)))
            .await?;
    }
    Ok(())
}

/// The headers of a write's entries (Raft's own entries: the control batch they become), after
/// checking that the partition takes Raft writes and every entry is one whole batch.
fn check_write(w: &RaftWrite) -> Result<Vec<BatchHeader>, AppendError> {
    let p = &w.partition;
    if p.is_deleted() {
        return Err(AppendError::PartitionGone {
            topic: p.topic.clone(),
            partition: p.index,
        });
    }
    if p.state().replica.is_none() {
        return Err(not_replicated(p).into());
    }
    let own = own_entry();
    w.entries
        .iter()
        .map(|e| {
            let data = if e.data.is_empty() { &own } else { &e.data };
            match batch::parse_header(data) {
                Ok(h) if h.size == data.len() => Ok(h),
                _ => Err(StorageError::Corrupt {
                    path: p.dir.clone(),
                    reason: format!("Raft entry {} is not one whole record batch", e.index),
                }
                .into()),
            }
        })
        .collect()
}

fn own_entry() -> Bytes {
    batch::leader_change_batch()
}

pub(super) fn roll_due(w: &RaftWrite, headers: &[BatchHeader], now_ms: i64) -> bool {
    let bytes: u64 = headers.iter().map(|h| h.size as u64).sum();
    let records: i64 = headers.iter().map(|h| h.last_offset_delta as i64 + 1).sum();
    let config = w.partition.config();
    w.partition
        .state()
        .active()
        .roll_due(bytes, records, now_ms, &config)
}

pub(super) fn key_of(p: &Partition) -> raft_states::Key {
    (p.topic_id, p.index)
}

/// Where a replicated compacted log's Raft entries may begin now, above where they do: the
/// highest base of a closed segment whose first index is recorded, at or below both the
/// commit and the replication layer's cap ([`Partition::raft_start_cap`]). What lies below
/// becomes the cleaned prefix ([`replica::ReplicaMeta::raft_from`]).
fn raft_start_due(
    p: &Partition,
    st: &log::PartitionState,
    r: &replica::ReplicaState,
    meta: &replica::ReplicaMeta,
) -> Option<i64> {
    if !p.config().cleanup.compact || p.snapshots_carry_state() {
        return None;
    }
    let first_base = *st.segments.keys().next()?;
    let from = meta.entries_from(first_base);
    // Not past a membership change the recorded membership may not include yet: a start
    // hands those to raft-rs again, from the entries.
    let unrecorded = meta.confs.entries.first().map_or(i64::MAX, |e| e.offset);
    let cap = p.raft_start_cap().min(r.committed_offset).min(unrecorded);
    let active = st.active().base_offset;
    let to = cap.min(active - 1);
    if to <= from {
        return None;
    }
    // From the top of `(from, to]` down: on every write, so it never walks the segments
    // above the cap (a lagging follower's), and stops at the first anchored one.
    st.segments
        .range(from + 1..=to)
        .map(|(&base, _)| base)
        .rev()
        .find(|base| meta.segments.contains_key(base))
}

/// Lay out one partition's entries after its log's end: base offsets dense from there, each
/// batch's leader epoch its entry's term, the sparse index, and the Raft record's changes.
fn plan(slot: usize, w: RaftWrite, headers: &[BatchHeader]) -> Result<RaftPlan, AppendError> {
    let p = w.partition;
    let config = p.config();
    let st = p.state();
    let seg = st.active();
    let r = st.replica.as_ref().ok_or_else(|| not_replicated(&p))?;
    let mut index = r.next_index;
    if let Some(first) = w.entries.first() {
        if first.index != index || w.entries.windows(2).any(|e| e[1].index != e[0].index + 1) {
            return Err(StorageError::Corrupt {
                path: p.dir.clone(),
                reason: format!(
                    "Raft entries from {} do not follow the log's next index {index}",
                    first.index
                ),
            }
            .into());
        }
    }
    let mut meta = r.meta.clone();
    let first_base = *st.segments.keys().next().expect("a log has a segment");
    meta.prune(first_base);
    // Marks this replica has moved its log start for are done with.
    meta.log_starts.retain(|(_, to)| *to > st.log_start_offset);
    if let Some(conf) = &w.conf {
        meta.confs.record_applied(conf);
    }
    let mut meta_changed = r.meta_dirty || meta != r.meta;
    if let Some(to) = raft_start_due(&p, &st, r, &meta) {
        let first = meta.segments[&to];
        if let Some(term) = meta.term_of(first - 1) {
            meta.prev = (first - 1, term);
        }
        meta.raft_from = to;
        meta.prune(first_base);
        meta_changed = true;
        crate::coverage::reached(crate::coverage::Event::RaftStartMoved);
    }
    let bytes: usize = headers.iter().map(|h| h.size).sum();
    let own = own_entry();
    let mut data = BytesMut::with_capacity(bytes);
    let mut entries = Vec::new();
    let mut last_entry = seg.entries.last().map(|e| e.position as u64);
    let mut max_ts = seg.max_timestamp;
    let mut next = seg.next_offset;
    let mut records = 0u64;
    let mut idempotent = Vec::new();
    for (e, h) in w.entries.iter().zip(headers) {
        if h.producer_id >= 0 {
            idempotent.push((*h, next, e.data.clone()));
        }
        let pos = seg.size + data.len() as u64;
        if last_entry.is_none_or(|l| pos - l >= config.index_interval_bytes) {
            entries.push(IndexEntry {
                relative_offset: (next - seg.base_offset) as u32,
                position: pos as u32,
                prefix_max_timestamp: max_ts,
            });
            last_entry = Some(pos);
        }
        let start = data.len();
        data.extend_from_slice(if e.data.is_empty() { &own } else { &e.data });
        data[start..start + 8].copy_from_slice(&next.to_be_bytes());
        let epoch = i32::try_from(e.term).unwrap_or(i32::MAX);
        batch::set_leader_epoch(&mut data[start..], epoch);
        max_ts = max_ts.max(h.max_timestamp);
        meta_changed |= meta.note_entry(e.index, e.term, next, seg.base_offset, pos);
        if h.takes_no_offset() {
            meta.gaps.push(next);
            meta_changed = true;
        }
        if h.is_control() {
            if let Some(to) = batch::log_start_of(&e.data) {
                meta.log_starts.push((next, to));
                meta_changed = true;
            }
            if let Some(change) = batch::conf_change_of(&e.data) {
                meta.confs.push(e.index, next, change);
                meta_changed = true;
            }
        }
        let count = h.last_offset_delta as i64 + 1;
        next += count;
        records += count as u64;
        index = e.index + 1;
    }
    let (zero_fill, allocated) = zeros_ahead(
        seg,
        seg.size + data.len() as u64,
        data.len() as u64,
        &config,
    );
    Ok(RaftPlan {
        slot,
        partition: p.clone(),
        file: seg.file.clone(),
        segment_base: seg.base_offset,
        position: seg.size,
        data: data.freeze(),
        zero_fill,
        allocated,
        next_offset: next,
        next_index: index,
        entries,
        max_timestamp: max_ts,
        records,
        write_meta: meta_changed && r.meta_write_due(&meta, seg.base_offset),
        meta: meta_changed.then_some(meta),
        hard_state: w.hard_state.filter(|hs| *hs != r.hard_state),
        idempotent,
        unsettled: r.unsettled.is_some(),
    })
}
