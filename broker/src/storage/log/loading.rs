//! Loading a partition's segments at recovery: every segment file opened and every closed
//! one's index files read (a bounded number at a time), closed segments taken through their
//! index files or rebuilt from a scan, and the active segment scanned to its last valid batch.
//! A closed segment's aborted transactions come from its `.txnindex`; when that cannot say
//! (the file damaged, or the offset index rebuilt beside abort markers with no file), every
//! segment is read again with the producers' state from the first.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use io_backend::{DiskFile, OpenMode};

use super::recovery::{
    cut_tail, read_whole, scanned_segment, write_index, write_txn_index, ActiveScan,
};
use super::scan::scan_segment;
use super::{index, segment_name, txn_index, Segment};
use crate::producer_state::ProducerStates;
use crate::storage::io::{Io, StorageError};

/// Segments opened at once during recovery.
const SEGMENT_OPENS_IN_FLIGHT: usize = 32;

/// A segment's file and length, and a closed segment's index files (if present).
struct Opened {
    file: Arc<dyn DiskFile>,
    len: u64,
    offsets: Option<Bytes>,
    times: Option<Bytes>,
    txns: Option<Bytes>,
}

async fn open_segment(
    io: &Io,
    dir: &Path,
    base: i64,
    closed: bool,
) -> Result<Opened, StorageError> {
    let file = io
        .open(&dir.join(segment_name(base, "log")), OpenMode::Existing)
        .await?;
    let len = io.len(&file).await?;
    let (offsets, times, txns) = if closed {
        let [index, timeindex, txnindex] =
            ["index", "timeindex", "txnindex"].map(|ext| dir.join(segment_name(base, ext)));
        futures::try_join!(
            read_whole(io, &index),
            read_whole(io, &timeindex),
            read_whole(io, &txnindex)
        )?
    } else {
        (None, None, None)
    };
    Ok(Opened {
        file,
        len,
        offsets,
        times,
        txns,
    })
}

/// A partition's segments, and what its active segment's scan found.
pub(super) type Loaded = (BTreeMap<i64, Segment>, Option<ActiveScan>);

/// How a partition's segments are loaded.
pub(super) struct Loading<'a> {
    pub(super) io: &'a Io,
    pub(super) dir: &'a Path,
    pub(super) index_interval_bytes: u64,
    pub(super) replicated: bool,
    /// No usable producer snapshot: every segment's batches rebuild the producers' state.
    pub(super) scan_closed: bool,
}

