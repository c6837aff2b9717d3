//! Partition logs in Kafka's on-disk model: a directory per partition holding segments named by
//! their base offset (`00000000000000000000.log`) with a sparse offset index and a time index.
//!
//! Architecture invariant: the commit pipeline (`crate::storage`'s) is the only writer of a
//! partition's active segment and the only one to roll it; the admin lane only removes closed
//! segments (retention, DeleteRecords) and writes the log start. Readers (Fetch, ListOffsets) take a snapshot of a segment's committed size under
//! a short lock and then read without it ([`read`]); no lock is held across an await.
//! [`recovery`] opens a partition after a start or a crash.

pub mod conf;
mod create;
pub mod gaps;
pub mod hard_state;
pub mod index;
mod loading;
mod read;
mod recovery;
pub mod replica;
mod reset;
mod scan;
pub mod txn_index;

pub use read::Isolation;

pub use create::{create, restore_pieces, unsettled_after_start};
pub use read::READ_ATTEMPTS;
use read::{first_record_at_or_after, max_record_timestamp, read_from, read_verified};
pub use recovery::{
    finish_swap, read_whole, recover, write_index, write_log_start, write_snapshot, LOG_START_FILE,
};
pub use reset::{load_closed, rename_prefix_files};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::sync::{AsyncMutex, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use io_backend::DiskFile;

use crate::batch;
use crate::producer_state::ProducerStates;
use crate::storage::io::{Io, StorageError};
use index::IndexEntry;

pub use crate::topic_config::LogConfig;

/// Bytes read at a time while scanning a segment (recovery, fetch).
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub fn segment_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// When `records` (whole batches) is not empty and holds no record a consumer is given —
/// only batches the cleaner emptied and control batches — the offset after them.
fn only_recordless(records: &Bytes) -> Option<i64> {
    let mut next = None;
    for (_, h) in crate::batch::scan(records) {
        if h.record_count > 0 && !h.is_control() {
            return None;
        }
        next = Some(h.next_offset());
    }
    next
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
    /// The transactions aborted by markers in this segment, in marker order
    /// ([`txn_index`]; on disk as `<base>.txnindex` once the segment is closed).
    pub aborted: Vec<txn_index::AbortedTxn>,
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
        // A compacted log's active segment rolls by `max.compaction.lag.ms` too: the cleaner
        // never takes the active segment (KIP-354).
        let segment_ms = if config.cleanup.compact {
            config.segment_ms.min(config.max_compaction_lag_ms)
        } else {
            config.segment_ms
        };
        self.size > 0
            && (self.size + bytes > config.segment_bytes
                || self
                    .roll_base_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= segment_ms)
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
            aborted: Vec::new(),
        }
    }
}

pub struct PartitionState {
    pub segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
    /// The idempotent producers of this partition, as of the committed end of the log.
    pub producers: ProducerStates,
    /// What a replicated partition keeps for Raft; `None` on a single node.
    pub replica: Option<replica::ReplicaState>,
    /// Transactional producers whose partition the transaction coordinator confirmed, by the
    /// token their appends carry ([`PartitionState::txn_guard`]); a marker for the producer
    /// takes its token away.
    pub txn_verified: std::collections::HashMap<i64, u64>,
    txn_tokens: u64,
}

impl PartitionState {
    pub fn new(
        segments: BTreeMap<i64, Segment>,
        log_start_offset: i64,
        producers: ProducerStates,
        replica: Option<replica::ReplicaState>,
    ) -> PartitionState {
        PartitionState {
            segments,
            log_start_offset,
            producers,
            replica,
            txn_verified: Default::default(),
            txn_tokens: 0,
        }
    }

    /// The token a transactional producer's append must carry to open its transaction here
    /// (KIP-890's verification): given before the coordinator is asked whether the partition
    /// is in the producer's transaction, and kept (the same for every append that asks) until
    /// a marker for the producer is written. A batch late from a transaction already ended
    /// carries a token the marker took away, and is refused rather than opening a transaction
    /// that nobody will end.
    pub fn txn_guard(&mut self, producer_id: i64) -> u64 {
        let next = self.txn_tokens + 1;
        let token = *self.txn_verified.entry(producer_id).or_insert(next);
        if token == next {
            self.txn_tokens = next;
        }
        token
    }

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

