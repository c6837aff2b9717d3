//! Opening a partition after a start or a crash: closed segments through their CRC-checked
//! indexes (rebuilt when damaged), the active segment scanned and cut at the first torn or
//! corrupt batch (read again first: a misread must not cut acknowledged data).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use io_backend::{DiskFile, OpenMode};

use super::index;
use super::loading::Loading;
use super::read::READ_ATTEMPTS;
use super::replica::{self, HardStateRecord, ReplicaMeta, ReplicaState, TailEntry};
use super::reset::{finish_reset, remove_unstarted_segment};
use super::scan::{scan_segment, zeros_from, Scanned};
use super::txn_index;
use super::{segment_name, LogConfig, Naming, Partition, PartitionState, Segment};
use crate::producer_state::ProducerStates;
use crate::storage::io::{Io, StorageError};
use crate::storage::small_file;

/// The producer snapshot taken when the segment at `base` began, if there is a usable one (a
/// damaged one is read again, then given up: the segments are read instead).
async fn read_snapshot(
    io: &Io,
    dir: &Path,
    base: i64,
) -> Result<Option<ProducerStates>, StorageError> {
    let path = dir.join(segment_name(base, "snapshot"));
    for attempt in 1..=READ_ATTEMPTS {
        let Some(data) = read_whole(io, &path).await? else {
            return Ok(None);
        };
        match ProducerStates::decode(&data) {
            Ok(p) => return Ok(Some(p)),
            Err(why) if attempt == READ_ATTEMPTS => {
                tracing::warn!(file = %path.display(), %why, "producer snapshot is damaged; rebuilding from the segments");
            }
            Err(_) => {}
        }
    }
    Ok(None)
}

/// Write the producer snapshot for the segment that begins at `base`: written aside, synced,
/// renamed. The caller syncs the directory (a roll does when it creates the segment).
pub async fn write_snapshot(
    io: &Io,
    dir: &Path,
    base: i64,
    data: Bytes,
) -> Result<(), StorageError> {
    let path = dir.join(segment_name(base, "snapshot"));
    let tmp = dir.join(format!("{}.tmp", segment_name(base, "snapshot")));
    let f = io.open(&tmp, OpenMode::Truncate).await?;
    io.write_at(&f, data, 0).await?;
    io.sync_data(&f).await?;
    io.rename(&tmp, &path).await
}

/// The file that keeps a partition's log start offset when DeleteRecords moved it past the
/// first segment's base (whole segments below it are deleted soon after; until then, and
/// after a restart, reads below it are out of range).
pub const LOG_START_FILE: &str = "log-start-offset";

/// Record a partition's log start offset durably (before anyone is told of it).
pub async fn write_log_start(io: &Io, dir: &Path, offset: i64) -> Result<(), StorageError> {
    crate::storage::small_file::write(
        io,
        dir,
        LOG_START_FILE,
        &format!("log_start_offset={offset}"),
    )
    .await
}

/// The log start offset recorded in `dir`, if any. A damaged record is reported and not used
/// (the first segment's base is then the start: records deleted by DeleteRecords but not yet
/// removed with their segment may be readable again, which loses nothing).
async fn read_log_start(io: &Io, dir: &Path) -> Result<Option<i64>, StorageError> {
    let parsed = crate::storage::small_file::read(io, &dir.join(LOG_START_FILE), |body| {
        body.strip_prefix("log_start_offset=")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| "not a log start offset record".to_string())
    })
    .await;
    match parsed {
        Err(StorageError::Corrupt { path, reason }) => {
            tracing::warn!(file = %path.display(), %reason, "log start offset record is damaged; starting the log at its first segment");
            Ok(None)
        }
        other => other,
    }
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

