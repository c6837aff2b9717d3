//! One cleaning of one partition (Kafka's `Cleaner.doClean`): the key map built over the dirty
//! section, as far as the map holds; then every segment from the log's first through the one
//! where the map ended rewritten without the records a later one of the same key supersedes
//! (and tombstones past their horizon, and records without a key), consecutive segments that
//! fit in `segment.bytes` together merged into one ([`groups`]), each group swapped for its
//! cleaned copy.
//!
//! The swap, crash-safe: the cleaned copy is written aside (`<base>.cleaned.tmp`) and synced;
//! then, under the partition's files lock and only if every segment of the group is still
//! the one read:
//! - one segment: its index files are removed (the directory synced: an old index must never
//!   describe the new file), the copy renamed over the segment's log file (the directory
//!   synced), and the index written for it. A crash leaves the old log or the new one, whole,
//!   never a mix; recovery removes a leftover copy and rebuilds a missing index.
//! - several (Kafka's `.swap`): the copy is renamed `<base>.swap` and the directory synced —
//!   the commit point — then the group's index files and its later segments' logs are
//!   removed and the swap renamed over the first segment's log ([`log::finish_swap`]). A
//!   crash before the commit point leaves the old segments (and a copy recovery removes); after
//!   it, recovery finds the swap and finishes the same steps, replacing every segment whose
//!   offsets the swap spans. Never a mix, never a loss.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use io_backend::{DiskFile, OpenMode};

use super::offset_map::OffsetMap;
use super::rewrite::{clean_batch, clean_marker, Transactions};
use super::Cleaner;
use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::records;
use crate::storage::log::index::{lookup_offset, IndexEntry};
use crate::storage::log::{self, Partition, Segment};
use crate::storage::StorageError;

/// Bytes read from a segment at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// Bytes of a cleaned copy gathered before they are written.
const WRITE_BYTES: usize = 1 << 20;

/// What the cleaner found worth cleaning in a partition (computed under its state lock).
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Where the dirty section begins (the log below it was cleaned already).
    pub first_dirty: i64,
    /// Nothing at or past it is cleaned: the active segment, the high watermark, records
    /// younger than `min.compaction.lag.ms`.
    pub uncleanable: i64,
    /// The dirty section's part of the cleanable log, by bytes.
    pub ratio: f64,
    /// `max.compaction.lag.ms` passed for the oldest dirty segment.
    pub overdue: bool,
}

