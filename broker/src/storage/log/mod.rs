//! Partition logs in Kafka's on-disk model: a directory per partition holding segments named by
//! their base offset (`00000000000000000000.log`) with a sparse offset index and a time index.
//!
//! Architecture invariant: the commit pipeline (`crate::commit`) is the only writer of these
//! files. Readers (Fetch, ListOffsets) take a snapshot of a segment's committed size under a
//! short lock and then read without it; no lock is held across an await.

pub mod index;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{Buf, Bytes};
use io_backend::{DiskFile, OpenMode};
use serde::{Deserialize, Serialize};

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::io::{Io, StorageError};
use crate::records::TimestampType;
use index::IndexEntry;

/// Per-topic log settings, with Kafka's meaning (`segment.bytes`, `retention.ms`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub index_interval_bytes: u64,
    /// Zeros written ahead of the active segment's end (0: none).
    #[serde(default)]
    pub preallocate_bytes: u64,
    /// Largest batch accepted, as sent (`max.message.bytes`).
    #[serde(default = "kafka_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Whose timestamps the records keep (`message.timestamp.type`).
    #[serde(default)]
    pub timestamp_type: TimestampType,
    /// With CreateTime, how far before / after the broker's clock a record's timestamp may lie
    /// (`message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`).
    #[serde(default = "unlimited_ms")]
    pub timestamp_before_max_ms: i64,
    #[serde(default = "unlimited_ms")]
    pub timestamp_after_max_ms: i64,
    /// Replicas that must have an `acks=all` write (`min.insync.replicas`); on a single node
    /// anything above 1 refuses `acks=all` with NOT_ENOUGH_REPLICAS, as Kafka would.
    #[serde(default = "one")]
    pub min_insync_replicas: i32,
}

fn kafka_max_message_bytes() -> u64 {
    1_048_588
}

fn unlimited_ms() -> i64 {
    i64::MAX
}

fn one() -> i32 {
    1
}

/// Bytes read at a time while scanning a segment (recovery, fetch).
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub fn segment_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// One segment file with its in-memory sparse index. Sizes and offsets are *committed* values:
/// everything below `size` is synced and visible to readers.
#[derive(Clone)]
pub struct Segment {
    pub base_offset: i64,
    pub file: Arc<dyn DiskFile>,
    pub size: u64,
    pub next_offset: i64,
    pub entries: Vec<IndexEntry>,
    pub max_timestamp: i64,
    /// When the segment's first batch arrived (wall ms): the start of `segment.ms`.
    pub roll_base_ms: Option<i64>,
    /// Bytes of the file already written (data, then zeros written ahead by the pipeline).
    /// Overwriting written blocks lets fdatasync skip the journal commit that a growing file
    /// needs; past `size` the file holds zeros, which recovery reads as the end of the log.
    pub allocated: u64,
}

/// The largest offset relative to a segment's base that its index can hold (Kafka's: 32-bit).
pub const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;

impl Segment {
    /// Whether appending `bytes` holding `records` records must start a new segment first: the
    /// segment would pass `segment.bytes`, its first append is `segment.ms` old, or the records
    /// would take relative offsets past what an index entry holds (a batch may claim up to two
    /// billion records; without this the 32-bit relative offsets would wrap). An empty segment
    /// takes anything (one oversized batch still has to go somewhere).
    pub fn roll_due(&self, bytes: u64, records: i64, now_ms: i64, config: &LogConfig) -> bool {
        self.size > 0
            && (self.size + bytes > config.segment_bytes
                || self
                    .roll_base_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= config.segment_ms)
                || self.next_offset - self.base_offset + records > RELATIVE_OFFSET_MAX)
    }

    pub fn empty(base_offset: i64, file: Arc<dyn DiskFile>) -> Segment {
        Segment {
            base_offset,
            file,
            size: 0,
            next_offset: base_offset,
            entries: Vec::new(),
            max_timestamp: -1,
            roll_base_ms: None,
            allocated: 0,
        }
    }
}