    /// The offset below which records are visible to consumers: the durable end of the log
    /// on a single node; in a cluster, the end of what Raft committed (never past the local
    /// durable end).
    pub fn high_watermark(&self) -> i64 {
        let end = self.log_end_offset();
        match &self.replica {
            Some(r) => r
                .committed_offset
                .clamp(self.log_start_offset.min(end), end),
            None => end,
        }
    }

    /// The offset below which every record's transaction is decided (Kafka's last stable
    /// offset): the high watermark, or the first offset of the earliest transaction still open
    /// here if that is lower, or (in a cluster) of a transaction whose marker Raft has not
    /// committed yet. A `read_committed` consumer reads only below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        let open = self
            .producers
            .first_unstable_offset()
            .map_or(hw, |first| first.min(hw));
        let unreplicated = self.replica.as_ref().and_then(|r| {
            r.unreplicated
                .iter()
                .filter(|t| t.last_offset >= hw)
                .map(|t| t.first_offset)
                .min()
        });
        unreplicated.map_or(open, |first| first.min(open))
    }

    /// The aborted transactions (producer id, first offset) a `read_committed` read from
    /// `fetch_offset` whose records end before `upper_bound` must name ([`txn_index::collect`]).
    pub fn aborted_between(&self, fetch_offset: i64, upper_bound: i64) -> Vec<(i64, i64)> {
        let from = self
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        txn_index::collect(
            self.segments.range(from..).map(|(_, s)| &s.aborted[..]),
            fetch_offset,
            upper_bound,
        )
    }

    /// The offset after the last durable record.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
}

/// One partition's log.
/// Which partition of which topic a directory holds.
#[derive(Debug, Clone, Copy)]
pub struct Naming<'a> {
    pub topic: &'a str,
    pub topic_id: u128,
    pub index: i32,
}

pub struct Partition {
    pub topic: String,
    /// The topic's id: a topic deleted and made again under its name has another.
    pub topic_id: u128,
    pub index: i32,
    pub dir: PathBuf,
    /// The topic's settings; changed (by the admin lane) when its configs are altered.
    config: RwLock<LogConfig>,
    state: RwLock<PartitionState>,
    /// Moved on whenever the state is taken for writing (before it changes): what is derived
    /// from the state may be kept while this stays the same.
    state_version: std::sync::atomic::AtomicU64,
    /// Set (by the pipeline, in queue order) when the topic is deleted: appends still queued for this
    /// partition are refused instead of being written into a directory that is going away.
    deleted: std::sync::atomic::AtomicBool,
    /// Taken by whoever removes segment files: the admin lane deleting a closed segment
    /// (retention, DeleteRecords) and the pipeline resetting a replicated log (a leader's
    /// snapshot, a replica moved away), which removes every segment and creates one whose
    /// name may be a name being deleted. The one async lock held across disk operations, each
    /// under the I/O deadline; appends, reads and the state lock never wait for it.
    files: AsyncMutex<()>,
    /// The cluster metadata's partition only: the text of its newest snapshot of the state it
    /// holds, and the offset it is at (`controller::snapshot`), for a leader's Raft snapshot.
    state_snapshot: Mutex<Option<(i64, bytes::Bytes)>>,
    /// A replicated compacted log only: how far the replication layer lets the Raft entries'
    /// start move up over the cleaned log (a leader: what every connected follower holds;
    /// 0: not at all). The commit pipeline moves it with a write ([`replica::ReplicaMeta::raft_from`]).
    raft_start_cap: std::sync::atomic::AtomicI64,
}

/// Where a state machine's log (the cluster metadata's) keeps the snapshot of its state
/// (`controller::snapshot`).
pub const STATE_SNAPSHOT_FILE: &str = "metadata.snapshot";
/// The largest snapshot of the state a broker takes from a leader, unpacked: a bound on what
/// a snapshot sent may make this broker hold (about twenty times the 12 MiB a leader sends
/// packed, and far above the metadata of 100,000 partitions).
pub const STATE_SNAPSHOT_BYTES_MAX: usize = 256 << 20;

