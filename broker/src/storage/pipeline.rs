//! The group-commit pipeline: the only writer of a data directory's files.
//!
//! One task owns every file of the directory. Request handlers queue appends on a bounded
//! channel (backpressure means "queue full", never "lock busy"). The task takes everything
//! queued, writes it (one write per partition, all partitions in flight together), syncs every
//! file it wrote (the syncs in flight together), makes the data visible, then answers the
//! waiters. While it waits for a sync, the next batch gathers in the queue; when nothing is
//! queued it sleeps, so an idle broker does no disk work and a lone write is committed at once.
//! Topic creation and deletion, config changes and retention run beside it, on the admin
//! lane; the one admin step on this queue is retiring a deleted topic's partitions, taken in
//! order with the appends around it.
//!
//! Every disk operation has a deadline ([`Io::run`]), and so has every commit round (its
//! operations one after another, each within the deadline, can add up past it: see
//! `Pipeline::within`). When one passes, the directory is declared
//! failed: the round's waiters and every later append get a retriable error at once, and the
//! directory heals — active segments cut back to what was committed, then synced — after the
//! stalled operations end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use io_backend::OpenMode;
use tokio::sync::{mpsc, watch};

use super::board::Board;
use super::log::txn_index::AbortedTxn;
use super::log::{self, index::IndexEntry, Partition, Segment};
use super::zeros::{zero_writes, zeros_ahead};
use super::{Append, AppendError, Appended, Command, Io, Shared, StorageError, Waiter};
use crate::batch;
use crate::metrics::Metrics;
use crate::producer_state::{CompletedTxn, ProducerStates, Verdict};
use crate::records::TimestampType;

/// One partition's share of a commit round.
struct Planned {
    partition: Arc<Partition>,
    file: Arc<dyn io_backend::DiskFile>,
    segment_base: i64,
    position: u64,
    /// What the round writes at `position`, in order: each batch's base offset (8 bytes), then
    /// the rest of the batch as it came off the wire — the payload is never copied (a batch
    /// restamped under LogAppendTime is one piece of its own).
    data: Vec<Bytes>,
    /// The bytes of `data`.
    len: u64,
    /// The memory budget the appends' payloads hold, kept until they are written.
    _held: Vec<Arc<crate::memory::Reservation>>,
    /// Zeros to write ahead of the data `(offset, len)`, and the file's written length after.
    zero_fill: Option<(u64, usize)>,
    allocated: u64,
    next_offset: i64,
    entries: Vec<IndexEntry>,
    max_timestamp: i64,
    records: u64,
    /// The board's slots of the round's waiters, with their base offsets.
    waiters: Vec<(usize, i64)>,
    /// What the batches were stamped with under LogAppendTime; -1 otherwise.
    log_append_time_ms: i64,
    /// The idempotent producers' state after this round's batches.
    producers: ProducerStates,
    /// The transactions this round's markers completed, in order.
    completed: Vec<CompletedTxn>,
    /// The producers this round wrote a marker for (their confirmations end).
    marked: Vec<i64>,
}

impl Planned {
    /// The plan's pieces at their positions, then the zeros ahead of them: one write and sync.
    fn writes(&self) -> Vec<(Bytes, u64)> {
        let mut at = self.position;
        let mut writes: Vec<(Bytes, u64)> = Vec::with_capacity(self.data.len() + 1);
        for piece in &self.data {
            writes.push((piece.clone(), at));
            at += piece.len() as u64;
        }
        if let Some((at, len)) = self.zero_fill {
            writes.extend(zero_writes(at, len));
        }
        writes
    }