/// What one cleaning did.
pub(super) struct Done {
    /// The dirty section now begins here.
    pub cleaned_to: i64,
    /// Keys the map held.
    pub keys: usize,
    pub records_removed: u64,
    pub segments_rewritten: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Cleaner {
    /// Clean `p` as `plan` says; `None` when the map could not take a single batch (or the
    /// cleaner was stopped), so nothing moved.
    pub(super) async fn clean(
        &mut self,
        p: &Arc<Partition>,
        plan: Plan,
    ) -> Result<Option<Done>, StorageError> {
        let segments: Vec<Segment> = {
            let st = p.state();
            let closed = st.segments.len().saturating_sub(1);
            st.segments
                .values()
                .take(closed)
                .take_while(|s| s.next_offset <= plan.uncleanable)
                .cloned()
                .collect()
        };
        let config = p.config();
        let decompressed_max = self.decompressed_max(&config);
        let aborted = Aborted::of(&p.state());
        let mut map = OffsetMap::with_budget(self.settings.dedupe_buffer_bytes);
        let map_end = self
            .build_map(
                &segments,
                plan.first_dirty,
                decompressed_max,
                &aborted,
                &mut map,
            )
            .await?;
        if self.stopping() {
            return Ok(None);
        }
        if map_end <= plan.first_dirty {
            tracing::warn!(topic = %p.topic, partition = p.index, keys = map.capacity(), "a batch of the dirty section has more records than the cleaner's key map holds (log_cleaner_dedupe_buffer_bytes); the partition is not cleaned");
            return Ok(None);
        }
        let now_ms = self.shared.env.clock.wall_ms();
        let horizon = now_ms.saturating_add(config.delete_retention_ms);
        let mut done = Done {
            cleaned_to: map_end,
            keys: map.len(),
            records_removed: 0,
            segments_rewritten: 0,
            bytes_before: 0,
            bytes_after: 0,
        };
        // Runs of emptied batches are merged, but for those the producer state keeps — not
        // among a Raft log's entries, each of which is a batch (invariant 37): only in its
        // cleaned prefix below them, and on a single node. No group spans the entries' start.
        let (retained, entries_from) = {
            let st = p.state();
            let first = st.segments.keys().next().copied().unwrap_or(0);
            let from = st.replica.as_ref().map(|r| r.meta.entries_from(first));
            (st.producers.retained_batches(), from)
        };
        let (prefix, entries): (Vec<Segment>, Vec<Segment>) = segments
            .into_iter()
            .filter(|s| s.base_offset < map_end)
            .partition(|s| entries_from.is_none_or(|from| s.next_offset <= from));
        let mut txns = Transactions::default();
        for (part, mergeable) in [(prefix, true), (entries, false)] {
            for group in groups(&part, config.segment_bytes) {
                if self.stopping() {
                    return Ok(None);
                }
                let cut = Cut {
                    keep_apart: mergeable.then_some(&retained),
                    aborted: &aborted,
                    map: &map,
                    map_end,
                    now_ms,
                    horizon,
                    interval: config.index_interval_bytes,
                    decompressed_max,
                };
                match self.rewrite(p, group, &cut, &mut txns).await? {
                    Some((size, removed)) => {
                        done.records_removed += removed;
                        done.segments_rewritten += group.len() as u64;
                        done.bytes_before += group.iter().map(|s| s.size).sum::<u64>();
                        done.bytes_after += size;
                    }
                    // Reset or deleted meanwhile.
                    None if !group.iter().all(|s| p.holds(s)) => return Ok(None),
                    None => {}
                }
            }
        }
        Ok(Some(done))
    }

    /// Put the keys of the dirty section's records into `map`, in offset order, until the
    /// map could not take the next batch's; where the mapped part ends.
    async fn build_map(
        &mut self,
        segments: &[Segment],
        first_dirty: i64,
        decompressed_max: usize,
        aborted: &Aborted,
        map: &mut OffsetMap,
    ) -> Result<i64, StorageError> {
        let mut end = first_dirty;
        for seg in segments.iter().filter(|s| s.next_offset > first_dirty) {
            let rel = (first_dirty.max(seg.base_offset) - seg.base_offset) as u32;
            let mut reader = Reader::new(seg, u64::from(lookup_offset(&seg.entries, rel).0));
            while let Some((_, h, bytes)) = self.next_batch(&mut reader).await? {
                if self.stopping() {
                    return Ok(end);
                }
                if h.next_offset() <= first_dirty {
                    continue;
                }
                // An aborted transaction's records are no key's latest: they are removed.
                if !h.is_control() && h.record_count > 0 && !aborted.holds(&h) {
                    if map.full_for(h.record_count as usize) {
                        return Ok(end);
                    }
                    for_each_record(&bytes, &h, decompressed_max, &mut |key, offset| {
                        if offset >= first_dirty {
                            map.put(key, offset);
                        }
                    })
                    .map_err(|why| corrupt(seg, &why))?;
                }
                end = h.next_offset();
            }
        }
        Ok(end)
    }

    /// Write `group` (consecutive segments, see [`groups`]) cleaned as one segment beside the
    /// first, and swap it in; the new size and the records removed, or `None` when nothing in
    /// it changes (one segment whose batches all stay as they are) or it changed under the
    /// cleaner.
    ///
    /// With `cut.keep_apart` (a log that is not a Raft log, or a Raft log's cleaned prefix),
    /// each run of record-less batches (emptied now or by an earlier cleaning) becomes one
    /// header spanning the run ([`batch::empty_span`]), so a
    /// compacted log does not keep a header for every batch ever written. A run ends at a batch
    /// with records, a control batch, a new leader epoch, and a batch the producer state still
    /// keeps for its producer (Kafka's cleaner keeps a producer's last batch too): a scan of the
    /// log without the producer snapshot still finds every producer's sequence. Among a Raft log's
    /// entries each batch is an entry (invariant 37), so none is merged there.
    async fn rewrite(
        &mut self,
        p: &Arc<Partition>,
        group: &[Segment],
        cut: &Cut<'_>,
        txns: &mut Transactions,
    ) -> Result<Option<(u64, u64)>, StorageError> {
        let first = &group[0];
        let tmp = p
            .dir
            .join(log::segment_name(first.base_offset, "cleaned.tmp"));
        let mut w = Written {
            seg: first,
            tmp: &tmp,
            out: None,
            entries: Vec::new(),
            prefix_max: -1,
            interval: cut.interval,
        };
        if group.len() > 1 {
            // Segments merged: the copy is a new file from its first byte.
            w.out = Some(self.start_copy(&tmp, first, 0).await?);
        }
        let mut run: Option<Run> = None;
        let mut removed = 0u64;
        // Abort markers emptied now: their transactions leave the aborted list.
        let mut emptied_aborts = std::collections::HashSet::new();
        for seg in group {
            let mut reader = Reader::new(seg, 0);
            while let Some((pos, h, bytes)) = self.next_batch(&mut reader).await? {
                if self.stopping() {
                    // The store is closing: the copy is left for recovery to remove.
                    return Ok(None);
                }
                let due = h.delete_horizon().is_some_and(|at| at <= cut.now_ms);
                let in_aborted = cut.aborted.holds(&h);
                let cleaned = if txns.ends_empty(&h) {
                    let c = clean_marker(&bytes, &h, cut.horizon, cut.now_ms);
                    if c.removed > 0 {
                        crate::coverage::reached(crate::coverage::Event::TxnMarkerRemoved);
                        if crate::txn_marker::Marker::decode(&h, &bytes).is_some_and(|m| !m.commit)
                        {
                            emptied_aborts.insert(h.base_offset);
                        }
                    }
                    c
                } else {
                    clean_batch(
                        &bytes,
                        &h,
                        cut.decompressed_max,
                        cut.horizon,
                        |r, offset| !in_aborted && cut.keeps(r.key, r.value.is_none(), offset, due),
                    )
                    .map_err(|why| corrupt(seg, &why))?
                };
                txns.data(&h, h.record_count as u64 > cleaned.removed);
                removed += cleaned.removed;
                let changed = cleaned.bytes.is_some();
                let batch = cleaned.bytes.unwrap_or(bytes);
                // Markers, emptied or not, stay apart: a scan of the log still finds each
                // producer's transactions where its markers close them. A transaction's
                // emptied data batch opens nothing (`ProducerStates::record`): it may go.
                let mergeable = cut.keep_apart.is_some_and(|apart| {
                    let stays_apart =
                        h.is_control() || (h.producer_id >= 0 && apart.contains(&h.base_offset));
                    batch.len() == HEADER_BYTES && !stays_apart
                });
                if let Some(r) = run.as_mut() {
                    if mergeable && r.takes(&h) {
                        r.add(&h);
                        continue;
                    }
                    let r = run.take().expect("checked");
                    self.emit_run(&mut w, r).await?;
                }
                if mergeable {
                    run = Some(Run::new(pos, &h, batch, changed));
                    continue;
                }
                self.emit(&mut w, &batch, &h, pos, changed).await?;
            }
        }
        if let Some(r) = run.take() {
            self.emit_run(&mut w, r).await?;
        }
        let Written { out, entries, .. } = w;
        let Some(mut copy) = out else {
            return Ok(None);
        };
        self.flush(&mut copy).await?;
        let io = self.shared.io.clone();
        io.sync_data(&copy.file).await?;
        let _files = p.lock_files().await;
        if !group.iter().all(|s| p.holds(s)) || p.is_deleted() {
            drop(copy);
            io.remove_file_if_present(&tmp).await?;
            return Ok(None);
        }
        let base = first.base_offset;
        if group.len() == 1 {
            for ext in ["index", "timeindex", "txnindex"] {
                io.remove_file_if_present(&p.dir.join(log::segment_name(base, ext)))
                    .await?;
            }
            io.sync_dir(&p.dir).await?;
            crate::fault_point!("cleaner.before_swap");
            io.rename(&tmp, &p.dir.join(log::segment_name(base, "log")))
                .await?;
            io.sync_dir(&p.dir).await?;
        } else {
            // The copy becomes the swap (the commit point: from here recovery finishes the
            // merge), then replaces the segments it was made from.
            crate::fault_point!("cleaner.before_swap");
            io.rename(&tmp, &p.dir.join(log::segment_name(base, "swap")))
                .await?;
            io.sync_dir(&p.dir).await?;
            let members: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
            log::finish_swap(&io, &p.dir, base, &members).await?;
            crate::coverage::reached(crate::coverage::Event::CleanedSegmentsMerged);
        }
        let last = group.last().expect("a group is never empty");
        let cleaned = Segment {
            file: copy.file,
            size: copy.written,
            allocated: copy.written,
            entries,
            next_offset: last.next_offset,
            max_timestamp: group.iter().map(|s| s.max_timestamp).max().unwrap_or(-1),
            roll_base_ms: group.iter().find_map(|s| s.roll_base_ms),
            // An aborted transaction stays listed until its marker is emptied.
            aborted: group
                .iter()
                .flat_map(|s| s.aborted.iter().copied())
                .filter(|a| !emptied_aborts.contains(&a.last_offset))
                .collect(),
            ..first.clone()
        };
        {
            let mut st = p.state_mut();
            for seg in &group[1..] {
                st.segments.remove(&seg.base_offset);
            }
            if let Some(s) = st.segments.get_mut(&base) {
                *s = cleaned.clone();
            }
        }
        crate::coverage::reached(crate::coverage::Event::LogCleaned);
        log::write_index(&io, &p.dir, &cleaned).await?;
        Ok(Some((cleaned.size, removed)))
    }

    /// Put `batch` (the cleaned form of the batch at `pos` of the segment, `h` its original
    /// header; `changed` when it differs from what is there) in the cleaned copy, starting the
    /// copy at the first change.
    async fn emit(
        &mut self,
        w: &mut Written<'_>,
        batch: &Bytes,
        h: &BatchHeader,
        pos: u64,
        changed: bool,
    ) -> Result<(), StorageError> {
        if changed && w.out.is_none() {
            w.out = Some(self.start_copy(w.tmp, w.seg, pos).await?);
        }
        let at = w.out.as_ref().map_or(pos, Copy::len);
        if w.entries
            .last()
            .is_none_or(|e| at - u64::from(e.position) >= w.interval)
        {
            w.entries.push(IndexEntry {
                relative_offset: (h.base_offset - w.seg.base_offset) as u32,
                position: at as u32,
                prefix_max_timestamp: w.prefix_max,
            });
        }
        w.prefix_max = w.prefix_max.max(h.max_timestamp);
        if let Some(copy) = w.out.as_mut() {
            copy.pending.extend_from_slice(batch);
            if copy.pending.len() >= WRITE_BYTES {
                self.flush(copy).await?;
            }
        }
        Ok(())
    }

    /// Put a run of record-less batches in the cleaned copy: as it is when it is one batch,
    /// else as one header spanning it.
    async fn emit_run(&mut self, w: &mut Written<'_>, r: Run) -> Result<(), StorageError> {
        if r.batches == 1 {
            return self.emit(w, &r.first, &r.header, r.pos, r.changed).await;
        }
        crate::coverage::reached(crate::coverage::Event::EmptyBatchesMerged);
        let merged = batch::empty_span(&r.first, r.end - 1, r.max_timestamp);
        let h = BatchHeader {
            max_timestamp: r.max_timestamp,
            ..r.header
        };
        self.emit(w, &merged, &h, r.pos, true).await
    }

    /// Open the cleaned copy of `seg` and put the segment's first `upto` bytes (unchanged
    /// batches) in it.
    async fn start_copy(
        &mut self,
        tmp: &std::path::Path,
        seg: &Segment,
        upto: u64,
    ) -> Result<Copy, StorageError> {
        let io = self.shared.io.clone();
        let file = io.open(tmp, OpenMode::Truncate).await?;
        let mut copy = Copy {
            file,
            written: 0,
            pending: BytesMut::new(),
        };
        let mut pos = 0;
        while pos < upto {
            let len = (upto - pos).min(CHUNK_BYTES as u64) as usize;
            self.pace(len as u64).await;
            let chunk = io.read_at(&seg.file, len, pos).await?;
            if chunk.len() < len {
                return Err(corrupt(
                    seg,
                    "the segment is shorter than its committed size",
                ));
            }
            copy.pending.extend_from_slice(&chunk);
            self.flush(&mut copy).await?;
            pos += len as u64;
        }
        Ok(copy)
    }

    async fn flush(&mut self, copy: &mut Copy) -> Result<(), StorageError> {
        if copy.pending.is_empty() {
            return Ok(());
        }
        let data = copy.pending.split().freeze();
        self.pace(data.len() as u64).await;
        let len = data.len() as u64;
        self.shared
            .io
            .write_at(&copy.file, data, copy.written)
            .await?;
        copy.written += len;
        Ok(())
    }

    /// The next whole batch of `reader`'s segment, its CRC checked: position, header, bytes.
    async fn next_batch(
        &mut self,
        reader: &mut Reader<'_>,
    ) -> Result<Option<(u64, BatchHeader, Bytes)>, StorageError> {
        let seg = reader.seg;
        if reader.pos >= seg.size {
            return Ok(None);
        }
        let rel = (reader.pos - reader.chunk_pos) as usize;
        if reader.pos < reader.chunk_pos || rel + HEADER_BYTES > reader.chunk.len() {
            let len = (seg.size - reader.pos).min(CHUNK_BYTES as u64) as usize;
            self.pace(len as u64).await;
            reader.chunk = self.shared.io.read_at(&seg.file, len, reader.pos).await?;
            reader.chunk_pos = reader.pos;
            if reader.chunk.len() < HEADER_BYTES {
                return Err(corrupt(seg, "a batch header is cut short"));
            }
        }
        let rel = (reader.pos - reader.chunk_pos) as usize;
        let h =
            batch::parse_header(&reader.chunk[rel..]).map_err(|e| corrupt(seg, &e.to_string()))?;
        if reader.pos + h.size as u64 > seg.size {
            return Err(corrupt(
                seg,
                "a batch runs past the segment's committed size",
            ));
        }
        let bytes = if rel + h.size <= reader.chunk.len() {
            reader.chunk.slice(rel..rel + h.size)
        } else {
            self.pace(h.size as u64).await;
            self.shared
                .io
                .read_at(&seg.file, h.size, reader.pos)
                .await?
        };
        let h = batch::validate_stored(&bytes).map_err(|e| corrupt(seg, &e.to_string()))?;
        let at = reader.pos;
        reader.pos += h.size as u64;
        Ok(Some((at, h, bytes)))
    }
}

/// The segments of one cleaning, in groups cleaned into one segment each (Kafka's
/// `groupSegmentsBySize`): consecutive segments while their bytes together stay within
/// `segment.bytes` and their offsets within what one segment's index holds. Cleaning only
/// shrinks them, so the merged segment is never larger than a segment may grow; a compacted
/// log then keeps a file per `segment.bytes` of what survives, not one per segment ever
/// rolled.
fn groups(segments: &[Segment], segment_bytes: u64) -> Vec<&[Segment]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let (mut end, mut bytes) = (start + 1, segments[start].size);
        while let Some(next) = segments.get(end) {
            let span = next.next_offset - segments[start].base_offset;
            if bytes + next.size > segment_bytes || span > log::RELATIVE_OFFSET_MAX {
                break;
            }
            bytes += next.size;
            end += 1;
        }
        out.push(&segments[start..end]);
        start = end;
    }
    out
}