/// Records for a fetch, plus the partition's offsets at the time of the read.
#[derive(Debug, Clone)]
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// Of a `read_committed` read ([`Isolation::ReadCommitted`]): the aborted transactions
    /// (producer id, first offset) its records may hold. Empty otherwise.
    pub aborted: Vec<(i64, i64)>,
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
    pub fn new(of: Naming<'_>, dir: PathBuf, config: LogConfig, state: PartitionState) -> Self {
        Partition {
            topic: of.topic.to_string(),
            topic_id: of.topic_id,
            index: of.index,
            dir,
            config: RwLock::new("storage.log.config", config),
            state: RwLock::new("storage.log.state", state),
            state_version: std::sync::atomic::AtomicU64::new(0),
            deleted: std::sync::atomic::AtomicBool::new(false),
            files: AsyncMutex::new("storage.log.files", ()),
            state_snapshot: Mutex::new("storage.log.state_snapshot", None),
            raft_start_cap: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Let the Raft entries' start move up to `offset` at most (see the field).
    pub fn set_raft_start_cap(&self, offset: i64) {
        self.raft_start_cap
            .store(offset, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn raft_start_cap(&self) -> i64 {
        self.raft_start_cap
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The first segment boundary at or above `offset` (where a segment begins), with the
    /// bytes of the segments from `since` up to it; `None` when no segment begins there.
    pub fn next_boundary(&self, offset: i64, since: i64) -> Option<(i64, u64)> {
        let st = self.state();
        let (&base, _) = st.segments.range(offset..).next()?;
        let bytes = st
            .segments
            .range(..base)
            .filter(|(_, s)| s.next_offset > since)
            .map(|(_, s)| s.size)
            .sum();
        Some((base, bytes))
    }

    /// Whether this partition's log is a state machine's (the cluster metadata's), whose
    /// Raft snapshots must carry the state ([`Partition::state_snapshot`]).
    pub fn snapshots_carry_state(&self) -> bool {
        self.topic == crate::storage::catalog::METADATA_TOPIC
    }

    /// The newest snapshot of the state this log holds: its offset and its text, packed as a
    /// Raft snapshot carries it ([`crate::storage::small_file::pack`]).
    pub fn state_snapshot(&self) -> Option<(i64, bytes::Bytes)> {
        self.state_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A snapshot of the state at `offset` is durable (taken, or installed from a leader's).
    pub fn set_state_snapshot(&self, offset: i64, text: bytes::Bytes) {
        let mut s = self
            .state_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if s.as_ref().is_none_or(|(o, _)| *o <= offset) {
            *s = Some((offset, text));
        }
    }

    /// Exclusive right to remove this partition's segment files (see the field).
    pub async fn lock_files(&self) -> crate::sync::AsyncMutexGuard<'_, ()> {
        self.files.lock().await
    }

    /// Whether `seg` is still one of this partition's segments (the same file, not a newer
    /// segment of the same base made by a reset).
    pub fn holds(&self, seg: &Segment) -> bool {
        self.state()
            .segments
            .get(&seg.base_offset)
            .is_some_and(|s| std::ptr::addr_eq(Arc::as_ptr(&s.file), Arc::as_ptr(&seg.file)))
    }

    pub fn config(&self) -> LogConfig {
        *self.config.read().unwrap_or_else(|p| p.into_inner())
    }

    /// For the admin lane, as it alters the topic's configs.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// For the commit pipeline, as it retires a deleted topic's partitions.
    pub fn mark_deleted(&self) {
        self.deleted
            .store(true, std::sync::atomic::Ordering::Release)
    }

    #[track_caller]
    pub fn state(&self) -> RwLockReadGuard<'_, PartitionState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// For the storage's two writers: the pipeline (appends, rolls) and the admin lane
    /// (segments removed, log start moved).
    #[track_caller]
    pub fn state_mut(&self) -> RwLockWriteGuard<'_, PartitionState> {
        let guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        // Held, so a reader that sees the new version waits for the change to finish.
        self.state_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        guard
    }

    /// Changes whenever the state may have changed (see `state_mut`): read it before
    /// [`Partition::state`] and a value derived from that state may be kept with it.
    pub fn state_version(&self) -> u64 {
        self.state_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.state().high_watermark()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state().log_start_offset
    }

    pub fn last_stable_offset(&self) -> i64 {
        self.state().last_stable_offset()
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
        let from = index::lookup_offset(&first.entries, rel).0 as u64;
        let later: u64 = st
            .segments
            .range(first.base_offset + 1..)
            .map(|(_, s)| s.size)
            .sum();
        first.size.saturating_sub(from) + later
    }

    /// The first record at or after the log start with a timestamp ≥ `ts`, as
    /// `(offset, timestamp)`; `None` if there is none.
    pub async fn offset_for_timestamp(
        &self,
        io: &Io,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let mut from = self.log_start_offset();
        loop {
            let candidates: Vec<_> = {
                let st = self.state();
                st.segments
                    .values()
                    .filter(|s| s.size > 0 && s.max_timestamp >= ts && s.next_offset > from)
                    .map(|s| {
                        (
                            s.file.clone(),
                            (index::lookup_time(&s.entries, ts) as u64, None),
                            s.size,
                        )
                    })
                    .collect()
            };
            let mut found = None;
            let hw = self.high_watermark();
            for (file, start, end) in candidates {
                let first = read_verified(&file, None, || {
                    read_from(
                        io,
                        &file,
                        start,
                        (end, hw),
                        |h| h.max_timestamp >= ts && h.next_offset() > from,
                        1,
                        true,
                    )
                })
                .await?;
                if let Ok(h) = batch::parse_header(&first) {
                    found = Some((h, first));
                    break;
                }
            }
            let Some((h, first)) = found else {
                return Ok(None);
            };
            // Under LogAppendTime every record has the batch's time; a compressed batch is
            // stored as produced and not decompressed: both are answered with the batch.
            let log_append_time = h.attributes & 0x8 != 0;
            if h.compression() != 0 || log_append_time {
                return Ok(Some((h.base_offset.max(from), h.max_timestamp)));
            }
            let records = &first[..h.size.min(first.len())];
            if let Some(hit) = first_record_at_or_after(records, &h, ts, from) {
                return Ok(Some(hit));
            }
            // The batch's late records are below the log start: look on from its end.
            from = h.next_offset();
        }
    }

    /// The record with the largest timestamp at or after the log start (the first of them),
    /// as `(offset, timestamp)`; `None` in an empty log (ListOffsets' MAX_TIMESTAMP).
    pub async fn max_timestamp_offset(&self, io: &Io) -> Result<Option<(i64, i64)>, StorageError> {
        let (max, start, first_end, later_max) = {
            let st = self.state();
            let start = st.log_start_offset;
            let mut live = st
                .segments
                .values()
                .filter(|s| s.size > 0 && s.next_offset > start);
            let Some(first) = live.next() else {
                return Ok(None);
            };
            let later_max = live.map(|s| s.max_timestamp).max().unwrap_or(-1);
            (
                first.max_timestamp.max(later_max),
                start,
                first.next_offset,
                later_max,
            )
        };
        if let Some(hit) = self.offset_for_timestamp(io, max).await? {
            if hit.1 >= max {
                return Ok(Some(hit));
            }
        }
        // The largest timestamp of the first segment belongs to a record below the log start
        // (DeleteRecords cut into it): find the largest of the records it still has.
        let mut best = later_max;
        let mut offset = start;
        while offset < first_end {
            let data = match self.read(io, offset, SCAN_CHUNK_BYTES).await {
                Ok(d) => d.records,
                Err(ReadError::OffsetOutOfRange { .. }) => break,
                Err(ReadError::Storage(e)) => return Err(e),
            };
            if data.is_empty() {
                break;
            }
            for (at, h) in batch::scan(&data) {
                if h.base_offset >= first_end {
                    break;
                }
                let uncompressed = h.compression() == 0 && h.attributes & 0x8 == 0;
                let top = if h.base_offset < start && uncompressed {
                    max_record_timestamp(&data[at..at + h.size], &h, start).unwrap_or(-1)
                } else {
                    h.max_timestamp
                };
                best = best.max(top);
                offset = h.next_offset();
            }
        }
        if best < 0 {
            return Ok(None);
        }
        self.offset_for_timestamp(io, best).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
            timestamp_type: crate::records::TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            min_insync_replicas: 1,
            ..crate::config::Config::default().topic_defaults()
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
}
