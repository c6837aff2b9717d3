//! A compacted log's cleaned prefix, sent to a follower behind the Raft entries' start.
//!
//! A replicated compacted log lets its Raft entries begin above the data it holds
//! ([`crate::storage::log::replica::ReplicaMeta::raft_from`]): below lies the cleaned prefix,
//! which Raft no longer hands out entry by entry (the cleaner merges its emptied batches, so
//! its entry boundaries are gone). A follower behind that start is sent a snapshot naming the
//! prefix ([`super::super::entries::Prefix`]); raft-rs's one message cannot carry it, so the
//! leader holds the snapshot back and first sends the prefix in chunks of whole batches, each
//! answered by how much of it the follower holds, written and, with the last chunk, synced
//! (`<base>.prefix` files, a new one each `segment.bytes`). Then it sends the snapshot, and the
//! follower's reset renames the files into its segments (`reset_log`). Chunks carry the
//! leader's log as it is when each is read: a cleaning in between changes which superseded
//! records are still there, never a key's latest value, which is what Kafka's followers
//! fetching from a cleaned log see too.
//!
//! Invariant: a follower takes a snapshot that names a prefix only when it holds that whole
//! prefix, synced; otherwise it drops the snapshot and tells the leader how much it holds.
//! Bounds: one chunk in flight per follower, [`READS_MAX`] reads on a broker, each holding its
//! bytes of the memory budget until the chunk is queued; a chunk not answered within
//! [`ANSWER_TICKS`] is sent again.

use io_backend::{DiskFile, OpenMode};

use super::*;
use crate::batch::BatchHeader;
use crate::memory::Reservation;
use crate::producer_state::ProducerStates;
use crate::replication::entries::{snapshot_prefix, Prefix};
use crate::replication::wire::PrefixMsg;
use crate::storage::log::segment_name;
use crate::storage::{Io, ResetPrefix, StorageError};

/// Bytes of one chunk, at most (or its first batch, when that is larger).
pub(super) const CHUNK_BYTES: usize = 1 << 20;
/// Chunk reads in flight on a broker, at most.
pub(super) const READS_MAX: usize = 2;
/// Ticks a chunk waits for its answer before it is sent again.
const ANSWER_TICKS: u64 = 20;

/// A file a chunk's write began: its base and the file.
type NewFile = (i64, Arc<dyn DiskFile>);

/// A snapshot's identity: its index and term.
type SnapshotId = (u64, u64);

/// A leader's transfer of its prefix to one follower.
pub(super) struct Sending {
    /// The snapshot, sent once the follower holds the prefix.
    snapshot: Message,
    id: SnapshotId,
    prefix: Prefix,
    /// The follower holds `[prefix.start, next)`.
    next: i64,
    step: Step,
}

enum Step {
    Idle,
    Reading,
    /// A chunk is out; ticks since.
    Sent(u64),
}

/// A follower's reception of a prefix.
pub(super) struct Receiving {
    /// The leader sending it.
    source: NodeId,
    id: SnapshotId,
    start: i64,
    end: i64,
    /// Written: `[start, next)`.
    next: i64,
    /// The files so far: base, file, bytes written.
    files: Vec<(i64, Arc<dyn DiskFile>, u64)>,
    writing: bool,
    /// The idempotent producers of `[start, next)`: the cleaner keeps each producer's last
    /// batches (emptied, as headers), so they are what the leader's state holds of a producer
    /// whose last write lies in the prefix.
    producers: ProducerStates,
}

impl Receiving {
    fn whole(&self) -> bool {
        self.next == self.end && !self.writing
    }

    fn matches(&self, id: SnapshotId, start: i64, end: i64) -> bool {
        (self.id, self.start, self.end) == (id, start, end)
    }
}

/// A chunk read or written, or a reception's files removed.
pub(super) enum PrefixIo {
    Read(ChunkRead),
    Written(ChunkWritten),
    Removed,
}

/// A leader's read of the next chunk for follower `to`, from offset `from`.
pub(super) struct ChunkRead {
    group: GroupId,
    to: NodeId,
    id: SnapshotId,
    from: i64,
    outcome: Result<Bytes, String>,
    held: Reservation,
}

/// A follower's write of a chunk ending at offset `to`, `len` bytes.
pub(super) struct ChunkWritten {
    group: GroupId,
    id: SnapshotId,
    to: i64,
    outcome: Result<Option<NewFile>, StorageError>,
    len: u64,
}