impl Loading<'_> {
    /// Every segment, in order: a closed one through its index files (rebuilt from the
    /// segment when they fail their checks), the active one scanned and cut after its last
    /// valid batch. With what the active segment's scan found for a replicated partition.
    /// `None`: a closed segment's aborted transactions can be known only by reading every
    /// segment with the producers' state (see [`Loading::closed`]).
    pub(super) async fn segments(
        &self,
        bases: &[i64],
        producers: &mut ProducerStates,
    ) -> Result<Option<Loaded>, StorageError> {
        let (io, dir) = (self.io, self.dir);
        let mut segments = BTreeMap::new();
        if bases.is_empty() {
            let path = dir.join(segment_name(0, "log"));
            let file = io.open(&path, OpenMode::Create).await?;
            io.sync_dir(dir).await?;
            segments.insert(0, Segment::empty(0, file));
        }
        // Every segment's file opened and every closed one's index files read, a bounded
        // number at a time and kept in order: one after another, thousands of small segments
        // took minutes to open on a slow disk.
        let opens: Vec<_> = (0..bases.len())
            .map(|i| open_segment(io, dir, bases[i], i + 1 < bases.len()))
            .collect();
        let opened: Vec<Opened> = futures::stream::iter(opens)
            .buffered(SEGMENT_OPENS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut active_scan = None;
        for ((i, &base), opened) in bases.iter().enumerate().zip(opened) {
            let next_base = bases.get(i + 1).copied();
            let seg = match next_base {
                Some(next_base) => match self.closed(base, next_base, opened, producers).await? {
                    Some(seg) => seg,
                    None => return Ok(None),
                },
                None => {
                    let (seg, scan) = self.active(base, opened, producers).await?;
                    active_scan = Some(scan);
                    seg
                }
            };
            segments.insert(base, seg);
        }
        Ok(Some((segments, active_scan)))
    }

    /// A closed segment, whose index files hold what it holds when they pass their checks;
    /// else scanned, and its index written again. Its aborted transactions come from its
    /// `.txnindex` (none without one: that file is written before the offset index), or from
    /// the scan when it records the producers' state. `None` when neither can say: the file
    /// fails its checks, or the offset index is rebuilt beside abort markers with no file.
    async fn closed(
        &self,
        base: i64,
        next_base: i64,
        opened: Opened,
        producers: &mut ProducerStates,
    ) -> Result<Option<Segment>, StorageError> {
        let (io, dir) = (self.io, self.dir);
        let path = dir.join(segment_name(base, "log"));
        let Opened {
            file,
            len,
            offsets,
            times,
            txns,
        } = opened;
        let loaded = match (offsets, times) {
            (Some(o), Some(t)) => index::entries_of(index::OFFSET_KIND, &o)
                .zip(index::entries_of(index::TIME_KIND, &t))
                .and_then(|(o, t)| index::decode(o, t, len)),
            _ => None,
        };
        let present = txns.is_some();
        let txns = match txns {
            Some(data) => index::entries_of(index::TXN_KIND, &data).and_then(txn_index::decode),
            None => Some(Vec::new()),
        };
        if let Some(l) = loaded.filter(|l| base + l.next_relative as i64 == next_base) {
            let aborted = if self.scan_closed {
                let s =
                    scan_segment(io, &file, base, len, u64::MAX, Some(producers), false).await?;
                s.aborted
            } else {
                match txns.clone() {
                    Some(aborted) => aborted,
                    None => return Ok(None),
                }
            };
            let seg = Segment {
                base_offset: base,
                file,
                size: len,
                next_offset: base + l.next_relative as i64,
                entries: l.entries,
                max_timestamp: l.max_timestamp,
                roll_base_ms: None,
                allocated: len,
                aborted,
            };
            if txns.as_ref() != Some(&seg.aborted) {
                // Found again by the scan: the file is put right, or the next start reads
                // every segment again.
                write_txn_index(io, dir, &seg).await?;
            }
            return Ok(Some(seg));
        }
        tracing::warn!(segment = %path.display(), "index missing or damaged; rebuilding it from the segment");
        let record_producers = self.scan_closed.then_some(producers);
        let s = scan_segment(
            io,
            &file,
            base,
            len,
            self.index_interval_bytes,
            record_producers,
            false,
        )
        .await?;
        cut_tail(io, &file, &path, s.valid_len, len).await?;
        if s.valid_len < len || base + (s.next_offset - base) != next_base {
            // A closed segment with a hole: later segments would not continue it.
            return Err(StorageError::Corrupt {
                path,
                reason: format!(
                    "closed segment ends at offset {} but the next segment starts at {}",
                    s.next_offset, next_base
                ),
            });
        }
        let aborted = if self.scan_closed || s.abort_markers == 0 {
            s.aborted.clone()
        } else {
            match txns.filter(|_| present) {
                Some(aborted) => aborted,
                None => return Ok(None),
            }
        };
        let mut seg = scanned_segment(base, file, s);
        seg.aborted = aborted;
        write_index(io, dir, &seg).await?;
        Ok(Some(seg))
    }

    /// The active segment, scanned to its last valid batch (recording the producers' batches)
    /// and cut there.
    async fn active(
        &self,
        base: i64,
        opened: Opened,
        producers: &mut ProducerStates,
    ) -> Result<(Segment, ActiveScan), StorageError> {
        let path = self.dir.join(segment_name(base, "log"));
        let Opened { file, len, .. } = opened;
        let mut s = scan_segment(
            self.io,
            &file,
            base,
            len,
            self.index_interval_bytes,
            Some(producers),
            self.replicated,
        )
        .await?;
        let scan = ActiveScan::taken_from(&mut s);
        cut_tail(self.io, &file, &path, s.valid_len, len).await?;
        Ok((scanned_segment(base, file, s), scan))
    }
}