    /// Durable: the plan becomes the partition's state (its active segment, its idempotent
    /// producers). The partition's log start, for the answers.
    fn publish(&mut self, now_ms: i64) -> i64 {
        let mut st = self.partition.state_mut();
        let seg = st.active_mut();
        // The pipeline is the only writer: nothing moved since the plan.
        assert_eq!(
            seg.base_offset, self.segment_base,
            "active segment changed under the pipeline"
        );
        assert_eq!(
            seg.size, self.position,
            "segment size changed under the pipeline"
        );
        seg.size += self.len;
        seg.allocated = seg.allocated.max(self.allocated);
        seg.next_offset = self.next_offset;
        seg.entries.extend_from_slice(&self.entries);
        seg.max_timestamp = seg.max_timestamp.max(self.max_timestamp);
        seg.roll_base_ms.get_or_insert(now_ms);
        // Durable now: the round's idempotent batches count as written, and its markers'
        // aborted transactions go to the segment's list (the last stable offset after the
        // round is at most what it was after each marker, and no later transaction starts
        // before it).
        st.producers.merge(std::mem::take(&mut self.producers));
        let aborted: Vec<AbortedTxn> = self
            .completed
            .iter()
            .filter(|t| t.aborted)
            .map(|t| AbortedTxn::of(t, &st.producers))
            .collect();
        st.active_mut().aborted.extend(aborted);
        for pid in &self.marked {
            st.txn_verified.remove(pid);
        }
        st.log_start_offset
    }
}

/// A round's appends grouped by partition, each partition's in arrival order (with their
/// slots on the board), and the partitions in the order they first arrived.
fn by_partition(appends: Vec<Append>) -> (Vec<Arc<Partition>>, PartitionGroups) {
    let mut order: Vec<Arc<Partition>> = Vec::new();
    let mut groups: PartitionGroups = HashMap::new();
    for (slot, a) in appends.into_iter().enumerate() {
        let key = Arc::as_ptr(&a.partition) as usize;
        let g = groups.entry(key).or_default();
        if g.is_empty() {
            order.push(a.partition.clone());
        }
        g.push((a, slot));
    }
    (order, groups)
}

type PartitionGroups = HashMap<usize, Vec<(Append, usize)>>;

pub(super) struct Pipeline {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) heal_tx: mpsc::Sender<()>,
    pub(super) heal_rx: mpsc::Receiver<()>,
    pub(super) healing: bool,
    /// The data directory's lock: held by the log's only writer for as long as it runs.
    pub(super) _dir_lock: io_backend::DirLock,
    /// Dropped with the pipeline, which tells [`Store::closed`](super::Store::closed).
    pub(super) _alive: watch::Sender<()>,
    /// A commit round's sync failed and no round's sync has succeeded since (for coverage).
    pub(super) sync_failed: bool,
    /// Commands taken from the queue that would have made their round write too many
    /// partitions' files (`round.rs`), and those of the same partitions behind them: the next
    /// round begins with them, in order.
    pub(super) carried: std::collections::VecDeque<Command>,
    /// Commands taken out of the queue since the depth gauge was last told.
    pub(super) pulled: i64,
    /// The data directory's file of Raft hard states (a replicated node's).
    pub(super) raft_states: Option<super::raft_states::RaftStates>,
}

impl Pipeline {
    pub(super) fn io(&self) -> &Io {
        &self.shared.io
    }

    pub(super) async fn run(mut self) {
        loop {
            let first = match self.carried.pop_front() {
                Some(cmd) => cmd,
                None => tokio::select! {
                    cmd = self.rx.recv() => match cmd {
                        Some(cmd) => {
                            self.pulled += 1;
                            cmd
                        }
                        None => return,
                    },
                    _ = self.shared.io.health.failed_signal.notified(), if !self.healing => {
                        self.start_healing();
                        continue;
                    }
                    Some(()) = self.heal_rx.recv() => {
                        self.heal().await;
                        continue;
                    }
                },
            };
            let taken = self.take_round(first);
            // The queue's depth is what waits in it: what this round took out of it (some of
            // which may be carried to a later round, counted against a bound of its own).
            let metrics = &self.shared.metrics;
            metrics
                .append_queue_depth
                .dec_by(std::mem::take(&mut self.pulled));
            Metrics::peak(&metrics.round_carried_peak, self.carried.len() as i64);
            let mut appends = Vec::new();
            let mut raft_writes = Vec::new();
            for cmd in taken {
                match cmd {
                    Command::Append(a) => appends.push(a),
                    Command::Raft(write, reply) => raft_writes.push((*write, reply)),
                    Command::Retire { partitions, reply } => {
                        // Keep order: appends queued before it commit first; those behind it
                        // find the partitions deleted and are refused.
                        self.commit(std::mem::take(&mut appends)).await;
                        self.commit_raft(std::mem::take(&mut raft_writes)).await;
                        for p in &partitions {
                            p.mark_deleted();
                        }
                        let keys: Vec<_> =
                            partitions.iter().map(|p| (p.topic_id, p.index)).collect();
                        let io = self.shared.io.clone();
                        if let Some(states) = &mut self.raft_states {
                            if let Err(e) = states.forget(&io, &keys).await {
                                self.fail(&e);
                            }
                        }
                        let _ = reply.send(());
                    }
                }
            }
            self.commit(appends).await;
            self.commit_raft(raft_writes).await;
        }
    }