/// Write a closed segment's index files and sync them. Its aborted transactions go first,
/// made durable (name too) before the offset index is written: a segment whose offset index
/// passes its checks has its whole `.txnindex`, and one without that file aborted nothing.
pub async fn write_index(io: &Io, dir: &Path, seg: &Segment) -> Result<(), StorageError> {
    write_txn_index(io, dir, seg).await?;
    let next_rel = (seg.next_offset - seg.base_offset) as u32;
    let (offsets, times) = index::encode(&seg.entries, seg.max_timestamp, next_rel);
    let offsets = index::with_header(index::OFFSET_KIND, io.format(), offsets);
    let times = index::with_header(index::TIME_KIND, io.format(), times);
    // The two files are independent: written and synced together.
    let writes = [("index", offsets), ("timeindex", times)].map(|(ext, data)| async move {
        let path = dir.join(segment_name(seg.base_offset, ext));
        let f = io.open(&path, OpenMode::Truncate).await?;
        io.write_at(&f, data, 0).await?;
        io.sync_data(&f).await
    });
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// Write a closed segment's `.txnindex` and make it durable, name too (none when it aborted
/// nothing: a file left from before is removed).
pub(super) async fn write_txn_index(
    io: &Io,
    dir: &Path,
    seg: &Segment,
) -> Result<(), StorageError> {
    let path = dir.join(segment_name(seg.base_offset, "txnindex"));
    if seg.aborted.is_empty() {
        return io.remove_file_if_present(&path).await;
    }
    let f = io.open(&path, OpenMode::Truncate).await?;
    let entries = txn_index::encode(&seg.aborted);
    let data = index::with_header(index::TXN_KIND, io.format(), entries);
    io.write_at(&f, data, 0).await?;
    io.sync_data(&f).await?;
    io.sync_dir(dir).await
}

/// Put a merged cleaned segment in place of the segments it was made from (`members`, in
/// order, the first its base), once its copy is the swap file `<base>.swap` (written whole and
/// synced before it was renamed to that name): every member's index files and every member's
/// log but the first removed, then the swap renamed over the first, the directory synced
/// after each step. Any crash in between leaves the swap, and recovery ([`finish_swaps`])
/// runs this again; every step may be repeated.
pub async fn finish_swap(
    io: &Io,
    dir: &Path,
    base: i64,
    members: &[i64],
) -> Result<(), StorageError> {
    for &member in members {
        let exts: &[&str] = if member == base {
            &["index", "timeindex", "txnindex"]
        } else {
            &["index", "timeindex", "txnindex", "log"]
        };
        for ext in exts {
            io.remove_file_if_present(&dir.join(segment_name(member, ext)))
                .await?;
        }
    }
    io.sync_dir(dir).await?;
    crate::fault_point!("cleaner.in_swap");
    io.rename(
        &dir.join(segment_name(base, "swap")),
        &dir.join(segment_name(base, "log")),
    )
    .await?;
    io.sync_dir(dir).await
}

/// Finish every merge of segments a crash interrupted (a `<base>.swap` left, see
/// [`finish_swap`]): the segments it replaces are those whose base lies in the offsets it
/// spans. Whether there was one.
async fn finish_swaps(io: &Io, dir: &Path, names: &[String]) -> Result<bool, StorageError> {
    let mut finished = false;
    for name in names {
        let Some(base) = name
            .strip_suffix(".swap")
            .and_then(|b| b.parse::<i64>().ok())
        else {
            continue;
        };
        let path = dir.join(name);
        let file = io.open(&path, OpenMode::Existing).await?;
        let len = io.len(&file).await?;
        let scanned = scan_segment(io, &file, base, len, u64::MAX, None, false).await?;
        drop(file);
        if scanned.valid_len < len {
            // It was synced whole before it took this name: damage, not a torn write.
            return Err(StorageError::Corrupt {
                path,
                reason: format!(
                    "a merged segment waiting to replace the segments it was made from is \
                     damaged at byte {} of {len}",
                    scanned.valid_len
                ),
            });
        }
        let members: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log")?.parse::<i64>().ok())
            .filter(|&b| b >= base && b < scanned.next_offset)
            .collect();
        tracing::warn!(segment = %path.display(), merged = members.len(), "finishing a merge of cleaned segments that a crash interrupted");
        finish_swap(io, dir, base, &members).await?;
        crate::coverage::reached(crate::coverage::Event::CleanedSwapFinished);
        finished = true;
    }
    Ok(finished)
}

/// Remove what a roll that failed part way left behind: the next segment's file, created empty
/// and never written, while the segment before went on taking the appends (so it runs past the
/// leftover's base, and the two would claim the same offsets). An empty segment followed by
/// another is always such a leftover (a roll never closes an empty segment); an empty last one
/// is the normal start of a fresh segment unless the segment before runs past its base.
/// Whether it removed any.
async fn remove_failed_rolls(
    io: &Io,
    dir: &Path,
    bases: &mut Vec<i64>,
) -> Result<bool, StorageError> {
    let before = bases.len();
    let mut i = 1;
    while i < bases.len() {
        let base = bases[i];
        let file = io
            .open(&dir.join(segment_name(base, "log")), OpenMode::Existing)
            .await?;
        if io.len(&file).await? > 0 {
            i += 1;
            continue;
        }
        let leftover = if i + 1 < bases.len() {
            true
        } else {
            let prev_base = bases[i - 1];
            let prev = io
                .open(
                    &dir.join(segment_name(prev_base, "log")),
                    OpenMode::Existing,
                )
                .await?;
            let len = io.len(&prev).await?;
            let scanned = scan_segment(io, &prev, prev_base, len, u64::MAX, None, false).await?;
            scanned.next_offset > base
        };
        if !leftover {
            i += 1;
            continue;
        }
        tracing::warn!(segment = %dir.join(segment_name(base, "log")).display(), "removing an empty segment a failed roll left behind");
        for ext in ["log", "index", "timeindex", "txnindex", "snapshot"] {
            let path = dir.join(segment_name(base, ext));
            if io.exists(&path).await? {
                io.remove_file(&path).await?;
            }
        }
        bases.remove(i);
    }
    Ok(bases.len() < before)
}

/// Open a partition directory after a start or a crash: load closed segments through their
/// index files (rebuilding an index that fails its checks), scan the active segment, and cut a
/// torn or corrupt tail off it.
pub async fn recover(
    io: &Io,
    dir: &Path,
    of: Naming<'_>,
    config: LogConfig,
    replicated: bool,
    hard_state: Option<HardStateRecord>,
) -> Result<Partition, StorageError> {
    io.create_dir_all(dir).await?;
    let names = io.list(dir).await?;
    let names = if finish_swaps(io, dir, &names).await? {
        io.list(dir).await?
    } else {
        names
    };
    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse::<i64>().ok())
        .collect();
    bases.sort_unstable();
    let mut removed = remove_failed_rolls(io, dir, &mut bases).await?;
    let meta = if replicated {
        let mut meta = small_file::read(io, &dir.join(replica::META_FILE), ReplicaMeta::decode)
            .await?
            .unwrap_or_default();
        if finish_reset(io, dir, &mut bases, &mut meta).await?
            || remove_unstarted_segment(io, dir, &mut bases, &meta).await?
        {
            removed = true;
        }
        Some(meta)
    } else {
        None
    };
    let names = if removed { io.list(dir).await? } else { names };
    let active_base = bases.last().copied().unwrap_or(0);
    remove_leftovers(io, dir, &names, &bases, active_base).await?;
    // The producers' state: the snapshot taken when the active segment began, then its
    // batches; without a usable snapshot, every segment's batches.
    let snapshot = read_snapshot(io, dir, active_base).await?;
    let scan_closed = snapshot.is_none() && bases.len() > 1;
    if scan_closed {
        tracing::info!(dir = %dir.display(), "no producer snapshot; reading every segment to rebuild the idempotent producers' state");
    }
    let mut producers = snapshot.unwrap_or_default();
    let mut loading = Loading {
        io,
        dir,
        index_interval_bytes: config.index_interval_bytes,
        replicated,
        scan_closed,
    };
    let (segments, active) = match loading.segments(&bases, &mut producers).await? {
        Some(found) => found,
        None => {
            // A closed segment's aborted transactions are lost (its `.txnindex` damaged, or
            // its index rebuilt where abort markers lie): only the producers' state as of its
            // start tells where they began, so every segment is read again from the first.
            tracing::warn!(dir = %dir.display(), "a segment's aborted transactions must be rebuilt; reading every segment");
            loading.scan_closed = true;
            producers = ProducerStates::default();
            loading
                .segments(&bases, &mut producers)
                .await?
                .expect("a scan of every segment rebuilds every list")
        }
    };
    // DeleteRecords may have moved the start into the segments (never past their end).
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let end = segments.values().next_back().map_or(0, |s| s.next_offset);
    let log_start_offset = match read_log_start(io, dir).await? {
        Some(recorded) => recorded.clamp(first_base, end),
        None => first_base,
    };
    let replica = match meta {
        Some(meta) => {
            let active = active.unwrap_or_default();
            let found = Found {
                meta,
                hard_state,
                segments: &segments,
                active,
                log_start_offset,
            };
            Some(recover_replica(io, dir, found).await?)
        }
        None => None,
    };
    Ok(Partition::new(
        of,
        dir.to_path_buf(),
        config,
        PartitionState::new(segments, log_start_offset, producers, replica),
    ))
}