/// What decides each record's fate in one cleaning.
struct Cut<'a> {
    /// `None` in a Raft log (no batch is merged); else the first offsets of the batches the
    /// producer state keeps, which no run takes in.
    keep_apart: Option<&'a std::collections::HashSet<i64>>,
    /// The log's aborted transactions: their records are removed, whatever their keys.
    aborted: &'a Aborted,
    map: &'a OffsetMap,
    /// Records at or past it were not mapped: kept.
    map_end: i64,
    now_ms: i64,
    horizon: i64,
    interval: u64,
    decompressed_max: usize,
}

impl Cut<'_> {
    /// Whether the record at `offset` (its key, whether it is a tombstone, whether its
    /// batch's delete horizon passed) stays.
    fn keeps(
        &self,
        key: Option<&[u8]>,
        tombstone: bool,
        offset: i64,
        horizon_passed: bool,
    ) -> bool {
        if offset >= self.map_end {
            return true;
        }
        // Kafka's cleaner drops records without a key: no produce puts one in a compacted
        // topic, but a topic switched from delete may hold some.
        let Some(key) = key else {
            return false;
        };
        if self.map.get(key).is_some_and(|latest| latest > offset) {
            return false;
        }
        let expired = tombstone && horizon_passed;
        crate::coverage::reached_when(crate::coverage::Event::TombstoneExpired, || expired);
        !expired
    }
}