    /// Wait (off the pipeline) for stalled operations to end, then heal.
    fn start_healing(&mut self) {
        self.healing = true;
        let shared = self.shared.clone();
        let heal_tx = self.heal_tx.clone();
        tokio::spawn(async move {
            shared.io.health.stalled_operations_ended().await;
            let _ = heal_tx.send(()).await;
        });
    }

    /// Cut every active segment back to its committed size and sync it (all partitions in
    /// flight together: one after another, a slow disk would keep the pipeline, and every
    /// produce queued behind it, unanswered for the sum of their times); then accept writes.
    async fn heal(&mut self) {
        let partitions: Vec<Arc<Partition>> = self
            .shared
            .catalog
            .all()
            .iter()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect();
        let io = self.io().clone();
        let cuts = partitions.iter().map(|p| {
            let (file, size) = {
                let st = p.state();
                (st.active().file.clone(), st.active().size)
            };
            let io = io.clone();
            async move {
                io.truncate(&file, size).await?;
                io.sync_data(&file).await
            }
        });
        let result: Result<(), StorageError> = join_all(cuts).await.into_iter().collect();
        if result.is_ok() {
            for p in &partitions {
                let mut st = p.state_mut();
                let seg = st.active_mut();
                seg.allocated = seg.size;
            }
        }
        match result {
            Ok(()) => {
                // What a failed append left at the end of the file of hard states goes too.
                if let Some(states) = &mut self.raft_states {
                    states.rewrite_next();
                }
                self.healing = false;
                self.shared.io.health.heal();
            }
            Err(e) => {
                tracing::warn!(error = %e, "data directory could not heal yet; retrying");
                let heal_tx = self.heal_tx.clone();
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    shared.io.health.stalled_operations_ended().await;
                    shared.env.clock.sleep(Duration::from_secs(1)).await;
                    let _ = heal_tx.send(()).await;
                });
            }
        }
    }

    pub(super) fn fail(&self, err: &StorageError) {
        match err {
            StorageError::Disk(_) | StorageError::Stalled { .. } => self.shared.fail_on(err),
            _ => {
                self.shared
                    .io
                    .health
                    .fail(err.to_string(), None, None, self.shared.env.clock.now())
            }
        }
    }

    pub(super) async fn commit(&mut self, mut appends: Vec<Append>) {
        if appends.is_empty() {
            return;
        }
        if let Err(e) = self.shared.io.health.check() {
            answer_all(appends.into_iter().map(|a| a.reply), &e.into());
            return;
        }
        // Every waiter of the round is answered from the board: by the round, or by its deadline.
        let board = Board::new(appends.iter_mut().map(|a| a.reply.take()).collect());
        let deadline = self
            .io()
            .deadline
            .map(|d| (self.shared.env.clock.now() + d, d));
        let (order, mut groups) = by_partition(appends);
        // Roll, all together, every segment this round would overfill.
        let now_ms = self.shared.env.clock.wall_ms();
        let rolls = order.iter().filter(|partition| {
            let group = &groups[&(Arc::as_ptr(partition) as usize)];
            !partition.is_deleted() && roll_due(partition, group, now_ms)
        });
        let rolls = join_all(rolls.map(|partition| self.roll(partition)));
        let (rolled, late) = self.within(deadline, &board, false, rolls).await;
        let rolled: Result<Vec<()>, StorageError> = rolled.into_iter().collect();
        if let Err(e) = rolled {
            self.fail(&e);
            board.answer_all(&AppendError::Storage(e));
            return;
        }
        if late {
            // Answered at the deadline (nothing of the round written); the directory heals.
            return;
        }
        let mut plans = Vec::with_capacity(order.len());
        for partition in order {
            let group = groups
                .remove(&(Arc::as_ptr(&partition) as usize))
                .unwrap_or_default();
            match self.plan(&partition, group, now_ms, &board) {
                Ok(p) => plans.push(p),
                Err(AppendError::Storage(e)) => {
                    self.fail(&e);
                    board.answer_all(&AppendError::Storage(e));
                    return;
                }
                // Only this partition's appends fail (answered by the plan); the directory
                // is fine.
                Err(_) => {}
            }
        }
        // Per file: its writes, then its sync, as one operation; all files in flight together.
        let io = self.io().clone();
        crate::fault_point!("commit.before_sync");
        crate::cpu_work!("append", plans.len());
        crate::cpu_work!("bytes", plans.iter().map(|p| p.len).sum::<u64>());
        let started = self.shared.env.clock.now();
        let rounds = plans
            .iter()
            .map(|p| io.write_all_and_sync(&p.file, p.writes()));
        let (outcome, late) = self.within(deadline, &board, true, join_all(rounds)).await;
        let outcome: Result<(), StorageError> = outcome.into_iter().collect();
        self.shared
            .metrics
            .observe_sync(self.shared.env.clock.now() - started);
        crate::fault_point!("commit.after_sync");
        if let Err(e) = outcome {
            self.sync_failed = true;
            self.fail(&e);
            // The bytes went to the disk: their fate is unknown to the waiters (indefinite).
            board.answer_all(&StorageError::Unconfirmed(Box::new(e)).into());
            return;
        }
        if late {
            // Durable after all, but answered as unconfirmed at the deadline: not published,
            // and the healing cuts it away (a retry writes it again).
            return;
        }
        if std::mem::take(&mut self.sync_failed) {
            crate::coverage::reached(crate::coverage::Event::SyncFailedThenSucceeded);
        }
        crate::coverage::reached_when(crate::coverage::Event::OffsetCommitsInOneRound, || {
            plans
                .iter()
                .any(|p| super::catalog::is_internal(&p.partition.topic) && p.waiters.len() > 1)
        });
        // Just before the partitions' state is updated (the lock is taken below, never across
        // this pause).
        crate::fault_point!("partition.publish");
        let now_ms = self.shared.env.clock.wall_ms();
        let mut appended = 0u64;
        let mut answers = Vec::with_capacity(plans.len());
        for mut p in plans {
            let log_start_offset = p.publish(now_ms);
            Metrics::inc(&self.shared.metrics.produced_records, p.records);
            Metrics::inc(&self.shared.metrics.produced_bytes, p.len);
            appended += p.waiters.len() as u64;
            answers.push((p.waiters, log_start_offset, p.log_append_time_ms));
        }
        // Count and publish before answering, so whoever hears back sees the round counted.
        Metrics::inc(&self.shared.metrics.commit_rounds, 1);
        Metrics::inc(&self.shared.metrics.commit_appends, appended);
        self.shared.commits.send_modify(|g| *g += 1);
        for (waiters, log_start_offset, log_append_time_ms) in answers {
            for (slot, base_offset) in waiters {
                board.answer(
                    slot,
                    Ok(Appended {
                        base_offset,
                        log_start_offset,
                        log_append_time_ms,
                    }),
                );
            }
        }
    }

    /// Run one phase of a commit round under what is left of the round's deadline. A round is
    /// several disk operations one after another (a roll's chain, then the writes and syncs),
    /// each under the I/O deadline — on a slow disk their sum went far past it (swarm seed 807:
    /// 11.5 s with a 3.7 s deadline, no produce answered). When the round's time is up the
    /// directory fails and every waiter still on the board is answered at once (`written`: the
    /// bytes may be on the disk, so the failure is indefinite); the phase still runs to its end
    /// (a roll cut in the middle would leave files behind), and the round publishes nothing.
    /// The round's time is the deadline and a tenth more: a single operation that stalls
    /// started a moment after the round, and its own deadline must fail the directory first,
    /// naming the operation and the file (under load the round's timer won that race, and the
    /// failure named nothing — `a_stalled_sync_fails_the_directory_within_the_deadline_then_heals`
    /// failed once in CI).
    pub(super) async fn within<F: std::future::Future, T, E: Clone + From<StorageError>>(
        &self,
        deadline: Option<(tokio::time::Instant, Duration)>,
        board: &Board<T, E>,
        written: bool,
        phase: F,
    ) -> (F::Output, bool) {
        let Some((at, limit)) = deadline else {
            return (phase.await, false);
        };
        let clock = self.shared.env.clock.clone();
        tokio::pin!(phase);
        let left = at.saturating_duration_since(clock.now()) + limit / 10;
        match clock.timeout_running(left, &mut phase).await {
            Ok(out) => (out, false),
            Err(_) => {
                let reason = format!(
                    "a commit round did not finish within the I/O deadline ({} ms)",
                    limit.as_millis()
                );
                self.shared
                    .io
                    .health
                    .fail(reason.clone(), None, None, clock.now());
                let err = StorageError::DirFailed(reason);
                let err = if written {
                    StorageError::Unconfirmed(Box::new(err))
                } else {
                    err
                };
                board.answer_all(&err.into());
                (phase.await, true)
            }
        }
    }

    /// Assign offsets and lay out one partition's appends of this round (its segment rolled
    /// already if they would overfill it).
    fn plan(
        &self,
        partition: &Arc<Partition>,
        group: Vec<(Append, usize)>,
        now_ms: i64,
        board: &Board<Appended, AppendError>,
    ) -> Result<Planned, AppendError> {
        if partition.is_deleted() {
            let gone = AppendError::PartitionGone {
                topic: partition.topic.clone(),
                partition: partition.index,
            };
            for (_, slot) in &group {
                board.answer(*slot, Err(gone.clone()));
            }
            return Err(gone);
        }
        let config = partition.config();
        let st = partition.state();
        let seg = st.active();
        let interval = config.index_interval_bytes;
        let log_append_time = config.timestamp_type == TimestampType::LogAppendTime;
        let mut last_entry = seg.entries.last().map(|e| e.position as u64);
        let mut max_ts = seg.max_timestamp;
        let mut next = seg.next_offset;
        let batches: usize = group.iter().map(|(a, _)| a.headers.len()).sum();
        // The base offsets of the round's batches, one buffer for all; `pieces` says where
        // each goes among the payloads' slices.
        let mut offsets = BytesMut::with_capacity(8 * batches);
        let mut pieces: Vec<Piece> = Vec::with_capacity(2 * batches);
        let mut len = 0u64;
        let mut held = Vec::new();
        let mut entries = Vec::new();
        let mut records = 0u64;
        let mut waiters = Vec::with_capacity(group.len());
        // The round's view of the producers it writes for: checked and updated batch by batch,
        // taken into the partition's state only once the round is durable.
        let mut producers = st.producers.subset(
            group
                .iter()
                .flat_map(|(a, _)| a.headers.iter().map(|h| &h.producer_id)),
        );
        let mut completed = Vec::new();
        let mut marked = Vec::new();
        for (a, slot) in group {
            let base_offset = next;
            // A marker earlier in this round ends its producer's confirmation already.
            let verified = Verified {
                tokens: &st.txn_verified,
                ended: &marked,
            };
            match check_producers(&producers, &a, next, now_ms, verified) {
                Err(e) => {
                    // Refused before anything of it was written: a definite failure.
                    board.answer(slot, Err(e.into()));
                    continue;
                }
                Ok(Checked::Duplicate(first_offset)) => {
                    // Already in the log: answered with its offset, nothing written.
                    crate::coverage::reached(crate::coverage::Event::DuplicateBatchAnswered);
                    waiters.push((slot, first_offset));
                    continue;
                }
                Ok(Checked::Append(updated, done)) => {
                    producers.merge(updated);
                    completed.extend(done);
                    marked.extend(
                        a.headers
                            .iter()
                            .filter(|h| h.is_control() && h.is_transactional())
                            .map(|h| h.producer_id),
                    );
                }
            }
            let mut from = 0usize;
            for h in &a.headers {
                let pos = seg.size + len;
                if last_entry.is_none_or(|l| pos - l >= interval) {
                    entries.push(IndexEntry {
                        relative_offset: (next - seg.base_offset) as u32,
                        position: pos as u32,
                        prefix_max_timestamp: max_ts,
                    });
                    last_entry = Some(pos);
                }
                if log_append_time {
                    // Restamped (attributes, largest timestamp, CRC): a copy of its own.
                    let one = &a.payload[from..from + h.size];
                    let mut copy = BytesMut::with_capacity(h.size);
                    next = batch::assign_offsets(one, std::slice::from_ref(h), next, &mut copy);
                    batch::stamp_log_append_time(&mut copy, now_ms);
                    pieces.push(Piece::Whole(copy.freeze()));
                    max_ts = max_ts.max(now_ms);
                } else {
                    pieces.push(Piece::Offset(offsets.len()));
                    offsets.extend_from_slice(&next.to_be_bytes());
                    pieces.push(Piece::Whole(
                        a.payload
                            .slice(from + batch::BASE_OFFSET_LEN..from + h.size),
                    ));
                    next += h.last_offset_delta as i64 + 1;
                    max_ts = max_ts.max(h.max_timestamp);
                }
                len += h.size as u64;
                from += h.size;
            }
            records += batch::record_count(&a.headers) as u64;
            waiters.push((slot, base_offset));
            held.extend(a.memory);
        }
        let (zero_fill, allocated) = zeros_ahead(seg, seg.size + len, len, &config);
        let offsets = offsets.freeze();
        let data = pieces
            .into_iter()
            .map(|p| match p {
                Piece::Offset(at) => offsets.slice(at..at + batch::BASE_OFFSET_LEN),
                Piece::Whole(b) => b,
            })
            .collect();
        Ok(Planned {
            partition: partition.clone(),
            file: seg.file.clone(),
            segment_base: seg.base_offset,
            position: seg.size,
            zero_fill,
            allocated,
            data,
            len,
            _held: held,
            next_offset: next,
            entries,
            max_timestamp: max_ts,
            records,
            waiters,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            producers,
            completed,
            marked,
        })
    }

    /// Close the active segment (write and sync its index), snapshot the producers' state as of
    /// its end (so a restart reads only the new segment to rebuild it), and start a new one.
    /// The closing segment's files, the snapshot and the new segment are independent: they are
    /// written and synced together, then one directory sync makes the new names durable — a
    /// roll costs the longest of those chains plus one sync, not the sum of a dozen operations.
    pub(super) async fn roll(&self, partition: &Arc<Partition>) -> Result<(), StorageError> {
        let io = self.io();
        let closing: Segment = partition.state().active().clone();
        let base = closing.next_offset;
        let snapshot = {
            let mut st = partition.state_mut();
            let now_ms = self.shared.env.clock.wall_ms();
            st.producers
                .expire(now_ms, self.shared.producer_expiration_ms);
            Bytes::from(st.producers.encode())
        };
        let cut_preallocated = async {
            if closing.allocated > closing.size {
                // A closed segment holds exactly its data: cut the zeros written ahead.
                io.truncate(&closing.file, closing.size).await?;
                io.sync_data(&closing.file).await?;
            }
            Ok::<(), StorageError>(())
        };
        let path = partition.dir.join(log::segment_name(base, "log"));
        let (cut, index, snapshot, file) = futures::join!(
            cut_preallocated,
            log::write_index(io, &partition.dir, &closing),
            log::write_snapshot(io, &partition.dir, base, snapshot),
            io.open(&path, OpenMode::Create),
        );
        let file = file?;
        let synced = match (cut, index, snapshot) {
            // Makes the new segment and the snapshot's name durable.
            (Ok(()), Ok(()), Ok(())) => io.sync_dir(&partition.dir).await,
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        };
        if let Err(e) = synced {
            // The active segment stays and takes the next appends: the new file must not
            // survive to claim their offsets (recovery also removes such a leftover).
            let _ = io.remove_file(&path).await;
            return Err(e);
        }
        partition
            .state_mut()
            .segments
            .insert(base, Segment::empty(base, file));
        // The snapshot of the segment before is of no use now (recovery also removes it); it
        // may never have been written (a partition's first segment).
        let old = partition
            .dir
            .join(log::segment_name(closing.base_offset, "snapshot"));
        let _ = io.remove_file(&old).await;
        tracing::debug!(topic = %partition.topic, partition = partition.index, base_offset = base, "rolled segment");
        crate::coverage::reached(crate::coverage::Event::SegmentRolled);
        Ok(())
    }
}