/// A leader's MsgSnapshot: held while its prefix is sent; `Some` when it may go at once
/// (it names no prefix, or the follower holds it already).
pub(super) fn hold_snapshot(g: &mut Group, m: Message) -> Option<Message> {
    let Some(prefix) = snapshot_prefix(m.get_snapshot()) else {
        return Some(m);
    };
    let meta = m.get_snapshot().get_metadata();
    let id = (meta.index, meta.term);
    let to = m.to;
    match g.sending.get_mut(&to) {
        Some(s) if s.id == id && s.prefix == prefix => {
            if s.next == prefix.end {
                return Some(m);
            }
            s.snapshot = m;
        }
        _ => {
            tracing::info!(
                group = g.view.group,
                follower = to,
                start = prefix.start,
                end = prefix.end,
                "a follower is behind this log's Raft entries: sending it the cleaned prefix"
            );
            g.sending.insert(
                to,
                Sending {
                    snapshot: m,
                    id,
                    next: prefix.start,
                    prefix,
                    step: Step::Idle,
                },
            );
        }
    }
    None
}

impl Node {
    /// Start the chunk reads the bounds allow; forget transfers no longer needed.
    pub(super) fn drive_prefixes(&mut self) {
        if self.prefix_groups.is_empty() {
            return;
        }
        let me = self.id;
        let mut idle = Vec::new();
        let groups = &mut self.groups;
        let stepped_down = self.stepped_down;
        self.prefix_groups.retain(|group| {
            let Some(g) = groups.get_mut(group) else {
                return false;
            };
            let raft = &g.raw.raft;
            if raft.state != StateRole::Leader || stepped_down {
                g.sending.clear();
                return false;
            }
            // Done once the follower's log reaches the snapshot.
            g.sending.retain(|id, s| {
                *id != me && raft.prs().get(*id).is_some_and(|p| p.matched < s.id.0)
            });
            for (&to, s) in &g.sending {
                if matches!(s.step, Step::Idle) && s.next < s.prefix.end {
                    idle.push((*group, to));
                }
            }
            !g.sending.is_empty()
        });
        for (group, to) in idle {
            if self.prefix_reads >= READS_MAX {
                break;
            }
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            let Some(s) = g.sending.get_mut(&to) else {
                continue;
            };
            s.step = Step::Reading;
            self.prefix_reads += 1;
            let (id, from, end) = (s.id, s.next, s.prefix.end);
            let partition = g.view.partition.clone();
            let io = self.store.io().clone();
            let memory = self.memory.clone();
            self.prefix_io.push(Box::pin(async move {
                let held = memory.acquire(CHUNK_BYTES).await;
                let outcome = read_chunk(&partition, &io, from, end).await;
                PrefixIo::Read(ChunkRead {
                    group,
                    to,
                    id,
                    from,
                    outcome,
                    held,
                })
            }));
        }
    }

    pub(super) fn prefix_io_done(&mut self, done: PrefixIo) {
        match done {
            PrefixIo::Removed => {}
            PrefixIo::Read(read) => {
                self.prefix_reads -= 1;
                self.chunk_read(read);
            }
            PrefixIo::Written(written) => self.chunk_written(written),
        }
    }

    /// A chunk read: sent to its follower if the transfer still wants it.
    fn chunk_read(&mut self, read: ChunkRead) {
        let ChunkRead {
            group, to, from, ..
        } = read;
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let Some(s) = g.sending.get_mut(&to).filter(|s| s.id == read.id) else {
            return;
        };
        if s.next != from || !matches!(s.step, Step::Reading) {
            s.step = Step::Idle;
            return;
        }
        match read.outcome {
            Ok(batches) => {
                let chunk = PrefixMsg::Chunk {
                    id: s.id,
                    start: s.prefix.start,
                    end: s.prefix.end,
                    offset: from,
                    batches,
                };
                self.transport.send(to, wire::prefix(group, &chunk));
                s.step = Step::Sent(0);
            }
            Err(e) => {
                // Retention moved past it, or the disk: raft-rs asks again, and a snapshot of
                // the log as it is now is sent.
                tracing::warn!(group, follower = to, from, error = %e, "cannot read the cleaned prefix for a follower; its transfer starts again with the next snapshot");
                g.sending.remove(&to);
            }
        }
        drop(read.held);
    }