/// Index files whose segment is gone (retention removes the log file first), producer
/// snapshots other than the active segment's (a roll writes the new one first), and temporary
/// files: removed.
async fn remove_leftovers(
    io: &Io,
    dir: &Path,
    names: &[String],
    bases: &[i64],
    active_base: i64,
) -> Result<(), StorageError> {
    for name in names {
        let index_of = name
            .strip_suffix(".index")
            .or_else(|| name.strip_suffix(".timeindex"))
            .and_then(|b| b.parse::<i64>().ok());
        let snapshot_of = name
            .strip_suffix(".snapshot")
            .and_then(|b| b.parse::<i64>().ok());
        // The active segment's aborted transactions are found again by its scan: a file of
        // them beside it is a failed roll's.
        let txns_of = name
            .strip_suffix(".txnindex")
            .and_then(|b| b.parse::<i64>().ok());
        if index_of.is_some_and(|b| bases.binary_search(&b).is_err())
            || txns_of.is_some_and(|b| b == active_base || bases.binary_search(&b).is_err())
            || snapshot_of.is_some_and(|b| b != active_base)
            || name.ends_with(".tmp")
            || name.ends_with(".prefix")
        {
            crate::coverage::reached_when(crate::coverage::Event::CleanedCopyRecovered, || {
                name.ends_with(".cleaned.tmp")
            });
            io.remove_file(&dir.join(name)).await?;
        }
    }
    Ok(())
}