/// A log's aborted transactions by producer: the offsets from each one's first batch to its
/// abort marker, in order (a producer's transactions never overlap).
pub(super) struct Aborted(std::collections::HashMap<i64, Vec<(i64, i64)>>);

impl Aborted {
    /// Every segment's aborted transactions (the active segment's too: a marker there may end
    /// a transaction whose records lie in the closed segments being cleaned).
    pub(super) fn of(st: &crate::storage::log::PartitionState) -> Aborted {
        let mut by_producer: std::collections::HashMap<i64, Vec<(i64, i64)>> = Default::default();
        for seg in st.segments.values() {
            for a in &seg.aborted {
                by_producer
                    .entry(a.producer_id)
                    .or_default()
                    .push((a.first_offset, a.last_offset));
            }
        }
        for ranges in by_producer.values_mut() {
            ranges.sort_unstable();
        }
        Aborted(by_producer)
    }

    /// Whether `h` is a data batch of an aborted transaction.
    pub(super) fn holds(&self, h: &batch::BatchHeader) -> bool {
        if !h.is_transactional() || h.is_control() {
            return false;
        }
        let Some(ranges) = self.0.get(&h.producer_id) else {
            return false;
        };
        let at = ranges.partition_point(|(first, _)| *first <= h.base_offset);
        at > 0 && h.base_offset < ranges[at - 1].1
    }
}