    /// A chunk written: the leader is told how much of the prefix is here.
    fn chunk_written(&mut self, written: ChunkWritten) {
        let group = written.group;
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let Some(r) = g
            .receiving
            .as_mut()
            .filter(|r| r.id == written.id && r.writing)
        else {
            return;
        };
        r.writing = false;
        match written.outcome {
            Ok(new_file) => {
                if let Some((base, file)) = new_file {
                    r.files.push((base, file, 0));
                }
                if let Some(last) = r.files.last_mut() {
                    last.2 += written.len;
                }
                r.next = written.to;
                let range = (r.start, r.end);
                send_held(&self.transport, r.source, group, r.id, range, r.next);
            }
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot write a chunk of a leader's cleaned prefix; the transfer starts again");
                let old = g.receiving.take();
                self.discard(group, old);
            }
        }
    }

    /// A prefix transfer's message from `from`.
    pub(super) fn prefix_message(&mut self, from: NodeId, group: GroupId, msg: PrefixMsg) {
        match msg {
            PrefixMsg::Held {
                id,
                start,
                end,
                next,
            } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                if g.raw.raft.state != StateRole::Leader {
                    return;
                }
                let Some(s) = g.sending.get_mut(&from) else {
                    return;
                };
                if (s.id, s.prefix.start, s.prefix.end) != (id, start, end)
                    || !(start..=end).contains(&next)
                {
                    return;
                }
                s.next = next;
                if !matches!(s.step, Step::Reading) {
                    s.step = Step::Idle;
                }
                // The transfer moves: raft-rs's wait for the snapshot's answer starts again.
                g.snapshot_waits.insert(from, 0);
                if next == end {
                    crate::coverage::reached(crate::coverage::Event::PrefixSent);
                    send(&self.transport, group, &s.snapshot);
                }
            }
            PrefixMsg::Chunk {
                id,
                start,
                end,
                offset,
                batches,
            } => self.take_chunk(from, group, id, (start, end), offset, batches),
        }
    }

    fn take_chunk(
        &mut self,
        from: NodeId,
        group: GroupId,
        id: SnapshotId,
        (start, end): (i64, i64),
        offset: i64,
        batches: Bytes,
    ) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.raw.raft.state == StateRole::Leader || start >= end {
            return;
        }
        if !g
            .receiving
            .as_ref()
            .is_some_and(|r| r.matches(id, start, end))
        {
            let old = g.receiving.replace(Receiving {
                source: from,
                id,
                start,
                end,
                next: start,
                files: Vec::new(),
                writing: false,
                producers: ProducerStates::default(),
            });
            self.discard(group, old);
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let r = g.receiving.as_mut().expect("set above");
        r.source = from;
        if r.writing {
            return;
        }
        if offset != r.next {
            send_held(&self.transport, from, group, id, (start, end), r.next);
            return;
        }
        let to = match check_chunk(&batches, offset, end) {
            Ok((to, headers)) => {
                // Recorded once: the chunk is the next one and is written (a failed write
                // gives the whole reception up).
                let now_ms = self.env.clock.wall_ms();
                for (h, at) in &headers {
                    let bytes = &batches[*at..*at + h.size];
                    r.producers.record_batch(h, bytes, h.base_offset, now_ms);
                }
                to
            }
            Err(why) => {
                tracing::warn!(
                    group,
                    peer = from,
                    offset,
                    why,
                    "dropping a chunk of a cleaned prefix that fails its checks"
                );
                return;
            }
        };
        let partition = g.view.partition.clone();
        let segment_bytes = partition.config().segment_bytes;
        let current = r
            .files
            .last()
            .filter(|(_, _, size)| *size < segment_bytes)
            .map(|(_, file, size)| (file.clone(), *size));
        let to_sync: Vec<Arc<dyn DiskFile>> = if to == end {
            r.files.iter().map(|(_, f, _)| f.clone()).collect()
        } else {
            Vec::new()
        };
        r.writing = true;
        let io = self.store.io().clone();
        let len = batches.len() as u64;
        self.prefix_io.push(Box::pin(async move {
            let outcome = async {
                let (file, pos, new_file) = match current {
                    Some((file, size)) => (file, size, None),
                    None => {
                        let path = partition.dir.join(segment_name(offset, "prefix"));
                        let file = io.open(&path, OpenMode::Truncate).await?;
                        (file.clone(), 0, Some((offset, file)))
                    }
                };
                io.write_at(&file, batches, pos).await?;
                if to == end {
                    for f in to_sync.iter().chain(std::iter::once(&file)) {
                        io.sync_data(f).await?;
                    }
                    io.sync_dir(&partition.dir).await?;
                }
                Ok(new_file)
            }
            .await;
            PrefixIo::Written(ChunkWritten {
                group,
                id,
                to,
                outcome,
                len,
            })
        }));
    }

    /// A follower is stepped a snapshot that names a prefix: taken only when the prefix is
    /// here whole (it then goes with the reset); otherwise dropped, and the leader told how
    /// much of it is here.
    pub(super) fn admit_snapshot(&mut self, group: GroupId, m: &Message) -> bool {
        let Some(prefix) = snapshot_prefix(m.get_snapshot()) else {
            return true;
        };
        let Some(g) = self.groups.get_mut(&group) else {
            return false;
        };
        let meta = m.get_snapshot().get_metadata();
        let id = (meta.index, meta.term);
        let whole = |r: &Receiving| r.matches(id, prefix.start, prefix.end) && r.whole();
        if g.admitted.as_ref().is_some_and(whole) {
            return true;
        }
        // An admitted prefix stays apart from later chunks until the snapshot's reset takes
        // it; a newer snapshot's replaces it, an older one's is not taken.
        if g.receiving.as_ref().is_some_and(whole)
            && g.admitted.as_ref().is_none_or(|a| a.id.0 < id.0)
        {
            let admitted = g.receiving.take();
            let old = std::mem::replace(&mut g.admitted, admitted);
            self.discard(group, old);
            return true;
        }
        let next = g
            .receiving
            .as_ref()
            .filter(|r| r.matches(id, prefix.start, prefix.end))
            .map_or(prefix.start, |r| r.next);
        let range = (prefix.start, prefix.end);
        send_held(&self.transport, m.from, group, id, range, next);
        false
    }

    /// Chunks out too long without an answer are sent again.
    pub(super) fn tick_prefixes(&mut self) {
        for group in &self.prefix_groups {
            let Some(g) = self.groups.get_mut(group) else {
                continue;
            };
            for s in g.sending.values_mut() {
                if let Step::Sent(ticks) = &mut s.step {
                    *ticks += 1;
                    if *ticks > ANSWER_TICKS {
                        s.step = Step::Idle;
                    }
                }
            }
        }
    }

    /// Remove the files of a reception given up.
    fn discard(&mut self, group: GroupId, old: Option<Receiving>) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        let dir = g.view.partition.dir.clone();
        remove_received(&mut self.prefix_io, self.store.io(), dir, old);
    }
}