/// Whether `group`, appended to the partition's active segment, would overfill it (or its time
/// is up).
fn roll_due(partition: &Partition, group: &[(Append, usize)], now_ms: i64) -> bool {
    let bytes: usize = group.iter().map(|(a, _)| a.payload.len()).sum();
    let records: i64 = group
        .iter()
        .map(|(a, _)| batch::record_count(&a.headers))
        .sum();
    partition
        .state()
        .active()
        .roll_due(bytes as u64, records, now_ms, &partition.config())
}

/// Where a piece of a round's write comes from: the round's buffer of base offsets (at this
/// position), or bytes of its own.
enum Piece {
    Offset(usize),
    Whole(Bytes),
}

/// The partition's confirmations of transactional producers, as a commit round sees them.
#[derive(Clone, Copy)]
struct Verified<'a> {
    /// The tokens the partition holds (`PartitionState::txn_verified`).
    tokens: &'a HashMap<i64, u64>,
    /// Producers a marker earlier in the round ended the confirmation of.
    ended: &'a [i64],
}

impl Verified<'_> {
    /// Whether an append carrying `token` may open `producer_id`'s transaction.
    fn holds(&self, producer_id: i64, token: Option<u64>) -> bool {
        !self.ended.contains(&producer_id)
            && token.is_some_and(|t| self.tokens.get(&producer_id) == Some(&t))
    }
}