/// A segment read batch by batch from a position.
struct Reader<'a> {
    seg: &'a Segment,
    pos: u64,
    chunk: Bytes,
    chunk_pos: u64,
}

impl<'a> Reader<'a> {
    fn new(seg: &'a Segment, pos: u64) -> Self {
        Reader {
            seg,
            pos,
            chunk: Bytes::new(),
            chunk_pos: pos,
        }
    }
}

/// What one rewrite of `seg` has put out so far.
struct Written<'a> {
    seg: &'a Segment,
    /// Where the cleaned copy is written.
    tmp: &'a std::path::Path,
    /// The cleaned copy, from the first batch that changed.
    out: Option<Copy>,
    /// The sparse index of the cleaned segment.
    entries: Vec<IndexEntry>,
    /// The largest timestamp of the batches before the next one.
    prefix_max: i64,
    /// `index.interval.bytes`.
    interval: u64,
}

/// A run of record-less batches the rewrite holds until it ends.
struct Run {
    /// Where its first batch is in the segment, that batch (as cleaned) and its header.
    pos: u64,
    first: Bytes,
    header: BatchHeader,
    /// Whether its first batch was emptied by this cleaning.
    changed: bool,
    batches: usize,
    /// The offset after its last batch.
    end: i64,
    max_timestamp: i64,
}