/// Remove the files of reception `old` (given up), away from the loop.
pub(super) fn remove_received(
    prefix_io: &mut super::underway::Underway<PrefixIo>,
    io: &Io,
    dir: std::path::PathBuf,
    old: Option<Receiving>,
) {
    let Some(old) = old.filter(|r| !r.files.is_empty()) else {
        return;
    };
    let io = io.clone();
    let bases: Vec<i64> = old.files.iter().map(|(b, _, _)| *b).collect();
    drop(old);
    // A failure leaves files the next start removes.
    prefix_io.push(Box::pin(async move {
        for base in bases {
            let _ = io
                .remove_file_if_present(&dir.join(segment_name(base, "prefix")))
                .await;
        }
        PrefixIo::Removed
    }));
}

/// Tell the leader `to` that this follower holds `[start, next)` of the prefix `[start, end)`
/// of snapshot `id`.
fn send_held(
    transport: &Transport,
    to: NodeId,
    group: GroupId,
    id: SnapshotId,
    (start, end): (i64, i64),
    next: i64,
) {
    let held = PrefixMsg::Held {
        id,
        start,
        end,
        next,
    };
    transport.send(to, wire::prefix(group, &held));
}

/// A follower away for longer than this no longer holds its leader's Raft entries' start
/// back: once back it is sent the cleaned prefix. Long enough for a broker's restart, so that
/// one costs its followers' entries, not a copy of every cleaned log it replicates.
pub(super) const FOLLOWER_AWAY_MAX: Duration = Duration::from_secs(120);

/// How far this replica lets its Raft entries' start move up (see
/// [`Partition::raft_start_cap`]): a leader, to what every follower holds that is connected
/// or was heard within [`FOLLOWER_AWAY_MAX`], so that none of them needs the prefix sent (a
/// restart costs entries, not a copy of the cleaned log); one that is not leading, as far as
/// it has committed (it hands out entries only once it leads).
pub(super) fn raft_start_cap(g: &Group, me: NodeId, near: impl Fn(NodeId) -> bool) -> i64 {
    let raft = &g.raw.raft;
    if raft.state != StateRole::Leader {
        return i64::MAX;
    }
    let storage = g.raw.store();
    raft.prs()
        .iter()
        .filter(|(&id, _)| id != me && near(id))
        .map(|(_, p)| storage.end_offset(p.matched).unwrap_or(0))
        .min()
        .unwrap_or(i64::MAX)
}