pub struct PartitionState {
    pub segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
}

impl PartitionState {
    pub fn active(&self) -> &Segment {
        // Invariant: a partition always has at least one segment (recovery creates one).
        self.segments
            .values()
            .next_back()
            .expect("a partition always has an active segment")
    }

    pub fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a partition always has an active segment")
    }

    pub fn high_watermark(&self) -> i64 {
        self.active().next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
}

/// One partition's log.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub dir: PathBuf,
    pub config: LogConfig,
    state: RwLock<PartitionState>,
    /// Set (by the pipeline) when the topic is deleted: appends still queued for this
    /// partition are refused instead of being written into a directory that is going away.
    deleted: std::sync::atomic::AtomicBool,
}

/// Records for a fetch, plus the partition's offsets at the time of the read.
#[derive(Debug, Clone)]
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} is outside [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Partition {
    pub fn new(
        topic: &str,
        index: i32,
        dir: PathBuf,
        config: LogConfig,
        state: PartitionState,
    ) -> Self {
        Partition {
            topic: topic.to_string(),
            index,
            dir,
            config,
            state: RwLock::new(state),
            deleted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// For the commit pipeline, as it deletes the topic.
    pub fn mark_deleted(&self) {
        self.deleted
            .store(true, std::sync::atomic::Ordering::Release)
    }

    pub fn state(&self) -> RwLockReadGuard<'_, PartitionState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// For the commit pipeline only (the single writer).
    pub fn state_mut(&self) -> RwLockWriteGuard<'_, PartitionState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn high_watermark(&self) -> i64 {
        self.state().high_watermark()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state().log_start_offset
    }

    /// At most how many committed bytes a read from `offset` can return (from the indexed
    /// position at or before it to the end of the log).
    pub fn bytes_from(&self, offset: i64) -> u64 {
        let st = self.state();
        let mut segments = st.segments.range(..=offset.max(st.log_start_offset)).rev();
        let Some((_, first)) = segments.next() else {
            return st.size_bytes();
        };
        let rel = u32::try_from(offset - first.base_offset).unwrap_or(u32::MAX);
        let from = index::lookup_offset(&first.entries, rel) as u64;
        let later: u64 = st
            .segments
            .range(first.base_offset + 1..)
            .map(|(_, s)| s.size)
            .sum();
        first.size.saturating_sub(from) + later
    }

    /// Read whole batches starting with the one that holds `offset`, at most `max_bytes` unless
    /// the first batch alone is larger (then just that batch, as Kafka does).
    pub async fn read(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchData, ReadError> {
        let (file, start, end, high_watermark, log_start_offset) = {
            let st = self.state();
            let hw = st.high_watermark();
            if offset < st.log_start_offset || offset > hw {
                return Err(ReadError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start_offset,
                    high_watermark: hw,
                });
            }
            let seg = st.segments.range(..=offset).next_back().map(|(_, s)| s);
            match seg {
                Some(seg) if offset < seg.next_offset => {
                    let rel = (offset - seg.base_offset) as u32;
                    let pos = index::lookup_offset(&seg.entries, rel) as u64;
                    (seg.file.clone(), pos, seg.size, hw, st.log_start_offset)
                }
                _ => {
                    return Ok(FetchData {
                        records: Bytes::new(),
                        high_watermark: hw,
                        log_start_offset: st.log_start_offset,
                    })
                }
            }
        };
        let records = read_verified(&file, Some(offset), || {
            read_from(
                io,
                &file,
                start,
                end,
                |h| h.next_offset() > offset,
                max_bytes,
            )
        })
        .await?;
        Ok(FetchData {
            records,
            high_watermark,
            log_start_offset,
        })
    }

    /// The first record with a timestamp ≥ `ts`, as `(offset, timestamp)`; `None` if there is none.
    pub async fn offset_for_timestamp(
        &self,
        io: &Io,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let found = {
            let st = self.state();
            st.segments
                .values()
                .find(|s| s.size > 0 && s.max_timestamp >= ts)
                .map(|s| {
                    (
                        s.file.clone(),
                        index::lookup_time(&s.entries, ts) as u64,
                        s.size,
                    )
                })
        };
        let Some((file, start, end)) = found else {
            return Ok(None);
        };
        let first = read_verified(&file, None, || {
            read_from(io, &file, start, end, |h| h.max_timestamp >= ts, 1)
        })
        .await?;
        let Ok(h) = batch::parse_header(&first) else {
            return Ok(None);
        };
        if h.compression() == 0 {
            if let Some(hit) = first_record_at_or_after(&first[..h.size.min(first.len())], &h, ts) {
                return Ok(Some(hit));
            }
        }
        // A compressed batch is stored as produced and not decompressed: answer with the batch.
        Ok(Some((h.base_offset, h.max_timestamp)))
    }
}

/// Read whole batches from `file` in `[start, end)`, beginning with the first batch for which
/// `wanted(header)` holds, up to `max_bytes` (at least one batch).
async fn read_from(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    start: u64,
    end: u64,
    wanted: impl Fn(&BatchHeader) -> bool,
    max_bytes: usize,
) -> Result<Bytes, StorageError> {
    let want = (max_bytes.max(64 * 1024) + 64 * 1024).min(SCAN_CHUNK_BYTES.max(max_bytes));
    let mut chunk = Bytes::new();
    let mut chunk_pos = start;
    let mut pos = start;
    while pos < end {
        let rel = (pos - chunk_pos) as usize;
        if pos < chunk_pos || rel + HEADER_BYTES > chunk.len() {
            let len = (end - pos).min(want as u64) as usize;
            chunk = io.read_at(file, len, pos).await?;
            chunk_pos = pos;
            if chunk.len() < HEADER_BYTES {
                return Err(corrupt(file, pos, "batch header cut short"));
            }
            continue;
        }
        let h =
            batch::parse_header(&chunk[rel..]).map_err(|e| corrupt(file, pos, &e.to_string()))?;
        if !wanted(&h) {
            pos += h.size as u64;
            continue;
        }
        // Gather complete batches from here that fit.
        let mut total = 0usize;
        for (_, next) in batch::scan(&chunk.slice(rel..)) {
            if total > 0 && total + next.size > max_bytes {
                break;
            }
            if pos + (total + next.size) as u64 > end {
                break;
            }
            total += next.size;
        }
        if total == 0 {
            // The first batch is larger than the chunk: read exactly it.
            return io.read_at(file, h.size, pos).await;
        }
        return Ok(chunk.slice(rel..rel + total));
    }
    Ok(Bytes::new())
}

/// How many times data that fails its checks is read before it is called corrupt: a bit flipped
/// on the way from the disk is gone on the next read; damage on the disk stays.
pub const READ_ATTEMPTS: usize = 4;

/// Read batches with `read` and check them right after the read (STYLE.md: CRC on write, CRC on
/// read): every batch's CRC-32C, and their offsets — which Kafka's CRC does not cover — dense
/// from the batch that holds `first_offset`. A misread is read again (up to [`READ_ATTEMPTS`]
/// reads); data that stays bad is corrupt on the disk, and the reader gets an error instead of
/// wrong offsets or records (librdkafka does not check CRCs by default).
async fn read_verified<F, Fut>(
    file: &Arc<dyn DiskFile>,
    first_offset: Option<i64>,
    read: F,
) -> Result<Bytes, StorageError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, StorageError>>,
{
    let mut last_error = None;
    for attempt in 0..READ_ATTEMPTS {
        let outcome = match read().await {
            Ok(bytes) => verify_batches(&bytes, first_offset)
                .map(|()| bytes)
                .map_err(|reason| StorageError::Corrupt {
                    path: file.path().to_path_buf(),
                    reason,
                }),
            Err(e @ StorageError::Corrupt { .. }) => Err(e),
            Err(e) => return Err(e),
        };
        match outcome {
            Ok(bytes) => return Ok(bytes),
            Err(e) => {
                if attempt == 0 {
                    tracing::warn!(segment = %file.path().display(), error = %e, "a read failed its checks; reading again");
                }
                last_error = Some(e);
            }
        }
    }
    // Bad every time: the bytes on the disk are damaged.
    let e = last_error.unwrap_or_else(|| corrupt(file, 0, "unreadable"));
    tracing::error!(segment = %file.path().display(), error = %e, "stored data is corrupt");
    Err(e)
}

/// Whether `bytes` are whole batches with valid CRCs and dense offsets, the first holding
/// `first_offset` (when given).
fn verify_batches(bytes: &[u8], first_offset: Option<i64>) -> Result<(), String> {
    let mut pos = 0;
    let mut expect = None;
    while pos < bytes.len() {
        let h = batch::validate(&bytes[pos..]).map_err(|e| format!("batch at +{pos}: {e}"))?;
        match expect {
            None => {
                if let Some(o) = first_offset {
                    if !(h.base_offset <= o && o < h.next_offset()) {
                        return Err(format!(
                            "the batch read for offset {o} holds {}..{}",
                            h.base_offset,
                            h.next_offset()
                        ));
                    }
                }
            }
            Some(next) if next != h.base_offset => {
                return Err(format!(
                    "batch at +{pos} starts at offset {} instead of {next}",
                    h.base_offset
                ))
            }
            Some(_) => {}
        }
        expect = Some(h.next_offset());
        pos += h.size;
    }
    Ok(())
}

fn corrupt(file: &Arc<dyn DiskFile>, pos: u64, why: &str) -> StorageError {
    StorageError::Corrupt {
        path: file.path().to_path_buf(),
        reason: format!("at byte {pos}: {why}"),
    }
}

/// Walk the records of an uncompressed batch for the first with timestamp ≥ `ts`.
fn first_record_at_or_after(batch: &[u8], h: &BatchHeader, ts: i64) -> Option<(i64, i64)> {
    let mut buf = batch.get(HEADER_BYTES..)?;
    for _ in 0..h.record_count {
        let len = get_varint(&mut buf)? as usize;
        let mut rec = buf.get(..len)?;
        buf = &buf[len..];
        let _attributes = rec.get_i8();
        let ts_delta = get_varint(&mut rec)?;
        let offset_delta = get_varint(&mut rec)?;
        let record_ts = h.first_timestamp + ts_delta;
        if record_ts >= ts {
            return Some((h.base_offset + offset_delta, record_ts));
        }
    }
    None
}

fn get_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.first()?;
        *buf = &buf[1..];
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// What scanning a segment found: the valid prefix and its index.
struct Scanned {
    valid_len: u64,
    next_offset: i64,
    entries: Vec<IndexEntry>,
    max_timestamp: i64,
    first_timestamp: Option<i64>,
}

/// Drop the chunk so the scan reads from `pos` again; false once this position was read
/// [`READ_ATTEMPTS`] times (the data is bad on the disk, or torn).
fn reread(reread_at: &mut (u64, usize), pos: u64, chunk: &mut Bytes) -> bool {
    if reread_at.0 != pos {
        *reread_at = (pos, 1);
    }
    if reread_at.1 >= READ_ATTEMPTS {
        return false;
    }
    reread_at.1 += 1;
    *chunk = Bytes::new();
    true
}

/// Scan a segment from the start, validating every batch (CRC-32C, header, offsets continuing
/// from the previous batch). Stops at the first invalid or incomplete batch. Reads a chunk at a
/// time, so memory stays bounded however long the log is.
async fn scan_segment(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    base_offset: i64,
    len: u64,
    interval: u64,
) -> Result<Scanned, StorageError> {
    let mut s = Scanned {
        valid_len: 0,
        next_offset: base_offset,
        entries: Vec::new(),
        max_timestamp: -1,
        first_timestamp: None,
    };
    let mut chunk = Bytes::new();
    let mut chunk_pos = 0u64;
    let mut pos = 0u64;
    // Where the scan last found bad data, and how often it read it: what looks like a torn tail
    // may be a misread, and cutting there would drop acknowledged records; more reads decide.
    let mut reread_at = (u64::MAX, 0);
    while pos < len {
        let rel = (pos - chunk_pos) as usize;
        let have = chunk.len().saturating_sub(rel);
        let header = match chunk.get(rel..).map(batch::parse_header) {
            Some(Ok(h)) => Some(h),
            // Zeros where a header would be: the end of the data (the pipeline writes zeros
            // ahead of it). No misread turns a header into zeros, so this is not read again.
            Some(Err(_)) if have >= HEADER_BYTES && is_zeros(&chunk[rel..rel + HEADER_BYTES]) => {
                break
            }
            // A full header that does not parse: corrupt from here on (once read again).
            Some(Err(_)) if have >= HEADER_BYTES => {
                if reread(&mut reread_at, pos, &mut chunk) {
                    continue;
                }
                break;
            }
            _ => None,
        };
        if let Some(h) = header {
            if h.size as u64 > len - pos {
                if reread(&mut reread_at, pos, &mut chunk) {
                    continue;
                }
                break; // The batch claims more bytes than the file has: a torn write.
            }
        }
        let Some(h) = header.filter(|h| h.size <= have) else {
            // The next batch (or its header) is not all in the chunk: read from here.
            if rel == 0 && have as u64 >= len - pos {
                break; // Everything up to the end is here and it is not a whole batch.
            }
            let need = header
                .map(|h| h.size)
                .unwrap_or(HEADER_BYTES)
                .max(SCAN_CHUNK_BYTES);
            chunk = io
                .read_at(file, (len - pos).min(need as u64) as usize, pos)
                .await?;
            chunk_pos = pos;
            if chunk.is_empty() {
                break;
            }
            continue;
        };
        if batch::validate(&chunk[rel..rel + h.size]).is_err() || h.base_offset != s.next_offset {
            if reread(&mut reread_at, pos, &mut chunk) {
                continue;
            }
            break;
        }
        let due = s
            .entries
            .last()
            .map(|e| pos - e.position as u64 >= interval)
            .unwrap_or(true);
        if due {
            s.entries.push(IndexEntry {
                relative_offset: (h.base_offset - base_offset) as u32,
                position: pos as u32,
                prefix_max_timestamp: s.max_timestamp,
            });
        }
        s.first_timestamp.get_or_insert(h.max_timestamp);
        s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
        s.next_offset = h.next_offset();
        pos += h.size as u64;
        s.valid_len = pos;
    }
    Ok(s)
}

fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Whether the tail of `file` from `from` looks like the zeros the pipeline writes ahead of
/// the data: its first chunk (at most [`SCAN_CHUNK_BYTES`]) is all zeros. A torn write starts
/// where the data ends, so damage shows in that chunk; reading all of a long tail of zeros at
/// every start of every partition would cost more than it tells.
async fn zeros_from(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    from: u64,
    to: u64,
) -> Result<bool, StorageError> {
    let len = (to - from).min(SCAN_CHUNK_BYTES as u64) as usize;
    Ok(is_zeros(&io.read_at(file, len, from).await?))
}

/// A whole small file (index, metadata), or `None` if it does not exist.
pub async fn read_whole(io: &Io, path: &Path) -> Result<Option<Bytes>, StorageError> {
    let exists = io.exists(path).await?;
    if !exists {
        return Ok(None);
    }
    let f = io.open(path, OpenMode::Existing).await?;
    let len = io.len(&f).await?;
    Ok(Some(io.read_at(&f, len as usize, 0).await?))
}

/// Write a closed segment's index files and sync them.
pub async fn write_index(io: &Io, dir: &Path, seg: &Segment) -> Result<(), StorageError> {
    let next_rel = (seg.next_offset - seg.base_offset) as u32;
    let (offsets, times) = index::encode(&seg.entries, seg.max_timestamp, next_rel);
    for (ext, data) in [("index", offsets), ("timeindex", times)] {
        let path = dir.join(segment_name(seg.base_offset, ext));
        let f = io.open(&path, OpenMode::Truncate).await?;
        io.write_at(&f, data, 0).await?;
        io.sync_data(&f).await?;
    }
    Ok(())
}

/// Open a partition directory after a start or a crash: load closed segments through their
/// index files (rebuilding an index that fails its checks), scan the active segment, and cut a
/// torn or corrupt tail off it.
pub async fn recover(
    io: &Io,
    dir: &Path,
    topic: &str,
    index_no: i32,
    config: LogConfig,
) -> Result<Partition, StorageError> {
    io.create_dir_all(dir).await?;
    let names = io.list(dir).await?;
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse::<i64>().ok())
        .collect();
    bases.sort_unstable();
    // Index files whose segment is gone (retention removes the log file first).
    for name in &names {
        let base = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"))
            .and_then(|b| b.parse::<i64>().ok());
        if base.is_some_and(|b| bases.binary_search(&b).is_err()) {
            io.remove_file(&dir.join(name)).await?;
        }
    }
    let mut segments = BTreeMap::new();
    if bases.is_empty() {
        let path = dir.join(segment_name(0, "log"));
        let file = io.open(&path, OpenMode::Create).await?;
        io.sync_dir(dir).await?;
        segments.insert(0, Segment::empty(0, file));
    }
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(segment_name(base, "log"));
        let file = io.open(&path, OpenMode::Existing).await?;
        let len = io.len(&file).await?;
        let is_active = i + 1 == bases.len();
        if !is_active {
            let offsets = read_whole(io, &dir.join(segment_name(base, "index"))).await?;
            let times = read_whole(io, &dir.join(segment_name(base, "timeindex"))).await?;
            let loaded = match (offsets, times) {
                (Some(o), Some(t)) => index::decode(&o, &t, len),
                _ => None,
            };
            if let Some(l) = loaded.filter(|l| base + l.next_relative as i64 == bases[i + 1]) {
                segments.insert(
                    base,
                    Segment {
                        base_offset: base,
                        file,
                        size: len,
                        next_offset: base + l.next_relative as i64,
                        entries: l.entries,
                        max_timestamp: l.max_timestamp,
                        roll_base_ms: None,
                        allocated: len,
                    },
                );
                continue;
            }
            tracing::warn!(segment = %path.display(), "index missing or damaged; rebuilding it from the segment");
        }
        let s = scan_segment(io, &file, base, len, config.index_interval_bytes).await?;
        if s.valid_len < len {
            if zeros_from(io, &file, s.valid_len, len).await? {
                // What the pipeline wrote ahead of the data: nothing was lost.
                tracing::debug!(segment = %path.display(), valid_bytes = s.valid_len, file_bytes = len, "cutting the zeros written ahead of the data");
            } else {
                tracing::warn!(
                    segment = %path.display(),
                    valid_bytes = s.valid_len,
                    file_bytes = len,
                    "truncating a torn or corrupt tail"
                );
            }
            io.truncate(&file, s.valid_len).await?;
            io.sync_data(&file).await?;
        }
        let seg = Segment {
            base_offset: base,
            file,
            size: s.valid_len,
            next_offset: s.next_offset,
            entries: s.entries,
            max_timestamp: s.max_timestamp,
            roll_base_ms: s.first_timestamp,
            allocated: s.valid_len,
        };
        if !is_active {
            if s.valid_len < len || base + (s.next_offset - base) != bases[i + 1] {
                // A closed segment with a hole: later segments would not continue it.
                return Err(StorageError::Corrupt {
                    path,
                    reason: format!(
                        "closed segment ends at offset {} but the next segment starts at {}",
                        s.next_offset,
                        bases[i + 1]
                    ),
                });
            }
            write_index(io, dir, &seg).await?;
        }
        segments.insert(base, seg);
    }
    let log_start_offset = segments.keys().next().copied().unwrap_or(0);
    Ok(Partition::new(
        topic,
        index_no,
        dir.to_path_buf(),
        config,
        PartitionState {
            segments,
            log_start_offset,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::make_batch;
    use bytes::BytesMut;

    /// Three batches of 2, 3 and 1 records at offsets 10, 12, 15, as the pipeline stores them.
    fn stored() -> BytesMut {
        let payload: Vec<Bytes> = vec![
            make_batch(2, 1, 8),
            make_batch(3, 1, 8),
            make_batch(1, 1, 8),
        ];
        let joined: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
        let headers = batch::validate_all(&joined, 1 << 20).unwrap();
        let mut out = BytesMut::new();
        assert_eq!(batch::assign_offsets(&joined, &headers, 10, &mut out), 16);
        out
    }

    #[test]
    fn a_segment_rolls_before_its_relative_offsets_would_wrap() {
        let config = LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: i64::MAX,
            retention_ms: -1,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            preallocate_bytes: 0,
            max_message_bytes: 1 << 20,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            min_insync_replicas: 1,
        };
        let file: Arc<dyn DiskFile> = Arc::new(NoFile);
        let mut seg = Segment::empty(1_000, file);
        seg.size = 100;
        seg.next_offset = 1_000 + RELATIVE_OFFSET_MAX - 10;
        assert!(
            !seg.roll_due(100, 10, 0, &config),
            "the last ten relative offsets fit"
        );
        assert!(seg.roll_due(100, 11, 0, &config), "the eleventh would wrap");
        // A few bytes of batches can claim that many records: bytes alone would not roll.
        seg.next_offset = 1_000;
        assert!(seg.roll_due(100, RELATIVE_OFFSET_MAX + 1, 0, &config));
        // An empty segment takes what comes.
        seg.size = 0;
        assert!(!seg.roll_due(100, RELATIVE_OFFSET_MAX + 1, 0, &config));
    }

    /// A file for tests that never touch it.
    struct NoFile;

    #[async_trait::async_trait]
    impl DiskFile for NoFile {
        fn path(&self) -> &Path {
            Path::new("/nowhere")
        }
        async fn write_at(&self, _: Bytes, _: u64) -> io_backend::DiskResult<()> {
            unreachable!()
        }
        async fn read_at(&self, _: usize, _: u64) -> io_backend::DiskResult<Bytes> {
            unreachable!()
        }
        async fn sync_data(&self) -> io_backend::DiskResult<()> {
            unreachable!()
        }
        async fn truncate(&self, _: u64) -> io_backend::DiskResult<()> {
            unreachable!()
        }
        async fn len(&self) -> io_backend::DiskResult<u64> {
            unreachable!()
        }
    }

    #[test]
    fn verified_reads_accept_dense_valid_batches_holding_the_offset() {
        let data = stored();
        assert_eq!(verify_batches(&data, Some(10)), Ok(()));
        assert_eq!(verify_batches(&data, Some(11)), Ok(()));
        assert_eq!(verify_batches(&data, None), Ok(()));
        assert_eq!(verify_batches(&[], Some(3)), Ok(()));
        // The first batch does not hold offset 12.
        assert!(verify_batches(&data, Some(12)).is_err());
    }

    #[test]
    fn verified_reads_catch_a_flip_the_crc_does_not_cover() {
        // Kafka's CRC starts after the base offset: a flipped offset bit passes the CRC.
        let mut data = stored();
        let second = make_batch(2, 1, 8).len();
        data[second + 7] ^= 0x04; // The second batch's base offset, 12 -> 8.
        let err = verify_batches(&data, Some(10)).unwrap_err();
        assert!(err.contains("instead of 12"), "{err}");
    }

    #[test]
    fn verified_reads_catch_a_flip_in_the_records() {
        let mut data = stored();
        let last = data.len() - 1;
        data[last] ^= 0x10;
        let err = verify_batches(&data, Some(10)).unwrap_err();
        assert!(err.to_lowercase().contains("crc"), "{err}");
    }
}