/// A segment as its scan found it.
pub(super) fn scanned_segment(base: i64, file: Arc<dyn DiskFile>, s: Scanned) -> Segment {
    Segment {
        base_offset: base,
        file,
        size: s.valid_len,
        next_offset: s.next_offset,
        entries: s.entries,
        max_timestamp: s.max_timestamp,
        roll_base_ms: s.first_timestamp,
        allocated: s.valid_len,
        aborted: s.aborted,
    }
}

/// A segment's file cut after its last valid batch, where the scan stopped before its end:
/// zeros the pipeline wrote ahead of the data (nothing lost), or a torn or corrupt tail.
pub(super) async fn cut_tail(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    path: &Path,
    valid_len: u64,
    len: u64,
) -> Result<(), StorageError> {
    if valid_len >= len {
        return Ok(());
    }
    if zeros_from(io, file, valid_len, len).await? {
        // What the pipeline wrote ahead of the data: nothing was lost.
        tracing::debug!(segment = %path.display(), valid_bytes = valid_len, file_bytes = len, "cutting the zeros written ahead of the data");
    } else {
        crate::coverage::reached(crate::coverage::Event::RecoveryCutTornTail);
        tracing::warn!(
            segment = %path.display(),
            valid_bytes = valid_len,
            file_bytes = len,
            "truncating a torn or corrupt tail"
        );
    }
    io.truncate(file, valid_len).await?;
    io.sync_data(file).await?;
    Ok(())
}

/// What recovery found of a replicated partition, for [`recover_replica`].
struct Found<'a> {
    /// The partition's Raft record, as its file holds it.
    meta: ReplicaMeta,
    /// Its hard state as the data directory's file of hard states holds it.
    hard_state: Option<HardStateRecord>,
    segments: &'a BTreeMap<i64, Segment>,
    active: ActiveScan,
    log_start_offset: i64,
}

/// What the scan of a replicated partition's active segment found.
#[derive(Default)]
pub(super) struct ActiveScan {
    batches: u64,
    tail: Vec<TailEntry>,
    terms: Vec<(u64, u64, i64)>,
    undo: Vec<(u64, crate::producer_state::Undo)>,
    log_starts: Vec<(i64, i64)>,
    gaps: Vec<i64>,
    confs: Vec<(u64, i64, Vec<u8>)>,
}

impl ActiveScan {
    /// What a replicated partition's recovery keeps of the active segment's scan.
    pub(super) fn taken_from(s: &mut Scanned) -> ActiveScan {
        ActiveScan {
            batches: s.batches,
            tail: std::mem::take(&mut s.tail).into(),
            terms: std::mem::take(&mut s.terms),
            undo: std::mem::take(&mut s.undo).into(),
            log_starts: std::mem::take(&mut s.log_starts),
            gaps: std::mem::take(&mut s.gaps),
            confs: std::mem::take(&mut s.confs),
        }
    }
}