/// The reset's share of a snapshot that names a prefix: the files received for it, taken
/// from the group (`None` when they are not here whole — then the snapshot was not stepped).
pub(super) fn take_received(
    g: &mut Group,
    snapshot: &raft::eraftpb::Snapshot,
) -> Option<Box<ResetPrefix>> {
    let prefix = snapshot_prefix(snapshot)?;
    let meta = snapshot.get_metadata();
    let id = (meta.index, meta.term);
    let r = g
        .admitted
        .take_if(|r| r.matches(id, prefix.start, prefix.end) && r.whole())?;
    Some(Box::new(ResetPrefix {
        start: prefix.start,
        log_start: prefix.log_start,
        gaps_before: prefix.gaps_before,
        gaps: prefix.gaps,
        bases: r.files.iter().map(|(b, _, _)| *b).collect(),
        producers: r.producers,
    }))
}

/// Whole batches of `partition`'s log from `from` (a batch boundary of the prefix as sent so
/// far) up to `end`, at most about [`CHUNK_BYTES`]. A record-less batch the cleaner merged
/// across `from` or `end` (this log's entries may begin higher by now) is cut to the range.
async fn read_chunk(partition: &Partition, io: &Io, from: i64, end: i64) -> Result<Bytes, String> {
    let data = partition
        .read_durable(io, from, CHUNK_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = bytes::BytesMut::new();
    let mut expect = from;
    for (pos, h) in crate::batch::scan(&data.records) {
        if h.base_offset >= end || expect >= end {
            break;
        }
        let b = &data.records[pos..pos + h.size];
        let next = h.next_offset();
        if h.base_offset == expect && next <= end {
            out.extend_from_slice(b);
        } else if h.record_count == 0 && !h.is_control() && h.base_offset <= expect && next > expect
        {
            let last = next.min(end) - 1;
            out.extend_from_slice(&crate::batch::empty_range(b, expect, last, h.max_timestamp));
        } else {
            return Err(format!(
                "the batch at [{}, {next}) does not continue the prefix at {expect}",
                h.base_offset
            ));
        }
        expect = next.min(end);
    }
    if out.is_empty() {
        return Err(format!("nothing to send from offset {from}"));
    }
    Ok(out.freeze())
}

/// A chunk's batches, each whole with its CRC, dense from `offset` and within `end`: where
/// they end, and its producers' batches (data and markers: each header with its position).
fn check_chunk(
    batches: &Bytes,
    offset: i64,
    end: i64,
) -> Result<(i64, Vec<(BatchHeader, usize)>), String> {
    let mut expect = offset;
    let mut pos = 0;
    let mut producers = Vec::new();
    while pos < batches.len() {
        let h = crate::batch::validate_stored(&batches[pos..]).map_err(|e| e.to_string())?;
        if h.base_offset != expect || h.next_offset() > end {
            return Err(format!(
                "a batch at [{}, {}) where [{expect}, {end}) was expected",
                h.base_offset,
                h.next_offset()
            ));
        }
        expect = h.next_offset();
        if h.producer_id >= 0 {
            producers.push((h, pos));
        }
        pos += h.size;
    }
    if expect == offset {
        return Err("no batch".into());
    }
    Ok((expect, producers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::make_batch;

    /// A batch of `count` records at `base`, from `producer` (its sequence from `seq`) or none.
    fn batch_at(base: i64, count: i32, producer: Option<(i64, i32)>) -> Bytes {
        let mut b = bytes::BytesMut::from(&make_batch(count, 1, 10)[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        if let Some((id, seq)) = producer {
            b[43..51].copy_from_slice(&id.to_be_bytes());
            b[51..53].copy_from_slice(&0i16.to_be_bytes());
            b[53..57].copy_from_slice(&seq.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        b.freeze()
    }

    #[test]
    fn a_chunk_is_dense_within_its_range_and_names_its_producers_batches() {
        let mut chunk = bytes::BytesMut::new();
        chunk.extend_from_slice(&batch_at(10, 2, Some((7, 0))));
        chunk.extend_from_slice(&batch_at(12, 1, None));
        chunk.extend_from_slice(&batch_at(13, 3, Some((7, 2))));
        let chunk = chunk.freeze();
        let (to, headers) = check_chunk(&chunk, 10, 20).unwrap();
        assert_eq!(to, 16);
        let named: Vec<_> = headers
            .iter()
            .map(|(h, _)| (h.base_offset, h.producer_id, h.base_sequence))
            .collect();
        assert_eq!(named, [(10, 7, 0), (13, 7, 2)]);
        // Not from where the reception is, past its end, or damaged: refused whole.
        assert!(check_chunk(&chunk, 9, 20).is_err());
        assert!(check_chunk(&chunk, 10, 15).is_err());
        let mut bad = chunk.to_vec();
        bad[30] ^= 1;
        assert!(check_chunk(&Bytes::from(bad), 10, 20).is_err());
    }
}