impl Run {
    fn new(pos: u64, h: &BatchHeader, first: Bytes, changed: bool) -> Self {
        Run {
            pos,
            first,
            header: *h,
            changed,
            batches: 1,
            end: h.next_offset(),
            max_timestamp: h.max_timestamp,
        }
    }

    /// Whether the record-less batch `h` may join the run: it follows on, in the same leader
    /// epoch, and the run would still span what one batch can.
    fn takes(&self, h: &BatchHeader) -> bool {
        h.base_offset == self.end
            && h.partition_leader_epoch == self.header.partition_leader_epoch
            && h.next_offset() - self.header.base_offset <= i64::from(i32::MAX)
    }

    fn add(&mut self, h: &BatchHeader) {
        self.batches += 1;
        self.end = h.next_offset();
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
    }
}

/// A cleaned copy being written.
struct Copy {
    file: Arc<dyn DiskFile>,
    written: u64,
    pending: BytesMut,
}

impl Copy {
    fn len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }
}

/// Call `f(key, offset)` for every record with a key of a stored batch.
fn for_each_record(
    bytes: &[u8],
    h: &BatchHeader,
    decompressed_max: usize,
    f: &mut impl FnMut(&[u8], i64),
) -> Result<(), String> {
    let body = &bytes[HEADER_BYTES..h.size];
    let plain;
    let stored: &[u8] = match h.compression() {
        0 => body,
        codec => {
            plain =
                records::decompress(codec, body, decompressed_max).map_err(|e| e.to_string())?;
            &plain
        }
    };
    for r in records::stored_records(stored, h.record_count)? {
        if let Some(key) = r.key {
            f(key, h.base_offset + i64::from(r.offset_delta));
        }
    }
    Ok(())
}

fn corrupt(seg: &Segment, why: &str) -> StorageError {
    StorageError::Corrupt {
        path: seg.file.path().to_path_buf(),
        reason: format!("the cleaner cannot read it: {why}"),
    }
}