/// What the producer checks say of one append.
enum Checked {
    /// Write it; the producers' state with its batches, and the transactions its markers
    /// complete.
    Append(ProducerStates, Vec<CompletedTxn>),
    /// A retry of an append already written at this offset.
    Duplicate(i64),
}

/// Check one append's batches (data, or transaction markers) against the round's view of their
/// producers, as if written at `first_offset` onwards. As Kafka does, an append whose batch is
/// a duplicate is answered with that batch's original offset and nothing of it is written.
/// A producer's batch that would open its transaction here must carry the partition's token
/// of the coordinator's confirmation (`verified`).
fn check_producers(
    producers: &ProducerStates,
    append: &Append,
    first_offset: i64,
    now_ms: i64,
    verified: Verified<'_>,
) -> Result<Checked, crate::producer_state::ProducerError> {
    let mut scratch = producers.subset(append.headers.iter().map(|h| &h.producer_id));
    let mut completed = Vec::new();
    let mut offset = first_offset;
    let mut from = 0usize;
    for h in &append.headers {
        let bytes = &append.payload[from..from + h.size];
        if scratch.would_open(h) && !verified.holds(h.producer_id, append.txn_guard) {
            return Err(crate::producer_state::ProducerError::Unverified {
                producer_id: h.producer_id,
            });
        }
        match scratch.check_batch(h, bytes)? {
            Verdict::Duplicate(b) => return Ok(Checked::Duplicate(b.first_offset)),
            Verdict::Append => completed.extend(scratch.record_batch(h, bytes, offset, now_ms)),
        }
        offset += h.last_offset_delta as i64 + 1;
        from += h.size;
    }
    Ok(Checked::Append(scratch, completed))
}

fn answer_all(replies: impl IntoIterator<Item = Waiter>, err: &AppendError) {
    for r in replies.into_iter().flatten() {
        let _ = r.send(Err(err.clone()));
    }
}