/// A replicated partition's Raft state: its record as the file says for the closed segments and
/// as the active segment's batches say (the file may lag them: it is written only when what
/// the batches cannot tell changes), the first index of the active segment found from the
/// segment before when it was not recorded, and the hard state. A record whose durable part
/// ([`ReplicaMeta::durable_part`]) needed repair is written back at once.
async fn recover_replica(
    io: &Io,
    dir: &Path,
    found: Found<'_>,
) -> Result<ReplicaState, StorageError> {
    let Found {
        meta: file_meta,
        hard_state,
        segments,
        active,
        log_start_offset,
    } = found;
    let corrupt = |reason: String| StorageError::Corrupt {
        path: dir.join(replica::META_FILE),
        reason,
    };
    let mut meta = file_meta.clone();
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let (&active_base, _) = segments
        .iter()
        .next_back()
        .ok_or_else(|| corrupt("no segment".into()))?;
    meta.segments.retain(|base, _| segments.contains_key(base));
    meta.prune(first_base);
    // The segments whose part of the record comes from their batches: the active one, and the
    // one before it when the file was last written while that one was active (the first write
    // into a new segment writes the file beside the data; a crash may keep the data and lose
    // the file, and with it what the segment before held: its terms, gaps, marks and
    // membership changes).
    let mut derived: Vec<(i64, u64, ActiveScan)> = Vec::with_capacity(2);
    let active_first = match meta.segments.get(&active_base) {
        Some(&first) => first,
        None => match segments.range(..active_base).next_back() {
            None => meta.prev.0 + 1,
            Some((&before, seg)) => {
                let &first = meta.segments.get(&before).ok_or_else(|| {
                    corrupt(format!("no first Raft index for the segment at {before}"))
                })?;
                let mut scanned =
                    scan_segment(io, &seg.file, before, seg.size, u64::MAX, None, true).await?;
                let batches = scanned.batches;
                derived.push((before, first, ActiveScan::taken_from(&mut scanned)));
                first + batches
            }
        },
    };
    let next_index = active_first + active.batches;
    derived.push((active_base, active_first, active));
    meta.segments.insert(active_base, active_first);
    // What the file says of the derived segments is what the batches say (the file names the
    // closed segments' marks, gaps and changes; the derived ones' are what they hold).
    let (derived_base, derived_first) = (derived[0].0, derived[0].1);
    meta.epochs.retain(|e| e.index < derived_first);
    meta.log_starts
        .retain(|(at, to)| *at < derived_base && *to > log_start_offset);
    meta.gaps.truncate(derived_base);
    let mut confs = Vec::new();
    for (_, first, scan) in derived.iter_mut() {
        for &(term, before, offset) in &scan.terms {
            if meta.epochs.last().map(|e| e.term) != Some(term) {
                meta.epochs.push(replica::Epoch {
                    term,
                    index: *first + before,
                    offset,
                });
            }
        }
        meta.log_starts.extend(
            scan.log_starts
                .iter()
                .filter(|(_, to)| *to > log_start_offset),
        );
        for &gap in &scan.gaps {
            meta.gaps.push(gap);
        }
        confs.extend(
            std::mem::take(&mut scan.confs)
                .into_iter()
                .map(|(n, offset, change)| super::conf::ConfEntry {
                    index: *first + n,
                    offset,
                    change,
                }),
        );
    }
    meta.confs.replace_from(derived_base, confs);
    let active = derived.pop().expect("the active segment").2;
    if meta.durable_part(active_base) != file_meta.durable_part(active_base) {
        small_file::write(io, dir, replica::META_FILE, &meta.encode()).await?;
    }
    // The data directory's file of hard states has the partition's, unless it never wrote one
    // since that file began: then its own file of an older version has it, or nothing does.
    let hard_state = match hard_state {
        Some(hs) => hs,
        None => small_file::read(
            io,
            &dir.join(replica::HARD_STATE_FILE),
            HardStateRecord::decode,
        )
        .await?
        .unwrap_or_default(),
    };
    // What the log lost in a crash cannot be committed here any more (Raft learns it again).
    let hard_state = HardStateRecord {
        commit: hard_state
            .commit
            .clamp(meta.prev.0, next_index.saturating_sub(1)),
        ..hard_state
    };
    let undo_from = active_first + active.batches.saturating_sub(replica::UNDO_ENTRIES_MAX);
    Ok(ReplicaState {
        meta_written: Some((active_base, meta.durable_part(active_base))),
        meta,
        meta_dirty: false,
        committed_offset: log_start_offset,
        hard_state,
        next_index,
        recovered_tail: active.tail,
        recovered_undo: active
            .undo
            .into_iter()
            .map(|(n, undo)| (active_first + n, undo))
            .collect(),
        undo_from,
        log_start_asked: 0,
        points: Default::default(),
        unsettled: None,
        unreplicated: Vec::new(),
    })
}
